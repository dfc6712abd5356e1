"""The phone agent on Genesys AudioHook (issue 14 items 1-4), end to end: the offline voice agent
with ``voicekit.phone``'s collector, tools and idle policy, a scripted LLM calling the tools,
``voicekit.serve.app(carrier="audiohook")`` under uvicorn, and the independent Genesys-like
client of ``tests/servers/audiohook_client.py`` (its own envelope, μ-law and rule checks). Each
call ends the way Genesys expects: our ``disconnect`` with ``outputVariables`` (strings), its
``close``, our ``closed``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
import pytest
from servers.audiohook_client import AudioHookClient, Record
from servers.phone_calls import PhoneAgent
from servers.serving import serving, voicekit_tasks

import voicekit as vk
import voicekit.serve
from voicekit import phone
from voicekit.conversation import scripted_llm
from voicekit.events import (
    AudioChunk,
    Dtmf,
    HangUp,
    Mark,
    Played,
    ReplyStarted,
    SendDtmf,
    ToolCall,
    TransferCall,
)
from voicekit.phone import Digits

RATE = 8000
MONO = [{"type": "audio", "format": "PCMU", "channels": ["external"], "rate": RATE}]


def tone(seconds: float, freq: float = 300.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.int16)


class Session:
    """What one AudioHook session looked like from the client: the ``disconnect`` it got, when
    (loop time), and its record."""

    def __init__(self, disconnect: dict[str, Any], at: float, record: Record) -> None:
        self.disconnect, self.at, self.record = disconnect, at, record

    @property
    def variables(self) -> dict[str, Any]:
        variables: dict[str, Any] = self.disconnect["parameters"].get("outputVariables", {})
        return variables

    def audio_seconds(self) -> float:
        return sum(len(a) for a in self.record.audio) / RATE


async def call(
    bot: PhoneAgent, *, speak: float = 0.0, keys: str = "", key_gap: float = 0.15
) -> Session:
    """One session: the caller says ``speak`` seconds of a tone (the energy VAD hears words),
    presses ``keys``, and otherwise streams silence, paced, until the server disconnects."""
    application = vk.serve.app(bot.on_call, carrier="audiohook", dev=True, on_end=bot.on_end)
    loop = asyncio.get_running_loop()
    async with serving(application) as host:
        client = AudioHookClient(f"ws://{host}/audiohook", api_key="open-key")
        async with client:
            await client.open(MONO)
            disconnected = client.expect("disconnect")
            if speak:
                await client.stream(np.concatenate([tone(speak), silence(0.4)]))
            for key in keys:
                await client.send("dtmf", {"digit": key})
                await client.stream(silence(key_gap))
            line = asyncio.create_task(client.stream(silence(40.0)))
            try:
                message = await asyncio.wait_for(disconnected, 30)
                at = loop.time()
                record = await client.ended()
            finally:
                line.cancel()
                await asyncio.gather(line, return_exceptions=True)
        await asyncio.wait_for(bot.done.wait(), 10)
        assert await voicekit_tasks() == []
    assert record.violations == []
    assert record.of("closed") and not record.closed_by_server  # we answered its close
    return Session(message, at, record)


def check_played_first(bot: PhoneAgent, session: Session) -> None:
    """Every mark before the call-control item came back as Played (the send clock), and the
    ``disconnect`` came once all the audio had played at Genesys's real-time pace."""
    out = bot.outbound
    end = next(i for i, x in enumerate(out) if isinstance(x, HangUp | TransferCall))
    marks = {x.name for x in out[:end] if isinstance(x, Mark)}
    assert marks and marks <= {p.name for p in bot.came_in(Played)}
    assert session.audio_seconds() > 0.5
    first = session.record.audio_at[0]
    assert session.at >= first + session.audio_seconds() - 0.25  # a packet is 0.2 s of audio


async def test_the_end_call_tool_ends_an_audiohook_session_with_output_variables():
    llm = scripted_llm(["Thanks for calling. ", ToolCall("c1", "end_call")], "Goodbye!")
    bot = PhoneAgent(llm, transcripts=["that's all, bye"],
                     tools=[phone.end_call(variables={"outcome": "resolved", "score": "5"})])
    session = await call(bot, speak=1.0)
    assert session.disconnect["parameters"]["reason"] == "completed"
    assert session.variables == {"outcome": "resolved", "score": "5"}
    check_played_first(bot, session)
    (final,) = bot.ended
    assert dict(final.memory["call_end"]) == {
        "action": "hang_up", "by": "end_call", "reason": "completed",
        "line": "Thanks for calling. Goodbye!", "interrupted": False,
    }
    assert [m["content"] for m in final.messages_json() if m["role"] == "user"] == [
        "that's all, bye"]


async def test_the_transfer_call_tool_hands_the_call_to_the_architect_flow():
    llm = scripted_llm([ToolCall("c1", "transfer_call", '{"to": "billing"}')])
    desks = {"billing": "+15550104444", "sales": "+15550105555"}
    bot = PhoneAgent(llm, transcripts=["a person, please"],
                     tools=[phone.transfer_call(desks, line="Connecting you to billing now.",
                                                variables={"queue": "billing"})])
    session = await call(bot, speak=1.0)
    assert session.variables == {"queue": "billing", "action": "transfer",
                                 "target": "+15550104444"}
    check_played_first(bot, session)
    (line,) = [x for x in bot.outbound if isinstance(x, Mark)]
    assert line.text == "Connecting you to billing now."
    assert bot.ended[0].memory["call_end"]["to"] == "+15550104444"


