"""The report's plots as inline SVG text: no plotting library, no fonts or scripts to fetch.

Pure functions from numbers to an ``<svg>`` string, the same bytes for the same numbers:
:func:`distributions_svg` (a box and the points of each milestone's latencies, a baseline's
beside them), :func:`breakdown_svg` (the median of each step stacked into one bar per run) and
:func:`histogram_svg` (end of speech → first audio).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from html import escape

__all__ = ["breakdown_svg", "distributions_svg", "histogram_svg", "nice_ticks", "quantile"]

WIDTH = 860
LEFT = 150  # room for the row labels
RIGHT = 170  # room for the figures at the end of a row
COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#edc948")
BASELINE = "#9a9a9a"
MAX_POINTS = 400
"""Points drawn per box at most (the box and its figures always use every value)."""
FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"'


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values``, interpolated between the two nearest ranks
    (numpy's default). Raises ``ValueError`` on no values.

    >>> quantile([1, 2, 3, 4], 0.5), quantile([0.2, 0.9, 0.4], 0.9)
    (2.5, 0.8)
    """
    if not values:
        raise ValueError("quantile: no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (position - low), 9)


def nice_ticks(top: float, count: int = 6) -> list[float]:
    """Round tick values from 0 to at least ``top``, about ``count`` of them.

    >>> nice_ticks(0.93)
    [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    """
    top = max(top, 1e-3)
    raw = top / max(1, count - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    n = math.ceil(top / step - 1e-9)
    return [round(k * step, 9) for k in range(n + 1)]


def _seconds(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _tick_label(value: float) -> str:
    return f"{value:g} s"


def _svg(name: str, height: float, label: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" data-plot="{name}" '
        f'viewBox="0 0 {WIDTH} {height:.0f}" width="{WIDTH}" height="{height:.0f}" '
        f'role="img" aria-label="{escape(label)}" {FONT} font-size="12">'
        f"<title>{escape(label)}</title>" + "".join(body) + "</svg>"
    )


def _axis(ticks: list[float], x: Callable[[float], float], top: float, bottom: float
          ) -> list[str]:
    out = []
    for tick in ticks:
        px = x(tick)
        out.append(f'<line x1="{px:.1f}" y1="{top:.1f}" x2="{px:.1f}" y2="{bottom:.1f}" '
                   'stroke="#e4e4e4"/>')
        out.append(f'<text x="{px:.1f}" y="{bottom + 14:.1f}" text-anchor="middle" '
                   f'fill="#555">{_tick_label(tick)}</text>')
    return out


def _no_data(name: str, label: str) -> str:
    return _svg(name, 40, label, [
        f'<text x="{WIDTH / 2:.0f}" y="24" text-anchor="middle" fill="#777">'
        "no latencies were measured</text>"])


def distributions_svg(
    rows: Sequence[tuple[str, Sequence[float], Sequence[float] | None]],
    *,
    names: tuple[str, str] = ("this run", "baseline"),
) -> str:
    """One row per ``(label, values, baseline values or None)``: the points, a box from the 25th
    to the 75th percentile, whiskers from the 10th to the 90th and the median; the baseline's
    box (grey) just under it. Values past twice the largest p90 are drawn at the edge as ▸;
    beyond :data:`MAX_POINTS` values, evenly spaced ranks of them are drawn.
    """
    label = "Latency distributions: seconds from the end of the user's speech"
    kept = [(j, name, list(v), None if b is None else list(b))
            for j, (name, v, b) in enumerate(rows) if v or b]  # j: the row's colour
    if not kept:
        return _no_data("distributions", label)
    compare = any(b is not None for _, _, _, b in kept)
    p90s = [quantile(s, 0.9) for _, _, v, b in kept for s in (v, b or []) if s]
    everything = [value for _, _, v, b in kept for value in (*v, *(b or []))]
    top = min(max(everything), 2 * max(p90s)) if max(p90s) > 0 else max(everything)
    ticks = nice_ticks(top)
    span = ticks[-1] or 1.0
    plot_right = WIDTH - RIGHT

    def x(value: float) -> float:
        return LEFT + (plot_right - LEFT) * min(value, span) / span

    band = 44 if compare else 30
    header = 24 if compare else 8
    height = header + band * len(kept) + 26
    body = _axis(ticks, x, header, header + band * len(kept))
    if compare:
        swatches = "".join(
            f'<rect x="{LEFT + 7 * j}" y="6" width="6" height="10" fill="{COLOURS[j]}"/>'
            for j in range(3))
        after = LEFT + 30 + 7 * len(names[0])
        body.append(f'{swatches}<text x="{LEFT + 24}" y="15">{escape(names[0])}</text>'
                    f'<rect x="{after}" y="6" width="10" height="10" fill="{BASELINE}"/>'
                    f'<text x="{after + 14}" y="15">{escape(names[1])}</text>')
    for k, (j, name, values, base) in enumerate(kept):
        y0 = header + band * k
        colour = COLOURS[j % len(COLOURS)]
        body.append(f'<text x="{LEFT - 10}" y="{y0 + 19:.1f}" text-anchor="end">'
                    f"{escape(name)}</text>")
        series = [(values, colour, y0 + 4, names[0])]
        if base is not None:
            series.append((base, BASELINE, y0 + 26, names[1]))
        for data, fill, top_y, who in series:
            if not data:
                continue
            body += _box(data, fill, top_y, 14, x, span, who, name, plot_right)
    return _svg("distributions", height, label, body)


def _box(values: list[float], fill: str, y: float, h: float, x: Callable[[float], float],
         span: float, who: str, row: str, plot_right: float) -> list[str]:
    q = {p: quantile(values, p) for p in (0.1, 0.25, 0.5, 0.75, 0.9)}
    mid = y + h / 2
    tip = (f"{row}, {who}: n={len(values)}, median {_seconds(q[0.5])} s, "
           f"p90 {_seconds(q[0.9])} s")
    out = [f'<g class="box"><title>{escape(tip)}</title>',
           f'<line x1="{x(q[0.1]):.1f}" y1="{mid:.1f}" x2="{x(q[0.9]):.1f}" y2="{mid:.1f}" '
           f'stroke="{fill}" stroke-width="1.5"/>',
           f'<rect x="{x(q[0.25]):.1f}" y="{y:.1f}" '
           f'width="{max(1.0, x(q[0.75]) - x(q[0.25])):.1f}" height="{h:.1f}" fill="{fill}" '
           'fill-opacity="0.25" stroke="' + fill + '"/>',
           f'<line x1="{x(q[0.5]):.1f}" y1="{y - 2:.1f}" x2="{x(q[0.5]):.1f}" '
           f'y2="{y + h + 2:.1f}" stroke="{fill}" stroke-width="3"/>']
    for i, value in enumerate(_thinned(values)):
        jitter = ((i * 0.6180339887) % 1.0) * (h - 4) + 2
        if value > span:
            px = x(span)
            out.append(f'<path d="M{px - 5:.1f},{y + jitter - 3:.1f} l5,3 l-5,3 z" '
                       f'fill="{fill}"/>')
        else:
            out.append(f'<circle cx="{x(value):.1f}" cy="{y + jitter:.1f}" r="2" '
                       f'fill="{fill}" fill-opacity="0.6"/>')
    out.append(f'<text x="{plot_right + 10:.1f}" y="{mid + 4:.1f}" fill="#333">'
               f"{_seconds(q[0.5])} / {_seconds(q[0.9])} s</text></g>")
    return out


def _thinned(values: list[float]) -> list[float]:
    """At most :data:`MAX_POINTS` of ``values``: all of them, or evenly spaced ranks of the
    sorted values (the same distribution, a page that stays light for 10,000 turns)."""
    if len(values) <= MAX_POINTS:
        return values
    ordered = sorted(values)
    last = len(ordered) - 1
    return [ordered[round(k * last / (MAX_POINTS - 1))] for k in range(MAX_POINTS)]


def breakdown_svg(
    bars: Sequence[tuple[str, Mapping[str, float]]], labels: Mapping[str, str]
) -> str:
    """One stacked bar per ``(run name, {milestone: median step seconds})``: each step's median
    (in ``labels``' order, named by them), the sum at its end."""
    label = "Per-milestone breakdown: the median time of each step"
    bars = [(name, dict(parts)) for name, parts in bars if parts]
    if not bars:
        return _no_data("breakdown", label)
    total = max(sum(parts.values()) for _, parts in bars)
    ticks = nice_ticks(total)
    span = ticks[-1] or 1.0
    plot_right = WIDTH - RIGHT

    def x(value: float) -> float:
        return LEFT + (plot_right - LEFT) * value / span

    bar_h, gap, top = 26, 14, 8
    legend_y = top + (bar_h + gap) * len(bars) + 30
    height = legend_y + 22
    body = _axis(ticks, x, top, top + (bar_h + gap) * len(bars) - gap + 4)
    order = list(labels)
    for k, (name, parts) in enumerate(bars):
        y = top + (bar_h + gap) * k
        body.append(f'<text x="{LEFT - 10}" y="{y + bar_h / 2 + 4:.1f}" text-anchor="end">'
                    f"{escape(name)}</text>")
        at = 0.0
        for j, milestone in enumerate(order):
            seconds = parts.get(milestone)
            if seconds is None:
                continue
            colour = COLOURS[j % len(COLOURS)]
            tip = f"{name}: {labels[milestone]} {seconds * 1000:.0f} ms (median)"
            body.append(
                f'<rect class="step" x="{x(at):.1f}" y="{y:.1f}" '
                f'width="{max(0.0, x(at + seconds) - x(at)):.1f}" height="{bar_h}" '
                f'fill="{colour}"><title>{escape(tip)}</title></rect>')
            at += seconds
        body.append(f'<text x="{x(at) + 8:.1f}" y="{y + bar_h / 2 + 4:.1f}" fill="#333">'
                    f"{_seconds(at)} s</text>")
    lx = LEFT
    for j, milestone in enumerate(order):
        colour = COLOURS[j % len(COLOURS)]
        text = labels[milestone]
        body.append(f'<rect x="{lx}" y="{legend_y - 10}" width="10" height="10" '
                    f'fill="{colour}"/><text x="{lx + 14}" y="{legend_y}">{escape(text)}</text>')
        lx += 24 + 7 * len(text)
    return _svg("breakdown", height, label, body)


def histogram_svg(
    values: Sequence[float], baseline: Sequence[float] | None = None, *,
    names: tuple[str, str] = ("this run", "baseline"), bins: int = 24,
) -> str:
    """A histogram of end of speech → first reply audio (a baseline's as a grey outline)."""
    label = "End of speech → first reply audio, per turn"
    values = list(values)
    base = list(baseline or [])
    if not values and not base:
        return _no_data("histogram", label)
    everything = values + base
    p90 = quantile(everything, 0.9)
    top = min(max(everything), 2 * p90) if p90 > 0 else max(everything)
    ticks = nice_ticks(top)
    span = ticks[-1] or 1.0
    width = span / bins

    def counts(data: list[float]) -> list[int]:
        out = [0] * bins
        for value in data:
            out[min(bins - 1, int(min(value, span) / width))] += 1
        return out

    ours, theirs = counts(values), counts(base)
    most = max(ours + theirs) or 1
    plot_right = WIDTH - RIGHT
    top_y, plot_h = 26, 150

    def x(value: float) -> float:
        return LEFT + (plot_right - LEFT) * value / span

    def y(count: int) -> float:
        return top_y + plot_h * (1 - count / most)

    body = _axis(ticks, x, top_y, top_y + plot_h)
    body.append(f'<text x="{LEFT - 10}" y="{top_y + 10}" text-anchor="end" fill="#555">'
                f"{most} turns</text>")
    body.append(f'<text x="{LEFT - 10}" y="{top_y + plot_h}" text-anchor="end" fill="#555">'
                "0</text>")
    for k, count in enumerate(ours):
        if count:
            body.append(
                f'<rect class="bin" x="{x(k * width) + 1:.1f}" y="{y(count):.1f}" '
                f'width="{max(1.0, x(width) - x(0) - 2):.1f}" '
                f'height="{top_y + plot_h - y(count):.1f}" '
                f'fill="{COLOURS[0]}" fill-opacity="0.8"><title>{count} turns, '
                f"{_seconds(k * width)}-{_seconds((k + 1) * width)} s</title></rect>")
    if base:
        path = [f"M{x(0):.1f},{y(0):.1f}"]
        for k, count in enumerate(theirs):
            path.append(f"L{x(k * width):.1f},{y(count):.1f} L{x((k + 1) * width):.1f},"
                        f"{y(count):.1f}")
        path.append(f"L{x(span):.1f},{y(0):.1f}")
        body.append(f'<path d="{" ".join(path)}" fill="none" stroke="{BASELINE}" '
                    'stroke-width="2"/>')
    legend = []
    if values:
        legend.append((COLOURS[0], names[0], values))
    if base:
        legend.append((BASELINE, names[1], base))
    lx = LEFT
    for colour, name, data in legend:
        text = (f"{name}: median {_seconds(quantile(data, 0.5))} s, "
                f"p90 {_seconds(quantile(data, 0.9))} s")
        body.append(f'<rect x="{lx}" y="6" width="10" height="10" fill="{colour}"/>'
                    f'<text x="{lx + 14}" y="15">{escape(text)}</text>')
        lx += 40 + 7 * len(text)
    return _svg("histogram", top_y + plot_h + 28, label, body)
