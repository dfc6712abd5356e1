"""One self-contained HTML report of an evaluation run, and the comparison of two runs.

:func:`html_report` gives a single HTML page — inline CSS, plots as inline SVG, no script, no
font, nothing fetched — so it opens offline, from a CI artifact or an e-mail: a summary, the
comparison with a baseline run if one is given (pass rate, the scenarios whose status changed,
latency medians and p90s), the latency plots (each milestone's distribution, the median of
each step stacked, end of speech → first audio), the table of every conversation with the
failures first, then each failure with its reasons and transcript.

:func:`compare` and :func:`latency_stats` are the same figures as values, for a notebook or a
CI gate.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

from .._frozen import thaw
from .._metrics import MILESTONES
from ._plots import breakdown_svg, distributions_svg, histogram_svg, quantile
from ._result import ScenarioResult, steps

__all__ = [
    "Comparison",
    "LatencyStats",
    "StatusChange",
    "compare",
    "html_report",
    "latency_stats",
    "order_for_report",
    "status",
    "write_report",
]

LABELS: dict[str, str] = dict(MILESTONES)


# ---------------------------------------------------------------------------------------------
# Figures as values


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """How many turns reached a milestone, and the median and p90 of their seconds."""

    count: int
    median: float
    p90: float

    @classmethod
    def of(cls, values: Sequence[float]) -> LatencyStats:
        """From the seconds of each turn (at least one)."""
        return cls(len(values), quantile(values, 0.5), quantile(values, 0.9))


def _per_milestone(results: Iterable[ScenarioResult]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {name: [] for name, _ in MILESTONES}
    for result in results:
        for turn in result.turns:
            for name, value in turn.latencies.items():
                out[name].append(value)
    return out


def _per_step(results: Iterable[ScenarioResult]) -> dict[str, list[float]]:
    """Each step's seconds over the spoken turns (those the VAD timed), or over every turn if
    none was spoken: a typed turn has no speech steps, and mixing the two would stack the
    speech steps of some turns on the reply steps of others."""
    turns = [turn for result in results for turn in result.turns]
    spoken = [turn for turn in turns if "vad_stop" in turn.latencies]
    out: dict[str, list[float]] = {name: [] for name, _ in MILESTONES}
    for turn in spoken or turns:
        for name, value in steps(turn.latencies).items():
            out[name].append(value)
    return out


def latency_stats(results: Iterable[ScenarioResult]) -> dict[str, LatencyStats]:
    """Per milestone reached by some turn (in pipeline order): the count, median and p90 of
    the seconds from the end of the user's speech to it, over every turn of ``results``.

    >>> from voicekit.eval import TurnResult
    >>> turns = [TurnResult(k, "hi", latencies={"first_audio": s})
    ...          for k, s in enumerate([0.8, 0.9, 1.0, 2.0])]
    >>> latency_stats([ScenarioResult("a", "a.yaml", turns=turns)])
    {'first_audio': LatencyStats(count=4, median=0.95, p90=1.7)}
    """
    return {name: LatencyStats.of(v) for name, v in _per_milestone(results).items() if v}


def status(results: Sequence[ScenarioResult]) -> str:
    """``"passed"``, ``"failed"`` or ``"error"`` for one conversation; for a scenario run several
    times, ``"k/n passed"`` unless all runs agree."""
    each = ["error" if r.error is not None else "passed" if r.passed else "failed"
            for r in results]
    if len(set(each)) == 1:
        return each[0]
    return f"{each.count('passed')}/{len(each)} passed"


def _key(result: ScenarioResult) -> tuple[str, str]:
    return (result.scenario, Path(result.source).name)


def _grouped(results: Iterable[ScenarioResult]) -> dict[tuple[str, str], list[ScenarioResult]]:
    out: dict[tuple[str, str], list[ScenarioResult]] = {}
    for result in results:
        out.setdefault(_key(result), []).append(result)
    return out


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A scenario whose status differs between the baseline (``before``) and this run
    (``after``): ``"passed"``, ``"failed"``, ``"error"``, ``"k/n passed"`` or ``"missing"``."""

    scenario: str
    source: str
    before: str
    after: str

    @property
    def better(self) -> bool | None:
        """True if it passes more often now, False if less, None if it is new or gone."""
        if "missing" in (self.before, self.after):
            return None
        return _rate(self.after) > _rate(self.before)


