"""Conversation tests without a phone: run a scripted conversation through an agent.

:func:`run_conversation` plays the user's side of a call from a *script* — text turns, audio
files, pauses and barge-ins — into an agent (or a whole pipeline from audio), consumes what it
says, and returns a :class:`Conversation`: the transcript, the final Session and a timeline of
every event. With the fakes (:func:`scripted_llm`, :func:`voicekit.tts.tones`,
:func:`voicekit.stt.fake`) the transcript, the Session and the order of the timeline are the
same on every run, so a test can assert on them::

    import voicekit as vk
    from voicekit import agent
    from voicekit.conversation import barge_in, run_conversation, say, scripted_llm

    llm = scripted_llm("Hello! How can I help?", "It is sunny in Paris today. Anything else?")
    bot = agent(llm=llm, tts=vk.tts.tones(), session=vk.Session())
    result = await run_conversation(bot, [say("hi"), say("weather?"), barge_in(after_audio_ms=600)])
    result.transcript  # [("user", "hi"), ("assistant", "Hello! How can I help?"), ...]

The script
----------
Steps run in order. By default a step waits until the agent is quiet — the reply to the step
before it (or the first message) has finished — like a polite caller:

* :func:`say` — a ready-made user turn (``TurnStarted`` and ``TurnEnded``), as a turn
  detector would give it;
* :func:`transcript` — what a recogniser heard (``SpeechStarted``, ``SpeechStopped``,
  ``Transcript``), for a pipeline whose turn detector (e.g. with a wake phrase) decides what
  becomes a turn;
* :func:`audio` — an audio file (plus trailing silence), for a pipeline that starts from audio
  (``vad | stt | turns | agent``);
* :func:`wait` — a pause;
* :func:`barge_in` — the user cuts in once the reply in progress has played a given amount of
  audio: the agent yields no audio after it. This is exact when the script feeds the agent
  directly; through a front end the interruption reaches the agent once the front end passes
  it on, as on a real call.

``after=seconds`` on a step starts it that long after the previous step was sent, without
waiting for a reply — a time-based barge-in. ``reply=False`` says a step gets no answer (an
utterance a wake-phrase detector ignores), so the next step does not wait for one.

The times in the timeline are seconds since the start, measured on the event loop's clock, so
they show how long things really took. The items the script sends are stamped with *script
time* instead — the time a caller would live through if the agent answered instantly: the
script's pauses, the user's audio, and the agent's audio listened to. With fakes, everything
but the timeline's times is the same on every run: ``result.events``, the transcript and the
Session.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

import numpy as np

from ._errors import VoicekitError
from .events import (
    AudioChunk,
    ReplyFailed,
    ReplyStarted,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    Token,
    Transcript,
    TurnEnded,
    TurnStarted,
)
from .ops import Flow
from .session import Session

__all__ = [
    "Audio",
    "BargeIn",
    "Conversation",
    "Say",
    "ScriptError",
    "ScriptedLLM",
    "Step",
    "Transcribed",
    "Wait",
    "audio",
    "barge_in",
    "run_conversation",
    "say",
    "scripted_llm",
    "transcript",
    "transcript_of",
    "wait",
]


class ScriptError(VoicekitError):
    """A script could not be played as written (a barge-in found no reply to cut, no reply
    came, a scripted LLM ran out of replies)."""


# ---------------------------------------------------------------------------------------------
# Steps


@dataclass(frozen=True, slots=True)
class Say:
    """A user turn given as text. See :func:`say`."""

    text: str
    after: float | None = None
    reply: bool = True


@dataclass(frozen=True, slots=True)
class Transcribed:
    """Recognised speech, for the turn detector to judge. See :func:`transcript`."""

    text: str
    after: float | None = None
    reply: bool = True


@dataclass(frozen=True, slots=True)
class Audio:
    """An audio file played as the user's voice. See :func:`audio`."""

    file: str | PathLike[str]
    after: float | None = None
    reply: bool = True
    silence: float = 1.0
    realtime: bool = False


@dataclass(frozen=True, slots=True)
class Wait:
    """A pause. See :func:`wait`."""

    seconds: float


@dataclass(frozen=True, slots=True)
class BargeIn:
    """The user cuts in on the reply in progress. See :func:`barge_in`."""

    text: str | None = None
    after_audio_ms: float = 0.0


Step = Say | Transcribed | Audio | Wait | BargeIn
"""One step of a script."""


def say(text: str, *, after: float | None = None, reply: bool = True) -> Say:
    """The user says ``text``: a ``TurnStarted`` then a ``TurnEnded(text)``.

    >>> say("hello")
    Say(text='hello', after=None, reply=True)
    """
    return Say(text, after, reply)


