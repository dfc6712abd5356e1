"""User turns: when the user has taken the floor, and when they have finished.

:func:`turns` is a stage over the stream that comes out of voice activity detection and speech
recognition (:class:`~voicekit.events.AudioChunk` s, :class:`~voicekit.events.SpeechStarted` /
:class:`~voicekit.events.SpeechStopped` markers and :class:`~voicekit.events.Transcript` s). It
passes every item through, in order, and inserts :class:`~voicekit.events.TurnStarted` (the
barge-in signal) and :class:`~voicekit.events.TurnEnded` (with all the text said in the turn)::

    import voicekit.audio as vka
    from voicekit import stt, vad
    from voicekit.turns import turns, wake_phrase, vad_start

    flow = vka.read("call.wav") | vad.vad() | stt.whisper(pass_audio=True) | turns(stt_p99=1.0)
    flow = ... | turns(start=[wake_phrase("hey voicekit"), vad_start()])

Strategies are plain frozen values; everything that changes during a stream lives inside the
running stage, so one strategy value serves any number of streams.

**Starting a turn.** The start strategies are tried in order and the first that fires starts the
turn: :func:`vad_start` on a :class:`SpeechStarted`, :func:`transcript_start` on any transcript,
:func:`min_words` on a transcript of at least *n* words. A :func:`wake_phrase` must come first:
while it is asleep nothing starts a turn (its own phrase excepted), and while awake it lets the
strategies after it decide. Final transcripts that arrive while no turn is open and that start
none (too few words, not woken) are dropped: they never reach a later turn's text — except
*late* ones. A final transcript of speech that was spoken inside a turn that has since ended
(its ``t``, the utterance's onset, lies within that turn's speech; this happens when the
recogniser is slower than the turn-end wait, say "Hello there. What time is it?" where the
second sentence's text comes after the turn ended on the first) starts a new turn whatever
the start strategies say (``TurnStarted.t`` is the transcript's ``t``, as for
:func:`transcript_start`, so it may be earlier than the previous ``TurnEnded.t``): the user's
words are never silently lost, and the new turn ends as soon as the end rules allow (usually
right after the transcript, the user having been quiet all along).

**Stream time.** The stage has no clock of its own: time is what the stream says. An audio
chunk moves it to the chunk's end; a marker to the moment the detector could emit it (a
:class:`SpeechStarted` at ``t + start_secs``, a :class:`SpeechStopped` at ``t + stop_secs``, the
settings read from the marker's ``params``, 0.2 s if absent). Transcripts do not move it. A turn
that is due to end at time *D* ends just before the first item that takes stream time to *D* or
beyond, with ``TurnEnded.t = D``; so results are the same however fast the stream is fed.
Pipe the audio through the recogniser (``pass_audio=True``) so time moves between markers. A
stream that has carried no audio at all has no clock between markers: there the stage cannot
wait, and takes a final transcript after a stop as the end of the pause (see below).

**Ending a turn** (the user is not speaking, and the turn has text). Let *f* be when the last
:class:`SpeechStopped` was emitted (its ``t + stop_secs``), *w* = ``max(0, stt_p99 − stop_secs)``
the rest of the wait for the recogniser (``stt_p99`` is taken as 1.0 s while unknown), and *u*
the ``user_speech_timeout``. The recogniser's *answer* is the first final transcript that
arrives after the stop and belongs to that speech (its ``t`` is not before the speech's onset:
voicekit's recognisers stamp each transcript with its utterance's onset, so a late transcript of
an earlier utterance is not taken for it). With :func:`speech_timeout` the turn ends at the
earliest of

* ``max(f + u, a)`` where *a* is when the answer arrived — the recogniser has delivered, and
  the user has stayed quiet for *u* after the stop;
* ``max(f + max(w, u), x)`` where *x* is when the turn first had text — no answer within the
  recogniser's p99 (or *u*, if longer): end with the text there is.

A :class:`SpeechStarted` before that moment means the user resumed: the turn goes on, and the
rule restarts at the next stop. This is Pipecat's speech-timeout rule, put on stream time.
Without audio (no clock), the first rule becomes "at the arrival of the answer".

:func:`smart_turn` is a :func:`turn_analyzer` backed by the Smart Turn v3 model (the ``turn``
extra); :func:`recommended_stop_strategies` picks it when it is installed.
With :func:`turn_analyzer`, at each stop the analyzer scores the recent audio; the turn counts
as complete then if the probability is above the threshold, otherwise only after
``fallback_secs`` of silence (or when the user speaks again and stops again). It ends at the
first moment it is complete, has text, and either the answer has arrived or the recogniser
wait *w* has passed since *f*. Several stop strategies race: the first one to end the turn wins.
In a stream with no VAD markers at all, each final transcript counts as a stop and its answer.

A :class:`~voicekit.events.NoWords` (voicekit's recognisers say so of an utterance with no
words: a cough, a click) that answers the last speech counts as its answer; if the turn has no
text, it ends then (no earlier than *f*): there is nothing more to wait for, and an agent paused
by the noise is not kept waiting for a turn that can never have words.

Two safety nets: a turn that stays open with the user quiet for ``stop_timeout`` seconds (5 s)
after the last activity ends anyway, even with no text, and the end of the stream ends an open
turn. So every :class:`TurnStarted` is followed by exactly one :class:`TurnEnded`, whose ``text``
may be ``""`` (the turn was noise that no words came out of: do not reply to it).

:class:`TurnStarted` comes just before the item that started the turn, and its ``t`` is the
onset of that speech (the marker's or the transcript's ``t``). :class:`TurnEnded` comes just
after the transcript that completed the turn, or just before the item that passed its deadline.

**Pending turns** (``pending=True``, the default). When the open turn has text, the user is
quiet, and the recogniser's answer to the last speech has arrived (in a stream without VAD
markers: a final transcript), the stage emits :class:`TurnPending` with the turn's text so far,
just after that transcript — unless the turn ends there and then. It says "the turn will end
with this text unless the user goes on", and lets an agent prepare its reply during the
turn-end wait (:func:`voicekit.agent` does, with ``preemptive=True``). There is at most
one per distinct text in a turn: if the user resumes, the next answer brings a new
``TurnPending`` with the longer text, or the turn ends with text other than the pending one.
A turn may end without one (say, when its answer never came and the recogniser wait ran out).

**Warnings.** On each :class:`SpeechStopped`, until it has warned, the stage checks the VAD
``stop_secs`` in the marker's params: if it differs from 0.2 (the value STT p99 latencies are
measured with) it warns, and if it is at least the STT's p99 — a known one, from ``stt_p99`` or
an :class:`STTLatency` — (the recogniser wait collapses to 0) it warns too, both on the same
marker if both hold. They are :class:`StopSecsWarning` s. An
:class:`STTLatency` item in the stream sets a new p99 and re-arms the warnings.
"""