def _rate(state: str) -> float:
    if state == "passed":
        return 1.0
    if state.endswith(" passed"):
        k, n = state.split()[0].split("/")
        return int(k) / int(n)
    return 0.0


@dataclass(frozen=True, slots=True)
class Comparison:
    """This run against a baseline: conversations passed of all (both runs), the scenarios
    whose status changed, and per milestone the latency stats before and after (None where a
    run never reached it)."""

    passed: int
    total: int
    baseline_passed: int
    baseline_total: int
    changes: tuple[StatusChange, ...]
    latency: tuple[tuple[str, LatencyStats | None, LatencyStats | None], ...]

    @property
    def pass_rate(self) -> float:
        """The share of this run's conversations that passed (0-1)."""
        return self.passed / self.total if self.total else 0.0

    @property
    def baseline_pass_rate(self) -> float:
        """The share of the baseline's conversations that passed (0-1)."""
        return self.baseline_passed / self.baseline_total if self.baseline_total else 0.0

    def describe(self) -> str:
        """The comparison as text: the pass rates, each change, each milestone's deltas."""
        delta = (self.pass_rate - self.baseline_pass_rate) * 100
        lines = [
            f"pass rate {self.baseline_pass_rate:.1%} → {self.pass_rate:.1%} "
            f"({delta:+.1f} points; {self.baseline_passed}/{self.baseline_total} → "
            f"{self.passed}/{self.total})"
        ]
        for change in self.changes:
            lines.append(f"  {change.scenario:<28} {change.before} → {change.after}")
        for name, before, after in self.latency:
            if before is None or after is None:
                continue
            lines.append(
                f"  {LABELS[name]:<16} median {before.median:.3f} → {after.median:.3f} s "
                f"({after.median - before.median:+.3f}), p90 {before.p90:.3f} → "
                f"{after.p90:.3f} s ({after.p90 - before.p90:+.3f})")
        return "\n".join(lines)


def compare(results: Iterable[ScenarioResult], baseline: Iterable[ScenarioResult]) -> Comparison:
    """Compare this run's ``results`` with a ``baseline`` run's. A scenario is matched by its
    name and its file's name (not the folder, so runs from two checkouts compare).

    >>> from voicekit.eval import Check
    >>> old = [ScenarioResult("a", "s/a.yaml"), ScenarioResult("b", "s/b.yaml")]
    >>> new = [ScenarioResult("a", "s/a.yaml", checks=[Check("greets", False)]),
    ...        ScenarioResult("b", "s/b.yaml")]
    >>> c = compare(new, old)
    >>> c.pass_rate, c.baseline_pass_rate, [(x.scenario, x.before, x.after) for x in c.changes]
    (0.5, 1.0, [('a', 'passed', 'failed')])
    """
    now, before = list(results), list(baseline)
    ours, theirs = _grouped(now), _grouped(before)
    changes = []
    for key in sorted(set(ours) | set(theirs)):
        after_state = status(ours[key]) if key in ours else "missing"
        before_state = status(theirs[key]) if key in theirs else "missing"
        if after_state != before_state:
            source = (ours.get(key) or theirs[key])[0].source
            changes.append(StatusChange(key[0], source, before_state, after_state))
    stats_now, stats_before = latency_stats(now), latency_stats(before)
    latency = tuple(
        (name, stats_before.get(name), stats_now.get(name))
        for name, _ in MILESTONES
        if name in stats_now or name in stats_before
    )
    return Comparison(
        sum(r.passed for r in now), len(now), sum(r.passed for r in before), len(before),
        tuple(changes), latency,
    )


