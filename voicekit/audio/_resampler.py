"""Stateful streaming resampling with soxr: one signal, cut into pieces, resampled seamlessly."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

from ._convert import to_float32, to_int16

QUALITY = "HQ"


class Resampler:
    """Resamples one mono signal given piece by piece; the output pieces join without clicks.

    soxr keeps the filter state between pieces, so the concatenated output equals resampling the
    whole signal at once. Output lags input by the filter delay; ``last=True`` flushes the rest, and
    the total output length is then exactly ``round(n * out_rate / in_rate)``.

    >>> r = Resampler(48000, 16000)
    >>> a = r.push(np.zeros(960, dtype=np.int16))
    >>> b = r.push(np.zeros(0, dtype=np.int16), last=True)
    >>> a.shape[0] + b.shape[0]
    320
    """

    __slots__ = ("_stream", "in_rate", "out_rate")

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=QUALITY)

    def push(self, samples: npt.NDArray[Any], *, last: bool = False) -> npt.NDArray[np.int16]:
        """Resample the next piece (int16 or float, mono); return the int16 output ready so far."""
        x = np.ascontiguousarray(to_float32(samples))
        return to_int16(self._stream.resample_chunk(x, last=last))
