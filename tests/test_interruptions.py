"""Interruptions that are real: a backchannel or a noise over a reply pauses it and it resumes;
words that are not backchannels cut it (issue 12 item 3).

Deterministic: the user's side is a hand-written event stream on stream time, fed one item at a
time, and the TTS speaks a sentence only when the test opens its gate, so what the agent could
have yielded at each moment is known.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

import voicekit as vk
from voicekit import (
    AudioChunk,
    CallStarted,
    ConfigError,
    Interrupted,
    Interruption,
    Mark,
    Played,
    ReplyStarted,
    Sentence,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    Transcript,
    TurnEnded,
    TurnPending,
    TurnStarted,
    agent,
)
from voicekit.events import NoWords
from voicekit.stt._utterances import recognize_utterances
from voicekit.turns import turns

REPLY = "One two three four. Five six seven eight. Nine ten eleven twelve."
S1, S2, S3 = "One two three four.", "Five six seven eight.", "Nine ten eleven twelve."
CHUNKS = 3  # audio chunks per sentence


KNOWN = [S1, S2, S3]  # sentence k's audio samples are all k + 1; any other sentence's, 9


class Gated:
    """A TTS stage that speaks a sentence only once its gate is open (``open(k)``: sentence
    ``KNOWN[k]``, or any other text), and notes when it handed its first chunk on."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.made: dict[str, asyncio.Event] = {}

    def _event(self, table: dict[str, asyncio.Event], text: str) -> asyncio.Event:
        return table.setdefault(text, asyncio.Event())

    def open(self, k: int | str) -> None:
        self._event(self.gates, KNOWN[k] if isinstance(k, int) else k).set()

    async def made_audio(self, k: int) -> None:
        await asyncio.wait_for(self._event(self.made, KNOWN[k]).wait(), 10)

    def stage(self) -> vk.Stage[Any, Any]:
        @vk.stage
        async def gated(source: Any, /) -> AsyncIterator[Any]:
            async for item in source:
                if isinstance(item, Sentence):
                    await self._event(self.gates, item.text).wait()
                    value = KNOWN.index(item.text) + 1 if item.text in KNOWN else 9
                    for c in range(CHUNKS):
                        if c == 0:
                            self._event(self.made, item.text).set()
                        yield AudioChunk(np.full(320, value, np.int16), 16000)
                yield item

        return gated()


class User:
    """The inbound stream, fed by the test; ``out`` collects what the agent yields."""

    def __init__(self, bot: vk.Stage[Any, Any]) -> None:
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.out: list[Any] = []
        self.changed = asyncio.Event()
        self.task = asyncio.ensure_future(self._run(bot))

    async def _source(self) -> AsyncIterator[Any]:
        while (item := await self.inbox.get()) is not None:
            yield item

    async def _run(self, bot: vk.Stage[Any, Any]) -> None:
        async for item in self._source() | bot:
            self.out.append(item)
            self.changed.set()

    def send(self, *items: Any) -> None:
        for item in items:
            self.inbox.put_nowait(item)

    async def until(self, test: Any) -> Any:
        """Wait until an output item passes ``test`` (at most 10 s); return it."""
        async with asyncio.timeout(10):
            while True:
                for item in self.out:
                    if test(item):
                        return item
                self.changed.clear()
                await self.changed.wait()

    async def passed(self, item: Any) -> int:
        """Send ``item`` and wait until the agent has passed it on; its index in ``out``."""
        self.send(item)
        await self.until(lambda x: x is item or x == item)
        return max(i for i, x in enumerate(self.out) if x == item)

    async def end(self) -> list[Any]:
        self.send(None)
        await asyncio.wait_for(self.task, 10)
        return self.out


def sentence_audio(items: list[Any], k: int) -> int:
    """How many chunks of sentence ``k`` (0-based) the agent yielded."""
    return sum(1 for x in items if isinstance(x, AudioChunk) and x.samples[0] == k + 1)


