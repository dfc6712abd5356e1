"""The expectations of a scenario, checked: pure functions from what happened to
:class:`~voicekit.eval.Check` values.

Text is compared without regard to case, spacing or the kind of apostrophe; a tool's expected
arguments must each be in the call (text compared the same way, numbers equal, a mapping
inside a mapping checked key by key).

>>> mentions("Foggy in  ROME. It's 22 degrees.", "rome. it’s")
True
>>> arguments_match({"city": "rome", "unit": "c"}, {"city": "Rome"})
True
>>> arguments_match({"city": "Paris"}, {"city": "Rome"})
False
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from .._frozen import thaw
from ._result import Check, JudgeVerdict, ReplyFailure, ToolUse
from ._scenario import Expect, LatencyBound, ToolExpectation, Turn

__all__ = [
    "arguments_match",
    "check_conversation",
    "check_turn",
    "mentions",
    "percentile",
]

_SPACES = re.compile(r"\s+")


def _norm(text: str) -> str:
    return _SPACES.sub(" ", text.replace("’", "'").replace("‘", "'")).strip().casefold()


def mentions(text: str, phrase: str) -> bool:
    """Whether ``phrase`` occurs in ``text`` (case, spacing and apostrophes aside)."""
    return _norm(phrase) in _norm(text)


def arguments_match(actual: Any, expected: Mapping[str, Any]) -> bool:
    """Whether every expected argument is in ``actual`` with a matching value."""
    actual = thaw(actual)
    if not isinstance(actual, Mapping):
        return False
    for key, want in expected.items():
        if key not in actual or not _value_matches(actual[key], want):
            return False
    return True


def _value_matches(got: Any, want: Any) -> bool:
    if isinstance(want, Mapping):
        return arguments_match(got, want)
    if isinstance(want, str):
        return isinstance(got, str) and _norm(got) == _norm(want)
    if isinstance(want, bool) or isinstance(got, bool):
        return got is want
    if isinstance(want, int | float) and isinstance(got, int | float):
        return float(got) == float(want)
    return bool(got == want)


def _shown(text: str, limit: int = 160) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _call(use: ToolUse) -> str:
    arguments = thaw(use.arguments)
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    return f"{use.name}({arguments})"


def _tool_check(want: ToolExpectation, tools: Sequence[ToolUse]) -> Check:
    what = f"tool {want.name} called"
    if want.arguments:
        what += f" with {json.dumps(dict(want.arguments), ensure_ascii=False)}"
    ok = any(
        use.name == want.name
        and (not want.arguments or arguments_match(use.arguments, want.arguments))
        for use in tools
    )
    calls = ", ".join(_call(u) for u in tools) or "none"
    return Check(what, ok, "" if ok else f"tool calls: {calls}")


def _text_checks(expect: Expect, text: str, what: str) -> list[Check]:
    out = []
    said = f"it said {_shown(text)}"
    for phrase in expect.mentions:
        ok = mentions(text, phrase)
        out.append(Check(f"{what} mentions {phrase!r}", ok, "" if ok else said))
    for phrase in expect.not_mentions:
        ok = not mentions(text, phrase)
        out.append(Check(f"{what} does not mention {phrase!r}", ok, "" if ok else said))
    return out


def _call_checks(
    expect: Expect, *, hung_up: bool, transferred: str | None, failures: Sequence[ReplyFailure]
) -> list[Check]:
    out = []
    if expect.ended is not None:
        ok = hung_up is expect.ended
        out.append(
            Check(
                "the agent ended the call" if expect.ended else "the agent did not end the call",
                ok,
                "" if ok else ("no HangUp" if expect.ended else "it hung up"),
            )
        )
    if expect.transferred is not None:
        want = expect.transferred
        if isinstance(want, str):
            ok = transferred == want
            what = f"the agent transferred the call to {want}"
        else:
            ok = (transferred is not None) is want
            what = "the agent transferred the call" if want else "the agent did not transfer"
        found = f"transferred to {transferred}" if transferred is not None else "no TransferCall"
        out.append(Check(what, ok, "" if ok else found))
    failed = expect.failed
    if failed is not None:
        listed = "; ".join(f"{f.source}: {f.error}" for f in failures)
        ok = bool(failures) is failed
        what = "a reply failed" if failed else "no reply failed"
        out.append(Check(what, ok, "" if ok else (listed or "every reply succeeded")))
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100), linearly interpolated.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 90)
    3.7
    """
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (rank - low), 9)


def _latency_checks(
    bound: LatencyBound | None, values: Sequence[float], *, turn: bool
) -> list[Check]:
    if bound is None:
        return []
    out = []
    for name, limit in (("max", bound.max), ("p50", bound.p50), ("p90", bound.p90)):
        if limit is None:
            continue
        if turn:
            expectation = f"first reply audio within {limit:g} s"
        else:
            label = {"max": "slowest", "p50": "median", "p90": "p90"}[name]
            expectation = f"{label} time to first reply audio ≤ {limit:g} s"
        if not values:
            out.append(Check(expectation, False, "no reply audio was timed"))
            continue
        found = {
            "max": max(values),
            "p50": statistics.median(values),
            "p90": percentile(values, 90),
        }[name]
        out.append(Check(expectation, found <= limit, f"{found:.2f} s"))
    return out


def check_turn(
    step: Turn,
    *,
    replied: bool,
    reply: str,
    tools: Sequence[ToolUse],
    failures: Sequence[ReplyFailure],
    interrupted: bool,
    hung_up: bool,
    transferred: str | None,
    first_audio: float | None,
    wer: float | None,
) -> list[Check]:
    """The checks of one step that got (or should have got) a reply."""
    expect = step.expect
    if not replied:
        return [Check("the agent replied", False, "no reply to this turn")]
    out = _text_checks(expect, reply, "reply")
    out += [_tool_check(want, tools) for want in expect.tools]
    out += _call_checks(expect, hung_up=hung_up, transferred=transferred, failures=failures)
    if expect.interrupted is not None:
        ok = interrupted is expect.interrupted
        cut = expect.interrupted
        what = "the reply was interrupted" if cut else "the reply was not interrupted"
        out.append(Check(what, ok, "" if ok else ("it played out" if cut else "it was cut")))
    out += _latency_checks(
        expect.latency, [] if first_audio is None else [first_audio], turn=True
    )
    if expect.max_wer is not None:
        ok = wer is not None and wer <= expect.max_wer
        found = "no transcript" if wer is None else f"WER {wer:.2f}"
        out.append(Check(f"heard with WER ≤ {expect.max_wer:g}", ok, found))
    return out


def check_conversation(
    expect: Expect,
    *,
    reply: str,
    tools: Sequence[ToolUse],
    failures: Sequence[ReplyFailure],
    ended: bool,
    transferred: str | None,
    first_audio: Sequence[float],
    verdict: JudgeVerdict | str | None,
) -> tuple[list[Check], JudgeVerdict | None]:
    """The checks of the whole conversation (no reply may fail unless ``failed`` says
    otherwise), and the judge's verdict to keep (a judge that could not grade is a failed
    check)."""
    if expect.failed is None:
        expect = replace(expect, failed=False)
    out = _text_checks(expect, reply, "the agent")
    out += [_tool_check(want, tools) for want in expect.tools]
    out += _call_checks(expect, hung_up=ended, transferred=transferred, failures=failures)
    out += _latency_checks(expect.latency, first_audio, turn=False)
    if isinstance(verdict, str):
        out.append(Check("the judge graded the conversation", False, verdict))
        verdict = None
    return out, verdict
