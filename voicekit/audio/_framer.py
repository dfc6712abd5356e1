"""Cutting a stream of samples into fixed-size frames, with their start times."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ..events import AudioChunk


class Framer:
    """Collects int16 samples and hands them back as :class:`AudioChunk` s of ``size`` samples.

    Times count from ``t0``: a frame's ``t`` is ``t0`` plus the samples framed before it, divided
    by ``rate`` (computed from the count each time, so no rounding error builds up).

    >>> framer = Framer(size=3, rate=1000)
    >>> [c.frames for c in framer.push(np.arange(7, dtype=np.int16))]
    [3, 3]
    >>> [(c.frames, c.t) for c in framer.flush()]
    [(1, 0.006)]
    """

    __slots__ = ("_done", "_pending", "_waiting", "rate", "size", "t0")

    def __init__(self, size: int, rate: int, t0: float = 0.0) -> None:
        self.size = size
        self.rate = rate
        self.t0 = t0
        self._pending: list[npt.NDArray[np.int16]] = []
        self._waiting = 0  # samples in _pending
        self._done = 0  # samples already handed out

    def push(self, samples: npt.NDArray[np.int16]) -> list[AudioChunk]:
        """Add samples; return the frames that are now complete (often none)."""
        if samples.shape[0] == 0:
            return []
        self._pending.append(samples)
        self._waiting += samples.shape[0]
        if self._waiting < self.size:
            return []
        data = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        whole = data.shape[0] - data.shape[0] % self.size
        frames = [self._frame(data[i : i + self.size]) for i in range(0, whole, self.size)]
        rest = data[whole:]
        self._pending = [rest] if rest.shape[0] else []
        self._waiting = rest.shape[0]
        return frames

    def flush(self) -> list[AudioChunk]:
        """Return the last, shorter frame if samples are waiting (and forget them)."""
        if not self._waiting:
            return []
        data = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        self._pending, self._waiting = [], 0
        return [self._frame(data)]

    def _frame(self, samples: npt.NDArray[np.int16]) -> AudioChunk:
        chunk = AudioChunk(samples, self.rate, self.t0 + self._done / self.rate)
        self._done += samples.shape[0]
        return chunk
