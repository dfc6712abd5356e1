"""Evaluate an agent over many conversations: scenarios, runs, results, the HTML report.

A :class:`Scenario` (from a YAML or JSON file, :func:`load_scenarios`; or a recorded call,
:func:`recording_scenario`) scripts the caller and says what the agent must do (see
``docs/eval-scenarios.md``). :func:`evaluate` plays each through the agent an :class:`AgentSpec`
describes — here, on worker processes or on Ray — and yields the results as they finish.
Each conversation gives a :class:`ScenarioResult` (a frozen value with its JSON); a run is a
JSONL file of them (:func:`write_jsonl`, :func:`read_jsonl`), a JUnit XML file for CI
(:func:`write_junit`) and one self-contained HTML report (:func:`write_report`).
"""

from __future__ import annotations

from .._metrics import MILESTONES
from ._agents import AgentSpec
from ._judge import JudgeSpec
from ._recordings import expand_inputs, recording_scenario
from ._report import (
    Comparison,
    LatencyStats,
    StatusChange,
    compare,
    html_report,
    latency_stats,
    write_report,
)
from ._result import (
    FORMAT,
    Check,
    JudgeVerdict,
    Line,
    ReplyFailure,
    ResultError,
    ScenarioResult,
    ToolUse,
    TurnResult,
    junit_xml,
    latencies,
    read_jsonl,
    steps,
    write_jsonl,
    write_junit,
)
from ._runner import evaluate
from ._scenario import (
    Expect,
    IdlePolicy,
    Judge,
    LatencyBound,
    Scenario,
    ScenarioError,
    ToolExpectation,
    Turn,
    load_scenarios,
    parse_scenario,
)

__all__ = [
    "FORMAT",
    "MILESTONES",
    "AgentSpec",
    "Check",
    "Comparison",
    "Expect",
    "IdlePolicy",
    "Judge",
    "JudgeSpec",
    "JudgeVerdict",
    "LatencyBound",
    "LatencyStats",
    "Line",
    "ReplyFailure",
    "ResultError",
    "Scenario",
    "ScenarioError",
    "ScenarioResult",
    "StatusChange",
    "ToolExpectation",
    "ToolUse",
    "Turn",
    "TurnResult",
    "compare",
    "evaluate",
    "expand_inputs",
    "html_report",
    "junit_xml",
    "latencies",
    "latency_stats",
    "load_scenarios",
    "parse_scenario",
    "read_jsonl",
    "recording_scenario",
    "steps",
    "write_jsonl",
    "write_junit",
    "write_report",
]