def order_for_report(results: Iterable[ScenarioResult]) -> list[ScenarioResult]:
    """Crashed conversations first, then failed ones, then those that passed; by file and
    name within each."""
    def rank(r: ScenarioResult) -> tuple[int, str, str]:
        return (0 if r.error is not None else 1 if not r.passed else 2, r.source, r.scenario)
    return sorted(results, key=rank)


# ---------------------------------------------------------------------------------------------
# The page

_CSS = """
:root { --ok: #2e7d32; --bad: #c62828; --err: #6a1b9a; --ink: #1f2328; --muted: #59636e;
        --line: #d8dee4; --soft: #f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       color: var(--ink); margin: 0 auto; padding: 24px 28px 60px; max-width: 1180px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 34px 0 10px;
     border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 0 0 6px; }
.sub { color: var(--muted); margin: 0 0 16px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 8px 14px; min-width: 128px;
        background: var(--soft); }
.card b { display: block; font-size: 20px; } .card span { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { background: var(--soft); position: sticky; top: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.badge { display: inline-block; padding: 0 7px; border-radius: 10px; font-size: 12px;
         font-weight: 600; color: #fff; white-space: nowrap; }
.badge.passed { background: var(--ok); } .badge.failed { background: var(--bad); }
.badge.error { background: var(--err); } .badge.mixed { background: #b26a00; }
.badge.missing { background: #8c959f; }
.better { color: var(--ok); font-weight: 600; } .worse { color: var(--bad); font-weight: 600; }
.failure { border: 1px solid var(--line); border-left: 4px solid var(--bad);
           border-radius: 6px; padding: 10px 14px; margin: 0 0 14px; }
.failure.crashed { border-left-color: var(--err); }
.reasons { margin: 4px 0 8px; padding-left: 20px; } .reasons li { color: var(--bad); }
.transcript td.role { font-weight: 600; width: 56px; } .transcript td.t { width: 64px; }
.transcript tr.user td.role { color: #0b5cad; } .transcript tr.agent td.role { color: #8250df; }
.cut { color: var(--muted); font-style: italic; }
pre { background: var(--soft); padding: 8px; border-radius: 6px; white-space: pre-wrap;
      margin: 6px 0; font-size: 12px; }
.plot { max-width: 100%; height: auto; display: block; margin: 6px 0 18px; }
details { margin: 4px 0; } summary { cursor: pointer; }
.labels code { background: var(--soft); padding: 0 4px; border-radius: 4px; margin-right: 6px; }
"""


def _badge(state: str) -> str:
    kind = state if state in ("passed", "failed", "error", "missing") else "mixed"
    return f'<span class="badge {kind}">{escape(state)}</span>'


def _s(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f} s"


def _delta(before: float | None, after: float | None, *, lower_better: bool = True) -> str:
    if before is None or after is None:
        return ""
    d = after - before
    if abs(d) < 0.0005:
        return '<span>±0.000</span>'
    good = (d < 0) == lower_better
    return f'<span class="{"better" if good else "worse"}">{d:+.3f}</span>'


def _cards(results: list[ScenarioResult]) -> str:
    passed = sum(r.passed for r in results)
    errors = sum(r.error is not None for r in results)
    turns = sum(len(r.turns) for r in results)
    v2v = [t.voice_to_voice for r in results for t in r.turns if t.voice_to_voice is not None]
    retried = sum(r.attempts > 1 for r in results)
    rate = passed / len(results) if results else 0.0
    cards = [
        (f"{passed}/{len(results)}", f"passed ({rate:.1%})"),
        (str(len(results) - passed - errors), "failed"),
        (str(errors), "crashed"),
        (str(turns), "turns"),
        (_s(quantile(v2v, 0.5)) if v2v else "–", "first audio, median"),
        (_s(quantile(v2v, 0.9)) if v2v else "–", "first audio, p90"),
        (f"{sum(r.wall_time for r in results):.1f} s", "wall time (sum)"),
        (str(retried), "retried"),
    ]
    return '<div class="cards">' + "".join(
        f'<div class="card"><b>{escape(value)}</b><span>{escape(what)}</span></div>'
        for value, what in cards) + "</div>"