def llm_for(*replies: str) -> Any:
    calls: list[list[dict[str, Any]]] = []

    async def llm(messages: Any) -> AsyncIterator[str]:
        calls.append(list(messages))
        for word in replies[len(calls) - 1].split(" "):
            yield word + " "

    llm.calls = calls  # type: ignore[attr-defined]
    return llm


async def start(strategy: Interruption | None = None, *replies: str) -> tuple[User, Gated, Any]:
    tts = Gated()
    llm = llm_for(*(replies or (REPLY,)))
    user = User(agent(llm=llm, tts=tts.stage(), interruption=strategy, preemptive=False))
    user.send(TurnStarted(0.0), TurnEnded("count for me", 0.5))
    tts.open(0)
    await user.until(lambda x: isinstance(x, Mark) and x.text == S1)  # sentence 1 is out
    return user, tts, llm


async def held(user: User, tts: Gated, k: int, probe: Any) -> None:
    """Open sentence ``k``'s gate, wait until the TTS has handed its audio on, then pass a
    probe through: the agent, paused, yields none of that audio meanwhile."""
    before = sentence_audio(user.out, k)
    tts.open(k)
    await tts.made_audio(k)
    for _ in range(20):
        await asyncio.sleep(0)
    await user.passed(probe)
    assert sentence_audio(user.out, k) == before == 0


def messages(items: list[Any]) -> list[dict[str, Any]]:
    return [x for x in items if isinstance(x, SessionUpdated)][-1].session.messages_json()


async def test_a_backchannel_does_not_interrupt_and_gets_no_answer() -> None:
    user, tts, llm = await start()
    user.send(SpeechStarted(1.0), TurnStarted(1.0))
    await user.until(lambda x: isinstance(x, TurnStarted) and x.t == 1.0)
    await held(user, tts, 1, SpeechStopped(1.4))  # paused: sentence 2 is held
    user.send(Transcript("Uh-huh.", True, 1.0))  # the recogniser's answer: a backchannel
    await user.until(lambda x: isinstance(x, Mark) and x.text == S2)  # resumed
    # the turn detector ends the backchannel's turn later: not answered, not recorded
    user.send(TurnPending("Uh-huh.", 2.0), TurnEnded("Uh-huh.", 2.1))
    tts.open(2)
    await user.until(lambda x: isinstance(x, Mark) and x.text == S3)
    out = await user.end()
    assert not any(isinstance(x, Interrupted) for x in out)
    assert [sentence_audio(out, k) for k in range(3)] == [CHUNKS] * 3
    assert len(llm.calls) == 1
    assert sum(isinstance(x, ReplyStarted) for x in out) == 1
    assert messages(out) == [
        {"role": "user", "content": "count for me"},
        {"role": "assistant", "content": REPLY},
    ]
    # the user's items are passed on in their place
    assert TurnEnded("Uh-huh.", 2.1) in out and Transcript("Uh-huh.", True, 1.0) in out


async def test_a_cough_with_no_words_pauses_then_the_reply_resumes() -> None:
    user, tts, llm = await start()
    user.send(SpeechStarted(1.0), TurnStarted(1.0))
    await held(user, tts, 1, SpeechStopped(1.25))  # a noise burst: no transcript at all
    # stream time runs on (the caller's audio): 0.9 s after the stop, still paused
    silence = np.zeros(320, np.int16)
    for k in range(45):
        user.send(AudioChunk(silence, 16000, 1.25 + k * 0.02))
    await user.passed(Transcript("", False, 1.0))  # a probe: time is 2.15 s now
    assert sentence_audio(user.out, 1) == 0
    # at 1.0 s after the stop (resume_after) the reply resumes where it was
    user.send(AudioChunk(silence, 16000, 2.25))
    await user.until(lambda x: isinstance(x, Mark) and x.text == S2)
    tts.open(2)
    user.send(TurnEnded("", 6.3))  # the turn detector's safety net ends the empty turn
    await user.until(lambda x: isinstance(x, Mark) and x.text == S3)
    out = await user.end()
    assert not any(isinstance(x, Interrupted) for x in out)
    assert [sentence_audio(out, k) for k in range(3)] == [CHUNKS] * 3
    assert len(llm.calls) == 1
    assert messages(out)[-1] == {"role": "assistant", "content": REPLY}
    # the resumed audio runs on from where the pause left the outbound clock: no overlap with
    # what was played before, and not before the moment it resumed
    chunks = [x for x in out if isinstance(x, AudioChunk)]
    assert all(b.t >= a.end - 1e-9 for a, b in itertools.pairwise(chunks))
    assert chunks[CHUNKS].t >= 2.25 - 1e-9


