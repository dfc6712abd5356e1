"""agent(metrics=True): a TurnMetrics value in the stream after every reply to a user turn."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np
import pytest

import voicekit as vk
from voicekit import agent, tool
from voicekit._agent import _run
from voicekit._metrics import ToolRun, turn_metrics
from voicekit.conversation import barge_in, run_conversation, say, scripted_llm
from voicekit.events import (
    AudioChunk,
    CallStarted,
    Interrupted,
    Mark,
    Played,
    ReplyFailed,
    ReplyStarted,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    ToolCall,
    Transcript,
    TurnEnded,
    TurnPending,
    TurnStarted,
    Usage,
)
from voicekit.notebook import turn_times
from voicekit.tts import synthesize_tones, tones

QUESTION = "what is the weather in Rome?"


def seconds(text: str) -> float:
    """How long tones() speaks ``text``."""
    samples, rate = synthesize_tones(text)
    return samples.shape[0] / rate


async def scripted(steps: Sequence[Any]) -> AsyncIterator[Any]:
    """The inbound items, with pauses (a number: seconds) between them."""
    for step in steps:
        if isinstance(step, int | float):
            await asyncio.sleep(step)
        else:
            yield step


def user_turn(text: str) -> list[Any]:
    return [
        SpeechStarted(0.0, {"start_secs": 0.2}),
        TurnStarted(0.0),
        0.05,
        SpeechStopped(1.0, {"stop_secs": 0.2}),
        0.05,
        Transcript(text, t=0.0),
        0.05,
        TurnEnded(text, 1.3),
    ]


async def seen(flow: Any) -> list[tuple[float, Any]]:
    """Everything ``flow`` yields, with when it was seen."""
    out = []
    async for item in flow:
        out.append((time.perf_counter(), item))
    return out


def of(pairs: Sequence[tuple[float, Any]], kind: type) -> list[Any]:
    return [item for _, item in pairs if isinstance(item, kind)]


async def test_a_scripted_turn_yields_turn_metrics_matching_the_timeline():
    @tool
    async def weather(city: str) -> dict:
        """The weather in a city."""
        await asyncio.sleep(0.15)
        return {"city": city, "sky": "sunny"}

    llm = scripted_llm(
        [0.2, "Let me check. ", ToolCall("c1", "weather", '{"city": "Rome"}'), Usage(20, 6, 4)],
        ["Sunny in Rome. ", Usage(30, 5, 10), "Anything else?"],
    )
    bot = agent(
        llm=llm,
        tts=tones(),
        session=vk.Session(call_id="CA-metrics"),
        tools=[weather],
        first_message="Hello.",
        metrics=True,
    )
    pairs = await seen(scripted([0.3, *user_turn(QUESTION)]) | bot)
    items = [item for _, item in pairs]

    # one TurnMetrics, right after the SessionUpdated that ends the reply (none for the greeting)
    found = of(pairs, vk.TurnMetrics)
    assert len(found) == 1
    m = found[0]
    at = items.index(m)
    assert isinstance(items[at - 1], SessionUpdated) and at == len(items) - 1
    assert [type(i).__name__ for i in items].count("SessionUpdated") == 2

    assert (m.text, m.call_id, m.sentence) == (QUESTION, "CA-metrics", "Let me check.")
    assert (m.input_tokens, m.output_tokens, m.cached_tokens) == (50, 11, 14)
    assert m.errors == () and not m.interrupted and not m.barge_in
    assert 0.14 <= m.tool_seconds < 1.5  # the tool slept 0.15 s
    assert 0.19 <= m.llm_first_token - m.reply_start < 1.5  # the LLM waited 0.2 s
    order = [m.speech_start, m.speech_end, m.vad_stop, m.transcript, m.turn_end, m.reply_start,
             m.llm_first_token, m.first_sentence, m.first_audio, m.reply_end]  # fmt: skip
    assert all(t is not None for t in order) and order == sorted(order)
    assert m.speech_end == pytest.approx(m.vad_stop - 0.2)
    assert m.first_played is None  # no acknowledging transport
    assert m.voice_to_voice == pytest.approx(m.first_audio - m.speech_end)

    # what the agent measured is what a view after it saw, on the one function's reading
    after = turn_metrics(pairs)
    assert turn_times(pairs) == after
    for name in ("speech_end", "transcript", "turn_end", "reply_start", "first_audio",
                 "audio_end", "reply_end"):  # fmt: skip
        inside = getattr(m, name) - m.vad_stop
        outside = getattr(after, name) - after.vad_stop
        assert inside == pytest.approx(outside, abs=0.02), name
    assert (after.input_tokens, after.output_tokens, after.cached_tokens) == (50, 11, 14)
    assert after.llm_first_token is None  # the LLM's tokens are only seen inside the agent
    reply_audio = sum(c.duration for c in of(pairs, AudioChunk)) - seconds("Hello.")
    assert m.audio_end - m.first_audio == pytest.approx(reply_audio)


async def test_a_plain_function_tool_is_timed_in_its_thread():
    def lookup(code: str) -> str:
        time.sleep(0.1)
        return "found"

    llm = scripted_llm([ToolCall("c1", "lookup", '{"code": "A1"}')], "It is found.")
    bot = agent(llm=llm, tts=tones(), tools=[lookup], metrics=True)
    items = await (scripted(user_turn("find A1")) | bot).list()
    (m,) = [i for i in items if isinstance(i, vk.TurnMetrics)]
    assert 0.09 <= m.tool_seconds < 1.5
    assert m.tool_calls == 1  # before the first token


async def test_a_barge_in_is_in_the_metrics_of_the_cut_reply_only():
    reply = "One two three. Four five six. Seven eight nine."
    bot = agent(llm=scripted_llm(reply, "Okay."), tts=tones(), metrics=True)
    cut = seconds("One two three.") * 1000 + 60
    result = await run_conversation(bot, [say("count"), barge_in("stop", after_audio_ms=cut)])
    events = result.events
    first, second = result.of(vk.TurnMetrics)
    assert (first.text, first.interrupted, first.barge_in) == ("count", True, True)
    assert (second.text, second.interrupted) == ("stop", False)
    at = events.index(first)
    assert isinstance(events[at - 1], SessionUpdated) and isinstance(events[at - 2], Interrupted)
    assert first.errors == () and second.errors == ()
    assert first.first_audio is not None and first.audio_end is not None
    # the cut reply's audio ends where it was cut, not where its sentences would have ended
    assert first.audio_end - first.first_audio < seconds(reply) - 0.1


async def test_a_failed_reply_names_its_failure_kinds():
    llm = scripted_llm(["Well", ConnectionError("refused")], "Fine now.")
    bot = agent(llm=llm, tts=tones(), llm_error_message="Sorry, try again.", metrics=True)
    result = await run_conversation(bot, [say("hello"), say("again")])
    first, second = result.of(vk.TurnMetrics)
    assert len(result.of(ReplyFailed)) == 1
    assert first.errors == ("llm",) and second.errors == ()
    assert first.first_audio is not None  # the apology was heard
    assert first.llm_first_token is not None and not first.interrupted


async def test_first_played_comes_from_the_transports_acknowledgement():
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    lead = seconds("Hello there.")

    async def inbound() -> AsyncIterator[Any]:
        yield CallStarted("CA-ack", carrier="test", acknowledges=True)
        yield TurnStarted(0.0)
        yield TurnEnded("hi", 0.0)
        while (item := await inbox.get()) is not None:
            yield item

    loop = asyncio.get_running_loop()
    bot = agent(
        llm=scripted_llm("Hello there. How are you?"),
        tts=tones(),
        session=vk.Session(call_id="CA-ack"),
        metrics=True,
    )
    pairs = []
    async for item in inbound() | bot:
        pairs.append((time.perf_counter(), item))
        if isinstance(item, Mark) and item.name == "1-1":  # played 0.2 s after its audio ends
            loop.call_later(lead + 0.2, inbox.put_nowait, Played("1-1"))
        elif isinstance(item, Mark):
            inbox.put_nowait(Played(item.name))
        elif isinstance(item, SessionUpdated):
            inbox.put_nowait(None)
    (m,) = of(pairs, vk.TurnMetrics)
    assert m.call_id == "CA-ack"
    first_audio = next(t for t, i in pairs if isinstance(i, AudioChunk))
    played = next(t for t, i in pairs if isinstance(i, Played) and i.name == "1-1")
    expected = (played - lead) - first_audio
    assert m.first_played - m.first_audio == pytest.approx(expected, abs=0.03)
    assert m.first_played - m.first_audio > 0.1
    assert m.reply_end >= m.first_played


async def test_without_the_option_the_agent_is_the_bare_loop():
    bot = agent(llm=scripted_llm("Hi."), tts=tones())
    assert [part.fn for part in bot._parts] == [_run]  # nothing measures, nothing is checked
    items = await (scripted(user_turn("hello")) | bot).list()
    assert not [i for i in items if isinstance(i, vk.TurnMetrics)]
    with pytest.raises(vk.ConfigError, match="metrics must be True or False"):
        agent(llm=scripted_llm("Hi."), tts=tones(), metrics="yes")


def test_turn_metrics_reads_tokens_tools_failures_and_acknowledgements_from_a_timeline():
    half_second = AudioChunk(np.zeros(8000, np.int16), 16000)
    timeline = [
        (0.0, CallStarted("CA-t", acknowledges=True)),
        (1.0, TurnStarted(1.0)),
        (2.0, TurnEnded("book it", 2.0)),
        (2.0, ReplyStarted("book it", 2.0)),
        (2.1, ToolCall("c1", "book")),
        (2.2, Usage(100, 10, 80)),
        (2.9, ToolRun("book", 2.2, 2.9)),
        (3.0, Usage(120, 20, 100)),
        (3.2, half_second),
        (3.2, Mark("1-1", "Booked.")),
        (3.4, ReplyFailed("tts", "TimeoutError: slow")),
        (4.0, Played("1-1")),
        (4.1, SessionUpdated(vk.Session(call_id="CA-t"))),
    ]
    m = turn_metrics(timeline)
    assert (m.input_tokens, m.output_tokens, m.cached_tokens) == (220, 30, 180)
    assert m.tool_seconds == pytest.approx(0.7) and m.tool_calls == 1
    assert m.errors == ("tts",) and m.call_id == "CA-t"
    assert m.first_audio == 3.2 and m.first_played == pytest.approx(3.5)  # 4.0 less 0.5 s
    assert m.reply_end == 4.1
    # without a Session at the end, the transport's call id
    assert turn_metrics(timeline[:-1]).call_id == "CA-t"


async def test_a_prepared_reply_has_its_first_token_before_the_turn_ended():
    llm = scripted_llm("Hello there. Nice to meet you.")
    bot = agent(llm=llm, tts=tones(), metrics=True)  # preemptive by default
    steps = [
        SpeechStarted(0.0, {"start_secs": 0.2}),
        TurnStarted(0.0),
        0.02,
        SpeechStopped(1.0, {"stop_secs": 0.2}),
        Transcript("hello", t=0.0),
        TurnPending("hello", 1.0),
        0.3,  # the turn detector waits; the reply is prepared meanwhile
        TurnEnded("hello", 1.6),
    ]
    items = await (scripted(steps) | bot).list()
    (m,) = [i for i in items if isinstance(i, vk.TurnMetrics)]
    assert len(llm.calls) == 1  # the prepared reply was the reply
    assert m.llm_first_token < m.turn_end - 0.2 <= m.first_audio - 0.2
    assert m.first_sentence < m.turn_end  # prepared too (held, not heard)
    assert m.turn_end <= m.reply_start <= m.first_audio
