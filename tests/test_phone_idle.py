"""agent(idle=phone.idle(...)): after the agent has finished speaking, N seconds of the caller's
silence (stream time) bring a reprompt, up to M, then a goodbye and a HangUp; never while the
agent speaks or a tool runs; the caller's speech resets it; with an acknowledging transport the
timer starts at the last Played. Over a simulated Twilio call and a fake Telnyx call too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
from servers.fake_telnyx import TelnyxCall
from servers.phone_calls import PhoneAgent
from servers.phone_rest import carrier_api, rest_api
from servers.serving import serving, voicekit_tasks
from streamdouble import api
from streamdouble.scenario import parse
from streamdouble.session import SessionConfig

import voicekit as vk
import voicekit.serve
from voicekit import ConfigError, phone
from voicekit.conversation import scripted_llm
from voicekit.events import (
    AudioChunk,
    CallStarted,
    HangUp,
    Mark,
    Played,
    ReplyStarted,
    SessionUpdated,
    ToolCall,
    ToolResult,
    TurnEnded,
    TurnStarted,
)
from voicekit.tts import tones

SILENCE = np.zeros(320, np.int16)


class Line:
    """A simulated caller who stays silent: 20 ms chunks of silence on the stream clock, fed
    only while the agent is quiet (so every stream time below is exact), ``say`` turns at
    given times, and — with ``ack_after`` — the Played of each Mark that much stream time after
    it was sent, as an acknowledging carrier would."""

    def __init__(
        self, *, seconds: float, gate: bool = True, ack_after: float | None = None,
        says: dict[float, str] | None = None, wait: Callable[[float], Any] | None = None,
    ) -> None:
        self.seconds, self.gate, self.ack_after = seconds, gate, ack_after
        self.says = dict(says or {})
        self.wait = wait
        self.quiet = asyncio.Event()
        self.over = False
        self.t = 0.0
        self.unacked: list[tuple[float, str]] = []
        self.out: list[Any] = []

    async def source(self) -> AsyncIterator[Any]:
        if self.ack_after is not None:
            yield CallStarted("CA-idle", "test", acknowledges=True)
        frames = 0
        while frames * 0.02 < self.seconds and not self.over:
            if self.gate:
                await self.quiet.wait()
            for due, name in [u for u in self.unacked if u[0] <= self.t]:
                self.unacked.remove((due, name))
                yield Played(name, self.t)
            for at in [at for at in self.says if at <= self.t]:
                text = self.says.pop(at)
                yield TurnStarted(self.t)
                yield TurnEnded(text, self.t)
            if self.wait is not None:
                await self.wait(self.t)
            yield AudioChunk(SILENCE, 16000, self.t)
            frames += 1
            self.t = round(frames * 0.02, 6)

    async def run(self, bot: Any) -> list[Any]:
        self.quiet.set()
        async for item in self.source() | bot:
            self.out.append(item)
            if isinstance(item, ReplyStarted):
                self.quiet.clear()
            elif isinstance(item, SessionUpdated):
                self.quiet.set()
            elif isinstance(item, HangUp):
                self.over = True
            elif isinstance(item, Mark) and self.ack_after is not None:
                self.unacked.append((self.t + self.ack_after, item.name))
        return self.out


def replies(out: list[Any]) -> list[tuple[ReplyStarted, float]]:
    """Each reply's ReplyStarted and where its audio ended on the outbound clock."""
    found: list[tuple[ReplyStarted, float]] = []
    for item in out:
        if isinstance(item, ReplyStarted):
            found.append((item, 0.0))
        elif isinstance(item, AudioChunk) and found:
            found[-1] = (found[-1][0], item.end)
    return found


def last_session(out: list[Any]) -> vk.Session:
    return [x for x in out if isinstance(x, SessionUpdated)][-1].session