def _labels(results: list[ScenarioResult]) -> str:
    common: dict[str, str] | None = None
    for result in results:
        items = dict(result.labels)
        common = items if common is None else {
            k: v for k, v in common.items() if items.get(k) == v}
    if not common:
        return ""
    return '<p class="labels">' + "".join(
        f"<code>{escape(k)}={escape(v)}</code>" for k, v in sorted(common.items())) + "</p>"


def _comparison(c: Comparison, names: tuple[str, str]) -> str:
    delta = (c.pass_rate - c.baseline_pass_rate) * 100
    trend = "better" if delta > 0 else "worse" if delta < 0 else ""
    out = [
        '<section id="comparison"><h2>Compared with the baseline</h2>',
        f"<p>Pass rate: <b>{c.baseline_pass_rate:.1%}</b> ({escape(names[1])}, "
        f"{c.baseline_passed}/{c.baseline_total}) → <b>{c.pass_rate:.1%}</b> "
        f"({escape(names[0])}, {c.passed}/{c.total}): "
        f'<span class="{trend}">{delta:+.1f} points</span>.</p>',
    ]
    if c.changes:
        out.append('<table class="changes"><thead><tr><th>scenario</th><th>file</th>'
                   f"<th>{escape(names[1])}</th><th>{escape(names[0])}</th><th></th>"
                   "</tr></thead><tbody>")
        for x in c.changes:
            verdict = ("" if x.better is None else
                       '<span class="better">fixed</span>' if x.better else
                       '<span class="worse">broke</span>')
            out.append(f"<tr><td>{escape(x.scenario)}</td><td>{escape(x.source)}</td>"
                       f"<td>{_badge(x.before)}</td><td>{_badge(x.after)}</td>"
                       f"<td>{verdict}</td></tr>")
        out.append("</tbody></table>")
    else:
        out.append("<p>No scenario changed status.</p>")
    out.append('<h3 style="margin-top:16px">Latency from the end of speech</h3>'
               '<table class="deltas"><thead><tr><th>milestone</th>'
               f'<th class="num">median, {escape(names[1])}</th>'
               f'<th class="num">median, {escape(names[0])}</th><th class="num">Δ s</th>'
               f'<th class="num">p90, {escape(names[1])}</th>'
               f'<th class="num">p90, {escape(names[0])}</th><th class="num">Δ s</th>'
               "</tr></thead><tbody>")
    for name, before, after in c.latency:
        b_med, b_p90 = (before.median, before.p90) if before else (None, None)
        a_med, a_p90 = (after.median, after.p90) if after else (None, None)
        out.append(f"<tr><td>{escape(LABELS[name])}</td>"
                   f'<td class="num">{_s(b_med)}</td><td class="num">{_s(a_med)}</td>'
                   f'<td class="num">{_delta(b_med, a_med)}</td>'
                   f'<td class="num">{_s(b_p90)}</td><td class="num">{_s(a_p90)}</td>'
                   f'<td class="num">{_delta(b_p90, a_p90)}</td></tr>')
    out.append("</tbody></table></section>")
    return "".join(out)


def _plots(results: list[ScenarioResult], baseline: list[ScenarioResult] | None,
           names: tuple[str, str]) -> str:
    ours = _per_milestone(results)
    theirs = _per_milestone(baseline) if baseline is not None else None
    rows = [(label, ours[name], None if theirs is None else theirs[name])
            for name, label in MILESTONES]
    bars = [(names[0], {n: quantile(v, 0.5) for n, v in _per_step(results).items() if v})]
    if baseline is not None:
        bars.append((names[1], {n: quantile(v, 0.5) for n, v in _per_step(baseline).items()
                                if v}))
    return (
        '<section id="latency"><h2>Latency</h2>'
        "<h3>Distributions: seconds from the end of the user's speech to each milestone</h3>"
        '<p class="sub">Each point is one turn (a typed turn counts from its end); the box '
        "spans the 25th to 75th percentile, the whiskers the 10th to 90th, the thick line is "
        "the median; the figures are median / p90.</p>"
        + distributions_svg(rows, names=names)
        + "<h3>Per-milestone breakdown: the median time of each step</h3>"
        '<p class="sub">Each step counts from the milestone before it (the STT from the VAD '
        "stop); a step done before the turn ended (a reply prepared early) takes no time. "
        "Over the spoken turns when there are some.</p>"
        + breakdown_svg(bars, LABELS)
        + "<h3>End of speech → first reply audio</h3>"
        + histogram_svg(
            ours["first_audio"], None if theirs is None else theirs["first_audio"],
            names=names)
        + "</section>"
    )