async def test_a_transcript_of_a_noise_tag_resumes_at_once() -> None:
    user, tts, _ = await start()
    user.send(SpeechStarted(1.0))
    await held(user, tts, 1, SpeechStopped(1.3))
    user.send(Transcript("[coughs]", True, 1.0))
    await user.until(lambda x: isinstance(x, Mark) and x.text == S2)
    tts.open(2)
    out = await user.end()
    assert not any(isinstance(x, Interrupted) for x in out)
    assert messages(out)[-1] == {"role": "assistant", "content": REPLY}


async def test_wait_stop_cuts_the_reply_and_the_heard_history_is_exact() -> None:
    user, tts, llm = await start(None, REPLY, "Sure, I stopped.")
    user.send(SpeechStarted(1.0), TurnStarted(1.0))
    await held(user, tts, 1, SpeechStopped(1.6))  # sentence 2 made, never yielded
    user.send(Transcript("Wait, stop.", True, 1.0))
    cut = await user.until(lambda x: isinstance(x, Interrupted))
    assert cut == Interrupted(S1, 1.0)  # only sentence 1 was played
    user.send(TurnEnded("Wait, stop.", 2.2))
    tts.open("Sure, I stopped.")
    await user.until(lambda x: isinstance(x, Mark) and x.text == "Sure, I stopped.")
    out = await user.end()
    assert sentence_audio(out, 1) == 0  # not one chunk of sentence 2
    assert len(llm.calls) == 2
    recorded = [x for x in out if isinstance(x, SessionUpdated)][-1].session.messages
    assert recorded[1]["content"] == S1 and recorded[1].get("interrupted") is True
    assert [m["content"] for m in recorded[2:]] == ["Wait, stop.", "Sure, I stopped."]


async def test_a_single_word_from_the_turn_detector_cuts_too() -> None:
    # hand-written turns with no transcript: the TurnEnded's words decide
    user, tts, _ = await start(None, REPLY, "Okay.")
    user.send(TurnStarted(1.0))
    await held(user, tts, 1, TurnPending("Stop", 1.5))
    out_cut = await user.until(lambda x: isinstance(x, Interrupted))
    assert out_cut.heard == S1
    user.send(TurnEnded("Stop", 1.6))
    tts.open("Okay.")
    await user.until(lambda x: isinstance(x, Mark) and x.text == "Okay.")
    out = await user.end()
    assert sentence_audio(out, 1) == 0
    assert [m["content"] for m in messages(out)][-2:] == ["Stop", "Okay."]


async def test_interrupt_at_once_is_the_old_behaviour() -> None:
    user, tts, _ = await start(Interruption.immediate(), REPLY, "Yes?")
    user.send(TurnStarted(1.0))  # no words yet: cut at once
    cut = await user.until(lambda x: isinstance(x, Interrupted))
    assert cut == Interrupted(S1, 1.0)
    index = user.out.index(cut)
    assert isinstance(user.out[index - 1], TurnStarted)
    user.send(TurnEnded("uh-huh", 1.5))  # any words get a reply
    tts.open("Yes?")
    await user.until(lambda x: isinstance(x, Mark) and x.text == "Yes?")
    out = await user.end()
    assert [m["content"] for m in messages(out)][-2:] == ["uh-huh", "Yes?"]