from __future__ import annotations

import inspect
import math
import re
import warnings
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from . import _compute, _smart_turn
from ._errors import ConfigError
from .events import (
    AudioChunk,
    NoWords,
    SpeechStarted,
    SpeechStopped,
    Transcript,
    TurnEnded,
    TurnPending,
    TurnStarted,
)
from .ops import stage

__all__ = [
    "DEFAULT_STT_P99",
    "VAD_STOP_SECS",
    "Analyzer",
    "MinWords",
    "STTLatency",
    "SpeechTimeout",
    "StartStrategy",
    "StopSecsWarning",
    "StopStrategy",
    "TranscriptStart",
    "TurnAnalyzer",
    "VADStart",
    "WakePhrase",
    "default_start_strategies",
    "default_stop_strategies",
    "fade_out",
    "min_words",
    "recommended_stop_strategies",
    "smart_turn",
    "smart_turn_available",
    "speech_timeout",
    "transcript_start",
    "turn_analyzer",
    "turns",
    "vad_start",
    "wake_phrase",
]

VAD_STOP_SECS = 0.2
"""The VAD ``stop_secs`` that published STT p99 latencies assume."""

DEFAULT_STT_P99 = 1.0
"""The STT p99 latency the waits assume when it is unknown (Pipecat's figure for Whisper)."""

_WAKE_WINDOW = 250  # characters of un-woken text kept for matching a wake phrase
_ANALYSIS_SECS = 8.0  # the analyzer sees at most this much audio
_PRE_SPEECH = 0.5  # ...starting no earlier than this before the turn's speech began

Analyzer = Callable[[npt.NDArray[np.int16], int], "float | Awaitable[float]"]
"""Scores "the turn is complete" on recent audio: ``fn(samples, rate) -> probability``.

``samples`` is mono int16 at ``rate`` Hz (the stream's rate), at most 8 s ending at the VAD stop.
It may return the probability or an awaitable of it (run a heavy model off the event loop).
"""


class StopSecsWarning(UserWarning):
    """The VAD's ``stop_secs`` does not fit the STT latency the turn timing assumes."""


@dataclass(frozen=True, slots=True)
class STTLatency:
    """The speech recogniser's p99 latency to a final transcript, in seconds, as a stream item.

    Put one in the stream (an STT stage may announce itself this way) to change the latency
    :func:`turns` waits for; it re-arms the stop_secs warnings and passes through.
    """

    p99: float

    def __post_init__(self) -> None:
        _check_seconds("STTLatency", "p99", self.p99)


# ---------------------------------------------------------------------------------------------
# Strategies: plain values


