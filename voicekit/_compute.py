"""Heavy model work off the event loop: a small pool of inference threads, urgent work first.

Every model call (Silero VAD hops, Whisper transcriptions, Piper sentences) goes through
:func:`run` (or the blocking :func:`call`), which queues it on one process-wide pool of
:func:`workers` threads — one per core by default, ``VOICEKIT_INFERENCE_THREADS`` to change it.
The queue is ordered by :class:`Priority`, then by arrival: a voice activity hop first, then the
transcript a turn is waiting for, then the first sentence of a reply, then the rest (speculative
transcripts, later sentences, warm-ups). So on a busy machine the work a caller is waiting on
right now overtakes work that can wait. A call that is cancelled (barge-in) before a worker takes
it never runs; a call already running finishes (a model call cannot be interrupted) and its
result is discarded.

One more thread, the *express lane*, takes only :attr:`Priority.VAD` calls, so a VAD hop never
waits behind a Whisper call even when every worker is busy: the VAD has to keep up with the
microphone, and a hop costs a few milliseconds.

Several inferences now run at once, so each model gets fewer threads of its own:
:func:`model_threads` (cores / workers, at least 1; ``VOICEKIT_MODEL_THREADS`` to change it) is
what Whisper (CTranslate2 ``cpu_threads``, one replica per worker) and Piper (onnxruntime
intra-op threads) are loaded with, so a full pool never runs more model threads than cores.
Measured on 2 cores shared with other jobs (bench/inference_threads.py, load average 6): a
Whisper call and a Piper sentence at once finish after 1.62 s with one thread each and 2.14 s
with two each (0.98 s and 1.29 s of CPU); alone, two threads save Whisper about a fifth and
Piper nothing. The old design ran one inference at a time because STT and TTS at once, two
threads each, slowed both (1.93 s and 2.41 s against 0.73 s and 0.86 s alone): that was this
oversubscription, which one thread per model avoids.

Models are loaded by :func:`load_once`: lazily, once per process and key, thread-safe, with a line
on stderr the first time (a load takes seconds). Loading does not use the pool.

At exit the queued calls are dropped and the calls already running are given up to
:data:`EXIT_GRACE` seconds to finish (a model torn down under a running call crashes the
process); the workers are daemon threads, so nothing here keeps the interpreter alive longer.
"""

from __future__ import annotations

import asyncio
import atexit
import enum
import heapq
import itertools
import os
import sys
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ._errors import ConfigError

__all__ = [
    "EXIT_GRACE",
    "MODEL_THREADS_ENV",
    "THREADS_ENV",
    "Pool",
    "Priority",
    "call",
    "cores",
    "load_once",
    "model_threads",
    "run",
    "settle",
    "workers",
]

T = TypeVar("T")

THREADS_ENV = "VOICEKIT_INFERENCE_THREADS"
"""How many inference calls may run at once (the pool's size); default :func:`cores`, at most 8."""

MODEL_THREADS_ENV = "VOICEKIT_MODEL_THREADS"
"""Threads each model uses for one call; default :func:`cores` // :func:`workers`, at least 1."""

EXIT_GRACE = 10.0
"""Seconds the interpreter waits at exit for inference calls that are still running."""

_MAX_DEFAULT_WORKERS = 8


class Priority(enum.IntEnum):
    """Which queued call a free worker takes first (the lowest value), then first come first
    served.

    >>> sorted([Priority.LATER, Priority.VAD, Priority.FIRST_AUDIO, Priority.TRANSCRIPT])
    [<Priority.VAD: 0>, <Priority.TRANSCRIPT: 1>, <Priority.FIRST_AUDIO: 2>, <Priority.LATER: 3>]
    """

    VAD = 0
    """A voice activity hop: it must keep up with the microphone (it also has the express lane)."""
    TRANSCRIPT = 1
    """The transcript of an utterance that has ended: the turn waits for it."""
    FIRST_AUDIO = 2
    """The first sentence of a reply: the caller hears silence until it is done."""
    LATER = 3
    """Everything else: speculative transcripts, later sentences, warm-ups."""


