"""The milestones of one user turn and its reply, from the timeline of what was seen when.

One pure function, :func:`turn_metrics`, turns ``(seconds, item)`` pairs into a
:class:`TurnMetrics` value. The notebook's :func:`~voicekit.notebook.turn_times` reads the
pairs a view saw after the agent; the CLI's latency probe notes each item where it leaves the
stage that made it (the VAD's markers after the VAD, transcripts after the STT, the LLM's
tokens inside the LLM function, sentences in front of the TTS, audio after the agent) — the
same function reads both.

The milestones, in pipeline order:

* ``speech_end``: the end of the user's speech — ``origin + t`` of the VAD's last
  :class:`~voicekit.SpeechStopped` when the wall time of stream time 0 (``origin``) is known,
  else the time the marker was seen less its ``stop_secs``;
* ``vad_stop``: the VAD decided the speech had stopped (the marker was seen);
* ``transcript``: the first final transcript after that stop;
* ``turn_end``: the turn detector ended the turn (:class:`~voicekit.TurnEnded`);
* ``llm_first_token``: the reply's first token with text — also one the LLM produced during the
  turn detector's wait, for a reply prepared on a :class:`~voicekit.TurnPending` and promoted;
* ``first_sentence``: the first sentence was complete (where
  :class:`~voicekit.text.SentenceSplitter` releases it from the tokens, or a
  :class:`~voicekit.Sentence` seen before the first audio, whichever came first);
* ``first_audio``: the first reply audio came out of the agent;
* ``first_played``: the caller began to hear it — from the transport's
  :class:`~voicekit.Played` acknowledgement of the reply's first :class:`~voicekit.Mark`, less
  the audio before that mark (a carrier plays in real time); ``None`` without acknowledgements.

Besides the milestones, a :class:`TurnMetrics` counts what the reply cost and how it went: the
LLM's tokens (summed over the reply's :class:`~voicekit.Usage` events), the seconds its tools ran
(:class:`ToolRun` items, noted by ``agent(metrics=True)``), whether the user cut it (barge-in) and
the kinds of its :class:`~voicekit.ReplyFailed` events.

``agent(metrics=True)`` yields a :class:`TurnMetrics` into the stream right after the
:class:`~voicekit.SessionUpdated` of every reply to a user turn: see :mod:`voicekit._observe`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .events import (
    AudioChunk,
    CallStarted,
    Finish,
    Interrupted,
    Mark,
    Played,
    ReplyFailed,
    ReplyStarted,
    Sentence,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    Token,
    ToolCall,
    Transcript,
    TurnEnded,
    TurnPending,
    TurnStarted,
    Usage,
)
from .text import SentenceSplitter

__all__ = ["MILESTONES", "ToolRun", "TurnMetrics", "turn_metrics"]

MILESTONES: tuple[tuple[str, str], ...] = (
    ("vad_stop", "VAD stop"),
    ("transcript", "STT"),
    ("turn_end", "turn end"),
    ("llm_first_token", "LLM first token"),
    ("first_sentence", "first sentence"),
    ("first_audio", "TTS first audio"),
)
"""The milestones after the end of speech, in order: (field of :class:`TurnMetrics`, label)."""


@dataclass(frozen=True, slots=True)
class ToolRun:
    """A timeline item: tool ``name`` ran from ``start`` to ``end`` (the timeline's seconds);
    ``error`` is its exception's text when it raised, ``cancelled`` True when a barge-in
    cancelled it. ``agent(metrics=True)`` notes one per call it runs."""

    name: str
    start: float
    end: float
    error: str | None = None
    cancelled: bool = False

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass(frozen=True, slots=True)
class TurnMetrics:
    """One user turn and its reply, measured: a frozen value, and an event in the stream.

    ``agent(metrics=True)`` (or ``voice_agent(..., metrics=True)``) yields one right after the
    :class:`~voicekit.SessionUpdated` that ends each reply to a user turn (not the greeting),
    also when the reply was cut by a barge-in or failed. Its times are seconds on one clock —
    for the agent's, seconds since the agent started (the call began) on
    ``time.perf_counter``; for :func:`turn_metrics`, the timeline's — so read them as
    differences: :attr:`voice_to_voice`, :meth:`since_end`, :meth:`steps`, :meth:`spans`.
    A milestone not seen is ``None``.

    The milestones, in order (see the module documentation for how each is placed):
    ``speech_start`` (the user began), ``speech_end`` (the end of their speech; ``speech_end_t``
    the same in stream time), ``vad_stop``, ``transcript``, ``turn_end``, ``reply_start`` (the
    agent began the reply: its :class:`~voicekit.ReplyStarted`), ``llm_first_token``,
    ``first_sentence``, ``first_audio`` (the first reply audio left the agent),
    ``first_played`` (the caller began to hear it, from the transport's
    :class:`~voicekit.Played`; ``None`` without acknowledgements), ``audio_end`` (where the
    reply's audio ends if played from ``first_audio`` on, cut at a barge-in) and ``reply_end``
    (its ``SessionUpdated``).

    What it cost and how it went: ``call_id`` (the Session's; never the caller's number),
    ``text`` (the user's turn), ``sentence`` (the reply's first sentence), ``tool_calls`` (made
    before the first token), ``tool_seconds`` (seconds the reply's tools ran, 0.0 when none ran
    or when nothing timed them), ``input_tokens``/``output_tokens``/``cached_tokens`` (summed
    over the reply's LLM requests' :class:`~voicekit.Usage`; ``cached_tokens`` is part of
    ``input_tokens``), ``interrupted`` (a barge-in cut the reply; also :attr:`barge_in`) and
    ``errors`` (the ``source`` of each :class:`~voicekit.ReplyFailed` of the reply, in order:
    ``"llm"``, ``"tts"``, ``"tool"``; empty when it went well).

    >>> m = TurnMetrics(call_id="CA1", speech_end=1.0, first_audio=1.8, input_tokens=12)
    >>> m.voice_to_voice, m.barge_in, m.errors
    (0.8, False, ())
    """

    text: str = ""
    speech_start: float | None = None
    speech_end: float | None = None
    speech_end_t: float | None = None
    vad_stop: float | None = None
    transcript: float | None = None
    turn_end: float | None = None
    reply_start: float | None = None
    llm_first_token: float | None = None
    first_sentence: float | None = None
    first_audio: float | None = None
    audio_end: float | None = None
    interrupted: bool = False
    tool_calls: int = 0
    sentence: str = ""
    call_id: str = ""
    first_played: float | None = None
    reply_end: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    tool_seconds: float = 0.0
    errors: tuple[str, ...] = ()

    @property
    def barge_in(self) -> bool:
        """Whether the user cut the reply (the same as :attr:`interrupted`)."""
        return self.interrupted

    @property
    def voice_to_voice(self) -> float | None:
        """From the end of the user's speech to the first audio of the reply, in seconds."""
        return self.since_end("first_audio")

    @property
    def total(self) -> float | None:
        """The same as :attr:`voice_to_voice`."""
        return self.voice_to_voice

    def since_end(self, name: str) -> float | None:
        """Seconds from the end of speech to milestone ``name`` (None if either is missing)."""
        value = getattr(self, name)
        if value is None or self.speech_end is None:
            return None
        return float(value - self.speech_end)

    def steps(self) -> list[tuple[str, str, float | None, float | None]]:
        """Per milestone: (field, label, seconds since the previous milestone, seconds since
        the end of speech). A milestone passed early (a reply prepared before the turn ended)
        took no time; the STT step counts from the VAD stop.

        >>> TurnMetrics(speech_end=1.0, vad_stop=1.2, transcript=1.5).steps()[:2]
        [('vad_stop', 'VAD stop', 0.2, 0.2), ('transcript', 'STT', 0.3, 0.5)]
        """
        out = []
        previous = self.speech_end
        for name, label in MILESTONES:
            value = getattr(self, name)
            step = None if value is None or previous is None else max(0.0, value - previous)
            if name == "transcript" and value is not None and self.vad_stop is not None:
                step = max(0.0, value - self.vad_stop)
            since = self.since_end(name)
            out.append((name, label, _rounded(step), _rounded(since)))
            if value is not None:
                previous = max(previous, value) if previous is not None else value
        return out

    def spans(self) -> list[tuple[str, float, float]]:
        """``(label, start, end)`` for each step that was seen, in pipeline order.

        >>> TurnMetrics(speech_start=0.5, speech_end=2.0, vad_stop=2.2, transcript=2.9).spans()
        [('user speech', 0.5, 2.0), ('VAD stop', 2.0, 2.2), ('STT', 2.2, 2.9)]
        """
        steps: list[tuple[str, float | None, float | None]] = [
            ("user speech", self.speech_start, self.speech_end),
            ("VAD stop", self.speech_end, self.vad_stop),
            ("STT", self.vad_stop, self.transcript),
            ("turn end", self.transcript, self.turn_end),
        ]
        if self.llm_first_token is None and self.first_sentence is None:
            steps.append(("LLM + TTS first audio", self.reply_start, self.first_audio))
        else:
            steps += [
                ("LLM first token", self.reply_start, self.llm_first_token),
                ("first sentence", self.llm_first_token, self.first_sentence),
                (
                    "TTS first audio",
                    self.first_sentence or self.llm_first_token,
                    self.first_audio,
                ),
            ]
        steps.append(("reply audio", self.first_audio, self.audio_end))
        return [(label, a, b) for label, a, b in steps if a is not None and b is not None]

    def describe(self) -> str:
        """The steps as text, one line each, with the voice-to-voice latency last."""
        lines = [f"{label:<22}{(b - a) * 1000:7.0f} ms" for label, a, b in self.spans()]
        if self.voice_to_voice is not None:
            lines.append(f"{'voice-to-voice':<22}{self.voice_to_voice * 1000:7.0f} ms")
        return "\n".join(lines)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 9)


def _same_words(a: str, b: str) -> bool:
    return a.split() == b.split()


def _reply_end(pairs: Sequence[tuple[float, Any]], start: int) -> int:
    """The index just past the reply that starts at ``start``."""
    for k in range(start + 1, len(pairs)):
        item = pairs[k][1]
        if isinstance(item, SessionUpdated | ReplyStarted):
            return k if isinstance(item, ReplyStarted) else k + 1
    return len(pairs)


def _early_from(user: Sequence[tuple[float, Any]], text: str, ended: int | None) -> int:
    """Where in ``user`` (the turn's items before its reply started) the reply's own LLM work
    may begin: after the last :class:`TurnPending` with the turn's words that the user did not
    go on from (a prepared reply), else after the :class:`TurnEnded`."""
    pending: int | None = None
    for k, (_, item) in enumerate(user):
        if isinstance(item, TurnPending):
            pending = k if _same_words(item.text, text) else None
        elif isinstance(item, SpeechStarted | TurnStarted):
            pending = None
    if pending is not None:
        return pending + 1
    return ended + 1 if ended is not None else len(user)


def _first_sentence(
    window: Iterable[tuple[float, Any]], first_audio: float | None
) -> tuple[float | None, str]:
    """When the first sentence of a reply was complete, and its text."""
    splitter = SentenceSplitter()
    last_token: float | None = None
    found: float | None = None
    text = ""
    items = list(window)
    for t, item in items:
        if isinstance(item, Token):
            last_token = t
            released = splitter.push(item.text)
            if released:
                found, text = t, released[0]
                break
        elif isinstance(item, ToolCall | Finish) and last_token is not None:
            released = splitter.flush()
            if released:  # the round ended: its pending text went with its last token
                found, text = last_token, released[0]
                break
    if found is None and last_token is not None:
        released = splitter.flush()
        if released:
            found, text = last_token, released[0]
    for t, item in items:
        if isinstance(item, Sentence) and (first_audio is None or t <= first_audio):
            if found is None or t < found:
                found, text = t, item.text
            break
    return found, str(text)


def _call_id(pairs: Sequence[tuple[float, Any]], end: int) -> str:
    """The call's id: the Session's at the reply's end (before ``end``), else the transport's."""
    for k in range(end - 1, -1, -1):
        item = pairs[k][1]
        if isinstance(item, SessionUpdated):
            call_id = getattr(item.session, "call_id", None)
            if isinstance(call_id, str) and call_id:
                return call_id
    for k in range(end - 1, -1, -1):
        item = pairs[k][1]
        if isinstance(item, CallStarted):
            return item.call_id
    return ""


def _first_played(window: Sequence[tuple[float, Any]], first_audio: float | None) -> float | None:
    """When the caller began to hear the reply: the transport's :class:`Played` of its first
    :class:`Mark`, less the audio before that mark (played in real time)."""
    lead = 0.0
    mark: Mark | None = None
    for _, item in window:
        if isinstance(item, AudioChunk):
            lead += item.duration
        elif isinstance(item, Mark):
            mark = item
            break
    if mark is None:
        return None
    played = next((t for t, i in window if isinstance(i, Played) and i.name == mark.name), None)
    if played is None:
        return None
    start = played - lead
    return start if first_audio is None else max(start, first_audio)


def turn_metrics(
    timeline: Sequence[tuple[float, Any]], turn: int = -1, *, origin: float | None = None
) -> TurnMetrics:
    """The milestones of one user turn and its reply, from ``(seconds, item)`` pairs.

    ``turn`` picks the reply to a user turn, counted like a list index (a greeting does not
    count). ``origin``: the time, on the timeline's clock, of stream time 0 — given, the end of
    speech is placed from the VAD's stream times rather than from when its marker was seen.
    Raises ``ValueError`` when the timeline holds no such reply.

    >>> import numpy as np
    >>> from voicekit.events import *
    >>> seen = [(0.7, SpeechStarted(0.5, {"start_secs": 0.2})), (0.7, TurnStarted(0.5)),
    ...         (2.2, SpeechStopped(2.0, {"stop_secs": 0.2})), (2.8, Transcript("hi", t=0.5)),
    ...         (2.9, TurnEnded("hi", 2.9)), (2.9, ReplyStarted("hi", 2.9)),
    ...         (2.95, Token("Hello")), (2.96, Token("! How")),
    ...         (3.1, AudioChunk(np.zeros(8000, np.int16), 16000))]
    >>> m = turn_metrics(seen)
    >>> round(m.voice_to_voice, 3), m.transcript, m.first_sentence, m.sentence, m.audio_end
    (1.1, 2.8, 2.96, 'Hello!', 3.6)
    """
    pairs = [(float(t), item) for t, item in timeline]
    replies = [
        k
        for k, (_, item) in enumerate(pairs)
        if isinstance(item, ReplyStarted) and item.turn is not None
    ]
    if not replies:
        raise ValueError("turn_metrics: the timeline holds no reply to a user turn")
    try:
        start = replies[turn]
    except IndexError:
        raise ValueError(
            f"turn_metrics: no turn {turn}: the timeline holds {len(replies)} replies to user "
            "turns"
        ) from None
    reply_start, started = pairs[start]
    text = str(started.turn)

    # the user's side: back to the TurnStarted of this turn (or the previous reply)
    ended = next((k for k in range(start, -1, -1) if isinstance(pairs[k][1], TurnEnded)), None)
    begin = 0
    for k in range((ended if ended is not None else start) - 1, -1, -1):
        item = pairs[k][1]
        if isinstance(item, TurnStarted):
            begin = k
            break
        if isinstance(item, ReplyStarted):
            begin = k + 1
            break
    while begin > 0 and isinstance(pairs[begin - 1][1], SpeechStarted):
        begin -= 1  # the VAD's marker, seen just before the turn detector's
    user = pairs[begin:start]
    starts = [(t, i) for t, i in user if isinstance(i, SpeechStarted)]
    stops = [(t, i) for t, i in user if isinstance(i, SpeechStopped)]
    speech_start = speech_end = speech_end_t = vad_stop = transcript = None
    if starts:
        t, onset = starts[0]
        lead = float(onset.params.get("start_secs", 0.0))
        speech_start = origin + onset.t if origin is not None else t - lead
    if stops:
        vad_stop, end = stops[-1]
        speech_end_t = end.t
        lag = float(end.params.get("stop_secs", 0.0))
        speech_end = origin + end.t if origin is not None else vad_stop - lag
        if speech_start is not None:
            speech_end = max(speech_end, speech_start)
    after_stop = vad_stop if vad_stop is not None else -math.inf
    transcripts = [
        t
        for t, i in user
        if isinstance(i, Transcript) and i.final and i.text.strip() and t >= after_stop
    ]
    if transcripts:
        transcript = transcripts[0]
    turn_end = pairs[ended][0] if ended is not None else None

    # the agent's side: the reply's own LLM work during the turn, then the reply itself
    ended_in_user = None if ended is None else ended - begin
    early = [
        (t, i)
        for t, i in user[_early_from(user, text, ended_in_user) :]
        if isinstance(i, Token | ToolCall | Sentence)
    ]
    stop = _reply_end(pairs, start)
    window = pairs[start + 1 : stop]
    llm = early + window
    first_token = None
    tool_calls = 0
    for t, item in llm:
        if isinstance(item, Token) and item.text.strip():
            first_token = t
            break
        if isinstance(item, ToolCall):
            tool_calls += 1
    audio = [(t, i) for t, i in window if isinstance(i, AudioChunk)]
    first_audio = audio[0][0] if audio else None
    audio_end = None
    cut = next((t for t, i in window if isinstance(i, Interrupted)), None)
    if first_audio is not None:
        audio_end = first_audio + sum(chunk.duration for _, chunk in audio)
        if cut is not None:
            audio_end = min(audio_end, max(cut, first_audio))
    first_sentence, sentence = _first_sentence(llm, first_audio)
    usage = [i for _, i in llm if isinstance(i, Usage)]
    reply_end = next((t for t, i in window if isinstance(i, SessionUpdated)), None)
    return TurnMetrics(
        call_id=_call_id(pairs, stop),
        first_played=_first_played(window, first_audio),
        reply_end=reply_end,
        input_tokens=sum(u.prompt_tokens for u in usage),
        output_tokens=sum(u.completion_tokens for u in usage),
        cached_tokens=sum(u.cached_tokens for u in usage),
        tool_seconds=sum((i.seconds for _, i in llm if isinstance(i, ToolRun)), 0.0),
        errors=tuple(str(i.source) for _, i in window if isinstance(i, ReplyFailed)),
        text=text,
        speech_start=speech_start,
        speech_end=speech_end,
        speech_end_t=speech_end_t,
        vad_stop=vad_stop,
        transcript=transcript,
        turn_end=turn_end,
        reply_start=reply_start,
        llm_first_token=first_token,
        first_sentence=first_sentence,
        first_audio=first_audio,
        audio_end=audio_end,
        interrupted=cut is not None,
        tool_calls=tool_calls,
        sentence=sentence,
    )
