"""The same conversations on Ray in local mode (two CPUs): the same results as in this process,
through the same task function; a lost Ray worker costs one retry, then the conversation is
reported; ``voicekit eval --ray`` runs the sample suite with the results of a local run.

One Ray for the module (starting it takes seconds); the tests are few and small."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from voicekit.cli import main
from voicekit.eval._agents import AgentSpec
from voicekit.eval._result import read_jsonl
from voicekit.eval._runner import evaluate
from voicekit.eval._scenario import Scenario, load_scenarios

TESTS = Path(__file__).parent
SAMPLE = TESTS.parent / "evals" / "sample"


@pytest.fixture(scope="module")
def ray_local():
    import ray

    began = time.perf_counter()
    path = os.pathsep.join(p for p in [str(TESTS), os.environ.get("PYTHONPATH", "")] if p)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},  # the factories of test_eval_agents
    )
    print(f"\nray.init: {time.perf_counter() - began:.1f} s")
    yield ray
    ray.shutdown()


def numbers(folder: Path, *extra: str) -> list[Scenario]:
    lines = ["scenarios:"]
    lines += [f"  - {{name: n{k}, turns: [{{say: 'number {k}?'}}]}}" for k in range(4)]
    lines += [f"  - {item}" for item in extra]
    path = folder / "numbers.yaml"
    path.write_text("\n".join(lines) + "\n")
    return load_scenarios(path)


def test_ray_gives_the_results_of_this_process(ray_local, tmp_path):
    scenarios = numbers(tmp_path)
    agent = AgentSpec(factory="test_eval_agents:lucky_number")
    here = {r.scenario: r for r in evaluate(scenarios, agent)}
    began = time.perf_counter()
    there = list(evaluate(scenarios, agent, ray="local"))
    print(f"4 conversations on Ray: {time.perf_counter() - began:.1f} s")
    assert sorted(r.scenario for r in there) == sorted(here)
    for result in there:
        twin = here[result.scenario]
        assert result.passed and result.attempts == 1, result.why()
        assert (result.turns[0].reply, result.seed) == (twin.turns[0].reply, twin.seed)


def test_a_lost_ray_worker_costs_one_retry(ray_local, tmp_path):
    me = os.getpid()
    marker = tmp_path / "crashed-once"
    scenarios = numbers(
        tmp_path,
        f"{{name: dies once, description: crash-once {me} {marker}, turns: [{{say: hello}}]}}",
        f"{{name: always dies, description: crash-always {me}, turns: [{{say: hello}}]}}",
    )
    results = {r.scenario: r for r in evaluate(scenarios, AgentSpec(
        factory="test_eval_agents:crashing"), ray="local")}  # fmt: skip
    assert len(results) == 6
    dead = results["always dies"]
    assert dead.error is not None and dead.error.startswith("WorkerLost: its Ray worker failed")
    assert dead.attempts == 2
    once = results["dies once"]
    assert marker.exists() and once.passed and once.attempts == 2, once.why()
    for k in range(4):  # on Ray a task fails alone: the others ran once
        assert results[f"n{k}"].passed and results[f"n{k}"].attempts == 1


def test_the_sample_suite_on_ray_matches_a_local_run(ray_local, tmp_path, capsys):
    local, remote = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    flags = ["--llm", "local", "--tts", "tones"]
    assert main(["eval", str(SAMPLE), *flags, "--workers", "0", "--jsonl", str(local)]) == 0
    assert main(["eval", str(SAMPLE), *flags, "--ray", "local", "--jsonl", str(remote)]) == 0
    out = capsys.readouterr().out
    assert "13 conversations on Ray (local)" in out
    mine = {r.scenario: r for r in read_jsonl(local)}
    theirs = {r.scenario: r for r in read_jsonl(remote)}
    assert sorted(mine) == sorted(theirs) and len(mine) == 13
    for name, result in theirs.items():
        twin = mine[name]
        assert result.passed and twin.passed
        assert [c.expectation for _, c in result.failed_checks()] == []
        if name != "the time":  # it reads the clock
            assert [t.reply for t in result.turns if not t.interrupted] == [
                t.reply for t in twin.turns if not t.interrupted
            ]
        assert [(u.name, u.arguments) for u in result.tool_calls] == [
            (u.name, u.arguments) for u in twin.tool_calls
        ]