def cores() -> int:
    """The cores this process may run on (``sched_getaffinity``, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _env_count(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{name} must be a whole number ≥ 1, got {raw!r}")
    return value


def workers() -> int:
    """The size of the inference pool: ``VOICEKIT_INFERENCE_THREADS``, or one per core (≤ 8)."""
    return _env_count(THREADS_ENV) or min(cores(), _MAX_DEFAULT_WORKERS)


def model_threads() -> int:
    """Threads a model may use for one call: ``VOICEKIT_MODEL_THREADS``, or the cores shared
    among the pool's workers (at least 1), so that a full pool does not oversubscribe the CPU."""
    return _env_count(MODEL_THREADS_ENV) or max(1, cores() // workers())


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    future: Future[Any] = field(compare=False)
    fn: Callable[..., Any] = field(compare=False)
    args: tuple[Any, ...] = field(compare=False)


_local = threading.local()  # .pool: the Pool whose worker this thread is


class Pool:
    """``size`` worker threads (plus an express lane for :attr:`Priority.VAD` calls, if
    ``express``) that run blocking calls from one queue ordered by priority, then arrival.

    >>> pool = Pool(2)
    >>> pool.submit(sum, [1, 2, 3]).result()
    6
    >>> pool.shutdown()
    """

    def __init__(self, size: int, *, express: bool = True, name: str = "voicekit-inference"):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"Pool: size must be a whole number ≥ 1, got {size!r}")
        self.size = size
        self._queue: list[_Job] = []
        self._order = itertools.count()
        self._ready = threading.Condition(threading.Lock())
        self._closed = False
        self._threads = [
            threading.Thread(
                target=self._work, args=(Priority.LATER,), name=f"{name}-{i}", daemon=True
            )
            for i in range(size)
        ]
        if express:
            self._threads.append(
                threading.Thread(
                    target=self._work, args=(Priority.VAD,), name=f"{name}-vad", daemon=True
                )
            )
        for thread in self._threads:
            thread.start()

    def submit(
        self, fn: Callable[..., T], *args: Any, priority: Priority = Priority.LATER
    ) -> Future[T]:
        """Queue ``fn(*args)``; cancelling the returned future before it starts drops it."""
        priority = Priority(priority)
        future: Future[T] = Future()
        with self._ready:
            if self._closed:
                raise RuntimeError("voicekit: the inference pool is shut down")
            heapq.heappush(self._queue, _Job(priority, next(self._order), future, fn, args))
            self._ready.notify_all()  # the express lane may not take it: wake every worker
        return future

    async def run(
        self, fn: Callable[..., T], *args: Any, priority: Priority = Priority.LATER
    ) -> T:
        """Run ``fn(*args)`` on the pool and await its result (see :func:`run`)."""
        return await asyncio.wrap_future(self.submit(fn, *args, priority=priority))

    def shutdown(self, wait: float = 0.0) -> None:
        """Drop the queued calls (their futures are cancelled) and let the workers end once
        their current call returns; wait up to ``wait`` seconds for that."""
        with self._ready:
            self._closed = True
            dropped, self._queue = self._queue, []
            self._ready.notify_all()
        for job in dropped:
            job.future.cancel()
        deadline = time.monotonic() + wait
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def _take(self, limit: Priority) -> _Job | None:
        """The next job a worker serving priorities up to ``limit`` should run, or None."""
        while True:
            with self._ready:
                while not self._closed and not (self._queue and self._queue[0].priority <= limit):
                    self._ready.wait()
                if self._closed:
                    return None
                job = heapq.heappop(self._queue)
            if job.future.set_running_or_notify_cancel():
                return job
            # cancelled while queued: it never runs

    def _work(self, limit: Priority) -> None:
        _local.pool = self
        while (job := self._take(limit)) is not None:
            try:
                result = job.fn(*job.args)
            except BaseException as exc:
                job.future.set_exception(exc)
            else:
                job.future.set_result(result)
            del job


_pool: Pool | None = None
_registry = threading.Lock()


def _forget_pool() -> None:
    global _pool
    _pool = None  # a forked child has none of the parent's threads: it starts its own pool


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _default_pool() -> Pool:
    global _pool
    with _registry:
        if _pool is None:
            _pool = Pool(workers())
            atexit.register(_at_exit, _pool)
        return _pool


def _at_exit(pool: Pool) -> None:
    pool.shutdown(wait=EXIT_GRACE)


async def run(fn: Callable[..., T], *args: Any, priority: Priority = Priority.LATER) -> T:
    """Run ``fn(*args)`` on the inference pool, in ``priority`` order; await its result.

    Cancelling the await drops a call that has not started; a call already running finishes
    (a model call cannot be interrupted) and its result is discarded.
    """
    return await _default_pool().run(fn, *args, priority=priority)


def call(fn: Callable[..., T], *args: Any, priority: Priority = Priority.LATER) -> T:
    """Blocking :func:`run`, for the one-shot helpers: ``fn(*args)`` on the pool, waited for
    in this thread (run at once if this thread is already an inference worker)."""
    if getattr(_local, "pool", None) is not None:
        return fn(*args)
    return _default_pool().submit(fn, *args, priority=priority).result()


_models: dict[Hashable, Any] = {}
_loading: dict[Hashable, threading.Lock] = {}


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