def _check_seconds(owner: str, name: str, value: object, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        seconds = math.nan
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (positive and seconds == 0):
        kind = "> 0" if positive else "≥ 0"
        raise ConfigError(
            f"{owner}: {name} must be a finite number of seconds {kind}, got {value!r}"
        )
    return seconds


@dataclass(frozen=True, slots=True)
class VADStart:
    """Start a turn on a :class:`SpeechStarted`. Make one with :func:`vad_start`."""


@dataclass(frozen=True, slots=True)
class TranscriptStart:
    """Start a turn on any transcript (speech the VAD missed). See :func:`transcript_start`."""


@dataclass(frozen=True, slots=True)
class MinWords:
    """Start a turn on a transcript of at least ``n`` words. See :func:`min_words`."""

    n: int

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ConfigError(f"min_words: n must be a whole number ≥ 1, got {self.n!r}")


def _clean(text: str) -> str:
    """Text with everything but word characters and whitespace removed."""
    return re.sub(r"[^\w\s]", "", text)


@dataclass(frozen=True, slots=True)
class WakePhrase:
    """Stay asleep until one of ``phrases`` is heard. See :func:`wake_phrase`."""

    phrases: tuple[str, ...]
    mode: Literal["timeout", "single_activation"] = "timeout"
    timeout: float = 10.0
    patterns: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.phrases or not all(isinstance(p, str) for p in self.phrases):
            raise ConfigError("wake_phrase: give at least one phrase, as strings")
        patterns = []
        for phrase in self.phrases:
            words = _clean(phrase).split()
            if not words:
                raise ConfigError(f"wake_phrase: the phrase {phrase!r} has no words")
            body = r"\s*".join(re.escape(word) for word in words)
            patterns.append(re.compile(rf"\b{body}\b", re.IGNORECASE))
        if self.mode not in ("timeout", "single_activation"):
            raise ConfigError(
                f"wake_phrase: mode must be 'timeout' or 'single_activation', got {self.mode!r}"
            )
        _check_seconds("wake_phrase", "timeout", self.timeout, positive=True)
        object.__setattr__(self, "patterns", tuple(patterns))

    def find(self, text: str) -> str | None:
        """The first phrase heard in ``text`` (punctuation and case ignored), or None.

        >>> wake_phrase("hey voicekit").find("Hey, Voicekit! What time is it?")
        'hey voicekit'
        >>> wake_phrase("hey voicekit").find("they voice kits") is None
        True
        """
        cleaned = _clean(text)
        for phrase, pattern in zip(self.phrases, self.patterns, strict=True):
            if pattern.search(cleaned):
                return phrase
        return None


@dataclass(frozen=True, slots=True)
class SpeechTimeout:
    """End a turn after a pause and the recogniser's answer. See :func:`speech_timeout`."""

    user_speech_timeout: float = 0.6

    def __post_init__(self) -> None:
        _check_seconds("speech_timeout", "user_speech_timeout", self.user_speech_timeout)


@dataclass(frozen=True, slots=True)
class TurnAnalyzer:
    """End a turn when an analyzer judges the audio complete. See :func:`turn_analyzer`."""

    fn: Analyzer
    threshold: float = 0.5
    fallback_secs: float = 3.0

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise ConfigError(f"turn_analyzer: fn must be callable, got {self.fn!r}")
        threshold = self.threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise ConfigError(f"turn_analyzer: threshold must be in [0, 1], got {threshold!r}")
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"turn_analyzer: threshold must be in [0, 1], got {threshold!r}")
        _check_seconds("turn_analyzer", "fallback_secs", self.fallback_secs)


StartStrategy = VADStart | TranscriptStart | MinWords | WakePhrase
"""Anything :func:`turns` accepts in ``start``."""

StopStrategy = SpeechTimeout | TurnAnalyzer
"""Anything :func:`turns` accepts in ``stop``."""


def vad_start() -> VADStart:
    """A :class:`SpeechStarted` starts a turn (Pipecat's default, and voicekit's)."""
    return VADStart()


def transcript_start() -> TranscriptStart:
    """Any transcript, interim or final, starts a turn: catches speech the VAD did not mark,
    and words that arrive after their turn has ended. Put it after :func:`vad_start`."""
    return TranscriptStart()


def min_words(n: int) -> MinWords:
    """A turn starts only when one transcript has at least ``n`` whitespace-separated words.

    Use it *instead of* :func:`vad_start` (which would start turns on any sound) to keep short
    back-channel words ("uh", "okay") from interrupting the bot. Interim transcripts count, but
    only final ones are kept as the turn's text. A final transcript under the threshold that
    arrives while no turn is open starts none and is dropped. Unlike Pipecat, the threshold
    applies whether or not the bot is speaking: this stage does not see the bot.

    >>> min_words(3)
    MinWords(n=3)
    """
    return MinWords(n)