async def test_min_speech_cuts_a_long_stretch_of_speech_before_any_words() -> None:
    user, tts, _ = await start(Interruption(min_speech=1.0))
    user.send(SpeechStarted(1.0), TurnStarted(1.0))
    silence = np.zeros(320, np.int16)
    user.send(AudioChunk(silence, 16000, 1.5))
    await held(user, tts, 1, Transcript("", False, 1.0))  # 0.52 s of speech: still paused
    assert not any(isinstance(x, Interrupted) for x in user.out)
    user.send(AudioChunk(silence, 16000, 1.98))  # ends at 2.0: a second of speech
    cut = await user.until(lambda x: isinstance(x, Interrupted))
    assert cut == Interrupted(S1, 1.0)
    out = await user.end()
    assert sentence_audio(out, 1) == 0


async def over_a_reply_all_sent(words: str) -> list[Any]:
    """An acknowledging carrier (AudioHook's send clock): the whole reply is handed on, the
    user starts to speak while its marks are pending, then every mark comes back as played
    while the reply is paused; then the recogniser's ``words`` of that speech arrive."""
    tts = Gated()
    user = User(agent(llm=llm_for(REPLY, "It is noon."), tts=tts.stage(), preemptive=False))
    user.send(CallStarted("c1", "test", acknowledges=True))
    user.send(TurnStarted(0.0), TurnEnded("count for me", 0.5))
    for k in range(3):
        tts.open(k)
    await user.until(lambda x: isinstance(x, Mark) and x.text == S3)  # all its audio is out
    for _ in range(50):
        await asyncio.sleep(0)  # and its end: only its marks are pending now
    user.send(SpeechStarted(1.0), TurnStarted(1.0))  # the caller talks over its end
    for name in ("1-1", "1-2", "1-3"):
        await user.passed(Played(name, 1.2))  # the carrier played all it had
    user.send(SpeechStopped(1.6), Transcript(words, True, 1.0))
    user.send(TurnEnded(words, 2.0))
    tts.open("It is noon.")
    if words == "What time is it?":
        await user.until(lambda x: isinstance(x, Mark) and x.text == "It is noon.")
        await user.passed(Played("2-1", 3.0))
    else:
        await user.passed(Played("1-x", 2.5))
    return await user.end()


async def test_a_reply_whose_marks_all_come_back_during_the_pause_is_still_cut_by_words() -> None:
    # the regression of the AudioHook barge-in: the reply ended while paused, then the words
    out = await over_a_reply_all_sent("What time is it?")
    cut = [x for x in out if isinstance(x, Interrupted)]
    assert cut == [Interrupted(REPLY, 1.0)]  # the transport sends barge_in on it
    recorded = messages(out)
    assert recorded[1] == {"role": "assistant", "content": REPLY, "interrupted": True}
    assert [m["content"] for m in recorded[2:]] == ["What time is it?", "It is noon."]


async def test_a_backchannel_over_the_end_of_a_reply_all_sent_is_no_interruption() -> None:
    out = await over_a_reply_all_sent("Uh-huh.")
    assert not any(isinstance(x, Interrupted) for x in out)
    assert messages(out) == [
        {"role": "user", "content": "count for me"},
        {"role": "assistant", "content": REPLY},
    ]


class SlowSTT:
    """A recogniser far slower than ``resume_after``: utterance ``n`` is answered with
    ``texts[n]`` only when the test calls ``answer(n)``, at a stream time the test chose (it
    feeds the caller's audio meanwhile). Never answered: a hung recogniser."""

    def __init__(self, *texts: str) -> None:
        self.texts = texts
        self.gates = [asyncio.Event() for _ in texts]
        self.asked = 0

    async def _recognize(self, samples: np.ndarray, rate: int) -> str:
        n, self.asked = self.asked, self.asked + 1
        await self.gates[n].wait()
        return self.texts[n]

    def answer(self, n: int) -> None:
        self.gates[n].set()

    def stage(self) -> vk.Stage[Any, Any]:
        @vk.stage
        async def slow_stt(source: Any, /) -> AsyncIterator[Any]:
            async for item in recognize_utterances(
                source, self._recognize, pre_roll=0.0, pass_audio=True
            ):
                yield item

        return slow_stt()


def caller_audio(user: User, start: float, end: float) -> None:
    """The caller's line from ``start`` to ``end`` (stream time), in 20 ms chunks."""
    for k in range(round((end - start) / 0.02)):
        user.send(AudioChunk(np.zeros(320, np.int16), 16000, start + k * 0.02))


