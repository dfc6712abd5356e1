"""Heavy model work off the event loop: one inference at a time, models loaded once.

Speech recognition (Whisper) and synthesis (Piper) each want every core. On a small machine,
running both at the same moment makes *both* slower than running them one after the other
(measured on 2 cores: STT 0.73 s and TTS 0.86 s alone, 1.93 s and 2.41 s together). So every
heavy inference goes through :func:`run`, which queues it on one dedicated worker thread that
holds the process-wide lock :data:`INFERENCE` while it computes: at most one STT or TTS call runs
at any moment, the others wait in order. A queued call that is cancelled (barge-in) before it
starts never runs, and waiting calls do not tie up the event loop's default executor, which
voice activity detection keeps using: VAD does *not* take the lock — it is cheap (a few percent
of one core) and must keep up with the microphone while a transcription runs. The blocking
one-shot helpers (``voicekit.stt.transcribe``, ``voicekit.tts.synthesize``) take
:data:`INFERENCE` in the caller's thread.

Models are loaded by :func:`load_once`: lazily, once per process and key, thread-safe, with a line
on stderr the first time (a load takes seconds). Loading does not hold :data:`INFERENCE`.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["INFERENCE", "load_once", "run", "settle"]

T = TypeVar("T")

INFERENCE = threading.Lock()
"""Held while a heavy model (Whisper, Piper) computes. Take it around your own heavy calls too."""

_models: dict[Hashable, Any] = {}
_loading: dict[Hashable, threading.Lock] = {}
_registry = threading.Lock()


_worker: ThreadPoolExecutor | None = None


def _locked(fn: Callable[..., T], *args: Any) -> T:
    with INFERENCE:
        return fn(*args)


def _inference_thread() -> ThreadPoolExecutor:
    global _worker
    with _registry:
        if _worker is None:
            _worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voicekit-inference")
        return _worker


async def run(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` on the inference thread under :data:`INFERENCE`; await its result.

    Cancelling the await drops a call that has not started; a call already running finishes
    (a model call cannot be interrupted) and its result is discarded.
    """
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_inference_thread(), _locked, fn, *args)


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
