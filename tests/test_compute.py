"""The inference pool: priorities, cancellation, size, results, exit (plain functions, no model)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError, Future
from typing import Any

import pytest

from voicekit import _compute as compute
from voicekit._compute import Pool, Priority
from voicekit._errors import ConfigError

WAIT = 10.0  # seconds: an honest bound for things that should take milliseconds


@pytest.fixture
def pool() -> Iterator[Pool]:
    one = Pool(1)
    yield one
    one.shutdown()


def blocker(pool: Pool, priority: Priority = Priority.LATER) -> tuple[threading.Event, Future[Any]]:
    """Occupy one worker until the returned event is set; returns once the call is running."""
    started, release = threading.Event(), threading.Event()

    def hold() -> str:
        started.set()
        assert release.wait(WAIT)
        return "held"

    future = pool.submit(hold, priority=priority)
    assert started.wait(WAIT)
    return release, future


def test_queued_calls_run_by_priority_then_arrival(pool: Pool) -> None:
    release, held = blocker(pool)
    ran: list[str] = []
    order = [
        ("later-1", Priority.LATER),
        ("first-audio-1", Priority.FIRST_AUDIO),
        ("later-2", Priority.LATER),
        ("transcript-1", Priority.TRANSCRIPT),
        ("first-audio-2", Priority.FIRST_AUDIO),
        ("transcript-2", Priority.TRANSCRIPT),
    ]
    futures = [pool.submit(ran.append, name, priority=p) for name, p in order]
    assert ran == []  # the only worker is busy: everything waits in the queue
    release.set()
    for future in futures:
        future.result(WAIT)
    assert held.result(WAIT) == "held"
    assert ran == [
        "transcript-1",
        "transcript-2",
        "first-audio-1",
        "first-audio-2",
        "later-1",
        "later-2",
    ]


def test_an_urgent_call_overtakes_a_queue_of_later_ones(pool: Pool) -> None:
    release, _ = blocker(pool)
    ran: list[str] = []
    later = [pool.submit(ran.append, f"later-{i}") for i in range(20)]
    urgent = pool.submit(ran.append, "transcript", priority=Priority.TRANSCRIPT)
    release.set()
    urgent.result(WAIT)
    for future in later:
        future.result(WAIT)
    assert ran[0] == "transcript" and len(ran) == 21


def test_a_vad_hop_never_waits_behind_busy_workers() -> None:
    pool = Pool(2)
    try:
        held = [blocker(pool, Priority.TRANSCRIPT) for _ in range(2)]  # both workers busy
        queued = [pool.submit(time.sleep, 0, priority=Priority.TRANSCRIPT) for _ in range(3)]
        hop = pool.submit(lambda: threading.current_thread().name, priority=Priority.VAD)
        assert hop.result(WAIT).endswith("-vad")  # the express lane took it
        assert not any(f.done() for f in queued)
        for release, _ in held:
            release.set()
        for future in queued:
            future.result(WAIT)
    finally:
        pool.shutdown()


def test_the_express_lane_takes_only_vad_hops() -> None:
    pool = Pool(1)
    try:
        release, _ = blocker(pool)
        ran = threading.Event()
        waiting = pool.submit(ran.set, priority=Priority.TRANSCRIPT)
        pool.submit(time.sleep, 0, priority=Priority.VAD).result(WAIT)  # the lane is awake
        assert not ran.is_set() and not waiting.done()
        release.set()
        waiting.result(WAIT)
        assert ran.is_set()
    finally:
        pool.shutdown()


def test_a_cancelled_queued_call_never_runs(pool: Pool) -> None:
    release, _ = blocker(pool)
    ran: list[str] = []
    dropped = pool.submit(ran.append, "dropped", priority=Priority.TRANSCRIPT)
    kept = pool.submit(ran.append, "kept")
    assert dropped.cancel()
    release.set()
    kept.result(WAIT)
    assert ran == ["kept"]
    with pytest.raises(CancelledError):
        dropped.result(0)


async def test_cancelling_the_await_drops_a_queued_call(pool: Pool) -> None:
    release, _ = blocker(pool)
    ran: list[str] = []
    waiter = asyncio.ensure_future(pool.run(ran.append, "dropped", priority=Priority.TRANSCRIPT))
    await asyncio.sleep(0)  # the call is queued
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    after = asyncio.ensure_future(pool.run(ran.append, "after"))
    release.set()
    await asyncio.wait_for(after, WAIT)
    assert ran == ["after"]


async def test_a_running_call_finishes_and_its_result_is_discarded(pool: Pool) -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def work() -> str:
        started.set()
        assert release.wait(WAIT)
        finished.set()
        return "done"

    waiter = asyncio.ensure_future(pool.run(work, priority=Priority.TRANSCRIPT))
    assert await asyncio.to_thread(started.wait, WAIT)
    waiter.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert await asyncio.to_thread(finished.wait, WAIT)
    assert await pool.run(str, 7) == "7"  # the worker is free again


async def test_results_and_exceptions_are_delivered(pool: Pool) -> None:
    assert await pool.run(divmod, 17, 5, priority=Priority.FIRST_AUDIO) == (3, 2)

    def fail() -> None:
        raise KeyError("no such voice")

    with pytest.raises(KeyError, match="no such voice"):
        await pool.run(fail)
    assert await pool.run(sum, [1, 2]) == 3  # a failure does not kill the worker


async def test_the_process_pool_runs_and_calls() -> None:
    assert await compute.run(max, 3, 9, priority=Priority.TRANSCRIPT) == 9
    assert compute.call(min, 3, 9) == 3
    assert compute.call(compute.call, abs, -4) == 4  # a worker calling in runs it at once


@pytest.mark.parametrize("size", [1, 3])
def test_the_pool_runs_as_many_calls_at_once_as_its_size(size: int) -> None:
    pool = Pool(size, express=False)
    try:
        held = [blocker(pool) for _ in range(size)]  # each returns once its call is running
        extra = threading.Event()
        late = pool.submit(extra.set, priority=Priority.TRANSCRIPT)
        assert not extra.wait(0.2) and not late.done()  # no worker left for it
        held[0][0].set()
        late.result(WAIT)
        for release, _ in held[1:]:
            release.set()
        assert sum(t.name.startswith("voicekit-inference") for t in threading.enumerate()) >= size
    finally:
        pool.shutdown()


def test_workers_and_model_threads_honour_the_environment(monkeypatch: Any) -> None:
    monkeypatch.setenv(compute.THREADS_ENV, "3")
    monkeypatch.delenv(compute.MODEL_THREADS_ENV, raising=False)
    assert compute.workers() == 3
    assert compute.model_threads() == max(1, compute.cores() // 3)
    monkeypatch.setenv(compute.MODEL_THREADS_ENV, "2")
    assert compute.model_threads() == 2
    monkeypatch.delenv(compute.THREADS_ENV)
    monkeypatch.delenv(compute.MODEL_THREADS_ENV)
    assert compute.workers() == min(compute.cores(), 8)
    assert compute.model_threads() == max(1, compute.cores() // compute.workers())


@pytest.mark.parametrize("bad", ["0", "-2", "two", "1.5"])
def test_a_bad_setting_is_a_config_error_naming_it(monkeypatch: Any, bad: str) -> None:
    monkeypatch.setenv(compute.THREADS_ENV, bad)
    with pytest.raises(ConfigError, match=compute.THREADS_ENV):
        compute.workers()
    with pytest.raises(ConfigError, match="size"):
        Pool(0)


def test_the_process_pool_has_the_configured_size() -> None:
    code = (
        "import asyncio, threading\n"
        "from voicekit import _compute as c\n"
        "asyncio.run(c.run(abs, -1))\n"
        "names = sorted(t.name for t in threading.enumerate() if t.name.startswith('voicekit'))\n"
        "print(len(names), all(t.daemon for t in threading.enumerate() if t.name in names))\n"
    )
    env = {**os.environ, compute.THREADS_ENV: "3"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["4", "True"]  # 3 workers and the express lane, all daemons


def test_exit_waits_for_a_running_call_and_drops_the_queued_ones() -> None:
    code = (
        "import time\n"
        "from voicekit import _compute as c\n"
        "def slow():\n"
        "    time.sleep(0.5)\n"
        "    print('finished', flush=True)\n"
        "c._default_pool().submit(slow)\n"
        "c._default_pool().submit(print, 'queued ran')\n"
        "time.sleep(0.1)\n"  # slow() is running
        "print('leaving', flush=True)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, compute.THREADS_ENV: "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["leaving", "finished"]  # waited for it; the queued one dropped


def test_a_call_that_never_returns_does_not_keep_the_interpreter_alive() -> None:
    code = (
        "import threading, time\n"
        "from voicekit import _compute as c\n"
        "c.EXIT_GRACE = 0.5\n"
        "c._default_pool().submit(threading.Event().wait)\n"
        "time.sleep(0.1)\n"
        "print('leaving', flush=True)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, compute.THREADS_ENV: "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr  # it exited: no TimeoutExpired after 60 s
    assert out.stdout.split() == ["leaving"]


def test_a_shut_down_pool_drops_its_queue_and_refuses_work() -> None:
    pool = Pool(1)
    release, held = blocker(pool)
    queued = pool.submit(time.sleep, 0)
    pool.shutdown()
    assert queued.cancelled()
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(time.sleep, 0)
    release.set()
    assert held.result(WAIT) == "held"  # the running call was left to finish