async def live(speech_over_reply: str, *replies: str) -> tuple[User, Gated, SlowSTT, Any]:
    """The whole inbound side — markers and audio | a slow recogniser | turns() | agent — after
    the caller's first utterance ("count for me", recognised: so the stream has shown a
    recogniser that answers) got a reply whose first sentence is out; then the caller makes a
    sound over it from 2.0 to 2.3 s, which the recogniser will answer with
    ``speech_over_reply``. The reply is paused (its second sentence made and held)."""
    tts = Gated()
    stt = SlowSTT("count for me", speech_over_reply)
    llm = llm_for(*(replies or (REPLY,)))
    bot = stt.stage() | turns() | agent(llm=llm, tts=tts.stage(), preemptive=False)
    user = User(bot)
    user.send(SpeechStarted(0.0))
    caller_audio(user, 0.0, 0.5)
    user.send(SpeechStopped(0.5))
    await user.until(lambda x: x == SpeechStopped(0.5))
    stt.answer(0)
    await user.until(lambda x: isinstance(x, Transcript))
    caller_audio(user, 0.5, 1.5)  # the turn ends 0.6 s after the stop
    await user.until(lambda x: isinstance(x, ReplyStarted))
    tts.open(0)
    await user.until(lambda x: isinstance(x, Mark) and x.text == S1)
    user.send(SpeechStarted(2.0))
    caller_audio(user, 1.5, 2.3)
    await held(user, tts, 1, SpeechStopped(2.3))
    # 1.5 s of stream time after the stop (resume_after is 1.0): no answer yet, still paused
    caller_audio(user, 2.3, 3.8)
    await user.passed(Transcript("", False, 3.8))  # a probe: the stream is at 3.8 s now
    assert sentence_audio(user.out, 1) == 0
    assert not any(isinstance(x, Interrupted | NoWords) for x in user.out)
    return user, tts, stt, llm


async def test_a_slow_recogniser_finding_no_words_resumes_the_reply_when_it_answers() -> None:
    user, tts, stt, llm = await live("")  # a cough
    stt.answer(1)  # at 3.8 s: no words
    await user.until(lambda x: isinstance(x, Mark) and x.text == S2)  # resumed, no more audio
    assert NoWords(2.0) in user.out
    tts.open(2)
    await user.until(lambda x: isinstance(x, Mark) and x.text == S3)
    out = await user.end()
    assert not any(isinstance(x, Interrupted) for x in out)
    assert [sentence_audio(out, k) for k in range(3)] == [CHUNKS] * 3
    assert len(llm.calls) == 1
    assert messages(out) == [
        {"role": "user", "content": "count for me"},
        {"role": "assistant", "content": REPLY},
    ]
    # the cough's turn was opened by the turn detector and ended with no words, unanswered
    assert TurnStarted(2.0) in out
    assert [x.text for x in out if isinstance(x, TurnEnded)] == ["count for me", ""]


async def test_a_stop_recognised_after_1_5_s_still_cuts_the_reply() -> None:
    user, tts, stt, llm = await live("Stop.", REPLY, "Okay.")
    stt.answer(1)
    cut = await user.until(lambda x: isinstance(x, Interrupted))
    assert cut == Interrupted(S1, 2.0)  # only sentence 1 was played
    tts.open("Okay.")
    caller_audio(user, 3.8, 4.6)  # the turn of "Stop." ends
    await user.until(lambda x: isinstance(x, Mark) and x.text == "Okay.")
    out = await user.end()
    assert sentence_audio(out, 1) == 0  # not one chunk of sentence 2
    recorded = messages(out)
    assert recorded[1] == {"role": "assistant", "content": S1, "interrupted": True}
    assert [m["content"] for m in recorded[2:]] == ["Stop.", "Okay."]
    assert len(llm.calls) == 2