def transcript(text: str, *, after: float | None = None, reply: bool = True) -> Transcribed:
    """The recogniser heard ``text``: ``SpeechStarted``, ``SpeechStopped`` and a final
    ``Transcript`` — for a pipeline with a turn detector in front of the agent."""
    return Transcribed(text, after, reply)


def audio(
    file: str | PathLike[str],
    *,
    after: float | None = None,
    reply: bool = True,
    silence: float = 1.0,
    realtime: bool = False,
) -> Audio:
    """The user speaks the audio in ``file`` (read at 16 kHz in 20 ms chunks), followed by
    ``silence`` seconds of silence so the voice activity detector hears the end. Chunk times
    run on from the previous audio; ``realtime=True`` also releases them at their pace."""
    return Audio(file, after, reply, silence, realtime)


def wait(seconds: float) -> Wait:
    """Pause ``seconds`` (after the reply to the previous step has finished)."""
    return Wait(seconds)


def barge_in(text: str | None = None, *, after_audio_ms: float = 0.0) -> BargeIn:
    """Cut in on the reply in progress once ``after_audio_ms`` of its audio has come out:
    a ``TurnStarted``, then — with ``text`` — a ``TurnEnded(text)`` that gets a reply.

    If the reply ends before that much audio, :func:`run_conversation` raises
    :class:`ScriptError`.
    """
    return BargeIn(text, after_audio_ms)


# ---------------------------------------------------------------------------------------------
# A scripted LLM


_PIECES = re.compile(r"\s*\S+\s*")


class ScriptedLLM:
    """An LLM function that answers from a script. See :func:`scripted_llm`.

    ``calls`` holds the messages of each call, ``tools`` the tools offered to each, and
    ``completed`` whether each call ran to its end (False: it was cancelled or closed early).
    """

    def __init__(self, replies: Sequence[Any], delay: float) -> None:
        self.replies = [_reply_steps(r) for r in replies]
        self.delay = delay
        self.calls: list[list[dict[str, Any]]] = []
        self.tools: list[Any] = []
        self.completed: list[bool] = []

    async def __call__(self, messages: Sequence[Any], *, tools: Any = None) -> AsyncIterator[Any]:
        index = len(self.calls)
        self.calls.append([dict(m) for m in messages])
        self.tools.append(tools)
        self.completed.append(False)
        if index >= len(self.replies):
            raise ScriptError(f"scripted_llm: no reply scripted for call {index + 1}")
        for step in self.replies[index]:
            if isinstance(step, int | float) and not isinstance(step, bool):
                await asyncio.sleep(step)
            elif isinstance(step, BaseException):
                raise step
            else:
                if self.delay:
                    await asyncio.sleep(self.delay)
                yield Token(step) if isinstance(step, str) else step
        self.completed[index] = True

    def __repr__(self) -> str:
        return f"scripted_llm(<{len(self.replies)} replies>, calls={len(self.calls)})"


def _reply_steps(reply: Any) -> list[Any]:
    if isinstance(reply, str):
        return _PIECES.findall(reply)
    return list(reply)


def scripted_llm(*replies: Any, delay: float = 0.0) -> ScriptedLLM:
    """A fake LLM: the *n*-th call answers with ``replies[n]``.

    A reply is a string (streamed a word at a time) or a list of steps: a ``str`` is a token,
    a number a pause in seconds, an exception is raised there, anything else (a
    :class:`~voicekit.ToolCall`, a :class:`~voicekit.Usage`…) is yielded as is. ``delay``
    seconds pass before every token. A call past the last reply raises :class:`ScriptError`.

    >>> from voicekit.events import ToolCall
    >>> llm = scripted_llm(
    ...     ["Let me check. ", ToolCall("c1", "weather", '{"city": "Paris"}')],
    ...     "It is sunny.",
    ...     ["It is", 0.5, TimeoutError("read timeout")],
    ... )
    >>> async def first(messages):
    ...     return [e async for e in llm(messages)]
    >>> asyncio.run(first([{"role": "user", "content": "weather?"}]))[1]
    ToolCall(id='c1', name='weather', arguments='{"city": "Paris"}')
    >>> llm.calls[0][-1]["content"], llm.completed
    ('weather?', [True])
    """
    return ScriptedLLM(replies, delay)


# ---------------------------------------------------------------------------------------------
# The result