async def test_reprompts_then_a_goodbye_and_a_hang_up_on_stream_time():
    llm = scripted_llm()  # never asked: nobody speaks
    bot = vk.agent(llm=llm, tts=tones(), first_message="Hello, how can I help?",
                   idle=phone.idle(2.0, reprompts=2))
    out = await Line(seconds=60).run(bot)
    (greeting, g_end), (first, r1_end), (second, r2_end), (goodbye, _) = replies(out)
    assert greeting.turn is None and g_end > 0.5
    # silence is counted from the end of the agent's audio, on the stream's clock, exactly
    assert first.t == pytest.approx(g_end + 2.0)
    assert second.t == pytest.approx(r1_end + 2.0)
    assert goodbye.t == pytest.approx(r2_end + 2.0)
    names = [type(x).__name__ for x in out if not isinstance(x, AudioChunk)]
    assert names[-3:] == ["Mark", "SessionUpdated", "HangUp"]
    assert [x for x in out if isinstance(x, HangUp)] == [HangUp("idle")]
    assert llm.calls == []
    session = last_session(out)
    assert session.messages_json() == [
        {"role": "assistant", "content": "Hello, how can I help?"},
        {"role": "assistant", "content": "Are you still there?", "kind": "idle_reprompt"},
        {"role": "assistant", "content": "Are you still there?", "kind": "idle_reprompt"},
        {"role": "assistant", "content": phone.DEFAULT_GOODBYE, "kind": "idle_goodbye"},
    ]
    assert dict(session.memory["call_end"]) == {
        "action": "hang_up", "by": "idle", "reason": "idle", "line": phone.DEFAULT_GOODBYE,
        "interrupted": False,
    }


async def test_the_callers_words_reset_the_reprompts():
    llm = scripted_llm("Sure, take your time.")
    bot = vk.agent(llm=llm, tts=tones(), first_message="Hello.",
                   idle=phone.idle(1.0, reprompts=1, goodbye="Bye now."))
    line = Line(seconds=60, says={2.0: "Yes, I am here."})
    out = await line.run(bot)
    kinds = [m.get("kind", m["role"]) for m in last_session(out).messages_json()]
    # reprompt, the caller answers, the agent replies; then the count starts again from 0
    assert kinds == [
        "assistant", "idle_reprompt", "user", "assistant", "idle_reprompt", "idle_goodbye",
    ]
    (_, _), (_, _), (reply, reply_end), (again, _), _ = replies(out)
    assert reply.turn == "Yes, I am here."
    assert again.t == pytest.approx(reply_end + 1.0)


async def test_never_while_a_tool_runs_or_the_agent_speaks():
    release = asyncio.Event()
    ran: list[float] = []

    async def look_up() -> str:
        """A slow lookup."""
        await release.wait()
        return "found"

    async def wait(t: float) -> None:
        if t >= 6.0:  # 6 s of the caller's silence went by while the tool ran: let it end,
            ran.append(t)  # and from now on feed the line only while the agent is quiet
            release.set()
            await line.quiet.wait()

    long = " ".join(f"Here is detail number {i} of what I found." for i in range(6))
    llm = scripted_llm([ToolCall("c1", "look_up")], long)
    bot = vk.agent(llm=llm, tts=tones(), tools=[look_up], idle=phone.idle(1.0, reprompts=1),
                   first_audio_deadline=None)
    line = Line(seconds=40, gate=False, says={0.0: "Look it up."}, wait=wait)
    out = await line.run(bot)
    started = [x for x in out if isinstance(x, ReplyStarted)]
    assert started[0].turn == "Look it up."
    tool_done = next(i for i, x in enumerate(out) if isinstance(x, ToolResult))
    first_idle = out.index(started[1])
    assert first_idle > tool_done  # nothing while the tool ran, though 6 s of silence passed
    (_, _), (reprompt, _), _ = replies(out)
    reply_audio = [x for x in out[tool_done:first_idle] if isinstance(x, AudioChunk)]
    assert sum(c.duration for c in reply_audio) > 3.0  # a long reply, not cut by the timer
    assert reprompt.t >= reply_audio[-1].end + 1.0 - 1e-9
    assert ran and ran[0] >= 6.0