async def test_a_hung_recogniser_resumes_the_reply_at_max_pause() -> None:
    user, tts, stt, _ = await live("")  # never answered while it matters
    caller_audio(user, 3.8, 5.28)  # the stream reaches 5.28 s: 2.98 s after the stop
    await user.passed(Transcript("", False, 5.28))
    assert sentence_audio(user.out, 1) == 0
    caller_audio(user, 5.28, 5.32)  # 3.0 s (max_pause) after the stop
    await user.until(lambda x: isinstance(x, Mark) and x.text == S2)
    tts.open(2)
    await user.until(lambda x: isinstance(x, Mark) and x.text == S3)
    stt.answer(1)  # the recogniser wakes up at last (so the stream can end)
    out = await user.end()
    assert not any(isinstance(x, Interrupted) for x in out)
    assert messages(out)[-1] == {"role": "assistant", "content": REPLY}
    # it resumed on the outbound clock no earlier than the inbound time it resumed at
    first_resumed = next(x for x in out if isinstance(x, AudioChunk) and x.samples[0] == 2)
    assert first_resumed.t >= 5.3 - 1e-9


async def test_the_turn_of_a_noise_ends_when_the_recogniser_says_no_words() -> None:
    silence = np.zeros(320, np.int16)

    def line(start: float, end: float) -> list[Any]:
        steps = round((end - start) / 0.02)
        return [AudioChunk(silence, 16000, start + k * 0.02) for k in range(steps)]

    marks = TurnStarted | TurnEnded
    # a cough (2.0-2.3 s) whose answer, NoWords, arrives at 3.8 s: the turn ends then, not
    # at the 5 s safety net (7.5 s) — the turn has no words, and none can come
    items = [SpeechStarted(2.0), *line(2.0, 2.3), SpeechStopped(2.3), *line(2.3, 3.8)]
    items += [NoWords(2.0), *line(3.8, 9.0)]
    out = [x for x in await turns(items).list() if isinstance(x, marks)]
    assert out == [TurnStarted(2.0), TurnEnded("", pytest.approx(3.8))]
    # a NoWords of an earlier utterance is no answer to the last speech
    items = [SpeechStarted(2.0), *line(2.0, 2.3), SpeechStopped(2.3), *line(2.3, 3.0)]
    items += [NoWords(1.0), *line(3.0, 9.0)]
    out = [x for x in await turns(items).list() if isinstance(x, marks)]
    assert out == [TurnStarted(2.0), TurnEnded("", pytest.approx(7.5))]  # the stop's 2.5 + 5
    # "hello", then a cough answered with no words: the turn ends by the answer rule (the
    # stop's 0.2 s + 0.6 s), not after the recogniser's whole p99 wait
    items = [SpeechStarted(0.0), *line(0.0, 0.5), SpeechStopped(0.5), Transcript("hello", t=0.0)]
    items += [*line(0.5, 0.6), SpeechStarted(0.6), *line(0.6, 0.8), SpeechStopped(0.8)]
    items += [NoWords(0.6), *line(0.8, 4.0)]
    out = [x for x in await turns(items, stt_p99=2.0).list() if isinstance(x, marks)]
    assert out == [TurnStarted(0.0), TurnEnded("hello", pytest.approx(1.6))]


def test_strategy_values() -> None:
    default = Interruption()
    assert not default.cuts_at_once and Interruption.immediate().cuts_at_once
    assert default.words("uh-huh, yeah okay (laughs)") == 0
    assert default.words("wait") == 1 and default.confirms("No.")
    two = Interruption(min_words=2)
    assert not two.confirms("stop") and two.confirms("stop please")
    custom = Interruption(backchannels=frozenset({"stop"}))
    assert not custom.confirms("stop") and custom.confirms("uh-huh")
    with pytest.raises(ConfigError, match="min_words"):
        Interruption(min_words=-1)
    with pytest.raises(ConfigError, match="min_speech"):
        Interruption(min_speech=0)
    with pytest.raises(ConfigError, match="resume_after"):
        Interruption(resume_after=float("nan"))
    with pytest.raises(ConfigError, match="max_pause"):
        Interruption(max_pause=0)
    with pytest.raises(ConfigError, match="interruption"):
        agent(llm=llm_for("x"), tts=vk.tts.tones(), interruption="never")  # type: ignore[arg-type]
