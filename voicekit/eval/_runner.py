"""Running many conversations: here, on worker processes, or on Ray — one code path.

:func:`evaluate` makes one :class:`~voicekit.eval._task.Task` per scenario and yields each
:class:`~voicekit.eval.ScenarioResult` as soon as its conversation has finished (so a progress
bar moves and a JSONL file grows while the run goes on). Every backend runs the same
function, :func:`~voicekit.eval._task.run_task`, on the same picklable task:

* ``workers=0``: one after another in this process;
* ``workers=N``: N worker processes (``concurrent.futures.ProcessPoolExecutor``, *spawn*),
  each with one inference thread and one thread per model, so N workers use about N cores;
* ``ray="auto"`` (a running cluster), ``ray="ADDRESS"``, or ``ray="local"`` (start one here,
  with ``workers`` CPUs): one Ray task per conversation (``num_cpus=1``). If Ray is already
  initialised in this process, that connection is used.

A worker that dies (the process crashed, was killed, ran out of memory) loses the
conversations it was running. Each is run again once: on Ray, where each task fails alone,
straight away; on a process pool, whose every running task fails when one worker dies, the
conversations that were running are run again one at a time, so a conversation that kills its
worker again is the one reported (``error``, ``attempts=2``) and the others are not blamed.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from typing import Any

from .._errors import ConfigError
from ._agents import AgentSpec
from ._judge import JudgeSpec
from ._result import ScenarioResult
from ._scenario import Scenario
from ._task import WORKER_ENV, Task, run_task, run_task_in_worker, worker_setup

__all__ = ["MAX_ATTEMPTS", "evaluate", "tasks_for"]

MAX_ATTEMPTS = 2
"""A conversation whose worker died is run again once."""


def tasks_for(
    scenarios: Iterable[Scenario],
    agent: AgentSpec,
    *,
    judge: JudgeSpec | None = None,
    seed: int = 0,
    labels: Mapping[str, str] | None = None,
) -> list[Task]:
    """One task per scenario; its seed is the scenario's, mixed with the run's ``seed``.

    >>> from voicekit.eval._scenario import parse_scenario
    >>> s = parse_scenario({"seed": 5, "turns": [{"say": "hi"}]}, "a.json")
    >>> [t.seed for t in tasks_for([s], AgentSpec(("--llm", "local")), seed=0)]
    [5]
    """
    return [
        Task(s, agent, (s.seed + seed * 1_000_003) % 2**32, judge, 1, dict(labels or {}))
        for s in scenarios
    ]


def _lost(task: Task, why: str) -> ScenarioResult:
    """The result of a conversation whose worker died on every attempt."""
    return ScenarioResult(
        task.scenario.name,
        task.scenario.source,
        error=f"WorkerLost: {why} (tried {task.attempt} times)",
        attempts=task.attempt,
        seed=task.seed,
        labels=dict(task.labels),
    )


def _again(task: Task) -> Task:
    return replace(task, attempt=task.attempt + 1)


def _here(tasks: Sequence[Task]) -> Iterator[ScenarioResult]:
    for task in tasks:
        yield run_task(task)


def _new_pool(workers: int) -> cf.ProcessPoolExecutor:
    return cf.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=worker_setup,
    )


@contextlib.contextmanager
def _worker_environment() -> Iterator[None]:
    """:data:`WORKER_ENV` in this process's environment while workers are spawned, so that a
    worker starts with it (libraries that read it when they load, such as OpenBLAS through
    numpy, see it too); put back afterwards."""
    added = {k: v for k, v in WORKER_ENV.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _processes(tasks: Sequence[Task], workers: int) -> Iterator[ScenarioResult]:
    """On ``workers`` processes, at most ``workers`` conversations in flight (so those that a
    dying worker takes down are known), the suspects of a crash run again one at a time."""
    with _worker_environment():
        yield from _pool_run(tasks, workers)


def _pool_run(tasks: Sequence[Task], workers: int) -> Iterator[ScenarioResult]:
    queue: deque[Task] = deque(tasks)
    solo: deque[Task] = deque()  # run again after a crash, one at a time
    pool = _new_pool(workers)
    running: dict[cf.Future[ScenarioResult], Task] = {}
    try:
        while queue or solo or running:
            limit = 1 if solo else workers
            source = solo if solo else queue
            while source and len(running) < limit:
                task = source.popleft()
                running[pool.submit(run_task, task)] = task
            done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            broken = False
            for future in done:
                task = running.pop(future)
                try:
                    yield future.result()
                except BrokenProcessPool:
                    broken = True
                    if task.attempt >= MAX_ATTEMPTS:
                        yield _lost(task, "its worker process died")
                    else:
                        solo.append(_again(task))
            if broken:
                # every conversation still in flight went down with the pool
                for future, task in list(running.items()):
                    del running[future]
                    if future.done() and future.exception() is None:
                        yield future.result()
                    elif task.attempt >= MAX_ATTEMPTS:
                        yield _lost(task, "its worker process died")
                    else:
                        solo.append(_again(task))
                pool.shutdown(wait=True, cancel_futures=True)
                pool = _new_pool(workers)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _ray_connect(address: str, workers: int) -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("--ray needs Ray: pip install 'voicekit[ray]'") from exc
    if not ray.is_initialized():
        if address == "local":
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    return ray


def _on_ray(tasks: Sequence[Task], address: str, workers: int) -> Iterator[ScenarioResult]:
    """One Ray task per conversation; a lost one is submitted again once."""
    ray = _ray_connect(address, workers)
    remote = ray.remote(num_cpus=1, max_retries=0)(run_task_in_worker)
    pending = {remote.remote(task): task for task in tasks}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                task = pending.pop(ref)
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayError as exc:
                    if task.attempt >= MAX_ATTEMPTS:
                        why = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                        yield _lost(task, f"its Ray worker failed: {type(exc).__name__}: {why}")
                    else:
                        again = _again(task)
                        pending[remote.remote(again)] = again
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)


def evaluate(
    scenarios: Iterable[Scenario],
    agent: AgentSpec,
    *,
    workers: int = 0,
    ray: str | None = None,
    judge: JudgeSpec | None = None,
    seed: int = 0,
    labels: Mapping[str, str] | None = None,
) -> Iterator[ScenarioResult]:
    """Play every scenario with the agent of ``agent``; yield the results as they finish.

    ``workers``: 0 runs here, one at a time; N > 0 on N worker processes (or, with ``ray``,
    the CPUs of a local Ray). ``ray``: ``"local"``, ``"auto"`` or a cluster address. ``judge``:
    the LLM that grades the scenarios with a rubric (without it, rubrics are not graded).
    ``seed``: mixed into every conversation's seed. ``labels``: strings kept in each result.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"workers must be a whole number ≥ 0, got {workers!r}")
    tasks = tasks_for(scenarios, agent, judge=judge, seed=seed, labels=labels)
    if ray is not None:
        from .._compute import cores

        return _on_ray(tasks, ray, workers or cores())
    if workers == 0:
        return _here(tasks)
    return _processes(tasks, workers)