@dataclass(frozen=True)
class Conversation:
    """What a scripted conversation produced.

    ``transcript``: ``(role, text)`` for each user and assistant message with text in the final
    Session — what was said and heard. ``session``: the last Session the agent gave out.
    ``timeline``: ``(seconds since start, item)`` for everything the pipeline yielded.
    """

    transcript: list[tuple[str, str]]
    session: Session | None
    timeline: list[tuple[float, Any]] = field(repr=False)

    @property
    def events(self) -> list[Any]:
        """Everything the pipeline yielded except audio, in order."""
        return [item for _, item in self.timeline if not isinstance(item, AudioChunk)]

    def of(self, *kinds: type) -> list[Any]:
        """The yielded items of the given types, in order."""
        return [item for _, item in self.timeline if isinstance(item, kinds)]

    @property
    def audio_seconds(self) -> float:
        """How much reply audio came out in all."""
        return sum(item.duration for _, item in self.timeline if isinstance(item, AudioChunk))

    def describe(self) -> str:
        """The timeline as text, one line per event, runs of audio folded into one line."""
        lines: list[str] = []
        run_start: float | None = None
        run_seconds = 0.0
        for t, item in self.timeline:
            if isinstance(item, AudioChunk):
                if run_start is None:
                    run_start, run_seconds = t, 0.0
                run_seconds += item.duration
                continue
            if run_start is not None:
                lines.append(f"{run_start:8.3f}  audio {run_seconds * 1000:.0f} ms")
                run_start = None
            shown = "SessionUpdated(...)" if isinstance(item, SessionUpdated) else repr(item)
            lines.append(f"{t:8.3f}  {shown}")
        if run_start is not None:
            lines.append(f"{run_start:8.3f}  audio {run_seconds * 1000:.0f} ms")
        return "\n".join(lines)


def transcript_of(session: Session | None) -> list[tuple[str, str]]:
    """``(role, text)`` for the user and assistant messages of ``session`` that have text."""
    if session is None:
        return []
    out = []
    for message in session.messages:
        content = message.get("content")
        if message["role"] in ("user", "assistant") and isinstance(content, str) and content:
            out.append((str(message["role"]), content))
    return out


# ---------------------------------------------------------------------------------------------
# Running a script


