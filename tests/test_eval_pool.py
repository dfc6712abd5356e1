"""Conversations on worker processes: the same results as in this process, streamed as they
finish, and a worker that dies costs one retry — the conversation that kills it again is the
one reported, the others are not blamed."""

from __future__ import annotations

import os
from pathlib import Path

from voicekit.eval._agents import AgentSpec
from voicekit.eval._runner import evaluate
from voicekit.eval._scenario import Scenario, load_scenarios


def suite(folder: Path, mention: str, *extra: str) -> list[Scenario]:
    lines = ["scenarios:"]
    for k in range(4):
        lines.append(f"  - {{name: n{k}, turns: [{{say: 'number {k}?', expect: {{mentions: "
                     f"{mention}}}}}]}}")  # fmt: skip
    lines += [f"  - {item}" for item in extra]
    path = folder / "suite.yaml"
    path.write_text("\n".join(lines) + "\n")
    return load_scenarios(path)


def test_worker_processes_give_the_results_of_this_process(tmp_path):
    scenarios = suite(tmp_path, "Your number is")
    agent = AgentSpec(factory="test_eval_agents:lucky_number")
    here = {r.scenario: r for r in evaluate(scenarios, agent)}
    there = list(evaluate(scenarios, agent, workers=2))
    assert sorted(r.scenario for r in there) == sorted(here)
    for result in there:
        assert result.passed, result.why()
        twin = here[result.scenario]
        assert (result.turns[0].reply, result.seed) == (twin.turns[0].reply, twin.seed)
        assert result.attempts == 1


def test_a_dead_worker_costs_one_retry_then_the_conversation_is_reported(tmp_path):
    me = os.getpid()
    marker = tmp_path / "crashed-once"
    scenarios = suite(
        tmp_path,
        "I heard",
        f"{{name: dies once, description: crash-once {me} {marker}, turns: [{{say: hello}}]}}",
        f"{{name: always dies, description: crash-always {me}, turns: [{{say: hello}}]}}",
    )
    results = {r.scenario: r for r in evaluate(scenarios, AgentSpec(
        factory="test_eval_agents:crashing"), workers=2)}  # fmt: skip
    assert len(results) == 6
    dead = results["always dies"]
    assert dead.error is not None and dead.error.startswith("WorkerLost: its worker process died")
    assert dead.attempts == 2 and not dead.passed
    once = results["dies once"]
    assert marker.exists() and once.passed and once.attempts == 2, once.why()
    for k in range(4):  # the others pass, whether or not they shared a pool with a crash
        assert results[f"n{k}"].passed and results[f"n{k}"].error is None
