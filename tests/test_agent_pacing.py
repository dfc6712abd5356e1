"""Pacing after the agent: one outbound clock across replies, and ``paced`` that re-anchors when
its source went idle — so every reply plays in real time and a barge-in keeps only what was
heard (issue 9 item 1)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

import voicekit as vk
from voicekit import agent
from voicekit.audio import from_array, paced
from voicekit.conversation import scripted_llm
from voicekit.events import (
    AudioChunk,
    Interrupted,
    ReplyStarted,
    SessionUpdated,
    TurnEnded,
    TurnStarted,
)
from voicekit.tts import synthesize_tones, tones

# eight words each: about 1.2 s of tones per sentence, so a barge-in timed on the wall clock in
# the middle of one has about 0.6 s of margin either way
S = [
    "Alpha bravo charlie delta echo foxtrot golf hotel.",
    "India juliet kilo lima mike november oscar papa.",
    "Quebec romeo sierra tango uniform victor whiskey yankee.",
    "Zulu amber bronze copper silver golden purple orange.",
]


def seconds(text: str) -> float:
    samples, rate = synthesize_tones(text)
    return samples.shape[0] / rate


class Listener:
    """The consumer after ``paced``: when each item came out, per reply."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.replies: list[list[tuple[float, Any]]] = []
        self.first_audio = [asyncio.Event() for _ in range(4)]
        self.done = [asyncio.Event() for _ in range(4)]
        self.items: list[Any] = []

    def see(self, item: Any) -> None:
        now = self.loop.time()
        self.items.append(item)
        if isinstance(item, ReplyStarted):
            self.replies.append([])
        if not self.replies:
            return
        index = len(self.replies) - 1
        self.replies[-1].append((now, item))
        if isinstance(item, AudioChunk):
            self.first_audio[index].set()
        if isinstance(item, SessionUpdated):
            self.done[index].set()

    def audio(self, index: int) -> list[tuple[float, AudioChunk]]:
        return [(w, c) for w, c in self.replies[index] if isinstance(c, AudioChunk)]


async def test_three_replies_play_in_real_time_and_barge_ins_keep_only_the_heard_sentences():
    llm = scripted_llm(
        f"{S[0]} {S[1]}",  # reply 1: played to its end
        f"{S[0]} {S[1]} {S[2]}",  # reply 2: cut in its second sentence
        f"{S[1]} {S[2]} {S[3]}",  # reply 3: cut in its third sentence
    )
    # the last cut is a bare TurnStarted (no words, no end): a cut only with the at-once
    # strategy (the default pauses until words say it is an interruption)
    bot = agent(
        llm=llm,
        tts=tones(),
        session=vk.Session(call_id="pacing"),
        preemptive=False,
        interruption=vk.Interruption.immediate(),
    )
    listener = Listener()
    loop = asyncio.get_running_loop()
    origin = loop.time()
    cut2 = seconds(S[0]) + seconds(S[1]) / 2
    cut3 = seconds(S[1]) + seconds(S[2]) + seconds(S[3]) / 2

    def now() -> float:
        return loop.time() - origin

    async def caller() -> AsyncIterator[Any]:  # a live caller: items stamped with the wall clock
        yield TurnStarted(now())
        yield TurnEnded("first", now())
        await listener.done[0].wait()
        await asyncio.sleep(0.3)
        yield TurnStarted(now())
        yield TurnEnded("second", now())
        await listener.first_audio[1].wait()
        await asyncio.sleep(cut2)
        yield TurnStarted(now())
        yield TurnEnded("third", now())
        await listener.first_audio[2].wait()
        await asyncio.sleep(cut3)
        yield TurnStarted(now())

    async with asyncio.timeout(30):
        async for item in caller() | bot | paced():
            listener.see(item)

    # reply 1 took its real duration on the wall clock
    audio1 = listener.audio(0)
    total1 = sum(c.duration for _, c in audio1)
    span1 = audio1[-1][0] - audio1[0][0] + audio1[-1][1].duration
    assert total1 == pytest.approx(seconds(S[0]) + seconds(S[1]), abs=1e-6)
    assert span1 >= total1 - 0.03
    assert span1 < total1 + 1.5

    # replies 2 and 3 played in real time up to the barge-in (not released in a burst)
    ends2 = seconds(S[0]) + seconds(S[1])  # where the sentence cut in reply 2 ends
    ends3 = seconds(S[1]) + seconds(S[2]) + seconds(S[3])
    for index, cut, ends in ((1, cut2, ends2), (2, cut3, ends3)):
        audio = listener.audio(index)
        span = audio[-1][0] - audio[0][0] + audio[-1][1].duration
        released = sum(c.duration for _, c in audio)
        assert span >= released - 0.03, (index, span, released)
        assert cut - 0.1 < released < ends, (index, released, cut)  # the rest never went out

    # one outbound clock: each reply starts where the previous one ended, or later
    chunks = [c for reply in listener.replies for _, c in reply if isinstance(c, AudioChunk)]
    for before, after in itertools.pairwise(chunks):
        assert after.t >= before.end - 1e-9
    ends = [i for i in listener.items if isinstance(i, TurnEnded)]
    for index in (1, 2):
        assert listener.audio(index)[0][1].t >= ends[index].t

    # the Session holds only what was heard
    interrupted = [i.heard for i in listener.items if isinstance(i, Interrupted)]
    assert interrupted == [S[0], f"{S[1]} {S[2]}"]
    session = [i for i in listener.items if isinstance(i, SessionUpdated)][-1].session
    assert session.messages_json() == [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": f"{S[0]} {S[1]}"},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": S[0], "interrupted": True},
        {"role": "user", "content": "third"},
        {"role": "assistant", "content": f"{S[1]} {S[2]}", "interrupted": True},
    ]