def _table(ordered: list[ScenarioResult], before: dict[tuple[str, str], str] | None,
           names: tuple[str, str]) -> str:
    """The table of every conversation; ``before``: the baseline's status per scenario."""
    head = ['<section id="results"><h2>Conversations</h2><table class="results"><thead><tr>'
            '<th class="num">#</th><th>status</th>']
    if before is not None:
        head.append(f"<th>{escape(names[1])}</th>")
    head.append('<th>scenario</th><th>file</th><th class="num">turns</th>'
                '<th class="num">checks</th><th class="num">first audio (median)</th>'
                '<th class="num">wall</th><th>why</th></tr></thead><tbody>')
    rows = []
    for k, r in enumerate(ordered, 1):
        checks = [c for c in r.checks] + [c for t in r.turns for c in t.checks]
        ok = sum(c.passed for c in checks)
        v2v = [t.voice_to_voice for t in r.turns if t.voice_to_voice is not None]
        why = r.why().split("\n")
        state = status([r])
        name = escape(r.scenario)
        if not r.passed:
            name = f'<a href="#r{k}">{name}</a>'
        cells = [f'<td class="num">{k}</td><td>{_badge(state)}</td>']
        if before is not None:
            cells.append(f"<td>{_badge(before.get(_key(r), 'missing'))}</td>")
        retried = f" ({r.attempts} attempts)" if r.attempts > 1 else ""
        cells.append(
            f"<td>{name}</td><td>{escape(r.source)}</td><td class=\"num\">{len(r.turns)}</td>"
            f'<td class="num">{ok}/{len(checks)}</td>'
            f'<td class="num">{_s(quantile(v2v, 0.5)) if v2v else "–"}</td>'
            f'<td class="num">{r.wall_time:.1f} s{retried}</td>'
            f"<td>{escape(why[0]) if why else ''}</td>")
        rows.append(f'<tr class="{state}">' + "".join(cells) + "</tr>")
    return "".join(head) + "".join(rows) + "</tbody></table></section>"


def _transcript(r: ScenarioResult) -> str:
    if not r.transcript:
        return '<p class="sub">No transcript: nothing was said.</p>'
    rows = []
    for line in r.transcript:
        t = "" if line.t is None else f"{line.t:.2f} s"
        cut = ' <span class="cut">(interrupted)</span>' if line.interrupted else ""
        rows.append(f'<tr class="{line.role}"><td class="t num">{t}</td>'
                    f'<td class="role">{line.role}</td><td>{escape(line.text)}{cut}</td></tr>')
    return '<table class="transcript"><tbody>' + "".join(rows) + "</tbody></table>"


def _arguments(arguments: object) -> str:
    return json.dumps(thaw(arguments), ensure_ascii=False)


def _details(r: ScenarioResult) -> str:
    parts = []
    if r.tool_calls:
        items = "".join(
            f"<li><code>{escape(u.name)}({escape(_arguments(u.arguments))})</code>"
            f"{' → ' + escape(u.result) if u.result is not None else ''}</li>"
            for u in r.tool_calls)
        parts.append(f"<p>Tool calls:</p><ul>{items}</ul>")
    if r.failures:
        items = "".join(
            f"<li>{escape(f.source)}: {escape(f.error)}"
            f"{' (the apology was played)' if f.fallback else ''}"
            f"{'' if f.turn is None else f' — turn {f.turn + 1}'}</li>" for f in r.failures)
        parts.append(f"<p>Failed replies:</p><ul>{items}</ul>")
    facts = []
    if r.ended:
        facts.append("the agent ended the call")
    if r.transferred is not None:
        facts.append(f"the agent transferred the call to {escape(r.transferred)}")
    if r.wer is not None:
        facts.append(f"WER of what the agent heard: {r.wer:.1%}")
    if r.judge is not None:
        facts.append(f"judge: score {r.judge.score:g} — {escape(r.judge.reason)}")
    if r.seed is not None:
        facts.append(f"seed {r.seed}")
    if facts:
        parts.append("<p>" + "; ".join(facts) + ".</p>")
    return "".join(parts)


