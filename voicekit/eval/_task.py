"""One conversation as one task: a picklable :class:`Task` in, a
:class:`~voicekit.eval.ScenarioResult` out — the same function in this process, in a worker
process and in a Ray worker.

:func:`run_task` never raises for what happens inside the conversation: a crash (the script
could not be played, the time limit passed, the agent raised) is the result's ``error``. Only a
lost worker (the process died) makes a task fail, and the runner then runs it again once.

The conversation is deterministic where the agent is: Python's and numpy's random generators
are seeded with the task's seed, the agent's LLM server gets it in its requests (``seed``), a
factory gets it as ``seed=``, and the Session's call id is made from it.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from ..cli._latency import LatencyProbe
from ..conversation import run_conversation
from ._agents import AgentSpec, build, pipeline_for, prepare
from ._judge import JudgeSpec, grade, judge_endpoint
from ._play import read_conversation, script_of
from ._result import JudgeVerdict, Line, ScenarioResult, ToolUse
from ._scenario import Scenario

__all__ = ["WORKER_ENV", "Task", "run_task", "run_task_async", "worker_setup"]

WORKER_ENV = {
    "VOICEKIT_INFERENCE_THREADS": "1",
    "VOICEKIT_MODEL_THREADS": "1",
    "OMP_NUM_THREADS": "1",
}
"""A worker runs one inference at a time with one thread per model: N workers on N cores do
not oversubscribe them. A value already set in the environment is kept."""


@dataclass(frozen=True, slots=True)
class Task:
    """One conversation to run: the scenario, the agent, the judge, the seed, which attempt."""

    scenario: Scenario
    agent: AgentSpec
    seed: int
    judge: JudgeSpec | None = None
    attempt: int = 1
    labels: Mapping[str, str] = field(default_factory=dict)


def worker_setup() -> None:
    """Make this process a worker: one inference thread, one thread per model (see
    :data:`WORKER_ENV`). Called before the first conversation in a worker process."""
    for name, value in WORKER_ENV.items():
        os.environ.setdefault(name, value)


def _crashed(task: Task, exc: BaseException, began: float) -> ScenarioResult:
    text = str(exc).strip()
    return ScenarioResult(
        task.scenario.name,
        task.scenario.source,
        error=f"{type(exc).__name__}: {text}" if text else type(exc).__name__,
        attempts=task.attempt,
        wall_time=round(time.perf_counter() - began, 6),
        seed=task.seed,
        labels=dict(task.labels),
    )


async def run_task_async(task: Task) -> ScenarioResult:
    """Play ``task``'s scenario and check it (see the module documentation)."""
    scenario = task.scenario
    random.seed(task.seed)
    np.random.seed(task.seed % 2**32)
    began = time.perf_counter()
    try:
        built = await build(task.agent)
        await prepare(built, scenario)
        began = time.perf_counter()  # the models' loading is not the conversation's time
        probe = LatencyProbe()
        pipeline = pipeline_for(built, scenario, seed=task.seed, probe=probe)
        conversation = await run_conversation(
            pipeline, script_of(scenario), time_limit=scenario.time_limit
        )
    except Exception as exc:
        return _crashed(task, exc, began)
    wall_time = time.perf_counter() - began
    judge = None
    if task.judge is not None and scenario.judge is not None:
        spec, rubric = task.judge, scenario.judge

        async def judge(lines: list[Line], tools: list[ToolUse]) -> JudgeVerdict | str:
            try:
                endpoint = await judge_endpoint(spec, seed=task.seed)
            except Exception as exc:
                return f"the judge could not be reached: {type(exc).__name__}: {exc}"
            return await grade(endpoint, rubric, lines, tools)

    try:
        result = await read_conversation(
            scenario,
            conversation,
            probe.turns,
            wall_time=wall_time,
            seed=task.seed,
            labels=dict(task.labels),
            judge=judge,
        )
    except Exception as exc:
        return _crashed(task, exc, began)
    return replace(result, attempts=task.attempt) if task.attempt != 1 else result


def run_task(task: Task) -> ScenarioResult:
    """:func:`run_task_async` in an event loop of its own (what a worker runs)."""
    return asyncio.run(run_task_async(task))


def run_task_in_worker(task: Task) -> ScenarioResult:
    """:func:`worker_setup`, then :func:`run_task` (what a Ray task runs)."""
    worker_setup()
    return run_task(task)