async def test_a_reply_right_after_a_barge_in_is_paced_too():
    """No idle gap to re-anchor on: only the outbound clock keeps the next reply in time."""
    llm = scripted_llm(f"{S[0]} {S[1]}", S[2])
    bot = agent(llm=llm, tts=tones(), preemptive=False)
    listener = Listener()

    async def caller() -> AsyncIterator[Any]:
        yield TurnStarted(0.0)
        yield TurnEnded("first", 0.0)
        await listener.first_audio[0].wait()
        await asyncio.sleep(0.4)
        yield TurnStarted(0.4)
        yield TurnEnded("second", 0.4)  # the next reply comes at once

    async with asyncio.timeout(30):
        async for item in caller() | bot | paced():
            listener.see(item)
    audio = listener.audio(1)
    span = audio[-1][0] - audio[0][0] + audio[-1][1].duration
    assert sum(c.duration for _, c in audio) == pytest.approx(seconds(S[2]), abs=1e-6)
    assert span >= seconds(S[2]) - 0.03


async def test_paced_re_anchors_after_an_idle_source_but_catches_up_a_slow_consumer():
    loop = asyncio.get_running_loop()

    async def bursts() -> AsyncIterator[AudioChunk]:
        # two bursts of 0.2 s of audio whose times run on, 0.3 s of silence from the source between
        async for chunk in from_array(np.zeros(3200, dtype=np.int16), 16000):
            yield chunk
        await asyncio.sleep(0.3 + 0.2)
        async for chunk in from_array(np.zeros(3200, dtype=np.int16), 16000):
            yield AudioChunk(chunk.samples, chunk.rate, 0.2 + chunk.t)

    times = [(loop.time(), c) async for c in paced(bursts())]
    second = [(w, c) for w, c in times if c.t >= 0.2 - 1e-9]
    # the second burst plays in real time from when it came, instead of at once
    assert second[-1][0] - second[0][0] >= 0.18 - 0.003
    assert second[-1][0] - second[0][0] < 0.18 + 0.1


@pytest.mark.parametrize("resync", [-1, float("nan"), True, "0.1"])
async def test_paced_rejects_a_bad_resync(resync: Any) -> None:
    with pytest.raises(vk.AudioError, match="resync"):
        await paced([], resync=resync).list()
