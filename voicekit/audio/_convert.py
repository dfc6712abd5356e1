"""Sample-format conversion (int16 ↔ float32, downmixing) and checks of audio parameters."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import AudioError, AudioWarning

__all__ = ["to_float32", "to_int16"]


def first_bad(x: npt.NDArray[Any]) -> tuple[int, int | None, float]:
    """Where the first non-finite value of a 1-D or (frames, channels) array is: its frame, its
    channel (``None`` for 1-D) and the value itself."""
    flat = int(np.argmax(~np.isfinite(x.reshape(-1))))
    value = float(x.reshape(-1)[flat])
    if x.ndim <= 1:
        return flat, None, value
    frame, channel = np.unravel_index(flat, x.shape)[:2]
    return int(frame), int(channel), value


def describe_sample(
    frame: int, channel: int | None, *, rate: int | None = None, extra: str = ""
) -> str:
    """Name one sample for a message: ``"sample 7"``, ``"frame 7, channel 1 (0.001 s)"``…"""
    where = f"sample {frame}" if channel is None else f"frame {frame}, channel {channel}"
    notes = [extra] if extra else []
    if rate:
        notes.append(f"{frame / rate:.3f} s")
    return f"{where} ({', '.join(notes)})" if notes else where


def check_finite(
    x: npt.NDArray[Any], what: str, *, offset: int = 0, rate: int | None = None
) -> None:
    """Raise :class:`AudioError` naming ``what`` and the true position of the first NaN or
    infinite sample of ``x`` (1-D or (frames, channels)), whose first frame is frame ``offset``.

    A (frames, 1) array is mono: its samples are named like those of a 1-D array.
    """
    if not np.issubdtype(x.dtype, np.floating) or np.isfinite(x).all():
        return
    frame, channel, value = first_bad(x)
    if x.ndim == 2 and x.shape[1] == 1:
        channel = None
    where = describe_sample(offset + frame, channel, rate=rate)
    raise AudioError(f"{what}: {where} is {value}; audio must be finite")


def to_int16(x: npt.ArrayLike) -> npt.NDArray[np.int16]:
    """Convert float samples (full scale ±1.0) to int16, rounding to nearest and clipping.

    int16 input is returned as it is. The shape is kept, so (frames, channels) stays 2-D.
    A plain ``astype`` would wrap around out-of-range values; this clips them instead:

    >>> to_int16(np.array([0.0, 0.5, -0.5, 1.0, 1.2, -1.2]))
    array([     0,  16384, -16384,  32767,  32767, -32768], dtype=int16)

    NaN or infinite samples, and dtypes other than float or int16, raise :class:`AudioError`:

    >>> to_int16(np.array([0.0, 0.1, np.nan]))
    Traceback (most recent call last):
    ...
    voicekit._errors.AudioError: to_int16: sample 2 is nan; audio must be finite
    """
    array = np.asarray(x)
    if array.dtype == np.int16:
        return array
    if not np.issubdtype(array.dtype, np.floating):
        raise AudioError(
            f"to_int16: unsupported dtype {array.dtype}; "
            "pass float samples in [-1.0, 1.0] or int16 samples"
        )
    check_finite(array, "to_int16")
    # float16 cannot hold 32767: compute in float32 or wider
    wide = array.astype(np.promote_types(array.dtype, np.float32), copy=False)
    scaled = np.rint(np.clip(wide, -1.0, 1.0) * 32768.0)
    return np.minimum(scaled, 32767.0).astype(np.int16)


def to_float32(x: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Convert int16 samples to float32 in [-1.0, 1.0) by dividing by 32768, as libsndfile does.

    Float input is already in that convention and is only cast to float32.

    >>> to_float32(np.array([-32768, -16384, 0, 16384], dtype=np.int16))
    array([-1. , -0.5,  0. ,  0.5], dtype=float32)
    """
    array = np.asarray(x)
    if array.dtype == np.int16:
        return array.astype(np.float32) / np.float32(32768.0)
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32, copy=False)
    raise AudioError(f"to_float32: unsupported dtype {array.dtype}; pass int16 or float samples")


def downmix(x: npt.NDArray[Any], channel: int | None = None) -> npt.NDArray[np.float32]:
    """Mono float32 (contiguous) from a (frames, channels) array: the mean of the channels, or
    only ``channel`` if it is given (checked beforehand with :func:`check_channel`).

    The mean is the rule, so channels in antiphase cancel: a right channel that is the left one
    inverted gives silence (see :func:`cancellation`).

    >>> left = np.array([0.5, -0.25, 0.125], dtype=np.float32)
    >>> downmix(np.stack([left, -left], axis=1)).tolist(), downmix(np.stack([left, -left], 1), 0)
    ([0.0, 0.0, 0.0], array([ 0.5  , -0.25 ,  0.125], dtype=float32))
    """
    samples = to_float32(x)
    if samples.ndim == 1:
        return np.ascontiguousarray(samples)
    if samples.ndim != 2:
        raise AudioError(f"audio must be 1-D (mono) or 2-D (frames, channels), got {x.shape}")
    if channel is not None:
        return np.ascontiguousarray(samples[:, channel])
    if samples.shape[1] == 1:
        return np.ascontiguousarray(samples[:, 0])
    weights = np.full(samples.shape[1], 1.0 / samples.shape[1], dtype=np.float32)
    return np.ascontiguousarray(samples @ weights)  # the mean; a matrix product is much faster


