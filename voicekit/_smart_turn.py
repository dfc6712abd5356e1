"""Smart Turn v3: an end-of-turn model that listens to the last 8 s of the user's speech.

The model file (``smart-turn-v3.2-cpu.onnx``, BSD-2-Clause, 8.7 MB) ships inside the PyPI
wheel of ``pipecat-ai``; voicekit finds it through the installed distribution's file list and
runs it with onnxruntime. None of Pipecat's code is imported: ``pip install --no-deps
pipecat-ai`` is all it needs (the ``turn`` extra notes why).

Its input is Whisper's log-mel spectrogram of exactly 8 s of 16 kHz audio (the turn's end,
left-padded with zeros), computed here with numpy:

* the waveform is scaled to zero mean and unit variance (over the whole padded 8 s);
* a centred STFT: 400-sample periodic Hann window, hop 160, reflect padding of 200 samples at
  both ends, power spectrum of a 400-point real FFT (201 bins); the last frame is dropped, so
  8 s give 800 frames;
* 80 triangular mel filters on the Slaney scale from 0 to 8 kHz, each scaled to unit area
  (Slaney normalisation);
* ``log10(max(mel, 1e-10))``, floored at 8 below its maximum, then ``(x + 4) / 4``.

The model answers the probability that the turn is complete.
"""

from __future__ import annotations

import functools
import importlib.metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _compute
from ._errors import ConfigError

__all__ = [
    "MODEL_FILE",
    "RATE",
    "SECONDS",
    "MissingModel",
    "analyze",
    "available",
    "load",
    "log_mel",
    "mel_filters",
    "model_path",
    "prepare",
    "score",
    "stft_power",
]

RATE = 16000
"""The model's sample rate."""

SECONDS = 8
"""The model hears exactly this many seconds: the end of the turn, left-padded with zeros."""

MODEL_FILE = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
"""Where the model lives inside the ``pipecat-ai`` distribution."""

_N_FFT = 400
_HOP = 160
_N_MELS = 80
_INSTALL = 'pip install --no-deps "pipecat-ai>=1.14"  (or: pip install "voicekit[turn]")'


class MissingModel(ConfigError):
    """The Smart Turn model file is not installed."""


def model_path() -> Path:
    """The installed ``smart-turn-v3.2-cpu.onnx``, located through ``pipecat-ai``'s file list."""
    try:
        dist = importlib.metadata.distribution("pipecat-ai")
    except importlib.metadata.PackageNotFoundError:
        raise MissingModel(f"Smart Turn needs the model file of pipecat-ai: {_INSTALL}") from None
    for file in dist.files or ():
        if str(file).replace("\\", "/") == MODEL_FILE:
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    raise MissingModel(f"pipecat-ai {dist.version} has no {MODEL_FILE}: {_INSTALL}")


def available() -> bool:
    """Whether the model file is installed (``pipecat-ai`` with its ``.onnx``) with onnxruntime."""
    try:
        model_path()
    except MissingModel:
        return False
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def _hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Slaney's mel scale: linear (3 mel per 200 Hz) below 1 kHz, logarithmic above."""
    step = np.log(6.4) / 27.0
    linear = 3.0 * hz / 200.0
    return np.where(hz < 1000.0, linear, 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) / step)


def _mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    step = np.log(6.4) / 27.0
    return np.where(mel < 15.0, 200.0 * mel / 3.0, 1000.0 * np.exp(step * (mel - 15.0)))


