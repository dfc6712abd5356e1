"""Agent factories for the eval tests (``--agent test_eval_agents:NAME``), and the tests of the
agent description itself.

The factories are importable by name in a worker process (spawned with the parent's
``sys.path``) and in a Ray worker (the Ray fixture puts ``tests/`` on ``PYTHONPATH``): they
are what a user's ``module:function`` would be. Fast and deterministic: scripted or rule-based
LLMs and tones for speech.
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import voicekit as vk
from voicekit.conversation import scripted_llm
from voicekit.eval._agents import AgentSpec
from voicekit.eval._scenario import Scenario
from voicekit.events import Dtmf, HangUp, SessionUpdated, TransferCall, TurnEnded, TurnStarted
from voicekit.llm import demo_tools, local_responder
from voicekit.ops import stage
from voicekit.tts import tones

# ---------------------------------------------------------------------------------------------
# Factories


def offline(session: vk.Session, first_message: str | None = None) -> Any:
    """The offline responder with its weather tool, speaking in tones."""
    return vk.agent(
        llm=local_responder,
        tts=tones(),
        tools=demo_tools(),
        session=session,
        first_message=first_message,
    )


def lucky_number(session: vk.Session, seed: int) -> Any:
    """Answers with a number drawn from Python's random generator: the same for the same seed
    wherever it runs. ``seed`` is passed too, and said."""
    number = random.randint(0, 10**9)
    return vk.agent(
        llm=scripted_llm(f"Your number is {number}. Your seed is {seed}.", "Bye."),
        tts=tones(),
        session=session,
    )


@stage
async def _call_control(source: AsyncIterator[Any], /) -> AsyncIterator[Any]:
    """After a reply that says goodbye: a HangUp; one that mentions an operator: a transfer."""
    async for item in source:
        yield item
        if isinstance(item, SessionUpdated):
            said = " ".join(
                str(m.get("content") or "") for m in item.session.messages[-1:]
                if m["role"] == "assistant"
            )
            if "Goodbye" in said:
                yield HangUp("completed")
            elif "operator" in said:
                yield TransferCall("+15550100")


def call_control(session: vk.Session) -> Any:
    """A scripted agent that transfers, or hangs up, as its words say."""
    llm = scripted_llm("Let me get you an operator.", "Goodbye! Talk soon.", "Goodbye again.")
    return vk.agent(llm=llm, tts=tones(), session=session) | _call_control()


@stage
async def _digits(source: AsyncIterator[Any], /) -> AsyncIterator[Any]:
    """Keypad digits up to ``#`` become a user turn: "The caller pressed 1 2"."""
    pressed: list[str] = []
    async for item in source:
        if isinstance(item, Dtmf):
            if item.digit == "#":
                yield TurnStarted(item.t)
                yield TurnEnded(f"The caller pressed {' '.join(pressed)}", item.t)
                pressed = []
            else:
                pressed.append(item.digit)
            continue
        yield item


def keypad(session: vk.Session) -> Any:
    """Digits in, a reply that repeats them back."""

    async def llm(messages: Any, **_: Any) -> AsyncIterator[Any]:
        yield vk.Token(f"You said: {messages[-1]['content']}.")

    return _digits() | vk.agent(llm=llm, tts=tones(), session=session)


def failing(session: vk.Session) -> Any:
    """An LLM that fails on the first turn (the agent apologises) and answers the second."""
    llm = scripted_llm([vk.ProviderTimeout("read timeout")], "Fine now.")
    return vk.agent(llm=llm, tts=tones(), session=session, llm_error_message="Sorry.")


def slow(session: vk.Session) -> Any:
    """An LLM that takes 30 s to its first token."""
    return vk.agent(llm=scripted_llm([30.0, "Late."]), tts=tones(), session=session,
                    first_audio_deadline=None, llm_deadline=None)  # fmt: skip


def crashing(session: vk.Session, scenario: Scenario) -> Any:
    """Kills its worker process when the scenario's description says so:
    ``crash-always PID`` (every time, in any process but PID — the test's own), or
    ``crash-once PID FILE`` (only while FILE does not exist; it creates it)."""
    words = scenario.description.split()
    if words and words[0].startswith("crash-") and int(words[1]) != os.getpid():
        if words[0] == "crash-always":
            os._exit(3)
        marker = Path(words[2])
        if not marker.exists():
            marker.write_text("crashed once")
            os._exit(3)
    return offline(session)


# ---------------------------------------------------------------------------------------------
# The agent description


def test_flags_are_checked_where_they_are_given():
    assert AgentSpec(("--llm", "local", "--tts", "tones")).describe() == (
        "voicekit agent --llm local --tts tones"
    )
    with pytest.raises(vk.ConfigError, match="not understood: --frobnicate"):
        AgentSpec(("--frobnicate", "1"))
    with pytest.raises(vk.ConfigError, match="module:function"):
        AgentSpec(factory="no_colon_here")


def test_an_agent_description_survives_pickling():
    import pickle

    spec = AgentSpec(("--llm", "local"), "test_eval_agents:offline")
    assert pickle.loads(pickle.dumps(spec)) == spec
