"""Conversations per minute for the sample suite: 1 and 2 worker processes, and Ray local mode.

    python bench/eval_throughput.py                     # the offline agent: Piper, Whisper
    python bench/eval_throughput.py --tts tones --repeat 4

The sample suite (``evals/sample``, 12 scenarios against the offline agent) is run ``--repeat``
times over (each copy its own conversation) on each backend, in one process, one after another.
For each: the wall time, the time to the first result (worker start-up and model loading), the
pace over the whole run and once every worker had given its first result (warm), and the
ratios to one worker. Every conversation must pass (else the figures mean nothing: it says so).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

from voicekit._compute import cores
from voicekit.eval._agents import AgentSpec
from voicekit.eval._recordings import expand_inputs
from voicekit.eval._runner import evaluate
from voicekit.eval._scenario import Scenario

SAMPLE = Path(__file__).resolve().parent.parent / "evals" / "sample"


def copies(scenarios: list[Scenario], repeat: int) -> list[Scenario]:
    return [
        dataclasses.replace(s, name=f"{s.name} #{r}") if r else s
        for r in range(repeat)
        for s in scenarios
    ]


def measure(label: str, scenarios: list[Scenario], agent: AgentSpec, **how: object) -> dict:
    began = time.perf_counter()
    arrivals: list[float] = []
    failed = []
    for result in evaluate(scenarios, agent, **how):  # type: ignore[arg-type]
        arrivals.append(time.perf_counter() - began)
        if not result.passed:
            failed.append(f"{result.scenario}: {result.why()}")
    total = arrivals[-1]
    workers = int(how.get("workers") or 1)
    warm_from = arrivals[min(workers, len(arrivals)) - 1]
    warm_count = len(arrivals) - min(workers, len(arrivals))
    warm = warm_count / (total - warm_from) * 60 if total > warm_from else float("nan")
    walls = [a - b for a, b in zip(arrivals[1:], arrivals[:-1], strict=False)]
    return {
        "label": label,
        "n": len(arrivals),
        "total": total,
        "first": arrivals[0],
        "cpm": len(arrivals) / total * 60,
        "warm": warm,
        "gap": statistics.median(walls) if walls else float("nan"),
        "failed": failed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="copies of the suite (default 2)")
    parser.add_argument("--tts", default=None, help="the agent's --tts (default: piper)")
    parser.add_argument("--skip-ray", action="store_true", help="processes only")
    parser.add_argument(
        "--ray-first", action="store_true", help="run Ray first (to see the effect of order)"
    )
    args = parser.parse_args()
    flags = ("--llm", "local") + (("--tts", args.tts) if args.tts else ())
    agent = AgentSpec(flags)
    scenarios = copies(expand_inputs([SAMPLE]), args.repeat)
    load = os.getloadavg()[0]
    print(f"{len(scenarios)} conversations ({len(scenarios) // args.repeat} scenarios x "
          f"{args.repeat}), agent: {agent.describe()}; {cores()} cores, load {load:.1f}")
    def on_ray() -> dict:
        import ray

        began = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        print(f"ray.init (local, 2 CPUs): {time.perf_counter() - began:.1f} s")
        try:
            return measure("Ray local, 2 CPUs", scenarios, agent, ray="local", workers=2)
        finally:
            ray.shutdown()

    rows = [on_ray()] if args.ray_first and not args.skip_ray else []
    rows += [
        measure("1 worker process", scenarios, agent, workers=1),
        measure("2 worker processes", scenarios, agent, workers=2),
    ]
    if not args.ray_first and not args.skip_ray:
        rows.append(on_ray())
    rows.sort(key=lambda row: ["1 worker process", "2 worker processes"].index(row["label"])
              if row["label"] != "Ray local, 2 CPUs" else 2)  # fmt: skip
    base = rows[0]
    print(f"\n{'backend':<22}{'wall':>8}{'1st result':>12}{'conv/min':>10}{'warm':>8}"
          f"{'ratio':>7}{'warm ratio':>12}")
    for row in rows:
        ratio, warm_ratio = row["cpm"] / base["cpm"], row["warm"] / base["warm"]
        print(f"{row['label']:<22}{row['total']:7.1f}s{row['first']:11.1f}s{row['cpm']:10.1f}"
              f"{row['warm']:8.1f}{ratio:7.2f}{warm_ratio:12.2f}")
    bad = [f for row in rows for f in row["failed"]]
    if bad:
        print(f"\n{len(bad)} conversations failed — the figures above are not comparable:")
        print("\n".join(bad[:10]))
        return 1
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