@functools.cache
def mel_filters(n_mels: int = _N_MELS, n_fft: int = _N_FFT, rate: int = RATE) -> Any:
    """``(n_fft // 2 + 1, n_mels)`` triangular Slaney filters from 0 Hz to ``rate / 2``.

    Filter *m* rises from corner *m* to corner *m + 1* and falls to corner *m + 2* (corners
    evenly spaced in mel), and has unit area in Hz.

    >>> bank = mel_filters()
    >>> bank.shape
    (201, 80)
    """
    bins = np.linspace(0.0, rate / 2.0, n_fft // 2 + 1)
    low, high = _hz_to_mel(np.array([0.0, rate / 2.0]))
    corners = _mel_to_hz(np.linspace(float(low), float(high), n_mels + 2))
    lower, centre, upper = corners[:-2, None], corners[1:-1, None], corners[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    bank = np.maximum(0.0, np.minimum(rising, falling))
    bank *= 2.0 / (upper - lower)  # unit area: height 2 / width
    bank.setflags(write=False)
    return bank.T


def stft_power(x: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
    """``(201, frames)`` power spectrum: centred, reflect-padded, periodic Hann, hop 160."""
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(_N_FFT) / _N_FFT)
    padded = np.pad(np.asarray(x, dtype=np.float64), _N_FFT // 2, mode="reflect")
    frames = 1 + (padded.shape[0] - _N_FFT) // _HOP
    index = np.arange(_N_FFT)[None, :] + _HOP * np.arange(frames)[:, None]
    spectrum = np.fft.rfft(padded[index] * window, axis=1)
    return (spectrum.real**2 + spectrum.imag**2).T


def prepare(samples: npt.NDArray[Any], rate: int) -> npt.NDArray[np.float32]:
    """Mono audio (int16, or float in [-1, 1]) at ``rate`` → exactly 8 s of float32 at 16 kHz:
    the last 8 s, or all of it left-padded with zeros."""
    if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
        raise ConfigError(f"smart turn: rate must be a whole number of Hz > 0, got {rate!r}")
    audio = np.asarray(samples)
    if audio.ndim != 1:
        raise ConfigError(f"smart turn: audio must be mono (1-D), got shape {audio.shape}")
    if audio.dtype == np.int16:
        wave = audio.astype(np.float32) / 32768.0
    elif np.issubdtype(audio.dtype, np.floating):
        wave = audio.astype(np.float32)
    else:
        raise ConfigError(f"smart turn: audio must be int16 or float, got {audio.dtype}")
    if rate != RATE and wave.shape[0]:
        import soxr

        wave = soxr.resample(wave, rate, RATE).astype(np.float32)
    size = RATE * SECONDS
    wave = wave[-size:]
    return np.pad(wave, (size - wave.shape[0], 0))


def log_mel(wave: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Whisper's normalised log-mel features of ``wave`` (16 kHz), ``(80, len // 160)``.

    >>> log_mel(np.zeros(16000, np.float32)).shape
    (80, 100)
    """
    x = np.asarray(wave, dtype=np.float32)
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    power = stft_power(x)[:, :-1]
    mel = mel_filters().T @ power
    logs = np.log10(np.maximum(mel, 1e-10))
    logs = np.maximum(logs, logs.max() - 8.0)
    return ((logs + 4.0) / 4.0).astype(np.float32)


def load(threads: int = 1) -> Any:
    """An onnxruntime session on the model (its input is checked: ``input_features``,
    ``(batch, 80, 800)``)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        str(model_path()), sess_options=options, providers=["CPUExecutionProvider"]
    )
    (given,) = session.get_inputs()
    if given.name != "input_features" or list(given.shape[1:]) != [_N_MELS, RATE * SECONDS // _HOP]:
        raise MissingModel(f"Smart Turn: unexpected model input {given.name} {given.shape}")
    return session


def score(session: Any, samples: npt.NDArray[Any], rate: int) -> float:
    """The probability that the turn ending with ``samples`` is complete (a blocking call)."""
    features = log_mel(prepare(samples, rate))[None]
    (out,) = session.run(None, {"input_features": features})
    return float(np.asarray(out).reshape(-1)[0])


def analyze(samples: npt.NDArray[Any], rate: int) -> float:
    """:func:`score` with the process-wide session (loaded once, with
    :func:`voicekit._compute.model_threads` threads). Blocking: call it on the inference pool."""
    threads = _compute.model_threads()
    key = ("smart-turn-v3.2", threads)
    session = _compute.load_once(key, "Smart Turn v3.2", lambda: load(threads))
    return score(session, samples, rate)