def warn(message: str) -> None:
    """Issue an :class:`~voicekit.AudioWarning`: audio that is used, but not what it claims."""
    warnings.warn(message, AudioWarning, stacklevel=3)


def check_channel(channel: object) -> int | None:
    """Return ``channel`` if it is ``None`` or a channel index (an int from 0), else raise."""
    if channel is None:
        return None
    if isinstance(channel, bool) or not isinstance(channel, int | np.integer) or channel < 0:
        raise AudioError(
            f"channel must be None (average the channels) or a channel index from 0, "
            f"got {channel!r}"
        )
    return int(channel)


def channel_in_range(channel: int | None, channels: int, what: str) -> None:
    """Raise if ``what``, which has ``channels`` channels, has no channel ``channel``."""
    if channel is not None and channel >= channels:
        some = "1 channel" if channels == 1 else f"{channels} channels (0 to {channels - 1})"
        raise AudioError(f"{what} has {some}; there is no channel {channel}")


SILENT_POWER = 1e-6
"""Mean square below which channels count as silent (-60 dB below full scale)."""

CANCEL_DB = 30.0
"""How much quieter than its channels a mean may be before :func:`cancellation` speaks up."""


def energies(table: npt.NDArray[Any], mono: npt.NDArray[Any]) -> tuple[float, float]:
    """Sums over the frames of the channels' mean square and of the mix's square."""
    flat = np.ascontiguousarray(to_float32(table)).reshape(-1)
    mix = np.ascontiguousarray(mono, dtype=np.float32)
    return float(np.dot(flat, flat)) / table.shape[1], float(np.dot(mix, mix))


def cancellation(channels: float, mix: float, frames: int) -> str | None:
    """If averaging channels of :func:`energies` ``channels`` made a mix of energy ``mix``
    :data:`CANCEL_DB` quieter although they are not silent, say so (for a warning).

    >>> cancellation(1000.0, 0.0, 8000)
    'its channels cancel out when averaged (one is the other inverted?)'
    >>> cancellation(1000.0, 500.0, 8000) is None
    True
    """
    if frames == 0 or channels / frames < SILENT_POWER or mix * 10 ** (CANCEL_DB / 10) > channels:
        return None
    if mix == 0:
        return "its channels cancel out when averaged (one is the other inverted?)"
    lost = 10 * math.log10(channels / mix)
    return f"its channels nearly cancel out when averaged ({lost:.0f} dB quieter; in antiphase?)"


MAX_CHANNELS = 32
"""The most channels an array may hold: the shorter axis of a 2-D array, which is the channels."""


def frames_first(array: npt.NDArray[Any], what: str) -> tuple[npt.NDArray[Any], bool]:
    """The 2-D ``array`` as (frames, channels), and whether it was (channels, frames).

    The rule: the shorter axis holds the channels, at most :data:`MAX_CHANNELS` of them; a square
    array is (frames, channels). So ``(2, 48000)`` is two channels of 48000 frames, never 48000
    channels of 2 frames, and ``(1, n)`` is mono. An array without a short enough axis raises
    :class:`AudioError`, as does anything but 1-D and 2-D.

    >>> [frames_first(np.zeros(shape), "x")[0].shape for shape in [(480, 2), (2, 480), (1, 5)]]
    [(480, 2), (480, 2), (5, 1)]
    """
    if array.ndim != 2:
        raise AudioError(
            f"{what}: samples must be 1-D or 2-D (one or more channels), got shape {array.shape}"
        )
    rows, columns = array.shape
    if columns <= rows and columns <= MAX_CHANNELS:
        return array, False
    if rows < columns and rows <= MAX_CHANNELS:
        return array.T, True
    raise AudioError(
        f"{what}: cannot tell channels from frames in shape {array.shape}: the shorter axis must "
        f"hold the channels, at most {MAX_CHANNELS}; pass (frames, channels), or 1-D for mono"
    )


MAX_RATE = 768000
"""The highest sample rate (Hz) voicekit converts to or from; no audio interface goes higher."""


def check_rate(rate: object, name: str = "rate") -> int:
    """Return ``rate`` as an int if it is a positive integer number of Hz up to
    :data:`MAX_RATE`, else raise."""
    if (
        isinstance(rate, bool)
        or not isinstance(rate, int | np.integer)
        or not 0 < rate <= MAX_RATE
    ):
        raise AudioError(
            f"{name} must be a positive integer number of Hz up to {MAX_RATE}, got {rate!r}"
        )
    return int(rate)


def check_positive(value: object, name: str, unit: str = "") -> float:
    """Return ``value`` as a float if it is a finite number above zero, else raise."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.integer | np.floating)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise AudioError(f"{name} must be a positive finite number{unit}, got {value!r}")
    return float(value)


def frames_per(ms: object, rate: int, name: str = "chunk_ms") -> int:
    """Number of samples in ``ms`` milliseconds at ``rate`` Hz (at least one), else raise."""
    frames = round(rate * check_positive(ms, name, " of milliseconds") / 1000.0)
    if frames < 1:
        raise AudioError(f"{name}={ms!r} is shorter than one sample at {rate} Hz")
    return frames