def _failure(k: int, r: ScenarioResult) -> str:
    crashed = r.error is not None
    reasons = "".join(f"<li>{escape(line)}</li>" for line in r.why().split("\n")
                      if not line.startswith("error: "))
    error = f"<pre>{escape(r.error)}</pre>" if crashed and r.error else ""
    return (
        f'<article class="failure{" crashed" if crashed else ""}" id="r{k}">'
        f"<h3>{_badge(status([r]))} {escape(r.scenario)} "
        f'<span class="sub">{escape(r.source)}</span></h3>'
        f'{error}<ul class="reasons">{reasons}</ul>{_transcript(r)}{_details(r)}</article>'
    )


def _nav(failures: bool, comparison: bool) -> str:
    links = [("failures", "failures")] if failures else []
    if comparison:
        links.append(("comparison", "comparison"))
    links += [("latency", "latency"), ("results", "all conversations")]
    return '<nav class="sub">' + " · ".join(
        f'<a href="#{anchor}">{text}</a>' for anchor, text in links) + "</nav>"


def html_report(
    results: Iterable[ScenarioResult],
    *,
    baseline: Iterable[ScenarioResult] | None = None,
    title: str = "voicekit eval",
    names: tuple[str, str] = ("this run", "baseline"),
) -> str:
    """The whole report as one HTML document (see the module documentation). ``baseline``: the
    results of an earlier run to compare with; ``names`` what to call the two runs."""
    ordered = order_for_report(results)
    base = list(baseline) if baseline is not None else None
    failing = [(k, r) for k, r in enumerate(ordered, 1) if not r.passed]
    passing = [(k, r) for k, r in enumerate(ordered, 1) if r.passed]
    body = [
        f"<header><h1>{escape(title)}</h1>",
        f'<p class="sub">{len(ordered)} conversations from '
        f"{len({r.source for r in ordered})} files</p>",
        _labels(ordered), _cards(ordered), _nav(bool(failing), base is not None), "</header>",
    ]
    if failing:
        body.append('<section id="failures"><h2>Failures</h2>'
                    + "".join(_failure(k, r) for k, r in failing) + "</section>")
    else:
        body.append('<section id="failures"><h2>Failures</h2><p>None: every conversation '
                    "passed.</p></section>")
    if base is not None:
        body.append(_comparison(compare(ordered, base), names))
    body.append(_plots(ordered, base, names))
    before = None if base is None else {k: status(v) for k, v in _grouped(base).items()}
    body.append(_table(ordered, before, names))
    if passing:
        body.append('<section id="passed"><h2>Transcripts of the conversations that passed'
                    "</h2>" + "".join(
                        f'<details id="r{k}"><summary>{escape(r.scenario)} '
                        f'<span class="sub">{escape(r.source)}</span></summary>'
                        f"{_transcript(r)}{_details(r)}</details>" for k, r in passing)
                    + "</section>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        + "".join(body) + "</body></html>\n"
    )


def write_report(
    results: Iterable[ScenarioResult],
    path: str | os.PathLike[str],
    *,
    baseline: Iterable[ScenarioResult] | None = None,
    title: str = "voicekit eval",
    names: tuple[str, str] = ("this run", "baseline"),
) -> Path:
    """Write :func:`html_report` to ``path`` (UTF-8); the path."""
    out = Path(path)
    out.write_text(html_report(results, baseline=baseline, title=title, names=names),
                   encoding="utf-8")
    return out
