"""What one evaluated conversation gave: a frozen value, its JSON, JSONL files of many, JUnit XML.

A :class:`ScenarioResult` holds everything a report needs about one conversation: the scenario
and its file, each expectation's outcome (:class:`Check`, per turn and per conversation), the
transcript with times, the tool calls, whether the agent ended or transferred the call, each
turn's latencies (seconds from the end of the user's speech to each milestone of
:data:`voicekit._metrics.MILESTONES`), the failed replies, the WER of what the agent heard
(recorded calls with a reference), the judge's verdict, the error if the conversation crashed,
how many attempts it took and its wall time. Whether it *passed* is derived from those, never
stored apart from them.

>>> r = ScenarioResult(
...     "weather", "evals/weather.yaml",
...     turns=[TurnResult(0, "weather in Rome?", "Foggy in Rome.",
...                       latencies={"vad_stop": 0.2, "first_audio": 0.9},
...                       checks=[Check("reply mentions 'Rome'", True)])],
...     checks=[Check("no reply failed", False, "the LLM failed: timeout")],
... )
>>> r.passed, [c.expectation for _, c in r.failed_checks()]
(False, ['no reply failed'])
>>> ScenarioResult.from_json(r.to_json()) == r
True
"""

from __future__ import annotations

import json
import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import VoicekitError
from .._frozen import FrozenDict, freeze, thaw
from .._metrics import MILESTONES, TurnMetrics

__all__ = [
    "FORMAT",
    "Check",
    "JudgeVerdict",
    "Line",
    "ReplyFailure",
    "ResultError",
    "ScenarioResult",
    "ToolUse",
    "TurnResult",
    "junit_xml",
    "latencies",
    "read_jsonl",
    "steps",
    "write_jsonl",
    "write_junit",
]

FORMAT = "voicekit.eval.result/1"
"""The ``format`` field of every result's JSON: what reads it knows what it reads."""

MILESTONE_NAMES: tuple[str, ...] = tuple(name for name, _ in MILESTONES)
ROLES = ("user", "agent")


class ResultError(VoicekitError, ValueError):
    """A result value or a results file that is not what it should be; the message names the
    file, the line and the field."""


# ---------------------------------------------------------------------------------------------
# The values


@dataclass(frozen=True, slots=True)
class Check:
    """One expectation and its outcome. ``expectation`` says what was expected ("reply
    mentions 'Rome'"), ``message`` what was found when it failed (or a detail when it passed).
    """

    expectation: str
    passed: bool
    message: str = ""

    def __post_init__(self) -> None:
        _need(isinstance(self.expectation, str) and self.expectation, "expectation",
              "a non-empty string", self.expectation)
        _need(isinstance(self.passed, bool), "passed", "true or false", self.passed)
        _need(isinstance(self.message, str), "message", "a string", self.message)


@dataclass(frozen=True, slots=True)
class Line:
    """One line of the transcript: ``role`` ``"user"`` or ``"agent"``, its ``text``, ``t`` the
    seconds since the conversation started (None if unknown), ``interrupted`` when the agent
    was cut off (``text`` is then what the caller heard)."""

    role: str
    text: str
    t: float | None = None
    interrupted: bool = False

    def __post_init__(self) -> None:
        _need(self.role in ROLES, "role", f"one of {', '.join(ROLES)}", self.role)
        _need(isinstance(self.text, str), "text", "a string", self.text)
        object.__setattr__(self, "t", _seconds_or_none(self.t, "t"))
        _need(isinstance(self.interrupted, bool), "interrupted", "true or false",
              self.interrupted)


@dataclass(frozen=True, slots=True)
class ToolUse:
    """A tool the agent called: ``name``, ``arguments`` (the parsed JSON — a mapping, frozen —
    or the raw text when the LLM's arguments were not JSON), its ``result`` text if it ran and
    the index of the ``turn`` whose reply called it.

    >>> from voicekit.events import ToolCall
    >>> ToolUse.of(ToolCall("c1", "get_weather", '{"city": "Rome"}'), turn=0).arguments["city"]
    'Rome'
    """

    name: str
    arguments: Any = field(default_factory=FrozenDict)
    result: str | None = None
    turn: int | None = None

    def __post_init__(self) -> None:
        _need(isinstance(self.name, str) and self.name, "name", "a non-empty string", self.name)
        object.__setattr__(self, "arguments", freeze(self.arguments))
        _need(self.result is None or isinstance(self.result, str), "result",
              "a string or null", self.result)
        _need(self.turn is None or _is_index(self.turn), "turn", "a turn index (0, 1, …)",
              self.turn)

    @classmethod
    def of(cls, call: Any, result: str | None = None, turn: int | None = None) -> ToolUse:
        """From a :class:`~voicekit.ToolCall` (its JSON arguments parsed when they parse)."""
        try:
            arguments = json.loads(call.arguments) if call.arguments else {}
        except json.JSONDecodeError:
            arguments = call.arguments
        return cls(call.name, arguments, result, turn)