def wake_phrase(
    *phrases: str,
    mode: Literal["timeout", "single_activation"] = "timeout",
    timeout: float = 10.0,
) -> WakePhrase:
    """Sleep until one of ``phrases`` is said; put it first in ``start``, before the defaults.

    Asleep, nothing starts a turn and the text heard is dropped, except that final transcripts
    are searched for a phrase in a rolling window of the last 250 characters (case-insensitive,
    punctuation stripped, spaces between the phrase's words optional, so a phrase split across
    two transcripts is found too). The transcript that completes the phrase starts a turn and
    is kept as its text; the window is cleared.

    Awake, the strategies after this one decide. In ``"timeout"`` mode it falls asleep again once
    the user has been quiet for ``timeout`` seconds: speech, transcripts and the end of a turn
    count as activity (the bot's own speech is not seen by this stage). In
    ``"single_activation"`` mode it falls asleep when the turn it started ends: one wake, one turn
    (``timeout`` is not used).

    >>> wake_phrase("hey voicekit", "ok computer", mode="single_activation").phrases
    ('hey voicekit', 'ok computer')
    """
    return WakePhrase(tuple(phrases), mode, timeout)


def speech_timeout(user_speech_timeout: float = 0.6) -> SpeechTimeout:
    """End the turn after a pause of ``user_speech_timeout`` following the VAD stop, once the
    recogniser has delivered — or, failing a new transcript, once its p99 latency has passed.
    The exact rule is in the module documentation."""
    return SpeechTimeout(user_speech_timeout)


def turn_analyzer(
    fn: Analyzer | None = None, threshold: float = 0.5, *, fallback_secs: float = 3.0
) -> TurnAnalyzer:
    """End the turn when ``fn`` scores the recent audio above ``threshold`` at a VAD stop.

    ``fn(samples, rate)`` gets the last ≤ 8 s of audio up to the stop (starting no earlier than
    0.5 s before the turn's speech began) and returns the probability that the user has finished.
    Below the threshold, the turn waits for more speech, or counts as complete after
    ``fallback_secs`` of silence. A plain function runs on the event loop: keep it fast, or
    return an awaitable (wrap a model in ``asyncio.to_thread``). The default ``fn`` is
    :func:`fade_out`, a crude heuristic; plug in a real end-of-turn model (such as Smart Turn)
    for production use. The analyzer needs the audio in the stream (``pass_audio=True`` on the
    recogniser); stops in a stream without audio cannot be scored and count as complete.
    """
    return TurnAnalyzer(fade_out() if fn is None else fn, threshold, fallback_secs=fallback_secs)


def default_start_strategies() -> tuple[StartStrategy, ...]:
    """The start strategies :func:`turns` uses when given none: ``(vad_start(),)``."""
    return (vad_start(),)


def default_stop_strategies() -> tuple[StopStrategy, ...]:
    """The stop strategies :func:`turns` uses when given none: ``(speech_timeout(),)``."""
    return (speech_timeout(),)


def recommended_stop_strategies(stt: Any = None) -> tuple[StopStrategy, ...]:
    """``(smart_turn(),)`` when the Smart Turn model is installed (``voicekit[turn]``), else
    :func:`default_stop_strategies`. :func:`voicekit.voice_agent` and the CLI use these.

    Smart Turn listens to the audio, so given the recogniser stage ``stt`` that feeds
    :func:`turns`, it is chosen only if that stage passes the audio on (``pass_audio=True``):
    without audio every stop would count as complete, and turns would end on the first pause.

    >>> from voicekit import stt
    >>> recommended_stop_strategies(stt.fake(transcripts=[]))
    (SpeechTimeout(user_speech_timeout=0.6),)
    """
    if stt is not None and not any(
        part.kwargs.get("pass_audio") is True for part in getattr(stt, "_parts", ())
    ):
        return default_stop_strategies()
    return (smart_turn(),) if smart_turn_available() else default_stop_strategies()


# ---------------------------------------------------------------------------------------------
# Smart Turn v3


def smart_turn_available() -> bool:
    """Whether :func:`smart_turn` can run: the ``pipecat-ai`` wheel's model file and onnxruntime
    are installed (``pip install "voicekit[turn]"``)."""
    return _smart_turn.available()


async def _smart_turn_probability(samples: npt.NDArray[np.int16], rate: int) -> float:
    return await _compute.run(
        _smart_turn.analyze, samples, rate, priority=_compute.Priority.TRANSCRIPT
    )


