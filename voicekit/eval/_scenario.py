"""Scenario files: what a scripted caller does and what the agent is expected to do.

A scenario is a YAML (``.yaml``/``.yml``, PyYAML) or JSON (``.json``) file holding one scenario
(a mapping) or several (``scenarios: [...]``). Every field is checked; a wrong one is a
:class:`ScenarioError` naming the file and the field's path (``turns[2].expect.tool.name``).
The whole schema, with examples, is in ``docs/eval-scenarios.md``; in short::

    name: weather in Rome            # default: the file's name (and [i] in a list)
    description: the tool is called  # optional
    tags: [tool]                     # optional, for filtering and the report
    seed: 7                          # optional (default: a hash of the name)
    time_limit: 60                   # seconds the conversation may take
    first_message: Hi, how can I help?   # optional: the agent speaks first
    turns:                           # the caller's side, in order
      - say: What is the weather in Rome?      # a user turn as text
        expect:                                # about the reply to this turn
          mentions: [Rome, degrees]            # every one, case-insensitive
          not_mentions: [sorry]                # none of them
          tool: {name: get_weather, arguments: {city: Rome}}   # or tools: [...]
          latency: {max: 2.5}                  # seconds to the first reply audio
      - audio: calls/rome.wav                  # a recording (relative to this file)
        text: What is the weather in Rome?     # optional reference: WER of what was heard
        expect: {max_wer: 0.2}
      - wait: 1.5                              # a pause after the reply
      - barge_in: stop                         # cut in on the reply (text optional)
        after_audio_ms: 400
      - dtmf: "12#"                            # keypad digits (reply: false by default)
      - quiet: 8                               # on the line, silent, in real time
    expect:                          # about the whole conversation
      mentions: [...]
      tools: [get_weather]
      ended: true                    # the agent hung up (HangUp)
      transferred: "+15550100"       # or true: the agent transferred the call (TransferCall)
      failed: false                  # a reply failed (default false: none may fail)
      latency: {p50: 1.5, p90: 2.5, max: 4}
    idle: {after: 2, reprompts: 1}   # optional: the agent's idle-caller policy for this one
    judge:                           # optional: an LLM grades the transcript
      rubric: The agent gave the weather for Rome and stayed polite.
      min_score: 3                   # on a scale of 1 to 5 (scale: 5)

A ``quiet`` step keeps the line open in real time (stream time moves: what an idle-caller
policy waits on). Each turn may also say ``after: SECONDS`` (start that long after the previous
step was sent, without waiting for the reply: a time-based barge-in) and ``reply: false`` (it
gets no answer).

>>> s = parse_scenario({"turns": [{"say": "hi", "expect": {"mentions": "hello"}}]}, "x.json")
>>> s.name, s.turns[0].kind, s.turns[0].expect.mentions
('x', 'say', ('hello',))
>>> parse_scenario({"turns": [{"say": 3}]}, "x.json")
Traceback (most recent call last):
...
voicekit.eval._scenario.ScenarioError: x.json: turns[0].say: must be text, got 3
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .._errors import ConfigError

__all__ = [
    "SCENARIO_SUFFIXES",
    "Expect",
    "IdlePolicy",
    "Judge",
    "LatencyBound",
    "Scenario",
    "ScenarioError",
    "ToolExpectation",
    "Turn",
    "default_seed",
    "load_scenarios",
    "parse_scenario",
]

SCENARIO_SUFFIXES = (".yaml", ".yml", ".json")
"""The files a folder of scenarios stands for."""


class ScenarioError(ConfigError):
    """A scenario file that cannot be used: the message names the file and the field."""


# ---------------------------------------------------------------------------------------------
# The values


@dataclass(frozen=True, slots=True)
class ToolExpectation:
    """A tool call the agent must make: ``name``, and ``arguments`` that the call's arguments
    must include (each key equal; text compared without regard to case and spacing)."""

    name: str
    arguments: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class LatencyBound:
    """Seconds to the first reply audio: every reply (``max``), the median (``p50``), the 90th
    percentile (``p90``). A bound not given is not checked."""

    max: float | None = None
    p50: float | None = None
    p90: float | None = None


@dataclass(frozen=True, slots=True)
class Expect:
    """What must hold of a reply (per turn) or of the conversation. ``None``: not checked."""

    mentions: tuple[str, ...] = ()
    not_mentions: tuple[str, ...] = ()
    tools: tuple[ToolExpectation, ...] = ()
    ended: bool | None = None
    transferred: bool | str | None = None
    interrupted: bool | None = None
    failed: bool | None = None
    latency: LatencyBound | None = None
    max_wer: float | None = None

    @property
    def empty(self) -> bool:
        """Nothing to check."""
        return self == Expect()


@dataclass(frozen=True, slots=True)
class Turn:
    """One step of the caller's side. ``kind``: ``say``, ``audio``, ``wait``, ``barge_in``,
    ``dtmf`` or ``quiet``; ``text``: the words said (say, barge_in), the reference transcript
    (audio) or the digits (dtmf); ``audio``: the file (absolute); ``seconds``: the pause (wait,
    quiet)."""

    kind: str
    text: str | None = None
    audio: str | None = None
    seconds: float = 0.0
    after: float | None = None
    reply: bool = True
    after_audio_ms: float = 0.0
    silence: float = 1.0
    realtime: bool = False
    expect: Expect = field(default_factory=Expect)

    @property
    def gets_reply(self) -> bool:
        """Whether the agent is expected to answer this step."""
        if self.kind in ("wait", "quiet"):
            return False
        if self.kind == "barge_in":
            return self.text is not None
        return self.reply


@dataclass(frozen=True, slots=True)
class Judge:
    """An LLM grades the conversation against ``rubric`` on 1..``scale``; it passes at
    ``min_score`` or above."""

    rubric: str
    min_score: float = 3.0
    scale: int = 5


@dataclass(frozen=True, slots=True)
class IdlePolicy:
    """The idle-caller policy the agent gets for a scenario (:func:`voicekit.phone.idle`): a
    reprompt after ``after`` seconds of silence, ``reprompts`` times, then a goodbye."""

    after: float
    reprompts: int = 1


@dataclass(frozen=True, slots=True)
class Scenario:
    """One conversation to play and check. ``source``: the file it came from."""

    name: str
    turns: tuple[Turn, ...]
    source: str = ""
    description: str = ""
    tags: tuple[str, ...] = ()
    seed: int = 0
    time_limit: float = 60.0
    first_message: str | None = None
    expect: Expect = field(default_factory=Expect)
    judge: Judge | None = None
    idle: IdlePolicy | None = None

    @property
    def has_audio(self) -> bool:
        """Whether a turn is a recording (the agent then needs its speech front end)."""
        return any(t.kind == "audio" for t in self.turns)


# ---------------------------------------------------------------------------------------------
# Checking fields


class _Where:
    """A field path inside a file, for error messages."""

    def __init__(self, file: str, path: str = "") -> None:
        self.file, self.path = file, path

    def __truediv__(self, key: str | int) -> _Where:
        if isinstance(key, int):
            return _Where(self.file, f"{self.path}[{key}]")
        return _Where(self.file, f"{self.path}.{key}" if self.path else key)

    def fail(self, message: str) -> ScenarioError:
        return ScenarioError(f"{self.file}: {self.path or '(top level)'}: {message}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _mapping(value: Any, where: _Where, allowed: Iterable[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise where.fail(f"must be a mapping, got {_shown(value)}")
    allowed = tuple(allowed)
    for key in value:
        if key not in allowed:
            raise (where / str(key)).fail(
                f"unknown field; expected one of: {', '.join(allowed)}"
            )
    return value


def _text(value: Any, where: _Where, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise where.fail(f"must be text, got {_shown(value)}")
    if not empty and not value.strip():
        raise where.fail("must not be empty")
    return value


def _texts(value: Any, where: _Where) -> tuple[str, ...]:
    if isinstance(value, str):
        return (_text(value, where),)
    if not isinstance(value, Sequence):
        raise where.fail(f"must be text or a list of texts, got {_shown(value)}")
    return tuple(_text(v, where / i) for i, v in enumerate(value))


def _number(value: Any, where: _Where, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise where.fail(f"must be a number, got {_shown(value)}")
    if value < 0 or (positive and value == 0):
        raise where.fail(f"must be {'above' if positive else 'at least'} 0, got {value}")
    return float(value)


def _flag(value: Any, where: _Where) -> bool:
    if not isinstance(value, bool):
        raise where.fail(f"must be true or false, got {_shown(value)}")
    return value


def _tool(value: Any, where: _Where) -> ToolExpectation:
    if isinstance(value, str):
        return ToolExpectation(_text(value, where))
    fields = _mapping(value, where, ("name", "arguments"))
    if "name" not in fields:
        raise (where / "name").fail("is required")
    arguments = fields.get("arguments")
    if arguments is not None:
        if not isinstance(arguments, Mapping):
            raise (where / "arguments").fail(f"must be a mapping, got {_shown(arguments)}")
        arguments = {str(k): v for k, v in arguments.items()}
    return ToolExpectation(_text(fields["name"], where / "name"), arguments)


def _latency(value: Any, where: _Where, *, turn: bool) -> LatencyBound:
    if turn and not isinstance(value, Mapping):
        value = {"max": value}
    fields = _mapping(value, where, ("max",) if turn else ("max", "p50", "p90"))
    if not fields:
        raise where.fail("give at least one of max, p50, p90")
    return LatencyBound(
        **{k: _number(v, where / k, positive=True) for k, v in fields.items()}
    )


_EXPECT_FIELDS = (
    "mentions",
    "not_mentions",
    "tool",
    "tools",
    "ended",
    "transferred",
    "interrupted",
    "failed",
    "latency",
    "max_wer",
)


def _expect(value: Any, where: _Where, *, turn: str | None) -> Expect:
    if value is None:
        return Expect()
    allowed = [f for f in _EXPECT_FIELDS if turn == "audio" or f != "max_wer"]
    if turn is None:
        allowed.remove("interrupted")
    fields = _mapping(value, where, allowed)
    out: dict[str, Any] = {}
    for key, raw in fields.items():
        at = where / key
        if key in ("mentions", "not_mentions"):
            out[key] = _texts(raw, at)
        elif key == "tool":
            out["tools"] = (*out.get("tools", ()), _tool(raw, at))
        elif key == "tools":
            if not isinstance(raw, Sequence) or isinstance(raw, str):
                raise at.fail(f"must be a list of tools, got {_shown(raw)}")
            out["tools"] = (*out.get("tools", ()), *(_tool(v, at / i) for i, v in enumerate(raw)))
        elif key in ("ended", "interrupted", "failed"):
            out[key] = _flag(raw, at)
        elif key == "transferred":
            out[key] = raw if isinstance(raw, bool) else _text(raw, at)
        elif key == "latency":
            out[key] = _latency(raw, at, turn=turn is not None)
        elif key == "max_wer":
            out[key] = _number(raw, at)
    return Expect(**out)


_STEP_KINDS = ("say", "audio", "wait", "barge_in", "dtmf", "quiet")
_STEP_FIELDS = {
    "say": ("after", "reply", "expect"),
    "audio": ("text", "after", "reply", "silence", "realtime", "expect"),
    "wait": (),
    "barge_in": ("after_audio_ms", "expect"),
    "dtmf": ("after", "reply", "expect"),
    "quiet": (),
}
_DIGITS = set("0123456789*#ABCD")


def _turn(value: Any, where: _Where, base: Path) -> Turn:
    if not isinstance(value, Mapping):
        raise where.fail(f"must be a mapping with one of {', '.join(_STEP_KINDS)}")
    kinds = [k for k in _STEP_KINDS if k in value]
    if len(kinds) != 1:
        found = f"found {', '.join(kinds)}" if kinds else "found none"
        raise where.fail(f"needs exactly one of {', '.join(_STEP_KINDS)} ({found})")
    kind = kinds[0]
    fields = _mapping(value, where, (kind, *_STEP_FIELDS[kind]))
    raw = fields[kind]
    at = where / kind
    options: dict[str, Any] = {}
    if "after" in fields:
        options["after"] = _number(fields["after"], where / "after")
    if "reply" in fields:
        options["reply"] = _flag(fields["reply"], where / "reply")
    if kind == "say":
        turn = Turn("say", text=_text(raw, at), **options)
    elif kind == "audio":
        path = Path(_text(raw, at)).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise at.fail(f"no such audio file: {path}")
        if "silence" in fields:
            options["silence"] = _number(fields["silence"], where / "silence")
        if "realtime" in fields:
            options["realtime"] = _flag(fields["realtime"], where / "realtime")
        text = fields.get("text")
        reference = None if text is None else _text(text, where / "text", empty=True)
        turn = Turn("audio", text=reference, audio=str(path), **options)
    elif kind in ("wait", "quiet"):
        turn = Turn(kind, seconds=_number(raw, at, positive=kind == "quiet"))
    elif kind == "barge_in":
        words = None if raw is None or raw is True else _text(raw, at)
        after_ms = _number(fields.get("after_audio_ms", 0.0), where / "after_audio_ms")
        turn = Turn("barge_in", text=words, after_audio_ms=after_ms)
    else:
        digits = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
        digits = _text(digits, at)
        wrong = sorted(set(digits.upper()) - _DIGITS)
        if wrong:
            raise at.fail(f"not keypad digits: {''.join(wrong)!r} (use 0-9, *, #, A-D)")
        turn = Turn("dtmf", text=digits.upper(), reply=options.pop("reply", False), **options)
    expect = _expect(fields.get("expect"), where / "expect", turn=kind)
    if not expect.empty and not turn.gets_reply:
        raise (where / "expect").fail(
            "this step gets no reply to check (reply: false, or a barge-in without words)"
        )
    return replace(turn, expect=expect)


def _judge(value: Any, where: _Where) -> Judge:
    if isinstance(value, str):
        return Judge(_text(value, where))
    fields = _mapping(value, where, ("rubric", "min_score", "scale"))
    if "rubric" not in fields:
        raise (where / "rubric").fail("is required")
    scale = fields.get("scale", 5)
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 2:
        raise (where / "scale").fail(f"must be a whole number of at least 2, got {_shown(scale)}")
    minimum = _number(fields.get("min_score", min(3, scale)), where / "min_score")
    if not 1 <= minimum <= scale:
        raise (where / "min_score").fail(f"must be between 1 and {scale}, got {minimum:g}")
    return Judge(_text(fields["rubric"], where / "rubric"), minimum, scale)


_SCENARIO_FIELDS = (
    "name",
    "description",
    "tags",
    "seed",
    "time_limit",
    "first_message",
    "turns",
    "expect",
    "judge",
    "idle",
)


def _idle(value: Any, where: _Where) -> IdlePolicy:
    fields = _mapping(value, where, ("after", "reprompts"))
    if "after" not in fields:
        raise (where / "after").fail("is required: seconds of silence before a reprompt")
    reprompts = fields.get("reprompts", 1)
    if isinstance(reprompts, bool) or not isinstance(reprompts, int) or reprompts < 0:
        raise (where / "reprompts").fail(f"must be a whole number ≥ 0, got {_shown(reprompts)}")
    return IdlePolicy(_number(fields["after"], where / "after", positive=True), reprompts)


def default_seed(name: str) -> int:
    """The seed of a scenario that names none: a hash of its name (stable across runs).

    >>> default_seed("weather in Rome")
    1849048088
    """
    return zlib.crc32(name.encode())


def parse_scenario(
    data: Any, source: str | Path, *, name: str | None = None, where: str = ""
) -> Scenario:
    """A :class:`Scenario` from the parsed contents of ``source`` (raises
    :class:`ScenarioError` naming ``source`` and the field). Audio paths are taken relative to
    ``source``'s folder; ``name`` is the default name."""
    base = Path(source).parent
    at = _Where(str(source), where)
    fields = _mapping(data, at, _SCENARIO_FIELDS)
    title = _text(fields["name"], at / "name") if "name" in fields else (name or Path(source).stem)
    if "turns" not in fields:
        raise (at / "turns").fail("is required: the caller's steps")
    raw_turns = fields["turns"]
    if not isinstance(raw_turns, Sequence) or isinstance(raw_turns, str) or not raw_turns:
        raise (at / "turns").fail(f"must be a non-empty list of steps, got {_shown(raw_turns)}")
    turns = tuple(_turn(t, at / "turns" / i, base) for i, t in enumerate(raw_turns))
    if not any(t.gets_reply for t in turns):
        raise (at / "turns").fail("no step gets a reply: there is nothing to evaluate")
    if turns[0].kind == "barge_in" and "first_message" not in fields:
        raise (at / "turns" / 0).fail("a barge-in needs a reply in progress to cut")
    seed = fields.get("seed", default_seed(title))
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise (at / "seed").fail(f"must be a whole number ≥ 0, got {_shown(seed)}")
    tags = fields.get("tags", ())
    return Scenario(
        name=title,
        turns=turns,
        source=str(source),
        description=_text(fields.get("description", ""), at / "description", empty=True),
        tags=_texts(tags, at / "tags") if tags else (),
        seed=seed,
        time_limit=_number(fields.get("time_limit", 60.0), at / "time_limit", positive=True),
        first_message=(
            _text(fields["first_message"], at / "first_message")
            if fields.get("first_message") is not None
            else None
        ),
        expect=_expect(fields.get("expect"), at / "expect", turn=None),
        judge=_judge(fields["judge"], at / "judge") if fields.get("judge") is not None else None,
        idle=_idle(fields["idle"], at / "idle") if fields.get("idle") is not None else None,
    )


def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read it: {exc}") from exc
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScenarioError(
                f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
            ) from exc
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - the eval extra installs it
        raise ScenarioError(
            f"{path}: YAML scenarios need PyYAML: pip install 'voicekit[eval]' (or use JSON)"
        ) from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError(f"{path}: not valid YAML: {problem}{line}") from exc


def load_scenarios(path: str | Path) -> list[Scenario]:
    """The scenarios in one file: a mapping is one scenario, ``scenarios: [...]`` several."""
    path = Path(path)
    data = _read(path)
    if isinstance(data, Mapping) and "scenarios" in data:
        _mapping(data, _Where(str(path)), ("scenarios",))
        items = data["scenarios"]
        if not isinstance(items, Sequence) or isinstance(items, str) or not items:
            raise _Where(str(path), "scenarios").fail("must be a non-empty list of scenarios")
        return [
            parse_scenario(item, path, name=f"{path.stem}[{i}]", where=f"scenarios[{i}]")
            for i, item in enumerate(items)
        ]
    return [parse_scenario(data, path)]