@dataclass(frozen=True, slots=True)
class ReplyFailure:
    """A reply that failed (from :class:`~voicekit.ReplyFailed`): what failed (``source``,
    ``"llm"``, ``"tts"``), the ``error``, whether the spoken apology was played (``fallback``)
    and the index of the ``turn`` it answered (None for the first message)."""

    source: str
    error: str
    fallback: bool = False
    turn: int | None = None

    def __post_init__(self) -> None:
        _need(isinstance(self.source, str), "source", "a string", self.source)
        _need(isinstance(self.error, str), "error", "a string", self.error)
        _need(isinstance(self.fallback, bool), "fallback", "true or false", self.fallback)
        _need(self.turn is None or _is_index(self.turn), "turn", "a turn index (0, 1, …)",
              self.turn)


@dataclass(frozen=True, slots=True)
class JudgeVerdict:
    """What the judge said: a ``score`` (on the rubric's scale), its ``reason``, and whether
    that score ``passed`` the scenario's bar."""

    score: float
    reason: str
    passed: bool

    def __post_init__(self) -> None:
        _need(_is_number(self.score), "score", "a finite number", self.score)
        object.__setattr__(self, "score", float(self.score))
        _need(isinstance(self.reason, str), "reason", "a string", self.reason)
        _need(isinstance(self.passed, bool), "passed", "true or false", self.passed)