class _Tracker:
    """What the user's side knows about the agent's side, shared by the script and the reader."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.busy = False  # a reply is in progress
        self.replies = 0  # replies started so far
        self.expected = 0  # replies the script has asked for so far
        self.audio_ms = 0.0  # audio of the reply in progress so far
        self.heard_ms = 0.0  # agent audio since the script last looked
        self.script_time = 0.0  # see _play
        self.barge_at: float | None = None  # a barge-in waits for this much audio
        self.delivered: asyncio.Event | None = None  # set when that barge-in is sent
        self.doing = "starting"
        self.problems: list[str] = []
        self._changed = asyncio.Event()

    def see(self, item: Any) -> None:
        if isinstance(item, ReplyStarted):
            self.busy = True
            self.replies += 1
            self.audio_ms = 0.0
        elif isinstance(item, SessionUpdated):
            self.busy = False
        elif isinstance(item, AudioChunk):
            self.heard_ms += item.duration * 1000.0
            if self.busy:
                self.audio_ms += item.duration * 1000.0
        self._changed.set()
        self._changed = asyncio.Event()

    async def until(self, ready: Callable[[], bool]) -> None:
        while not ready():
            await self._changed.wait()

    def quiet(self) -> bool:
        return not self.busy and self.replies >= self.expected

    def barge_due(self) -> bool:
        return (
            self.barge_at is not None
            and self.replies >= self.expected
            and self.busy
            and self.audio_ms >= self.barge_at
        )


async def _audio_chunks(step: Audio, start: float) -> AsyncIterator[AudioChunk]:
    from .audio import read

    end = start
    async for chunk in read(step.file, rate=16000, chunk_ms=20):
        end = start + chunk.end
        yield AudioChunk(chunk.samples, chunk.rate, start + chunk.t)
    silence = np.zeros(320, np.int16)
    for _ in range(round(step.silence / 0.02)):
        yield AudioChunk(silence, 16000, end)
        end += 0.02


async def _play(script: Sequence[Step], tracker: _Tracker) -> AsyncIterator[Any]:
    """The user's side: each step's items, each step started when its time comes.

    Items are stamped with *script time*: the time a caller would live through if the agent
    answered instantly — the waits and ``after`` delays of the script, the user's own audio,
    and the agent's audio the user listened to before the step. So the stamps, and whatever a
    turn detector derives from them, are the same on every run.
    """
    clock = tracker.clock
    sent_at = 0.0  # wall clock: when the previous step was sent
    sent_script = 0.0  # script time: when the previous step was sent
    audio_end = 0.0  # script time: where the user's audio stream has got to

    def now() -> float:
        tracker.script_time = round(tracker.script_time + tracker.heard_ms / 1000.0, 6)
        tracker.heard_ms = 0.0
        return tracker.script_time

    for number, step in enumerate(script, 1):
        tracker.doing = f"step {number}, {step!r}"
        if isinstance(step, BargeIn):
            tracker.barge_at = step.after_audio_ms
            tracker.delivered = asyncio.Event()
            await tracker.until(lambda: tracker.barge_due() or tracker.quiet())
            if not tracker.barge_due():
                tracker.problems.append(
                    f"step {number}: barge_in(after_audio_ms={step.after_audio_ms:g}) found the "
                    f"reply over after {tracker.audio_ms:.0f} ms of audio"
                )
            tracker.barge_at = None
            tracker.delivered.set()
            t = sent_script = now()
            sent_at = clock()
            yield TurnStarted(t)
            if step.text is not None:
                tracker.expected = tracker.replies + 1
                yield TurnEnded(step.text, t)
            continue
        if isinstance(step, Wait):
            await tracker.until(tracker.quiet)
            await asyncio.sleep(step.seconds)
            sent_script = tracker.script_time = round(now() + step.seconds, 6)
            sent_at = clock()
            continue
        if step.after is None:
            await tracker.until(tracker.quiet)
            t = now()
        else:
            await asyncio.sleep(max(0.0, sent_at + step.after - clock()))
            tracker.heard_ms = 0.0
            t = tracker.script_time = round(sent_script + step.after, 6)
        if step.reply:
            tracker.expected = tracker.replies + 1
        if isinstance(step, Say):
            yield TurnStarted(t)
            yield TurnEnded(step.text, t)
        elif isinstance(step, Transcribed):
            yield SpeechStarted(t)
            yield SpeechStopped(t)
            yield Transcript(step.text, final=True, t=t)
        else:
            start = max(audio_end, t)
            began = clock()
            async for chunk in _audio_chunks(step, start):
                if step.realtime:
                    await asyncio.sleep(max(0.0, began + (chunk.t - start) - clock()))
                audio_end = chunk.end
                yield chunk
            t = tracker.script_time = round(audio_end, 6)
            tracker.heard_ms = 0.0
        sent_script = t
        sent_at = clock()
    tracker.doing = "waiting for the last reply"
    await tracker.until(tracker.quiet)


async def run_conversation(
    pipeline: Any,
    script: Iterable[Step],
    *,
    session: Session | None = None,
    time_limit: float = 60.0,
) -> Conversation:
    """Play ``script`` into ``pipeline`` and collect what comes out.

    ``pipeline``: a stage (an :func:`~voicekit.agent`, or a pipeline ending in one) or a
    function from a source to an async iterable. ``session``: the Session to report if the
    pipeline never gives one out. ``time_limit``: seconds the whole conversation may take.
    Raises :class:`ScriptError` when a step could not be played as written, and
    ``TimeoutError`` (naming the step, and the last failed reply if any) when the conversation
    did not finish in time. An error the pipeline raises comes out as itself — a
    :class:`~voicekit.ProviderTimeout` too, though it is also a ``TimeoutError``.

    >>> from voicekit import agent
    >>> from voicekit.tts import tones
    >>> bot = agent(llm=scripted_llm("Hi! I am a bot.", "Bye."), tts=tones())
    >>> result = asyncio.run(run_conversation(bot, [say("hello"), say("bye")]))
    >>> result.transcript
    [('user', 'hello'), ('assistant', 'Hi! I am a bot.'), ('user', 'bye'), ('assistant', 'Bye.')]
    """
    steps = list(script)
    for step in steps:
        if not isinstance(step, Say | Transcribed | Audio | Wait | BargeIn):
            raise TypeError(f"run_conversation: not a script step: {step!r}")
    loop = asyncio.get_running_loop()
    origin = loop.time()
    tracker = _Tracker(lambda: loop.time() - origin)
    timeline: list[tuple[float, Any]] = []
    latest = session
    limit = asyncio.timeout(time_limit)
    try:
        async with limit:
            flow: Flow[Any] = Flow(pipeline(_play(steps, tracker)))
            async with flow.open() as items:
                async for item in items:
                    timeline.append((tracker.clock(), item))
                    if isinstance(item, SessionUpdated):
                        latest = item.session
                    tracker.see(item)
                    if tracker.barge_due() and tracker.delivered is not None:
                        # hold the agent until the barge-in is on its way: no audio after it
                        delivered = tracker.delivered
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(delivered.wait(), 1.0)
    except TimeoutError:
        if not limit.expired():
            raise  # the pipeline's own error (a ProviderTimeout is a TimeoutError too)
        failed = [item for _, item in timeline if isinstance(item, ReplyFailed)]
        last = f"; the last failed reply: {failed[-1].error}" if failed else ""
        raise TimeoutError(
            f"run_conversation: not finished after {time_limit:g} s, at {tracker.doing}{last}"
        ) from None
    if tracker.problems:
        raise ScriptError("; ".join(tracker.problems))
    return Conversation(transcript_of(latest), latest, timeline)