async def test_with_acknowledgements_the_timer_starts_at_the_last_played():
    bot = vk.agent(llm=scripted_llm(), tts=tones(), first_message="Hello there.",
                   idle=phone.idle(2.0, reprompts=0, goodbye="Goodbye."))
    line = Line(seconds=30, gate=False, ack_after=1.5, wait=lambda t: asyncio.sleep(0.002))
    out = await line.run(bot)
    greeting_acks = [x for x in out if isinstance(x, Played)]
    assert greeting_acks  # the Played items pass through the agent
    (_, _), (goodbye, _) = replies(out)
    first_ack = greeting_acks[0]
    assert goodbye.t == pytest.approx(first_ack.t + 2.0)  # not the audio's end: the ack's
    assert [x for x in out if isinstance(x, HangUp)] == [HangUp("idle")]


def test_bad_idle_options_are_named():
    with pytest.raises(ConfigError, match="after must be a positive"):
        phone.idle(0)
    with pytest.raises(ConfigError, match="reprompts must be"):
        phone.idle(5, reprompts=-1)
    with pytest.raises(ConfigError, match=r"idle must be a voicekit\.phone\.idle"):
        vk.agent(llm=scripted_llm(), tts=tones(), idle=5)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Real calls


def check_idle_call(bot: PhoneAgent, session: vk.Session, after: float) -> None:
    started = bot.went_out(ReplyStarted)
    assert [s.turn for s in started] == [None, None, None]  # greeting, reprompt, goodbye
    marks = [x for x in bot.outbound if isinstance(x, Mark)]
    played = {p.name: p.t for p in bot.came_in(Played)}
    greeting_mark = marks[0].name
    # the timer starts when the carrier says the greeting was played, on the call's clock
    assert started[1].t == pytest.approx(played[greeting_mark] + after)
    out = bot.outbound
    hang_up = next(i for i, x in enumerate(out) if isinstance(x, HangUp))
    assert max(i for i, x in enumerate(out) if isinstance(x, Mark)) < hang_up
    assert [m.get("kind") for m in session.messages_json()] == [
        None, "idle_reprompt", "idle_goodbye",
    ]
    assert session.memory["call_end"]["by"] == "idle"


async def test_an_idle_caller_on_a_simulated_twilio_call():
    bot = PhoneAgent(scripted_llm(), first_message="Hello, how can I help?",
                     idle=phone.idle(1.5, reprompts=1, goodbye="Goodbye."))
    scenario = parse({"name": "silent caller", "steps": [
        {"wait_for": {"event": "audio", "timeout": 30}}, {"wait": 9.0},
    ]})
    config = SessionConfig(response_timeout_s=10.0, quiet_period_s=1.0, max_drain_s=10.0)
    async with rest_api() as (fake_api, base):
        application = vk.serve.app(bot.on_call, dev=True, on_end=bot.on_end,
                                   api=carrier_api("twilio", base))
        async with serving(application) as host:
            report = await api.run_scenario(f"ws://{host}/twilio/media", scenario, config=config)
            await asyncio.wait_for(bot.done.wait(), 10)
    assert report.violations == []
    check_idle_call(bot, bot.ended[0], 1.5)
    (request,) = fake_api.of("hangup")  # carried out by the transport: Twilio's REST update
    assert request.call_id == bot.ended[0].call_id
    assert await voicekit_tasks() == []


async def test_an_idle_caller_on_a_fake_telnyx_call():
    bot = PhoneAgent(scripted_llm(), first_message="Hello, how can I help?",
                     idle=phone.idle(1.5, reprompts=1, goodbye="Goodbye."))
    async with rest_api() as (fake_api, base):
        fake_api.live("v3:fake-call-1")
        application = vk.serve.app(bot.on_call, carrier="telnyx", dev=True, on_end=bot.on_end,
                                   api=carrier_api("telnyx", base))
        async with serving(application) as host:
            record = await TelnyxCall(f"ws://{host}/telnyx/media").call(
                until=lambda r: fake_api.acted.is_set(), linger=0.2, max_seconds=30,
            )
            await asyncio.wait_for(bot.done.wait(), 10)
    assert record.violations == []
    check_idle_call(bot, bot.ended[0], 1.5)
    (request,) = fake_api.of("hangup")  # Telnyx Call Control's hangup
    assert (request.call_id, request.status) == ("v3:fake-call-1", 200)
    assert await voicekit_tasks() == []