@dataclass(frozen=True, slots=True)
class TurnResult:
    """One user turn and the agent's reply: the turn's ``index`` (from 0), what the ``user``
    said (as the agent heard it), the agent's ``reply``, ``latencies`` (milestone name →
    seconds from the end of the user's speech, only those seen; see :func:`latencies`),
    ``interrupted`` when the caller cut the reply, and the turn's ``checks``."""

    index: int
    user: str
    reply: str = ""
    latencies: Mapping[str, float] = field(default_factory=FrozenDict)
    interrupted: bool = False
    checks: tuple[Check, ...] = ()

    def __post_init__(self) -> None:
        _need(_is_index(self.index), "index", "a turn index (0, 1, …)", self.index)
        _need(isinstance(self.user, str), "user", "a string", self.user)
        _need(isinstance(self.reply, str), "reply", "a string", self.reply)
        _need(isinstance(self.latencies, Mapping), "latencies", "a mapping", self.latencies)
        clean = {}
        for name, value in self.latencies.items():
            _need(name in MILESTONE_NAMES, "latencies",
                  f"milestones among {', '.join(MILESTONE_NAMES)}", name)
            clean[name] = _seconds_or_none(value, f"latencies.{name}")
        ordered = {n: clean[n] for n in MILESTONE_NAMES if clean.get(n) is not None}
        object.__setattr__(self, "latencies", FrozenDict(ordered))
        _need(isinstance(self.interrupted, bool), "interrupted", "true or false",
              self.interrupted)
        object.__setattr__(self, "checks", _tuple_of(self.checks, Check, "checks"))

    @property
    def passed(self) -> bool:
        """Every check of the turn passed."""
        return all(check.passed for check in self.checks)

    @property
    def voice_to_voice(self) -> float | None:
        """End of the user's speech → the reply's first audio, in seconds."""
        return self.latencies.get("first_audio")


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    """What one conversation gave. See the module documentation; every field but ``scenario``
    and ``source`` has a default, so a runner fills what it knows.

    ``transferred`` is where the agent transferred the call (None: it did not), ``ended`` whether
    it hung up; ``wer`` the word error rate of what the agent heard against the recording's
    reference transcript; ``error`` the conversation's crash ("TimeoutError: …") — a crashed
    conversation fails; ``attempts`` how many runs it took (a lost worker's conversation is run
    again once); ``wall_time`` its seconds; ``seed`` the seed the agent ran with; ``labels``
    free strings about the run (the LLM, the turn setting…) that the report shows.
    """

    scenario: str
    source: str
    turns: tuple[TurnResult, ...] = ()
    checks: tuple[Check, ...] = ()
    transcript: tuple[Line, ...] = ()
    tool_calls: tuple[ToolUse, ...] = ()
    ended: bool = False
    transferred: str | None = None
    failures: tuple[ReplyFailure, ...] = ()
    wer: float | None = None
    judge: JudgeVerdict | None = None
    error: str | None = None
    attempts: int = 1
    wall_time: float = 0.0
    seed: int | None = None
    labels: Mapping[str, str] = field(default_factory=FrozenDict)

    def __post_init__(self) -> None:
        _need(isinstance(self.scenario, str) and self.scenario, "scenario",
              "a non-empty string", self.scenario)
        _need(isinstance(self.source, str), "source", "a string (the scenario's file)",
              self.source)
        set_ = object.__setattr__
        set_(self, "turns", _tuple_of(self.turns, TurnResult, "turns"))
        set_(self, "checks", _tuple_of(self.checks, Check, "checks"))
        set_(self, "transcript", _tuple_of(self.transcript, Line, "transcript"))
        set_(self, "tool_calls", _tuple_of(self.tool_calls, ToolUse, "tool_calls"))
        set_(self, "failures", _tuple_of(self.failures, ReplyFailure, "failures"))
        _need(isinstance(self.ended, bool), "ended", "true or false", self.ended)
        _need(self.transferred is None or isinstance(self.transferred, str), "transferred",
              "a string or null", self.transferred)
        _need(self.wer is None or (_is_number(self.wer) and self.wer >= 0), "wer",
              "a number ≥ 0 or null", self.wer)
        if self.wer is not None:
            set_(self, "wer", float(self.wer))
        _need(self.judge is None or isinstance(self.judge, JudgeVerdict), "judge",
              "a JudgeVerdict or null", self.judge)
        _need(self.error is None or isinstance(self.error, str), "error", "a string or null",
              self.error)
        _need(isinstance(self.attempts, int) and not isinstance(self.attempts, bool)
              and self.attempts >= 1, "attempts", "an integer ≥ 1", self.attempts)
        _need(_is_number(self.wall_time) and self.wall_time >= 0, "wall_time",
              "seconds ≥ 0", self.wall_time)
        set_(self, "wall_time", float(self.wall_time))
        _need(self.seed is None or (isinstance(self.seed, int) and not isinstance(self.seed, bool)),
              "seed", "an integer or null", self.seed)
        _need(isinstance(self.labels, Mapping)
              and all(isinstance(k, str) and isinstance(v, str) for k, v in self.labels.items()),
              "labels", "a mapping of strings to strings", self.labels)
        set_(self, "labels", FrozenDict(self.labels))

    # -- what it means ------------------------------------------------------------------------

    @property
    def passed(self) -> bool:
        """No crash, every check (of the conversation and of each turn) passed, and the judge,
        if there was one, passed it."""
        return (
            self.error is None
            and all(check.passed for check in self.checks)
            and all(turn.passed for turn in self.turns)
            and (self.judge is None or self.judge.passed)
        )

    def failed_checks(self) -> list[tuple[int | None, Check]]:
        """``(turn index, check)`` for every check that failed, the conversation's (turn None)
        first."""
        out: list[tuple[int | None, Check]] = [(None, c) for c in self.checks if not c.passed]
        for turn in self.turns:
            out += [(turn.index, c) for c in turn.checks if not c.passed]
        return out

    def why(self) -> str:
        """Why it failed, one reason a line ("" when it passed)."""
        lines = []
        if self.error is not None:
            lines.append(f"error: {self.error}")
        for turn, check in self.failed_checks():
            where = "conversation" if turn is None else f"turn {turn + 1}"
            detail = f": {check.message}" if check.message else ""
            lines.append(f"{where}: {check.expectation}{detail}")
        if self.judge is not None and not self.judge.passed:
            lines.append(f"judge: score {self.judge.score:g}: {self.judge.reason}")
        return "\n".join(lines)

    # -- JSON ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (with ``format`` and the derived ``passed``)."""
        return {
            "format": FORMAT,
            "scenario": self.scenario,
            "source": self.source,
            "passed": self.passed,
            "turns": [
                {
                    "index": t.index,
                    "user": t.user,
                    "reply": t.reply,
                    "latencies": dict(t.latencies),
                    "interrupted": t.interrupted,
                    "checks": [_check_dict(c) for c in t.checks],
                }
                for t in self.turns
            ],
            "checks": [_check_dict(c) for c in self.checks],
            "transcript": [
                {"role": x.role, "text": x.text, "t": x.t, "interrupted": x.interrupted}
                for x in self.transcript
            ],
            "tool_calls": [
                {"name": u.name, "arguments": thaw(u.arguments), "result": u.result,
                 "turn": u.turn}
                for u in self.tool_calls
            ],
            "ended": self.ended,
            "transferred": self.transferred,
            "failures": [
                {"source": f.source, "error": f.error, "fallback": f.fallback, "turn": f.turn}
                for f in self.failures
            ],
            "wer": self.wer,
            "judge": None if self.judge is None else {
                "score": self.judge.score, "reason": self.judge.reason,
                "passed": self.judge.passed,
            },
            "error": self.error,
            "attempts": self.attempts,
            "wall_time": self.wall_time,
            "seed": self.seed,
            "labels": dict(self.labels),
        }

    def to_json(self) -> str:
        """One line of JSON (no newline inside, so it is one line of a JSONL file)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Any) -> ScenarioResult:
        """Back from :meth:`to_dict`'s data; a :class:`ResultError` names the bad field."""
        return _parse(data)

    @classmethod
    def from_json(cls, text: str | bytes) -> ScenarioResult:
        """Back from :meth:`to_json`; a :class:`ResultError` names the bad field."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ResultError(f"not JSON: {exc}") from None
        return _parse(data)


def _check_dict(check: Check) -> dict[str, Any]:
    return {"expectation": check.expectation, "passed": check.passed, "message": check.message}


# ---------------------------------------------------------------------------------------------
# Latencies from the metrics


def latencies(metrics: TurnMetrics) -> dict[str, float]:
    """Seconds from the end of the user's speech to each milestone ``metrics`` saw, in
    pipeline order (what :class:`TurnResult` keeps). A typed turn (no speech, so no end of
    speech) counts from the end of the turn.

    >>> latencies(TurnMetrics(speech_end=1.0, vad_stop=1.2, transcript=1.5, first_audio=2.0))
    {'vad_stop': 0.2, 'transcript': 0.5, 'first_audio': 1.0}
    >>> latencies(TurnMetrics(turn_end=3.0, llm_first_token=3.25, first_audio=3.5))
    {'turn_end': 0.0, 'llm_first_token': 0.25, 'first_audio': 0.5}
    """
    end = metrics.speech_end if metrics.speech_end is not None else metrics.turn_end
    out: dict[str, float] = {}
    if end is None:
        return out
    for name in MILESTONE_NAMES:
        value = getattr(metrics, name)
        if value is not None:
            out[name] = round(float(value) - end, 6)
    return out


def steps(latencies: Mapping[str, float]) -> dict[str, float]:
    """The time each milestone took after the one before it (the STT after the VAD stop), from
    a turn's :attr:`TurnResult.latencies` — as :meth:`TurnMetrics.steps` counts them.

    >>> steps({"vad_stop": 0.2, "transcript": 0.5, "turn_end": 0.8, "first_audio": 0.9})
    {'vad_stop': 0.2, 'transcript': 0.3, 'turn_end': 0.3, 'first_audio': 0.1}
    """
    out = {}
    previous = 0.0
    for name in MILESTONE_NAMES:
        value = latencies.get(name)
        if value is None:
            continue
        start = previous
        if name == "transcript" and "vad_stop" in latencies:
            start = latencies["vad_stop"]
        out[name] = round(max(0.0, value - start), 6)
        previous = max(previous, value)
    return out


# ---------------------------------------------------------------------------------------------
# Reading JSON back, with errors that name the field


def _need(ok: Any, name: str, wanted: str, got: Any) -> None:
    if not ok:
        raise ResultError(f"{name}: expected {wanted}, got {got!r}")


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _seconds_or_none(value: Any, name: str) -> float | None:
    if value is None:
        return None
    _need(_is_number(value), name, "seconds (a finite number) or null", value)
    return float(value)


def _tuple_of(values: Any, kind: type, name: str) -> tuple[Any, ...]:
    _need(isinstance(values, Sequence) and not isinstance(values, str), name,
          f"a list of {kind.__name__}", values)
    for k, value in enumerate(values):
        _need(isinstance(value, kind), f"{name}[{k}]", f"a {kind.__name__}", value)
    return tuple(values)


def _fields(data: Any, where: str, required: Sequence[str], optional: Sequence[str]) -> dict:
    if not isinstance(data, dict):
        raise ResultError(f"{where or 'result'}: expected an object, got {data!r}")
    missing = [k for k in required if k not in data]
    if missing:
        raise ResultError(f"{where or 'result'}: missing field {missing[0]!r}")
    unknown = sorted(set(data) - set(required) - set(optional))
    if unknown:
        raise ResultError(f"{where or 'result'}: unknown field {unknown[0]!r}")
    return data


def _at(where: str, build: Any, *args: Any) -> Any:
    """``build(*args)``, its ResultError prefixed with where the data was."""
    try:
        return build(*args)
    except ResultError as exc:
        raise ResultError(f"{where}.{exc}" if where else str(exc)) from None
    except TypeError as exc:
        raise ResultError(f"{where}: {exc}") from None


def _list(data: Any, where: str) -> list[Any]:
    if not isinstance(data, list):
        raise ResultError(f"{where}: expected a list, got {data!r}")
    return data


def _check(data: Any, where: str) -> Check:
    d = _fields(data, where, ["expectation", "passed"], ["message"])
    return _at(where, Check, d["expectation"], d["passed"], d.get("message", ""))


def _parse(data: Any) -> ScenarioResult:
    d = _fields(
        data, "", ["scenario", "source"],
        ["format", "passed", "turns", "checks", "transcript", "tool_calls", "ended",
         "transferred", "failures", "wer", "judge", "error", "attempts", "wall_time", "seed",
         "labels"],
    )
    fmt = d.get("format", FORMAT)
    if fmt != FORMAT:
        raise ResultError(f"format: expected {FORMAT!r}, got {fmt!r}")
    turns = []
    for k, t in enumerate(_list(d.get("turns", []), "turns")):
        w = f"turns[{k}]"
        t = _fields(t, w, ["index", "user"], ["reply", "latencies", "interrupted", "checks"])
        checks = [_check(c, f"{w}.checks[{j}]")
                  for j, c in enumerate(_list(t.get("checks", []), f"{w}.checks"))]
        turns.append(_at(w, TurnResult, t["index"], t["user"], t.get("reply", ""),
                         t.get("latencies", {}), t.get("interrupted", False), checks))
    checks = [_check(c, f"checks[{k}]") for k, c in enumerate(_list(d.get("checks", []),
                                                                     "checks"))]
    transcript = []
    for k, x in enumerate(_list(d.get("transcript", []), "transcript")):
        w = f"transcript[{k}]"
        x = _fields(x, w, ["role", "text"], ["t", "interrupted"])
        transcript.append(_at(w, Line, x["role"], x["text"], x.get("t"),
                              x.get("interrupted", False)))
    tools = []
    for k, u in enumerate(_list(d.get("tool_calls", []), "tool_calls")):
        w = f"tool_calls[{k}]"
        u = _fields(u, w, ["name"], ["arguments", "result", "turn"])
        tools.append(_at(w, ToolUse, u["name"], u.get("arguments", {}), u.get("result"),
                         u.get("turn")))
    failures = []
    for k, f in enumerate(_list(d.get("failures", []), "failures")):
        w = f"failures[{k}]"
        f = _fields(f, w, ["source", "error"], ["fallback", "turn"])
        failures.append(_at(w, ReplyFailure, f["source"], f["error"], f.get("fallback", False),
                            f.get("turn")))
    judge = None
    if d.get("judge") is not None:
        j = _fields(d["judge"], "judge", ["score", "reason", "passed"], [])
        judge = _at("judge", JudgeVerdict, j["score"], j["reason"], j["passed"])
    return ScenarioResult(
        d["scenario"], d["source"], turns=tuple(turns), checks=tuple(checks),
        transcript=tuple(transcript), tool_calls=tuple(tools), ended=d.get("ended", False),
        transferred=d.get("transferred"), failures=tuple(failures), wer=d.get("wer"),
        judge=judge, error=d.get("error"), attempts=d.get("attempts", 1),
        wall_time=d.get("wall_time", 0.0), seed=d.get("seed"), labels=d.get("labels", {}),
    )


# ---------------------------------------------------------------------------------------------
# JSONL files


def write_jsonl(results: Iterable[ScenarioResult], path: str | os.PathLike[str], *,
                append: bool = False) -> int:
    """Write one result per line to ``path`` as they come (each line flushed, so a run that is
    stopped keeps what finished); ``append`` adds to an existing file. Returns how many."""
    count = 0
    with open(path, "a" if append else "w", encoding="utf-8") as out:
        for result in results:
            if not isinstance(result, ScenarioResult):
                raise ResultError(f"write_jsonl: not a ScenarioResult: {result!r}")
            out.write(result.to_json() + "\n")
            out.flush()
            count += 1
    return count


def read_jsonl(path: str | os.PathLike[str]) -> list[ScenarioResult]:
    """The results in a JSONL file (blank lines skipped); a :class:`ResultError` names the file,
    the line and the field that is wrong."""
    return list(_iter_jsonl(Path(path)))


def _iter_jsonl(path: Path) -> Iterator[ScenarioResult]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultError(f"{path}: no such results file") from None
    except UnicodeDecodeError as exc:
        raise ResultError(f"{path}: not UTF-8 text ({exc.reason})") from None
    for number, line in enumerate(text.split("\n"), 1):  # not splitlines: U+2028 is in text
        if not line.strip():
            continue
        try:
            yield ScenarioResult.from_json(line)
        except ResultError as exc:
            raise ResultError(f"{path}, line {number}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# JUnit XML

_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    """``text`` with the characters XML 1.0 cannot hold replaced by U+FFFD."""
    return _NOT_XML.sub("\ufffd", text)


def _transcript_text(result: ScenarioResult) -> str:
    lines = []
    for line in result.transcript:
        at = f"{line.t:7.2f} s  " if line.t is not None else ""
        cut = "  [interrupted]" if line.interrupted else ""
        lines.append(f"{at}{line.role:>5}: {line.text}{cut}")
    for use in result.tool_calls:
        args = json.dumps(thaw(use.arguments), ensure_ascii=False)
        ran = f" → {use.result}" if use.result is not None else ""
        lines.append(f"tool {use.name}({args}){ran}")
    return "\n".join(lines)


def _suite_name(result: ScenarioResult) -> str:
    source = Path(result.source) if result.source else None
    if source is None or not source.parent.name:
        return "voicekit.eval"
    return "voicekit.eval." + source.parent.name


def junit_xml(results: Iterable[ScenarioResult], *, name: str = "voicekit eval") -> str:
    """The results as JUnit XML: one ``<testsuite>`` per folder of scenario files, one
    ``<testcase>`` per conversation with a ``<failure>`` (its failed checks and judge, the
    transcript) or an ``<error>`` (it crashed), and the transcript in ``<system-out>``.

    >>> xml = junit_xml([ScenarioResult("greets", "evals/greets.yaml",
    ...                                 checks=[Check("reply mentions 'hello'", False)])])
    >>> '<testsuite name="voicekit.eval.evals" tests="1" failures="1" errors="0"' in xml
    True
    """
    results = list(results)
    suites: dict[str, list[ScenarioResult]] = {}
    for result in results:
        suites.setdefault(_suite_name(result), []).append(result)
    root = ET.Element("testsuites", _counts(name, results))
    for suite_name, members in suites.items():
        suite = ET.SubElement(root, "testsuite", _counts(suite_name, members))
        for result in members:
            case = ET.SubElement(suite, "testcase", {
                "name": _xml_text(result.scenario),
                "classname": suite_name,
                "file": _xml_text(result.source),
                "time": f"{result.wall_time:.3f}",
            })
            transcript = _xml_text(_transcript_text(result))
            if result.error is not None:
                first = result.error.split("\n")[0] if result.error else "error"
                error = ET.SubElement(case, "error", {"message": _xml_text(first),
                                                      "type": "error"})
                error.text = _xml_text(result.why())
            elif not result.passed:
                why = result.why()
                failure = ET.SubElement(case, "failure", {
                    "message": _xml_text(why.split("\n")[0]), "type": "expectation"})
                failure.text = _xml_text(why + ("\n\n" + transcript if transcript else ""))
            if transcript:
                ET.SubElement(case, "system-out").text = transcript
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _counts(name: str, results: Sequence[ScenarioResult]) -> dict[str, str]:
    errors = sum(r.error is not None for r in results)
    failures = sum(r.error is None and not r.passed for r in results)
    return {
        "name": _xml_text(name),
        "tests": str(len(results)),
        "failures": str(failures),
        "errors": str(errors),
        "skipped": "0",
        "time": f"{sum(r.wall_time for r in results):.3f}",
    }


def write_junit(results: Iterable[ScenarioResult], path: str | os.PathLike[str], *,
                name: str = "voicekit eval") -> None:
    """Write :func:`junit_xml` to ``path`` (UTF-8)."""
    Path(path).write_text(junit_xml(results, name=name), encoding="utf-8")
