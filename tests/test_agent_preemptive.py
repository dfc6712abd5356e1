"""Preemptive replies: prepared on TurnPending, held, promoted at TurnEnded or dropped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

import voicekit as vk
from voicekit import agent
from voicekit.events import (
    AudioChunk,
    Interrupted,
    ReplyFailed,
    ReplyStarted,
    Sentence,
    SessionUpdated,
    SpeechStarted,
    Token,
    ToolCall,
    ToolResult,
    TurnEnded,
    TurnPending,
    TurnStarted,
)
from voicekit.tts import tones

SORRY = "Sorry, I am having trouble right now."


class SlowLLM:
    """Answers call *n* with ``replies[n]`` after ``first`` seconds; records every call's
    messages, and whether it completed and whether it was closed."""

    def __init__(self, *replies: Sequence[Any], first: float = 0.3) -> None:
        self.replies = replies
        self.first = first
        self.calls: list[list[dict[str, Any]]] = []
        self.completed: list[bool] = []
        self.closed: list[bool] = []

    async def __call__(self, messages: Any, *, tools: Any = None) -> AsyncIterator[Any]:
        index = len(self.calls)
        self.calls.append([dict(m) for m in messages])
        self.completed.append(False)
        self.closed.append(False)
        try:
            await asyncio.sleep(self.first)
            for step in self.replies[index]:
                if isinstance(step, BaseException):
                    raise step
                if isinstance(step, int | float):
                    await asyncio.sleep(step)
                    continue
                yield Token(step) if isinstance(step, str) else step
                await asyncio.sleep(0.005)
            self.completed[index] = True
        finally:
            self.closed[index] = True


def other_tasks() -> set[asyncio.Task[Any]]:
    me = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not me and not t.done()}


async def converse(bot: vk.Stage, script: Sequence[Any]) -> list[tuple[float, Any]]:
    """Feed ``script`` (items, and numbers: pauses in seconds) to ``bot``; every output with the
    time it came out. The source ends once every reply has ended."""
    loop = asyncio.get_running_loop()
    origin = loop.time()
    out: list[tuple[float, Any]] = []
    changed = asyncio.Event()

    def quiet() -> bool:
        replies = sum(isinstance(x, ReplyStarted) for _, x in out)
        return replies == sum(isinstance(x, SessionUpdated) for _, x in out)

    async def source() -> AsyncIterator[Any]:
        for step in script:
            if isinstance(step, int | float):
                await asyncio.sleep(step)
            else:
                yield step
        while not quiet():
            changed.clear()
            await changed.wait()

    async with (source() | bot).open() as items:
        async for item in items:
            out.append((loop.time() - origin, item))
            changed.set()
    return out


def at(out: list[tuple[float, Any]], kind: type) -> float:
    return next(t for t, x in out if isinstance(x, kind))


def kinds(out: list[tuple[float, Any]]) -> list[str]:
    names = [type(x).__name__ for _, x in out]
    return [n for i, n in enumerate(names) if n != "AudioChunk" or names[i - 1] != "AudioChunk"]


def session_of(out: list[tuple[float, Any]]) -> vk.Session:
    return [x for _, x in out if isinstance(x, SessionUpdated)][-1].session


def bot(llm: Any, **options: Any) -> vk.Stage:
    return agent(llm=llm, tts=tones(pass_text=True), session=vk.Session(call_id="t"), **options)


PENDING_THEN_END = [TurnStarted(1.0), TurnPending("hi there", 2.0), 0.4, TurnEnded("hi there", 2.6)]


async def test_a_prepared_reply_is_heard_right_after_the_turn_ends() -> None:
    reply = ["Hello! ", "How can I help?"]
    results = {}
    for preemptive in (True, False):
        llm = SlowLLM(reply, first=0.3)
        out = await asyncio.wait_for(converse(bot(llm, preemptive=preemptive), PENDING_THEN_END), 5)
        wait = at(out, AudioChunk) - at(out, TurnEnded)
        results[preemptive] = (wait, out, llm)
        assert llm.completed == [True]
        assert not other_tasks()
    fast, out, llm = results[True]
    slow, plain, _ = results[False]
    assert fast <= 0.05, fast
    assert slow >= 0.3, slow
    # nothing came out before the turn ended, and the reply reads as if it started there
    assert (
        kinds(out)
        == kinds(plain)
        == [
            "TurnStarted",
            "TurnPending",
            "TurnEnded",
            "ReplyStarted",
            "AudioChunk",
            "Sentence",
            "Mark",
            "AudioChunk",
            "Sentence",
            "Mark",
            "SessionUpdated",
        ]
    )
    assert [x for _, x in out if not isinstance(x, AudioChunk | SessionUpdated)] == [
        x for _, x in plain if not isinstance(x, AudioChunk | SessionUpdated)
    ]
    assert session_of(out) == session_of(plain)
    assert session_of(out).messages_json() == [
        {"role": "user", "content": "hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
    ]


async def test_a_prepared_reply_is_dropped_silently_when_the_user_goes_on() -> None:
    llm = SlowLLM(["Which day?"], ["For how many?"], first=0.3)
    script = [
        TurnStarted(1.0),
        TurnPending("book a", 2.0),
        0.1,  # the LLM is waiting for its first token
        SpeechStarted(2.1),
        0.05,
        TurnPending("book a table", 2.9),
        0.4,
        TurnEnded("book a table", 3.3),
    ]
    out = await asyncio.wait_for(converse(bot(llm), script), 5)
    assert llm.completed == [False, True] and llm.closed == [True, True]
    assert [m[-1]["content"] for m in llm.calls] == ["book a", "book a table"]
    # no audio, no event of the dropped reply; no Interrupted: nothing was cut that was heard
    assert at(out, AudioChunk) > at(out, TurnEnded)
    assert not [x for _, x in out if isinstance(x, Interrupted | ReplyFailed)]
    assert [x.turn for _, x in out if isinstance(x, ReplyStarted)] == ["book a table"]
    assert session_of(out).messages_json() == [
        {"role": "user", "content": "book a table"},
        {"role": "assistant", "content": "For how many?"},
    ]
    assert not other_tasks()


async def test_the_dropped_reply_leaves_no_task_while_the_turn_goes_on() -> None:
    llm = SlowLLM(["Never heard."], first=30.0)
    gate = asyncio.Event()
    seen: list[set[asyncio.Task[Any]]] = []
    closed: list[list[bool]] = []

    async def source() -> AsyncIterator[Any]:
        yield TurnStarted(1.0)
        await asyncio.sleep(0.05)
        base = other_tasks()
        yield TurnPending("wait", 2.0)
        await asyncio.sleep(0.05)
        during = other_tasks() - base  # the held reply's work
        yield SpeechStarted(2.1)
        await asyncio.sleep(0.05)
        seen.append(during)
        seen.append(during & other_tasks())
        closed.append(list(llm.closed))
        gate.set()
        yield "wake up"  # passed through: the reader sees the gate
        await asyncio.sleep(30)

    async with (source() | bot(llm)).open() as items:
        async for item in items:
            if gate.is_set():
                break
            assert not isinstance(item, AudioChunk)
    # the request was closed at the SpeechStarted, not when the agent was shut
    assert closed == [[True]] and llm.completed == [False]
    assert seen[0] and not seen[1]
    assert not other_tasks()


async def test_a_different_final_text_drops_the_prepared_reply_and_starts_again() -> None:
    llm = SlowLLM(["Hi."], ["Hi, how are you?"], first=0.2)
    script = [TurnStarted(1.0), TurnPending("hello", 2.0), 0.1, TurnEnded("hello there", 2.6)]
    out = await asyncio.wait_for(converse(bot(llm), script), 5)
    assert llm.completed == [False, True]
    assert [m[-1]["content"] for m in llm.calls] == ["hello", "hello there"]
    assert [s.text for _, s in out if isinstance(s, Sentence)] == ["Hi, how are you?"]
    assert at(out, AudioChunk) - at(out, TurnEnded) >= 0.2
    assert session_of(out).messages_json()[0] == {"role": "user", "content": "hello there"}
    assert not other_tasks()


async def test_the_same_words_spaced_otherwise_promote_with_the_final_text() -> None:
    llm = SlowLLM(["Hi."], first=0.1)
    script = [TurnStarted(1.0), TurnPending(" hello   there", 2.0), 0.3, TurnEnded("hello there")]
    out = await asyncio.wait_for(converse(bot(llm), script), 5)
    assert len(llm.calls) == 1
    assert session_of(out).messages_json() == [
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": "Hi."},
    ]


async def test_tools_never_run_before_the_turn_ends() -> None:
    ran: list[str] = []

    def lookup(city: str) -> str:
        """Look the weather up."""
        ran.append(city)
        return "sunny"

    call = ToolCall("c1", "lookup", '{"city": "Paris"}')
    # dropped: the LLM asked for the tool, the user went on, the tool never ran
    llm = SlowLLM([call], ["Okay."], first=0.0)
    script = [TurnStarted(1.0), TurnPending("weather", 2.0), 0.2, TurnEnded("weather in Rome")]
    out = await asyncio.wait_for(converse(bot(llm, tools=[lookup]), script), 5)
    assert ran == []
    assert not [x for _, x in out if isinstance(x, ToolCall | ToolResult)]
    assert [m[-1]["content"] for m in llm.calls] == ["weather", "weather in Rome"]
    # promoted: the call was held, the tool ran after the TurnEnded, and the history is whole
    llm = SlowLLM(["Let me see. ", call], ["It is sunny."], first=0.0)
    out = await asyncio.wait_for(converse(bot(llm, tools=[lookup]), PENDING_THEN_END), 5)
    assert ran == ["Paris"]
    assert at(out, ToolCall) > at(out, TurnEnded)
    assert [m["role"] for m in session_of(out).messages_json()] == [
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    assert session_of(out).messages_json()[1]["content"] == "Let me see."
    assert not other_tasks()


@pytest.mark.parametrize("promoted", [True, False])
async def test_an_llm_error_while_held_surfaces_only_if_promoted(promoted: bool) -> None:
    llm = SlowLLM([RuntimeError("boom")], ["Fine."], first=0.0)
    end = "hi there" if promoted else "hi there again"
    script = [TurnStarted(1.0), TurnPending("hi there", 2.0), 0.2, TurnEnded(end, 2.6)]
    out = await asyncio.wait_for(converse(bot(llm, llm_error_message=SORRY), script), 5)
    failed = [x for _, x in out if isinstance(x, ReplyFailed)]
    spoken = [s.text for _, s in out if isinstance(s, Sentence)]
    if promoted:
        assert [f.fallback for f in failed] == [True]
        assert at(out, ReplyFailed) > at(out, ReplyStarted) > at(out, TurnEnded)
        assert spoken == [SORRY]
        assert session_of(out).messages_json() == [{"role": "user", "content": "hi there"}]
    else:
        assert failed == [] and spoken == ["Fine."]
    assert not other_tasks()


async def test_no_preparation_while_a_reply_is_in_flight_or_when_turned_off() -> None:
    llm = SlowLLM(["One. ", 1.0, "Two."], ["Yes?"], first=0.0)
    # a TurnPending during a reply (no TurnStarted before it) starts nothing
    script = [TurnEnded("count"), 0.05, TurnPending("wait", 1.0), 0.1, TurnEnded("wait", 1.5)]
    out = await asyncio.wait_for(converse(bot(llm), script), 5)
    assert [m[-1]["content"] for m in llm.calls] == ["count", "wait"]
    assert [x.turn for _, x in out if isinstance(x, ReplyStarted)] == ["count", "wait"]
    assert len([x for _, x in out if isinstance(x, Interrupted)]) == 1
    llm = SlowLLM(["Hi."], first=0.0)
    await asyncio.wait_for(converse(bot(llm, preemptive=False), [TurnPending("x"), 0.1]), 5)
    assert llm.calls == []
    with pytest.raises(vk.ConfigError):
        bot(llm, preemptive="yes")
