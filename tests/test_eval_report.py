"""The HTML report of ``voicekit eval`` and the comparison of two runs, read as text and parsed:
failures first with their transcripts, the plots as well-formed inline SVG holding every point,
nothing fetched from anywhere, the figures against numpy's."""

from __future__ import annotations

import random
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import numpy as np
import pytest
from test_eval_report_runs import NAMES, baseline_run, current_run

from voicekit._metrics import MILESTONES
from voicekit.eval import Check, Line, ScenarioResult, TurnResult
from voicekit.eval._plots import MAX_POINTS, distributions_svg, histogram_svg, nice_ticks, quantile
from voicekit.eval._report import (
    LatencyStats,
    compare,
    html_report,
    latency_stats,
    order_for_report,
    status,
    write_report,
)

SVG = "{http://www.w3.org/2000/svg}"


class Page(HTMLParser):
    """What the tests look at: elements in document order with their attributes, and the
    text inside each element that has an id."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.open_ids: list[tuple[str, str, int]] = []
        self.text_of: dict[str, str] = {}
        self.depth = 0
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attributes = {k: v or "" for k, v in attrs}
        self.elements.append((tag, attributes))
        if tag in ("meta", "br", "img", "input", "link", "path", "rect", "circle", "line"):
            return
        self.depth += 1
        if "id" in attributes:
            self.open_ids.append((attributes["id"], tag, self.depth))
            self.text_of[attributes["id"]] = ""

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag):
        if tag in ("meta", "br", "img", "input", "link", "path", "rect", "circle", "line"):
            return
        while self.open_ids and self.open_ids[-1][2] >= self.depth:
            self.open_ids.pop()
        self.depth -= 1

    def handle_data(self, data):
        for key, _, _ in self.open_ids:
            self.text_of[key] += data

    def ids(self) -> list[str]:
        return [a["id"] for _, a in self.elements if "id" in a]


def test_compare_two_runs():
    before, after = baseline_run(), current_run()
    c = compare(after, before)
    assert (c.baseline_passed, c.baseline_total, c.passed, c.total) == (12, 14, 11, 14)
    assert [(x.scenario, x.before, x.after, x.better) for x in c.changes] == [
        ("dtmf menu", "failed", "passed", True),
        ("long question", "passed", "error", False),
        ("weather in Paris", "passed", "failed", False),
    ]
    # the latency figures are numpy's over every turn that reached the milestone
    for name, was, now in c.latency:
        for run, stats in ((before, was), (after, now)):
            values = [t.latencies[name] for r in run for t in r.turns if name in t.latencies]
            assert stats.count == len(values)
            assert stats.median == pytest.approx(np.percentile(values, 50))
            assert stats.p90 == pytest.approx(np.percentile(values, 90))
    assert [name for name, _, _ in c.latency] == [name for name, _ in MILESTONES]
    text = c.describe()
    assert text.splitlines()[0] == "pass rate 85.7% → 78.6% (-7.1 points; 12/14 → 11/14)"
    assert "dtmf menu" in text and "failed → passed" in text


def test_a_scenario_run_several_times_and_a_new_one():
    ok = ScenarioResult("t", "s/t.yaml")
    bad = ScenarioResult("t", "s/t.yaml", checks=[Check("x", False)])
    assert status([ok, ok]) == "passed" and status([ok, bad, ok]) == "2/3 passed"
    c = compare([ok, bad, ok, ScenarioResult("new", "s/new.yaml")],
                [ok, bad, bad, ScenarioResult("gone", "elsewhere/gone.yaml")])
    assert [(x.scenario, x.before, x.after, x.better) for x in c.changes] == [
        ("gone", "passed", "missing", None), ("new", "missing", "passed", None),
        ("t", "1/3 passed", "2/3 passed", True)]
    # a run from another checkout (another folder) still matches by file name
    assert compare([ScenarioResult("a", "/ci/x/a.yaml")], [ScenarioResult("a", "a.yaml")]
                   ).changes == ()


def test_latency_stats_per_milestone():
    run = current_run()
    stats = latency_stats(run)
    audio = [t.latencies["first_audio"] for r in run for t in r.turns]
    assert stats["first_audio"] == LatencyStats(
        len(audio), pytest.approx(np.median(audio)), pytest.approx(np.percentile(audio, 90)))
    assert latency_stats([ScenarioResult("a", "a.yaml")]) == {}


def test_quantiles_are_numpys():
    rng = random.Random(5)
    for n in (1, 2, 3, 10, 101):
        values = [rng.uniform(0, 3) for _ in range(n)]
        for q in (0, 0.1, 0.25, 0.5, 0.9, 1):
            assert quantile(values, q) == pytest.approx(np.percentile(values, q * 100))
    with pytest.raises(ValueError):
        quantile([], 0.5)
    for top in (0.0, 0.004, 0.93, 1.0, 2.6, 17, 1234):
        ticks = nice_ticks(top)
        assert ticks[0] == 0 and ticks[-1] >= top and 3 <= len(ticks) <= 8, (top, ticks)


def test_the_report_shows_failures_first_with_their_transcripts(tmp_path):
    before, after = baseline_run(), current_run()
    path = write_report(after, tmp_path / "report.html", baseline=before,
                        names=("smart turn", "timeout"))
    html = path.read_text(encoding="utf-8")
    page = Page(html)
    ids = page.ids()
    # the failures come before everything else, crashed first, and the table follows
    assert ids[:3] == ["failures", "r1", "r2"]
    assert ids.index("failures") < ids.index("comparison") < ids.index("latency") < ids.index(
        "results")
    failing = [r for r in order_for_report(after) if not r.passed]
    assert [r.scenario for r in failing] == ["long question", "spell a name", "weather in Paris"]
    for k, result in enumerate(failing, 1):
        text = page.text_of[f"r{k}"]
        assert result.scenario in text
        for line in result.transcript:
            assert line.text in text
        for reason in result.why().splitlines():
            assert reason.removeprefix("error: ") in text
    assert "ProviderTimeout: [llm] no answer in 5 s" in page.text_of["r1"]
    # the table: one row per conversation, failures on top, with the baseline's status
    rows = re.findall(r'<tr class="(passed|failed|error|[^"]*)"><td class="num">(\d+)</td>',
                      html)
    assert [state for state, _ in rows[:3]] == ["error", "failed", "failed"]
    assert {state for state, _ in rows[3:]} == {"passed"} and len(rows) == 14
    table = page.text_of["results"]
    assert "missing" not in table
    # the comparison
    comparison = page.text_of["comparison"]
    assert "85.7%" in comparison and "78.6%" in comparison and "-7.1 points" in comparison
    assert "fixed" in comparison and "broke" in comparison
    for _name, label in MILESTONES:
        assert label in comparison
    # passed conversations keep their transcripts, folded
    assert "passed" in ids and html.count("<details") == 11


def test_the_report_is_self_contained_and_deterministic():
    html = html_report(current_run(), baseline=baseline_run())
    assert html == html_report(current_run(), baseline=baseline_run())
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert "url(" not in html and "<img" not in html and "<iframe" not in html
    for tag, attributes in Page(html).elements:
        for name in ("src", "href", "srcset", "action", "data"):
            value = attributes.get(name, "")
            assert not value or value.startswith("#"), (tag, name, value)
    # the only URL is the SVG namespace, which is a name, never fetched
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) == {"http://www.w3.org/2000/svg"}


def test_the_plots_are_well_formed_svg_holding_every_point():
    before, after = baseline_run(), current_run()
    html = html_report(after, baseline=before)
    svgs = re.findall(r"<svg.*?</svg>", html, flags=re.S)
    plots = {ET.fromstring(s).get("data-plot"): ET.fromstring(s) for s in svgs}
    assert set(plots) == {"distributions", "breakdown", "histogram"}
    # every turn's every milestone is a point (or an edge marker), this run and the baseline
    values = sum(len(t.latencies) for r in before + after for t in r.turns)
    boxes = plots["distributions"].findall(f".//{SVG}g")
    marks = sum(len(b.findall(f"{SVG}circle")) + len(b.findall(f"{SVG}path")) for b in boxes)
    assert marks == values and len(boxes) == 2 * len(MILESTONES)
    # the breakdown: one stacked segment per milestone for each of the two runs
    steps = plots["breakdown"].findall(f".//{SVG}rect[@class='step']")
    assert len(steps) == 2 * len(MILESTONES)
    assert all(float(s.get("width")) >= 0 for s in steps)
    # the histogram counts every turn that had first audio
    bins = plots["histogram"].findall(f".//{SVG}rect[@class='bin']")
    counted = sum(int(b.find(f"{SVG}title").text.split()[0]) for b in bins)
    assert counted == sum(len(r.turns) for r in after)


def test_points_beyond_twice_the_p90_sit_at_the_edge():
    svg = ET.fromstring(distributions_svg([("x", [0.5] * 20 + [30.0], None)]))
    assert len(svg.findall(f".//{SVG}circle")) == 20
    assert len(svg.findall(f".//{SVG}path")) == 1
    ticks = [t.text for t in svg.findall(f"{SVG}text") if t.text and t.text.endswith(" s")]
    assert ticks[-1] == "1 s"  # the axis is not stretched to 30 s


def test_the_breakdown_of_a_mixed_run_is_over_its_spoken_turns():
    typed = TurnResult(0, "hi", "hello", {"turn_end": 0.0, "first_audio": 0.01})
    spoken = TurnResult(0, "hi", "hello", {"vad_stop": 0.2, "transcript": 0.5, "turn_end": 0.8,
                                           "first_audio": 1.0})
    run = [ScenarioResult(f"t{k}", "t.yaml", turns=[typed]) for k in range(5)]
    run.append(ScenarioResult("s", "s.yaml", turns=[spoken]))
    svg = re.search(r'<svg[^>]*data-plot="breakdown".*?</svg>', html_report(run), re.S)
    titles = [r.find(f"{SVG}title").text
              for r in ET.fromstring(svg.group(0)).iter(f"{SVG}rect") if r.get("class") == "step"]
    assert [t.split(": ", 1)[1] for t in titles] == [
        "VAD stop 200 ms (median)", "STT 300 ms (median)", "turn end 300 ms (median)",
        "TTS first audio 200 ms (median)"]
    only_typed = html_report(run[:5])
    assert "turn end 0 ms (median)" in only_typed and "TTS first audio 10 ms" in only_typed


def test_a_large_run_draws_at_most_max_points_per_box_with_the_same_figures():
    values = [i / 1000 for i in range(1000, 0, -1)]
    svg = ET.fromstring(distributions_svg([("x", values, None)]))
    circles = [float(c.get("cx")) for c in svg.iter(f"{SVG}circle")]
    assert len(circles) == MAX_POINTS
    assert min(circles) == pytest.approx(svg_x(svg, 0.001), abs=0.06)
    assert max(circles) == pytest.approx(svg_x(svg, 1.0), abs=0.06)
    figures = [t.text for t in svg.iter(f"{SVG}text") if t.text and "/" in t.text]
    assert figures == [f"{np.median(values):.2f} / {np.percentile(values, 90):.2f} s"]


def svg_x(svg: ET.Element, seconds: float) -> float:
    """Where ``seconds`` sits on the plot's axis, from its 0 and last tick lines."""
    lines = [line for line in svg.findall(f"{SVG}line")]
    ticks = [t for t in svg.findall(f"{SVG}text") if t.text and t.text.endswith(" s")]
    x0, x1 = float(lines[0].get("x1")), float(lines[-1].get("x1"))
    top = float(ticks[-1].text.removesuffix(" s"))
    return x0 + (x1 - x0) * seconds / top


def test_a_run_without_latencies_or_failures():
    html = html_report([ScenarioResult("typed", "a.yaml", turns=[TurnResult(0, "hi", "hello")],
                                       transcript=[Line("user", "<script>alert(1)</script>")])])
    page = Page(html)
    assert "None: every conversation passed." in page.text_of["failures"]
    assert html.count("no latencies were measured") == 3
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert "comparison" not in page.ids()
    assert ET.fromstring(histogram_svg([])).get("data-plot") == "histogram"


def test_every_scenario_of_the_runs_is_in_the_report():
    html = html_report(current_run())
    for name in NAMES:
        assert name in html
