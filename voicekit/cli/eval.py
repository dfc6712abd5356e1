"""``voicekit eval PATHS...``: play scenario files and recorded calls through the agent, check
every expectation, and write the results (JSONL, JUnit XML, an HTML report).

PATHS are scenario files (YAML or JSON, see ``docs/eval-scenarios.md``), recordings (a ``.txt``
beside one is its reference transcript) and folders of either. The agent is the one the voice
commands build from ``--llm --stt --tts --voice --system`` (``--tts tones`` for a fast run that
checks what the agent says, not how), or ``--agent module:function``, a factory of your own.
Conversations run on ``--workers`` processes (default: one per core; 0: in this process) or on
Ray (``--ray local|auto|ADDRESS``), and each result is written as it finishes. A summary goes
to stdout; the progress bar to stderr, on a terminal (``--progress always`` elsewhere too).
The exit code is 0 when every conversation passed, 1 when one failed, 2 for bad options or
scenario files.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from .._compute import cores
from .._errors import ConfigError
from ..eval._agents import AgentSpec, add_turns_option, flags_parser
from ..eval._checks import percentile
from ..eval._judge import JudgeSpec
from ..eval._recordings import expand_inputs
from ..eval._result import ScenarioResult, read_jsonl, write_junit
from ..eval._runner import evaluate
from ._agent import add_agent_options

__all__ = ["add_parser", "agent_flags", "run", "summary"]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="play scenario files and recorded calls through the agent; check, report",
        description=(
            "Play scenario files (YAML/JSON) and recorded calls through the voice agent, check "
            "every expectation and write the results. A folder stands for its scenario files, "
            "or, without any, for its recordings."
        ),
    )
    parser.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH",
        help="scenario files, recordings (.wav …; a .txt beside is the reference), folders",
    )  # fmt: skip
    add_agent_options(parser)
    add_turns_option(parser)
    group = parser.add_argument_group("running")
    group.add_argument(
        "--agent",
        metavar="MODULE:FUNCTION",
        help="a factory of your own that returns the agent (called per conversation with the "
        "keywords it accepts among session, seed, first_message, scenario) (default: the "
        "agent the options above build)",
    )
    group.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes, one conversation each at a time; 0 runs them in this process "
        f"(default: one per core, {cores()} here)",
    )
    group.add_argument(
        "--ray",
        metavar="WHERE",
        help="run on Ray instead: 'local' (start one here with --workers CPUs), 'auto' (the "
        "running cluster) or a cluster address (pip install 'voicekit[ray]')",
    )
    group.add_argument(
        "--seed", type=int, default=0, metavar="N",
        help="mixed into every conversation's seed (default: %(default)s)",
    )  # fmt: skip
    group.add_argument(
        "--realtime",
        action="store_true",
        help="play recordings at their pace, as a live caller would (default: as fast as the "
        "agent takes them)",
    )
    group.add_argument(
        "--time-limit", type=float, default=60.0, metavar="S",
        help="seconds each recording's conversation may take (default: %(default)s)",
    )  # fmt: skip
    group.add_argument(
        "--label", action="append", metavar="KEY=VALUE",
        help="a label kept in every result, e.g. --label turns=smart (repeatable)",
    )  # fmt: skip
    group.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="the progress bar on stderr: on a terminal only, always, never (default: auto)",
    )
    judge = parser.add_argument_group("judge")
    judge.add_argument(
        "--judge", metavar="LLM",
        help="the LLM that grades the scenarios that have a rubric: a preset, NAME:MODEL or a "
        "base URL (default: none; scenarios with a rubric then need --no-judge)",
    )  # fmt: skip
    judge.add_argument("--judge-model", metavar="MODEL", help="the judge's model")
    judge.add_argument(
        "--judge-api-key-env", metavar="VAR", help="the variable holding the judge's API key"
    )
    judge.add_argument(
        "--no-judge", action="store_true", help="do not grade rubrics (string rules only)"
    )
    out = parser.add_argument_group("results")
    out.add_argument("--jsonl", type=Path, metavar="FILE", help="one JSON result per line")
    out.add_argument("--junit", type=Path, metavar="FILE", help="JUnit XML, for CI")
    out.add_argument("--report", type=Path, metavar="FILE", help="one self-contained HTML report")
    out.add_argument(
        "--baseline", type=Path, metavar="FILE",
        help="the JSONL results of an earlier run to compare with",
    )  # fmt: skip
    parser.set_defaults(func=run)


def agent_flags(args: argparse.Namespace) -> tuple[str, ...]:
    """The agent options given on the command line, as flags a worker parses again."""
    flags: list[str] = []
    for action in flags_parser()._actions:
        if not action.option_strings:
            continue
        value = getattr(args, action.dest, None)
        if value is not None:
            flags += [action.option_strings[0], str(value)]
    return tuple(flags)


def _labels(pairs: Sequence[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--label {pair!r}: give KEY=VALUE")
        labels[key.strip()] = value.strip()
    return labels


def _percentiles(values: Sequence[float]) -> str:
    if not values:
        return "no reply audio was timed"
    return (
        f"median {statistics.median(values):.2f} s, p90 {percentile(values, 90):.2f} s "
        f"({len(values)} turns)"
    )


def summary(
    results: Sequence[ScenarioResult],
    seconds: float,
    *,
    baseline: Sequence[ScenarioResult] | None = None,
) -> str:
    """What a run gave, as text: the failures with why, the counts, the latency, the pace."""
    lines = []
    for result in sorted(results, key=lambda r: (r.passed, r.scenario)):
        if result.passed:
            continue
        word = "ERROR" if result.error is not None else "FAIL "
        lines.append(f"{word} {result.scenario}  ({result.source})")
        lines += ["      " + line for line in result.why().splitlines()]
    passed = sum(r.passed for r in results)
    errors = sum(r.error is not None for r in results)
    pace = len(results) / seconds * 60 if seconds > 0 else 0.0
    lines.append(
        f"passed {passed} of {len(results)}, {errors} crashed · {seconds:.1f} s · "
        f"{pace:.1f} conversations/min"
    )
    audio = [
        t.latencies["first_audio"] for r in results for t in r.turns if "first_audio" in t.latencies
    ]
    lines.append(f"first reply audio after the user's turn: {_percentiles(audio)}")
    wers = [r.wer for r in results if r.wer is not None]
    if wers:
        mean = statistics.fmean(wers)
        lines.append(f"WER of what the agent heard: mean {mean:.3f} ({len(wers)} calls)")
    if baseline is not None:
        from ..eval._report import compare

        lines.append("against the baseline: " + compare(results, baseline).describe())
    return "\n".join(lines)


def _progress(total: int, mode: str, stream: TextIO) -> Any:
    from tqdm import tqdm

    show = mode == "always" or (mode == "auto" and stream.isatty())
    return tqdm(total=total, file=stream, disable=not show, unit="conv", dynamic_ncols=True)


def _write_report(path: Path, results: list[ScenarioResult], baseline: Any) -> None:
    from ..eval._report import write_report

    write_report(results, path, baseline=baseline)


def run(args: argparse.Namespace) -> int:
    try:
        spec = AgentSpec(agent_flags(args), args.agent)
        scenarios = expand_inputs(args.paths, realtime=args.realtime, time_limit=args.time_limit)
        labels = {"agent": spec.describe(), **_labels(args.label or ())}
        baseline = read_jsonl(args.baseline) if args.baseline is not None else None
        workers = cores() if args.workers is None else args.workers
        if workers < 0:
            raise ConfigError(f"--workers must be 0 or more, got {workers}")
        judge = None
        rubrics = [s.name for s in scenarios if s.judge is not None]
        if args.judge and not args.no_judge:
            judge = JudgeSpec(args.judge, args.judge_model, args.judge_api_key_env)
        elif rubrics and not args.no_judge:
            raise ConfigError(
                f"{len(rubrics)} scenario(s) have a judge rubric ({', '.join(rubrics[:3])}"
                f"{', …' if len(rubrics) > 3 else ''}): give the judge's LLM with --judge, or "
                "--no-judge to check the string rules only"
            )
    except ValueError as exc:  # ConfigError, ScenarioError, ResultError
        print(f"voicekit eval: {exc}", file=sys.stderr)
        return 2
    where = f"Ray ({args.ray})" if args.ray else (
        "this process" if workers == 0 else f"{workers} worker process{'es' * (workers != 1)}"
    )
    print(f"voicekit eval: {len(scenarios)} conversations on {where}; agent: {spec.describe()}")
    results: list[ScenarioResult] = []
    began = time.perf_counter()
    jsonl = args.jsonl.open("w", encoding="utf-8") if args.jsonl is not None else None
    bar = _progress(len(scenarios), args.progress, sys.stderr)
    stopped = False
    try:
        for result in evaluate(
            scenarios, spec, workers=workers, ray=args.ray, judge=judge, seed=args.seed,
            labels=labels,
        ):  # fmt: skip
            results.append(result)
            if jsonl is not None:
                jsonl.write(result.to_json() + "\n")
                jsonl.flush()
            bar.set_postfix_str(f"{sum(not r.passed for r in results)} failed", refresh=False)
            bar.update(1)
    except KeyboardInterrupt:
        stopped = True
    except ValueError as exc:
        bar.close()
        print(f"voicekit eval: {exc}", file=sys.stderr)
        return 2
    finally:
        bar.close()
        if jsonl is not None:
            jsonl.close()
    seconds = time.perf_counter() - began
    order = {s.name: k for k, s in enumerate(scenarios)}
    results.sort(key=lambda r: order.get(r.scenario, len(order)))
    print(summary(results, seconds, baseline=baseline))
    if stopped:
        print(f"stopped: {len(results)} of {len(scenarios)} conversations finished")
    if args.junit is not None:
        write_junit(results, args.junit)
    if args.report is not None:
        _write_report(args.report, results, baseline)
    for path in (args.jsonl, args.junit, args.report):
        if path is not None:
            print(f"wrote {path}")
    if stopped:
        return 130
    return 0 if results and all(r.passed for r in results) else 1
