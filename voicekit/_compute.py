"""Heavy model work off the event loop: one inference at a time, models loaded once.

Speech recognition (Whisper) and synthesis (Piper) each want every core. On a small machine,
running both at the same moment makes *both* slower than running them one after the other
(measured on 2 cores: STT 0.73 s and TTS 0.86 s alone, 1.93 s and 2.41 s together). So every
heavy inference goes through :func:`run`, which executes it in a worker thread while holding one
process-wide lock, :data:`INFERENCE`: at most one STT or TTS call computes at any moment and the
others wait their turn. Voice activity detection does *not* take the lock — it is cheap (a few
percent of one core) and must keep up with the microphone while a transcription runs.

Models are loaded by :func:`load_once`: lazily, once per process and key, thread-safe, with a line
on stderr the first time (a load takes seconds). Loading does not hold :data:`INFERENCE`.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

__all__ = ["INFERENCE", "load_once", "run", "settle"]

T = TypeVar("T")

INFERENCE = threading.Lock()
"""Held while a heavy model (Whisper, Piper) computes. Take it around your own heavy calls too."""

_models: dict[Hashable, Any] = {}
_loading: dict[Hashable, threading.Lock] = {}
_registry = threading.Lock()


def _locked(fn: Callable[..., T], *args: Any) -> T:
    with INFERENCE:
        return fn(*args)


async def run(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in a worker thread under :data:`INFERENCE`; await its result.

    Cancelling the await abandons the result at once; the thread finishes its call (a model call
    cannot be interrupted) and then releases the lock.
    """
    return await asyncio.to_thread(_locked, fn, *args)


def load_once(key: Hashable, label: str, loader: Callable[[], T]) -> T:
    """Return the model cached under ``key``, calling ``loader()`` the first time.

    Concurrent callers with the same key wait for one load; different keys load independently.
    The first load prints ``voicekit: loading <label> …`` and its duration on stderr. A failed load
    is not cached: the next call tries again.
    """
    model = _models.get(key)
    if model is not None:
        return model
    with _registry:
        lock = _loading.setdefault(key, threading.Lock())
    with lock:
        model = _models.get(key)
        if model is None:
            print(f"voicekit: loading {label} …", file=sys.stderr, flush=True)
            began = time.perf_counter()
            model = loader()
            _models[key] = model
            elapsed = time.perf_counter() - began
            print(f"voicekit: {label} ready in {elapsed:.1f} s", file=sys.stderr, flush=True)
    return model


async def settle(future: asyncio.Future[Any] | None) -> None:
    """Cancel ``future`` if it is still running and wait until it is done, ignoring its outcome."""
    if future is None:
        return
    if not future.done():
        future.cancel()
    await asyncio.wait([future])
    if not future.cancelled():
        future.exception()  # mark it retrieved, so asyncio does not log it