def smart_turn(threshold: float = 0.5, *, fallback_secs: float = 3.0) -> TurnAnalyzer:
    """End the turn when Smart Turn v3 hears it complete: a :func:`turn_analyzer` with a model.

    At each VAD stop the model (``smart-turn-v3.2-cpu.onnx`` from the ``pipecat-ai`` wheel, run
    with onnxruntime; voicekit computes its Whisper log-mel input itself) scores the last ≤ 8 s
    of the turn's audio, left-padded to 8 s at 16 kHz (other rates are resampled). Above
    ``threshold`` the turn ends now (once the recogniser's text is in); otherwise it waits for
    more speech, or ``fallback_secs`` of silence. Scoring runs on the inference pool (priority
    of a transcript the turn waits for), never on the event loop: ~20-60 ms on a free core.
    Needs ``pip install "voicekit[turn]"`` and the audio in the stream (``pass_audio=True``);
    raises :class:`~voicekit.ConfigError` naming the install command if the model is missing.
    """
    _smart_turn.model_path()
    return TurnAnalyzer(_smart_turn_probability, threshold, fallback_secs=fallback_secs)


# ---------------------------------------------------------------------------------------------
# The default analyzer


def fade_out(drop_db: float = 6.0, *, frame_ms: float = 20.0) -> Analyzer:
    """A simple "has the user finished?" guess from loudness alone: no words, no pitch, no model.

    Speech that fades out at its end is taken as finished; speech cut off at full strength (a
    pause mid-sentence) as unfinished. The audio is cut into ``frame_ms`` frames; frames within
    30 dB of the loudest one are voiced. The *drop* is the 75th-percentile level of the voiced
    frames minus the mean level of the last 200 ms of voiced frames, in dB; the result is a
    logistic curve of ``drop − drop_db`` (2 dB per e-fold), above 0.5 when the drop exceeds
    ``drop_db``. Audio without voiced frames scores 1. Expect it to be wrong often: it is a
    placeholder that shows the hook, not a turn model.

    >>> rate = 16000
    >>> steady = (np.sin(np.arange(rate) / 3) * 10000).astype(np.int16)
    >>> fading = (steady * np.linspace(1.0, 0.05, rate)).astype(np.int16)
    >>> analyze = fade_out()
    >>> bool(analyze(steady, rate) < 0.5), bool(analyze(fading, rate) > 0.5)
    (True, True)
    """
    for name, value in (("drop_db", drop_db), ("frame_ms", frame_ms)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigError(f"fade_out: {name} must be a number > 0, got {value!r}")

    def analyze(samples: npt.NDArray[np.int16], rate: int) -> float:
        size = max(1, round(rate * frame_ms / 1000.0))
        count = samples.shape[0] // size
        if count == 0:
            return 1.0
        frames = samples[: count * size].reshape(count, size).astype(np.float64)
        level = 10.0 * np.log10(np.mean(frames * frames, axis=1) + 1.0)  # dB above one step
        voiced = np.flatnonzero(level >= max(float(level.max()) - 30.0, 20.0))
        if voiced.size == 0:
            return 1.0
        tail = max(1, round(0.2 * rate / size))
        body = float(np.percentile(level[voiced], 75))
        drop = body - float(level[voiced[-tail:]].mean())
        return 1.0 / (1.0 + math.exp(-(drop - drop_db) / 2.0))

    return analyze


# ---------------------------------------------------------------------------------------------
# The stage


def _warn_stop_secs(stop_secs: float, p99: float | None) -> bool:
    """Issue the warnings that apply to ``stop_secs``; True if any was issued."""
    warned = False
    if abs(stop_secs - VAD_STOP_SECS) > 1e-9:
        warnings.warn(
            f"VAD stop_secs ({stop_secs}s) differs from the recommended {VAD_STOP_SECS}s. STT "
            f"p99 latencies are measured with stop_secs={VAD_STOP_SECS}: measure your "
            "recogniser's p99 latency with your settings and pass it as turns(stt_p99=...).",
            StopSecsWarning,
            stacklevel=2,
        )
        warned = True
    if p99 is not None and p99 > 0 and stop_secs >= p99:
        warnings.warn(
            f"VAD stop_secs ({stop_secs}s) >= STT p99 latency ({p99}s): the wait for the "
            "recogniser collapsed to 0s, so a turn whose transcript is late ends only on the "
            "user speech timeout or the turn watchdog.",
            StopSecsWarning,
            stacklevel=2,
        )
        warned = True
    return warned


class _Audio:
    """The last few seconds of audio, for the turn analyzer."""

    def __init__(self) -> None:
        self.chunks: deque[AudioChunk] = deque()

    def push(self, chunk: AudioChunk) -> None:
        if self.chunks and self.chunks[-1].rate != chunk.rate:
            self.chunks.clear()
        self.chunks.append(chunk)
        keep_from = chunk.end - _ANALYSIS_SECS - 2.0
        while self.chunks and self.chunks[0].end <= keep_from:
            self.chunks.popleft()

    def window(self, start: float, end: float) -> tuple[npt.NDArray[np.int16], int] | None:
        """Samples from ``start`` to ``end`` (as far as held), or None without audio."""
        if not self.chunks:
            return None
        rate = self.chunks[0].rate
        samples = np.concatenate([c.samples for c in self.chunks])
        origin = self.chunks[0].t
        first = max(0, round((start - origin) * rate))
        last = max(first, round((end - origin) * rate))
        return samples[first:last], rate


class _Turns:
    """The state of one stream's turn taking. Each method returns the items to yield."""

    def __init__(
        self,
        start: tuple[StartStrategy, ...],
        stop: tuple[StopStrategy, ...],
        p99: float | None,
        stop_timeout: float | None,
    ) -> None:
        self.start, self.stop, self.p99, self.stop_timeout = start, stop, p99, stop_timeout
        self.wake = start[0] if isinstance(start[0], WakePhrase) else None
        self.analyzers = [i for i, s in enumerate(stop) if isinstance(s, TurnAnalyzer)]
        self.audio = _Audio() if self.analyzers else None
        self.now = 0.0
        self.clocked = False  # audio has been seen: time moves between markers
        self.marked = False  # a speech marker has been seen
        self.warned = False
        # the user's speech
        self.speaking = False
        self.speech_from: float | None = None  # onset of the speech of the turn (to be)
        self.onset: float | None = None  # onset of the last speech
        self.stop_secs = VAD_STOP_SECS
        self.stop_t: float | None = None  # real end of the last speech
        self.stop_fire: float | None = None  # when its SpeechStopped was emitted
        self.final_at: float | None = None  # arrival of the first final transcript after it
        self.complete_at: dict[int, float] = {}  # analyzer index → when it judged complete
        self.pending: tuple[npt.NDArray[np.int16], int] | None = None  # audio not yet analyzed
        self.activity = 0.0  # last user activity, for the watchdog
        # the turn
        self.open = False
        self.parts: list[str] = []
        self.text_at: float | None = None
        self.offered: str | None = None  # the text of the last TurnPending of this turn
        self.ended: deque[tuple[float, float]] = deque(maxlen=8)  # onsets of ended turns' speech
        # the wake phrase
        self.awake = self.wake is None
        self.woken_at = 0.0
        self.window = ""

    # -- time ------------------------------------------------------------------------------------

    def _end_time(self) -> float | None:
        """When the open turn ends, as far as is known now."""
        if not self.open or self.speaking:
            return None
        times = []
        if self.stop_timeout is not None:
            times.append(self.activity + self.stop_timeout)
        fire, text_at = self.stop_fire, self.text_at
        if fire is not None and text_at is None and self.final_at is not None and self.marked:
            times.append(max(fire, self.final_at))  # the answer had no words: a noise
        if fire is not None and text_at is not None:
            p99 = DEFAULT_STT_P99 if self.p99 is None else self.p99
            wait = max(0.0, p99 - self.stop_secs)
            final_at = self.final_at
            for index, strategy in enumerate(self.stop):
                if isinstance(strategy, SpeechTimeout):
                    pause = strategy.user_speech_timeout
                    if final_at is not None:
                        heard = max(fire + pause, final_at) if self.clocked else final_at
                        times.append(max(heard, text_at))
                    times.append(max(fire + max(wait, pause), text_at))
                else:  # a turn analyzer; without VAD markers there is nothing to analyze
                    done = self.complete_at.get(index, None if self.marked else fire)
                    if done is None:
                        continue
                    heard = fire + wait if final_at is None else min(final_at, fire + wait)
                    if final_at is not None and not self.clocked:
                        heard = final_at
                    times.append(max(done, text_at, heard))
        return min(times) if times else None

    def _sleep_time(self) -> float | None:
        wake = self.wake
        if wake is None or not self.awake or self.speaking or wake.mode != "timeout":
            return None
        return self.woken_at + wake.timeout

    def advance(self, to: float) -> list[Any]:
        """Move stream time to ``to``, ending the turn and falling asleep where due."""
        out: list[Any] = []
        while True:
            end, sleep = self._end_time(), self._sleep_time()
            due = [t for t in (end, sleep) if t is not None and t <= to]
            if not due:
                break
            when = max(min(due), self.now)
            if end is not None and end <= to and (sleep is None or end <= sleep):
                out.append(self._end_turn(when))
            else:
                self.awake, self.window = False, ""
        self.now = max(self.now, to)
        return out

    # -- turns -----------------------------------------------------------------------------------

    def _start_turn(self, t: float) -> TurnStarted:
        self.open, self.parts, self.text_at, self.offered = True, [], None, None
        self.activity = self.now
        return TurnStarted(t)

    def _end_turn(self, t: float) -> TurnEnded:
        ended = TurnEnded(" ".join(self.parts), t)
        if self.speech_from is not None and self.onset is not None:
            self.ended.append((min(self.speech_from, self.onset), self.onset))
        self.open, self.parts, self.text_at, self.offered = False, [], None, None
        self.speech_from = None
        if self.wake is not None:
            if self.wake.mode == "single_activation":
                self.awake, self.window = False, ""
            else:
                self.woken_at = max(self.woken_at, t)
        return ended

    def _starts(self, item: SpeechStarted | Transcript) -> bool:
        for strategy in self.start:
            if isinstance(strategy, WakePhrase):
                if not self.awake:
                    return False
            elif isinstance(strategy, VADStart):
                if isinstance(item, SpeechStarted):
                    return True
            elif isinstance(strategy, TranscriptStart):
                if isinstance(item, Transcript):
                    return True
            elif isinstance(item, Transcript) and len(item.text.split()) >= strategy.n:
                return True
        return False

    def _late(self, item: Transcript) -> bool:
        """Whether a final transcript is of speech spoken inside a turn that has ended."""
        if not item.final or not item.text.strip():
            return False
        return any(first - 1e-6 <= item.t <= last + 1e-6 for first, last in self.ended)

    def _answers_no_words(self, item: NoWords) -> bool:
        """Whether a :class:`NoWords` is the first answer to the last speech."""
        if self.stop_fire is None or self.final_at is not None:
            return False
        return self.onset is None or item.t >= self.onset - 1e-6

    def _answers(self, item: Transcript) -> bool:
        """Whether a transcript belongs to the last speech (not to an earlier utterance)."""
        return self.onset is None or item.t >= self.onset - 1e-6

    def finish(self) -> list[Any]:
        return [self._end_turn(self.now)] if self.open else []

    def pending_turn(self) -> list[Any]:
        """A :class:`TurnPending` if the open turn now has its answer and new text."""
        if not self.open or self.speaking or not self.parts:
            return []
        if self.marked and (self.stop_fire is None or self.final_at is None):
            return []
        text = " ".join(self.parts)
        if text == self.offered:
            return []
        self.offered = text
        return [TurnPending(text, self.now)]

    # -- items -----------------------------------------------------------------------------------

    async def feed(self, item: Any) -> list[Any]:
        if isinstance(item, AudioChunk):
            self.clocked = True
            out = self.advance(item.end)
            if self.audio is not None:
                self.audio.push(item)
            out.append(item)
            return out
        if isinstance(item, SpeechStarted):
            seconds = _param(item.params, "start_secs")
            out = self.advance(item.t + seconds)
            out += self._speech_started(item)
        elif isinstance(item, SpeechStopped):
            seconds = _param(item.params, "stop_secs")
            out = self.advance(item.t + seconds)
            await self._speech_stopped(item, seconds)
            out.append(item)
        elif isinstance(item, Transcript):
            out = await self._transcript(item)
        elif isinstance(item, NoWords):
            if self.open and not self.speaking and self._answers_no_words(item):
                self.final_at = self.now
            out = [item]
        elif isinstance(item, STTLatency):
            self.p99, self.warned = item.p99, False
            out = [item]
        else:
            out = [item]
        return out + self.advance(self.now)

    def _speech_started(self, item: SpeechStarted) -> list[Any]:
        self.marked, self.speaking = True, True
        self.stop_t = self.stop_fire = self.final_at = None
        self.onset = item.t
        self.complete_at, self.pending = {}, None
        self.activity = self.now
        if self.awake:
            self.woken_at = self.now
        if not self.open:
            self.speech_from = item.t
            if self._starts(item):
                return [self._start_turn(item.t), item]
        elif self.speech_from is None:
            self.speech_from = item.t
        return [item]

    async def _speech_stopped(self, item: SpeechStopped, stop_secs: float) -> None:
        self.marked, self.speaking = True, False
        if "stop_secs" in item.params and not self.warned:
            self.warned = _warn_stop_secs(stop_secs, self.p99)
        self.stop_secs = stop_secs
        self.stop_t, self.stop_fire, self.final_at = item.t, item.t + stop_secs, None
        self.complete_at, self.pending = {}, None
        self.activity = self.now
        if self.awake:
            self.woken_at = self.now
        if self.audio is not None:
            onset = item.t if self.speech_from is None else self.speech_from
            start = max(onset - _PRE_SPEECH, self.stop_fire - _ANALYSIS_SECS)
            self.pending = self.audio.window(start, self.stop_fire)
        if self.open:
            await self._analyze()

    async def _analyze(self) -> None:
        """Score the audio up to the last stop with each turn analyzer (once per stop)."""
        if not self.analyzers or self.stop_fire is None or self.stop_t is None:
            return
        if self.complete_at:
            return
        pending, self.pending = self.pending, None
        for index in self.analyzers:
            strategy = self.stop[index]
            assert isinstance(strategy, TurnAnalyzer)
            if pending is None or pending[0].shape[0] == 0:
                self.complete_at[index] = self.stop_fire  # nothing to judge
                continue
            samples, rate = pending
            result = strategy.fn(samples, rate)
            if inspect.isawaitable(result):
                result = await result
            if isinstance(result, bool) or not isinstance(result, int | float | np.floating):
                raise ConfigError(f"turn analyzer returned {result!r}, not a probability")
            if float(result) > strategy.threshold:
                self.complete_at[index] = self.stop_fire
            else:
                self.complete_at[index] = max(self.stop_fire, self.stop_t + strategy.fallback_secs)

    async def _transcript(self, item: Transcript) -> list[Any]:
        self.activity = self.now
        text = item.text.strip()
        out: list[Any] = []
        if self.awake and self.wake is not None:
            self.woken_at = self.now
        woke = False
        if not self.awake and item.final and text:
            self.window = (self.window + " " + _clean(text))[-_WAKE_WINDOW:]
            assert self.wake is not None
            if self.wake.find(self.window) is not None:
                self.awake, self.window, self.woken_at, woke = True, "", self.now, True
        if not self.open and (woke or self._starts(item) or self._late(item)):
            out.append(self._start_turn(item.t))
            if not self.speaking:
                await self._analyze()
        out.append(item)
        if not (self.open and item.final and text):
            return out
        self.parts.append(text)
        if self.text_at is None:
            self.text_at = self.now
        if not self.speaking:
            if not self.marked:  # no VAD: each transcript restarts the pause
                self.stop_fire = self.final_at = self.now
            elif self.stop_fire is not None and self.final_at is None and self._answers(item):
                self.final_at = self.now
        return out


def _param(params: Any, name: str) -> float:
    value = params.get(name, VAD_STOP_SECS) if params else VAD_STOP_SECS
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return VAD_STOP_SECS
    return float(value)


def _strategies(
    given: Sequence[Any] | None,
    default: tuple[Any, ...],
    kinds: tuple[type, ...],
    name: str,
) -> tuple[Any, ...]:
    if given is None:
        return default
    if isinstance(given, str) or not isinstance(given, Sequence):
        raise ConfigError(f"turns: {name} must be a list of strategies, got {given!r}")
    strategies = tuple(given)
    if not strategies:
        raise ConfigError(f"turns: {name} needs at least one strategy")
    for strategy in strategies:
        if not isinstance(strategy, kinds):
            raise ConfigError(f"turns: {strategy!r} is not a {name} strategy")
    return strategies


@stage
async def turns(
    source: AsyncIterable[Any],
    /,
    *,
    start: Sequence[StartStrategy] | None = None,
    stop: Sequence[StopStrategy] | None = None,
    stt_p99: float | None = None,
    stop_timeout: float | None = 5.0,
    pending: bool = True,
) -> AsyncIterator[Any]:
    """Pass every item through and insert :class:`TurnStarted` / :class:`TurnEnded`
    (and :class:`TurnPending`, unless ``pending=False``).

    ``start`` and ``stop`` are lists of strategies (defaults: :func:`default_start_strategies`,
    :func:`default_stop_strategies`); ``stt_p99`` is the recogniser's p99 latency to a final
    transcript in seconds (None: unknown, no extra wait); ``stop_timeout`` ends a turn after that
    long without user activity (None: never); ``pending`` emits a :class:`TurnPending` when a
    turn's text is in and the user is quiet. The module documentation gives the exact rules.

    >>> import asyncio
    >>> items = [SpeechStarted(0.5), SpeechStopped(1.5), Transcript("hello there", t=0.5)]
    >>> marks = TurnStarted | TurnPending | TurnEnded
    >>> [x for x in asyncio.run(turns(items).list()) if isinstance(x, marks)]
    [TurnStarted(t=0.5), TurnEnded(text='hello there', t=1.7)]
    """
    starts = _strategies(start, default_start_strategies(), StartStrategy.__args__, "start")
    stops = _strategies(stop, default_stop_strategies(), StopStrategy.__args__, "stop")
    wakes = [i for i, s in enumerate(starts) if isinstance(s, WakePhrase)]
    if wakes and wakes != [0]:
        raise ConfigError("turns: a wake_phrase must be the first start strategy, and the only one")
    p99 = None if stt_p99 is None else _check_seconds("turns", "stt_p99", stt_p99)
    if stop_timeout is not None:
        stop_timeout = _check_seconds("turns", "stop_timeout", stop_timeout, positive=True)
    if not isinstance(pending, bool):
        raise ConfigError(f"turns: pending must be True or False, got {pending!r}")
    state = _Turns(starts, stops, p99, stop_timeout)
    async for item in source:
        for out in await state.feed(item):
            yield out
        if pending:
            for out in state.pending_turn():
                yield out
    for out in state.finish():
        yield out
