"""What was heard, from the carrier: the agent marks each sentence's audio, and with an
acknowledging transport (``CallStarted(acknowledges=True)``) a sentence counts as heard only
when its ``Played`` comes back on the inbound stream (issue 10 item 4, agent side).

The fake carrier here plays the agent's audio at ``speed`` times real time from a buffer, as a
phone carrier does: it echoes ``Played(name)`` when its playhead passes a mark, and on the
agent's ``Interrupted`` it clears its buffer — echoing the marks still pending (as Twilio does)
or dropping them (as others do)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import voicekit as vk
from voicekit import agent
from voicekit.conversation import run_conversation, say, scripted_llm
from voicekit.events import (
    AudioChunk,
    CallEnded,
    CallStarted,
    Interrupted,
    Mark,
    Played,
    SessionUpdated,
    ToolCall,
    TurnEnded,
    TurnStarted,
)
from voicekit.tts import tones

A = "Alpha bravo charlie."
B = "Delta echo foxtrot."
C = "Golf hotel india."


class Carrier:
    """A fake acknowledging transport around an agent (see the module docstring)."""

    def __init__(self, *, speed: float = 4.0, echo_on_clear: bool = True, acks: bool = True):
        self.loop = asyncio.get_running_loop()
        self.speed = speed
        self.echo_on_clear = echo_on_clear
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.playhead = self.loop.time()  # when the audio sent so far will have been played
        self.pending: dict[str, asyncio.TimerHandle] = {}
        self.out: list[Any] = []  # everything the agent yielded
        self.played: list[str] = []  # the Played the carrier sent, in order
        self.changed = asyncio.Event()
        self.clears = 0
        self.hold_acks = False  # True: marks are not acknowledged at all (until released)
        self.held: list[str] = []
        self.send(CallStarted("CA1", carrier="fake", acknowledges=acks))

    def send(self, *items: Any) -> None:
        for item in items:
            self.queue.put_nowait(item)

    def end(self) -> None:
        self.queue.put_nowait(None)

    async def inbound(self) -> AsyncIterator[Any]:
        while True:
            item = await self.queue.get()
            if item is None:
                return
            yield item

    def _ack(self, name: str) -> None:
        self.pending.pop(name, None)
        self.played.append(name)
        self.send(Played(name))
        self.changed.set()

    def release(self) -> None:
        """Acknowledge the marks held back so far."""
        self.hold_acks = False
        for name in self.held:
            self._ack(name)
        self.held.clear()

    def see(self, item: Any) -> None:
        self.out.append(item)
        now = self.loop.time()
        if isinstance(item, AudioChunk):
            self.playhead = max(now, self.playhead) + item.duration / self.speed
        elif isinstance(item, Mark):
            if self.hold_acks:
                self.held.append(item.name)
            else:
                handle = self.loop.call_at(self.playhead, self._ack, item.name)
                self.pending[item.name] = handle
        elif isinstance(item, Interrupted):  # the transport's "clear"
            self.clears += 1
            self.playhead = now
            pending, self.pending = self.pending, {}
            for name, handle in pending.items():
                handle.cancel()
                if self.echo_on_clear:
                    self._ack(name)
        self.changed.set()

    async def until(self, ready: Any) -> None:
        while not ready():
            self.changed.clear()
            await self.changed.wait()

    async def run(self, bot: vk.Stage) -> list[Any]:
        async with asyncio.timeout(20):
            async for item in self.inbound() | bot:
                self.see(item)
        return self.out


def sessions(out: list[Any]) -> list[vk.Session]:
    return [x.session for x in out if isinstance(x, SessionUpdated)]


def kinds(out: list[Any]) -> list[str]:
    return [type(x).__name__ for x in out if not isinstance(x, AudioChunk)]


# A bare TurnStarted (no words, no TurnEnded) cuts a reply only with the at-once strategy; the
# default pauses the reply until the words say whether it was an interruption (issue 12).
AT_ONCE = vk.Interruption.immediate()


def bot(*replies: Any, **options: Any) -> vk.Stage:
    return agent(llm=scripted_llm(*replies), tts=tones(), preemptive=False, **options)


async def test_a_mark_follows_each_sentence_with_names_unique_in_the_call():
    result = await run_conversation(bot(f"{A} {B}", C), [say("one"), say("two")])
    out = [x for _, x in result.timeline]
    marks = [x for x in out if isinstance(x, Mark)]
    assert [(m.name, m.text) for m in marks] == [("1-1", A), ("1-2", B), ("2-1", C)]
    # each mark comes right after the last chunk of its sentence's audio
    for mark in marks:
        before = out[out.index(mark) - 1]
        assert isinstance(before, AudioChunk)
    # without an acknowledging transport, a sentence is heard once its audio is handed on
    assert sessions(out)[-1].messages_json()[-1] == {"role": "assistant", "content": C}


async def test_with_acknowledgements_the_reply_is_recorded_when_its_last_mark_comes_back():
    carrier = Carrier()
    carrier.hold_acks = True
    carrier.send(TurnEnded("hi"))
    task = asyncio.ensure_future(carrier.run(bot(f"{A} {B}")))
    await carrier.until(lambda: len(carrier.held) == 2)  # all the reply's audio is out
    await asyncio.sleep(0.2)
    assert not sessions(carrier.out)  # not recorded: the carrier has not played it yet
    carrier.release()
    await carrier.until(lambda: sessions(carrier.out))
    carrier.end()
    out = await task
    assert sessions(out)[-1].messages_json() == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": f"{A} {B}"},
    ]
    assert kinds(out)[-3:] == ["Played", "Played", "SessionUpdated"]


@pytest.mark.parametrize("echo_on_clear", [True, False], ids=["echoed", "dropped"])
async def test_a_barge_in_keeps_only_the_acknowledged_sentences(echo_on_clear):
    carrier = Carrier(echo_on_clear=echo_on_clear)
    carrier.send(TurnEnded("story"))
    task = asyncio.ensure_future(carrier.run(bot(f"{A} {B} {C}", "Okay.")))
    await carrier.until(lambda: carrier.played == ["1-1"])  # the first sentence was played
    carrier.send(TurnStarted(5.0), TurnEnded("stop", 5.0))  # the caller cuts in
    await carrier.until(lambda: len(sessions(carrier.out)) == 2)
    carrier.end()
    out = await task
    [interrupted] = [x for x in out if isinstance(x, Interrupted)]
    assert interrupted.heard == A
    assert carrier.clears == 1
    if echo_on_clear:  # the carrier echoed 1-2 and 1-3 on clear: they arrived, and did not count
        assert {"1-2", "1-3"} <= set(carrier.played)
    else:
        assert carrier.played == ["1-1", "2-1"]
    assert sessions(out)[-1].messages_json() == [
        {"role": "user", "content": "story"},
        {"role": "assistant", "content": A, "interrupted": True},
        {"role": "user", "content": "stop"},
        {"role": "assistant", "content": "Okay."},
    ]


async def test_a_turn_while_the_last_marks_are_pending_is_a_barge_in():
    carrier = Carrier()
    carrier.hold_acks = True
    carrier.send(TurnEnded("hi"))
    task = asyncio.ensure_future(carrier.run(bot(f"{A} {B}", "Yes?")))
    await carrier.until(lambda: len(carrier.held) == 2)
    carrier.hold_acks = False
    carrier.send(Played("1-1"), TurnStarted(3.0), TurnEnded("wait", 3.0))
    await carrier.until(lambda: len(sessions(carrier.out)) == 2)
    carrier.end()
    out = await task
    assert [x.heard for x in out if isinstance(x, Interrupted)] == [A]
    assert sessions(out)[0].messages_json()[-1] == {
        "role": "assistant",
        "content": A,
        "interrupted": True,
    }


async def test_call_ended_ends_the_agent_at_once_with_what_was_heard():
    carrier = Carrier()
    carrier.hold_acks = True
    carrier.send(TurnEnded("hi"))
    task = asyncio.ensure_future(carrier.run(bot(f"{A} {B}")))
    await carrier.until(lambda: len(carrier.held) == 2)
    carrier.send(Played("1-1"), CallEnded("hangup"))  # no end of the inbound stream after it
    out = await asyncio.wait_for(task, 5)
    assert kinds(out)[-2:] == ["CallEnded", "SessionUpdated"]
    assert sessions(out)[-1].messages_json() == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": A, "interrupted": True},
    ]


async def test_call_ended_mid_request_closes_the_llm_and_leaves_no_task():
    started, closed = asyncio.Event(), asyncio.Event()

    async def llm(messages: Any) -> AsyncIterator[str]:
        started.set()
        try:
            yield "Well"
            await asyncio.sleep(30)
            yield " never."
        finally:
            closed.set()

    carrier = Carrier()
    carrier.send(TurnEnded("hi"))
    task = asyncio.ensure_future(carrier.run(agent(llm=llm, tts=tones(), preemptive=False)))
    await started.wait()
    carrier.send(CallEnded("hangup"))
    out = await asyncio.wait_for(task, 5)
    assert closed.is_set()
    assert sessions(out)[-1].messages_json() == [{"role": "user", "content": "hi"}]
    me = asyncio.current_task()
    assert not {t for t in asyncio.all_tasks() if t is not me and not t.done()}


async def test_a_played_for_another_reply_or_an_unknown_mark_does_not_count():
    carrier = Carrier()
    carrier.hold_acks = True
    carrier.send(TurnEnded("one"))
    task = asyncio.ensure_future(carrier.run(bot(A, B)))
    await carrier.until(lambda: len(carrier.held) == 1)
    carrier.send(Played("9-9"), Played("2-1"))  # not this reply's marks
    await asyncio.sleep(0.2)
    assert not sessions(carrier.out)
    carrier.release()
    await carrier.until(lambda: len(sessions(carrier.out)) == 1)
    carrier.end()
    await task


async def test_a_tool_round_not_heard_before_the_barge_in_is_recorded_without_its_text():
    def lookup() -> str:
        return "sunny"

    carrier = Carrier()
    carrier.hold_acks = True  # nothing is ever played
    carrier.send(TurnEnded("weather?"))
    llm = scripted_llm(["Let me check. ", ToolCall("c1", "lookup", "{}")], f"{A} {B}")
    task = asyncio.ensure_future(
        carrier.run(
            agent(llm=llm, tts=tones(), tools=[lookup], preemptive=False, interruption=AT_ONCE)
        )
    )
    await carrier.until(lambda: len(carrier.held) == 3)
    carrier.send(Played("1-1"), Played("1-2"), TurnStarted(4.0))  # "Let me check." and A heard
    await carrier.until(lambda: sessions(carrier.out))
    carrier.end()
    out = await task
    messages = sessions(out)[-1].messages_json()
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[1]["content"] == "Let me check."
    assert messages[3] == {"role": "assistant", "content": A, "interrupted": True}
    # and when even the round's sentence was not heard, the call stays but its text goes
    carrier = Carrier()
    carrier.hold_acks = True
    carrier.send(TurnEnded("weather?"))
    llm = scripted_llm(["Let me check. ", ToolCall("c1", "lookup", "{}")], f"{A} {B}")
    task = asyncio.ensure_future(
        carrier.run(
            agent(llm=llm, tts=tones(), tools=[lookup], preemptive=False, interruption=AT_ONCE)
        )
    )
    await carrier.until(lambda: len(carrier.held) == 3)
    carrier.send(TurnStarted(4.0))
    await carrier.until(lambda: sessions(carrier.out))
    carrier.end()
    out = await task
    messages = sessions(out)[-1].messages_json()
    assert messages[1]["content"] is None and messages[1]["tool_calls"]
    assert messages[2]["role"] == "tool" and messages[-1]["interrupted"] is True


async def test_the_greeting_is_acknowledged_too():
    carrier = Carrier()
    out = []

    async def first_then_end() -> None:
        await carrier.until(lambda: sessions(carrier.out))
        carrier.end()

    ender = asyncio.ensure_future(first_then_end())
    out = await carrier.run(bot(first_message=f"{A} {B}"))
    await ender
    assert carrier.played == ["1-1", "1-2"]
    assert sessions(out)[-1].messages_json() == [{"role": "assistant", "content": f"{A} {B}"}]
    assert kinds(out).index("SessionUpdated") > kinds(out).index("Played")


async def test_interrupted_comes_at_once_even_when_closing_the_reply_takes_a_while():
    async def slow_to_stop() -> str:
        try:
            await asyncio.sleep(30)
        finally:
            await asyncio.sleep(0.5)  # cleaning up after the cancellation
        return "never"

    loop = asyncio.get_running_loop()
    carrier = Carrier(acks=False)
    carrier.send(TurnEnded("look"))
    llm = scripted_llm(["Let me look. ", ToolCall("c1", "slow_to_stop", "{}")], "Unused.")
    stamped: list[tuple[float, Any]] = []
    original = carrier.see

    def see(item: Any) -> None:
        stamped.append((loop.time(), item))
        original(item)

    carrier.see = see  # type: ignore[method-assign]
    task = asyncio.ensure_future(
        carrier.run(
            agent(
                llm=llm, tts=tones(), tools=[slow_to_stop], preemptive=False, interruption=AT_ONCE
            )
        )
    )
    await carrier.until(lambda: any(isinstance(x, Mark) for x in carrier.out))
    await asyncio.sleep(0.1)  # the tool is running
    sent = loop.time()
    carrier.send(TurnStarted(2.0))
    await carrier.until(lambda: sessions(carrier.out))
    carrier.end()
    await task
    interrupted = next(t for t, x in stamped if isinstance(x, Interrupted))
    updated = next(t for t, x in stamped if isinstance(x, SessionUpdated))
    assert interrupted - sent < 0.2
    assert updated - sent >= 0.45  # the Session waited for the tool to stop; the clear did not
