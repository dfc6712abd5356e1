"""Evaluate an agent over many conversations: results, JSONL and JUnit files, the HTML report.

Each conversation gives a :class:`ScenarioResult` (a frozen value with its JSON); a run is a
JSONL file of them (:func:`write_jsonl`, :func:`read_jsonl`), a JUnit XML file for CI
(:func:`write_junit`) and one self-contained HTML report (:func:`write_report`).
"""

from __future__ import annotations

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

__all__ = [
    "FORMAT",
    "Check",
    "Comparison",
    "JudgeVerdict",
    "LatencyStats",
    "Line",
    "ReplyFailure",
    "ResultError",
    "ScenarioResult",
    "StatusChange",
    "ToolUse",
    "TurnResult",
    "compare",
    "html_report",
    "junit_xml",
    "latencies",
    "latency_stats",
    "read_jsonl",
    "steps",
    "write_jsonl",
    "write_junit",
    "write_report",
]