async def test_a_sensitive_pin_keyed_on_audiohook_is_answered_and_never_shown(caplog):
    caplog.set_level(logging.DEBUG)
    llm = scripted_llm(["Thank you, that PIN is right. ", ToolCall("c1", "end_call")], "Bye.")
    bot = PhoneAgent(llm, tools=[phone.end_call()],
                     digits={"end": "#", "count": 4, "sensitive": True})
    session = await call(bot, keys="2580")
    assert session.disconnect["parameters"] == {"reason": "completed"}  # no variables to set
    (entry,) = bot.went_out(Digits)
    assert (entry.value, entry.ended_by) == ("2580", "count")  # in clear for the code only
    assert [d.digit for d in bot.came_in(Dtmf)] == list("2580")  # AudioHook's dtmf messages
    assert not bot.went_out(Dtmf)  # consumed: nothing after the collector saw the keys
    (final,) = bot.ended
    assert final.messages_json()[0] == {"role": "user",
                                        "content": "The caller pressed 4 hidden keys."}
    assert "2580" not in str(final.messages_json()) and "2580" not in str(llm.calls)
    assert "2 5 8 0" not in caplog.text and "'2580'" not in caplog.text
    assert final.memory["call_end"]["by"] == "end_call"


async def test_an_idle_audiohook_caller_is_reprompted_then_disconnected():
    bot = PhoneAgent(scripted_llm(), first_message="Hello, how can I help?",
                     idle=phone.idle(1.0, reprompts=1, goodbye="Goodbye for now."))
    session = await call(bot)
    check_played_first(bot, session)
    started = bot.went_out(ReplyStarted)
    assert [s.turn for s in started] == [None, None, None]  # greeting, reprompt, goodbye
    # the timer ran on the stream's clock from the Played of the greeting's last mark
    played = {p.name: p.t for p in bot.came_in(Played)}
    greeting = [x.name for x in bot.outbound[: bot.outbound.index(started[1])]
                if isinstance(x, Mark)][-1]
    assert abs(started[1].t - (played[greeting] + 1.0)) < 0.03
    assert [x for x in bot.outbound if isinstance(x, HangUp)] == [HangUp("idle")]
    (final,) = bot.ended
    assert [m.get("kind") for m in final.messages_json()] == [None, "idle_reprompt",
                                                             "idle_goodbye"]
    assert final.memory["call_end"]["by"] == "idle"


async def test_send_dtmf_cannot_be_done_on_audiohook_and_the_call_goes_on(caplog):
    """Genesys's protocol has no way to play keys into the call: the ``SendDtmf`` is logged and
    ignored, the agent's reply goes on, and a later ``end_call`` still ends the session."""
    llm = scripted_llm(["Pressing one. ", ToolCall("c1", "send_dtmf", '{"digits": "1"}')],
                       ["That is done. ", ToolCall("c2", "end_call")], "Goodbye.")
    bot = PhoneAgent(llm, transcripts=["press one for me"],
                     tools=[phone.send_dtmf(), phone.end_call()])
    session = await call(bot, speak=1.0)
    assert bot.went_out(SendDtmf) == [SendDtmf("1")]
    assert "audiohook: SendDtmf is not supported here; ignored" in caplog.text
    assert session.disconnect["parameters"] == {"reason": "completed"}
    check_played_first(bot, session)
    (final,) = bot.ended
    assert final.memory["call_end"]["line"] == "Pressing one. That is done. Goodbye."


async def test_the_idle_timer_counts_from_when_the_reply_played_on_the_callers_clock():
    """The caller speaks first (the agent's reply starts seconds into the stream): the
    ``Played`` of the reply's mark is stamped on the stream's clock (where the caller's audio
    is), so the silence is counted from when the reply finished playing, not from how much
    audio the agent had sent."""
    bot = PhoneAgent(scripted_llm("Sure, one moment please."), transcripts=["can you help"],
                     idle=phone.idle(2.0, reprompts=0, goodbye="Goodbye for now."))
    session = await call(bot, speak=3.0)
    check_played_first(bot, session)
    answer, goodbye = bot.went_out(ReplyStarted)
    assert answer.turn == "can you help" and goodbye.turn is None
    (mark,) = [x for x in bot.outbound[: bot.outbound.index(goodbye)] if isinstance(x, Mark)]
    at = next(i for i, x in enumerate(bot.inbound) if isinstance(x, Played)
              and x.name == mark.name)
    played = bot.inbound[at]
    heard_until = max(x.end for x in bot.inbound[:at] if isinstance(x, AudioChunk))
    assert abs(played.t - heard_until) < 0.1  # the caller's stream clock, when it played
    assert played.t > 3.0  # the reply began after the caller's 3 s of speech
    assert goodbye.t == pytest.approx(played.t + 2.0, abs=0.03)
