"""Looking at a voice pipeline from a notebook: players, a live view, latency plots.

Five tools, each a plain function:

* :func:`player` — listen to a clip (samples, chunks, a file) in the notebook;
* :func:`live_view` — widgets that follow a running pipeline: the transcript as it grows, the
  latest events, and players for the last question and reply. It observes the pipeline through
  :func:`voicekit.tap`, so the pipeline stays a plain composition of stages::

      view = live_view()
      display(view)
      mic | vk.tap(view.listen) | bot | audio.paced() | vk.tap(view.observe)

* :func:`talk` — talk to an agent from the cell: the browser running Jupyter is the
  microphone and the speaker (a widget; the audio travels over its comm).
* :func:`timeline_plot` — where the time of one turn went, from the end of the user's speech to
  the first audio of the reply, drawn from ``(time, event)`` pairs: a view's ``timeline``, a
  :class:`voicekit.conversation.Conversation`'s, or your own — or from the
  :class:`~voicekit.TurnMetrics` an agent yields (``metrics=True``). :func:`turn_times` gives the
  same numbers without drawing.
* :func:`latency_plot` — how the latency of many turns is spread, step by step, over a list of
  calls (:func:`turns_of` reads their :class:`~voicekit.TurnMetrics`, :func:`latencies` gives
  the numbers it draws).

Importing this module is cheap: ipywidgets, IPython and matplotlib are imported by the functions
that need them. Widgets are updated by assigning their values from the event loop, never with
``with out:`` from a task, and at most ``updates_per_second`` times a second.
"""

from __future__ import annotations

import asyncio
import html
import importlib
import inspect
import math
import os
import time
from collections import deque
from collections.abc import AsyncIterable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ._errors import AudioError, ConfigError
from ._metrics import MILESTONES, TurnMetrics, turn_metrics
from ._talk import Talk, talk
from .audio import load, to_float32, to_int16, to_wav_bytes
from .audio._convert import check_rate, downmix
from .events import (
    AudioChunk,
    Interrupted,
    ReplyFailed,
    ReplyStarted,
    Sentence,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    Token,
    ToolCall,
    ToolResult,
    Transcript,
    TurnEnded,
    TurnStarted,
)

__all__ = [
    "LiveView",
    "Talk",
    "TurnMetrics",
    "TurnTimes",
    "latencies",
    "latency_plot",
    "live_view",
    "player",
    "talk",
    "timeline_plot",
    "turn_times",
    "turns_of",
]

Timeline = Sequence[tuple[float, Any]]
"""``(seconds, item)`` pairs in the order they were seen."""


# ---------------------------------------------------------------------------------------------
# Clips


def _join_chunks(chunks: Iterable[AudioChunk], rate: int | None) -> tuple[npt.NDArray[Any], int]:
    """Join audio chunks into one array at ``rate`` (default: the first chunk's rate).

    Runs of chunks at another rate are resampled, a run at a time (no clicks at chunk edges).
    """
    runs: list[tuple[int, list[npt.NDArray[np.int16]]]] = []
    for chunk in chunks:
        if runs and runs[-1][0] == chunk.rate:
            runs[-1][1].append(chunk.samples)
        else:
            runs.append((chunk.rate, [chunk.samples]))
    if not runs:
        return np.zeros(0, np.int16), rate or 16000
    target = rate or runs[0][0]
    parts: list[npt.NDArray[Any]] = []
    for run_rate, pieces in runs:
        samples = np.concatenate(pieces)
        if run_rate != target and samples.shape[0]:
            import soxr

            samples = soxr.resample(to_float32(samples), run_rate, target, "HQ")
        parts.append(to_float32(samples))
    return np.concatenate(parts), target


def _clip(audio: Any, rate: int | None) -> tuple[npt.NDArray[np.int16], int]:
    """Any clip :func:`player` accepts, as mono int16 samples and their rate."""
    if rate is not None:
        rate = check_rate(rate)
    if isinstance(audio, str | os.PathLike | bytes | bytearray | memoryview):
        return load(audio, rate=rate)
    if isinstance(audio, tuple) and len(audio) == 2 and isinstance(audio[1], int | np.integer):
        return _resampled(_mono(audio[0]), check_rate(audio[1]), rate)
    if isinstance(audio, np.ndarray):
        if rate is None:
            raise AudioError("player: pass the rate of a numpy array: player(samples, 16000)")
        return _mono(audio), rate
    if isinstance(audio, AsyncIterable):
        raise TypeError(
            "player() needs the audio now: collect the stream first, "
            "e.g. samples, rate = await voicekit.audio.to_array(flow)"
        )
    if isinstance(audio, AudioChunk):
        audio = [audio]
    if isinstance(audio, Iterable):
        joined, joined_rate = _join_chunks(
            (item for item in audio if isinstance(item, AudioChunk)), rate
        )
        return to_int16(joined), joined_rate
    raise TypeError(
        "player() takes a file path, file bytes, an AudioChunk, chunks, "
        f"(samples, rate) or a numpy array; got {type(audio).__name__}"
    )


def _mono(samples: Any) -> npt.NDArray[np.int16]:
    """Samples (int16 or float, mono or (frames, channels)) as mono int16."""
    array = np.asarray(samples)
    if array.ndim == 2:
        array = downmix(array)
    if array.ndim != 1:
        raise AudioError(f"player: audio must be 1-D or (frames, channels), got {array.shape}")
    return to_int16(array)


def _resampled(
    pcm: npt.NDArray[np.int16], rate: int, target: int | None
) -> tuple[npt.NDArray[np.int16], int]:
    if target is None or target == rate or pcm.shape[0] == 0:
        return pcm, rate
    import soxr

    return to_int16(soxr.resample(to_float32(pcm), rate, target, "HQ")), target


def _need(module: str, what: str) -> Any:
    """Import ``module`` for ``what``, or say which install gives it (the ``notebook`` extra)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = module.split(".")[0]
        raise ConfigError(
            f"voicekit.notebook.{what} needs {package}: pip install 'voicekit[notebook]'"
        ) from exc


def player(audio: Any, rate: int | None = None, *, widget: bool = False) -> Any:
    """A player for a clip: an ``IPython.display.Audio`` (or, with ``widget=True``, an
    ``ipywidgets.Audio`` whose ``value`` can be replaced later).

    ``audio`` is a file path or the bytes of a file, an :class:`~voicekit.AudioChunk`, an
    iterable of stream items (its chunks are joined, other items skipped), a ``(samples, rate)``
    pair, or a numpy array of int16 or float samples (full scale ±1.0, clipped beyond) with its
    ``rate``. For anything but a bare array, ``rate`` resamples to that rate. Stereo is mixed
    down. The samples are played exactly as they are, as 16-bit WAV: never normalised (the
    effect of ``normalize=False``), so silence stays silent, without warnings, and a quiet clip
    sounds quiet. An empty clip gives an empty player.

    >>> import numpy as np
    >>> type(player(np.zeros(1600, np.int16), 16000)).__name__
    'Audio'
    """
    pcm, rate = _clip(audio, rate)
    if widget:
        ipywidgets = _need("ipywidgets", "player(widget=True)")
        return ipywidgets.Audio(
            value=to_wav_bytes(pcm, rate), format="wav", autoplay=False, controls=True
        )
    Audio = _need("IPython.display", "player()").Audio
    # The WAV is made here, not by IPython: its float path rescales (normalize=True, which
    # divides by zero on silence) or truncates every sample by up to one step (normalize=False).
    return Audio(data=to_wav_bytes(pcm, rate))


# ---------------------------------------------------------------------------------------------
# One turn's times


TurnTimes = TurnMetrics
"""The former name of :class:`~voicekit._metrics.TurnMetrics`, what :func:`turn_times` gives."""


def _pairs(timeline: Any) -> list[tuple[float, Any]]:
    pairs = getattr(timeline, "timeline", timeline)
    return [(float(t), item) for t, item in pairs]


def turn_times(timeline: Any, turn: int = -1) -> TurnMetrics:
    """The milestones of one user turn and its reply, from ``(seconds, item)`` pairs.

    ``timeline`` is a sequence of pairs, or anything with a ``timeline`` of them (a
    :class:`LiveView`, a :class:`~voicekit.conversation.Conversation`). ``turn`` picks the reply
    to a user turn, counted like a list index (the greeting does not count). Times are when each
    item was *seen*: for a faithful picture, feed the audio at its real pace
    (:func:`voicekit.audio.paced`) and observe after a pacer that plays the reply. Raises
    ``ValueError`` when the timeline holds no such reply. The same function
    (:func:`voicekit._metrics.turn_metrics`) gives the ``voicekit`` command its latency figures.

    >>> from voicekit.events import *
    >>> seen = [(0.7, TurnStarted(0.5)), (0.7, SpeechStarted(0.5, {"start_secs": 0.2})),
    ...         (2.2, SpeechStopped(2.0, {"stop_secs": 0.2})), (2.8, Transcript("hi", t=0.5)),
    ...         (2.9, TurnEnded("hi", 2.9)), (2.9, ReplyStarted("hi", 2.9)), (2.95, Token("Hello")),
    ...         (2.96, Token("! How")), (3.1, AudioChunk(np.zeros(8000, np.int16), 16000))]
    >>> times = turn_times(seen)
    >>> round(times.voice_to_voice, 3), times.first_sentence, times.audio_end
    (1.1, 2.96, 3.6)
    """
    try:
        return turn_metrics(_pairs(timeline), turn)
    except ValueError as exc:
        raise ValueError(str(exc).replace("turn_metrics:", "turn_times:", 1)) from None


# ---------------------------------------------------------------------------------------------
# The timeline plot

_COLOURS = {
    "user speech": "#4c72b0",
    "VAD stop": "#8c8c8c",
    "STT": "#dd8452",
    "turn end": "#c9b458",
    "LLM first token": "#8172b3",
    "first sentence": "#937860",
    "TTS first audio": "#da8bc3",
    "LLM + TTS first audio": "#8172b3",
    "reply audio": "#55a868",
    "voice-to-voice": "#c44e52",
}


def timeline_plot(
    timeline: Any, *, turn: int = -1, ax: Any = None, title: str | None = None
) -> Any:
    """A matplotlib figure of one turn: a bar per step, from the user's speech to the reply.

    ``timeline`` is a :class:`~voicekit.TurnMetrics`; or ``(seconds, item)`` pairs, or anything
    with a ``timeline`` of them (a :class:`LiveView`, a
    :class:`~voicekit.conversation.Conversation`): their :class:`~voicekit.TurnMetrics` events
    when the agent yielded some (``agent(metrics=True)``: measured inside the agent, with the
    LLM's first token), else the turn as :func:`turn_times` reads it from the pairs.

    Rows, top to bottom: *user speech* (VAD start to stop), *VAD stop* (the silence the VAD
    waits for), *STT* (until the transcript), *turn end* (the turn detector's wait), *LLM first
    token*, *first sentence*, *TTS first audio* and *reply audio*; steps missing from the
    timeline are left out. Dashed lines mark the end of the user's speech and the first reply
    audio, with the voice-to-voice latency between them. ``turn`` picks the turn as for
    :func:`turn_times`. Draws on ``ax`` if given, else on a new figure (not registered with
    pyplot, so it is shown once); returns the figure.
    """
    times = _plotted_turn(timeline, turn)
    spans = times.spans()
    if not spans:
        raise ValueError("timeline_plot: none of the turn's steps is in the timeline")
    if ax is None:
        Figure = _need("matplotlib.figure", "timeline_plot()").Figure
        fig = Figure(figsize=(9, 0.45 * len(spans) + 1.4), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    rows = list(range(len(spans)))[::-1]  # the first step on top
    right = max(b for _, _, b in spans)
    left = min(a for _, a, _ in spans)
    pad = (right - left) * 0.01
    for row, (label, a, b) in zip(rows, spans, strict=True):
        (bar,) = ax.barh(row, max(b - a, 0.0), left=a, height=0.6, color=_COLOURS[label]).patches
        bar.set_gid(label)
        ax.plot([b], [row], marker="|", markersize=12, color=_COLOURS[label])  # visible if short
        ax.text(b + pad, row, _seconds(b - a), va="center", fontsize=8)
    ax.set_yticks(rows, [label for label, _, _ in spans])
    ax.set_xlabel("seconds")
    ax.grid(axis="x", alpha=0.3)
    lag = times.voice_to_voice
    if lag is not None and times.speech_end is not None and times.first_audio is not None:
        for x in (times.speech_end, times.first_audio):
            ax.axvline(x, color="black", linestyle="--", linewidth=0.8)
        ax.annotate(
            "",
            xy=(times.first_audio, len(spans) - 0.35),
            xytext=(times.speech_end, len(spans) - 0.35),
            arrowprops={"arrowstyle": "<->", "linewidth": 0.8},
            annotation_clip=False,
        )
        ax.text(
            (times.speech_end + times.first_audio) / 2,
            len(spans) - 0.2,
            f"voice-to-voice {_seconds(lag)}",
            ha="center",
            va="bottom",
            fontsize=9,
        )
    ax.set_ylim(-0.6, len(spans) + 0.3)
    ax.set_xlim(left - pad * 2, right + (right - left) * 0.12 + 0.05)
    heading = title if title is not None else f"one turn: {times.text!r}"
    if times.interrupted:
        heading += " (interrupted)"
    ax.set_title(heading, fontsize=10)
    return fig


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _plotted_turn(source: Any, turn: int) -> TurnMetrics:
    if isinstance(source, TurnMetrics):
        return source
    items, _ = _call_items(source)
    measured = _yielded(items)
    if not measured:
        return turn_times(source, turn)
    try:
        return measured[turn]
    except IndexError:
        raise ValueError(
            f"timeline_plot: no turn {turn}: the timeline holds {len(measured)} TurnMetrics"
        ) from None


# ---------------------------------------------------------------------------------------------
# Many turns: where the latency goes


def _is_pair(value: Any) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], int | float)
        and not isinstance(value[0], bool)
    )


def _call_items(call: Any) -> tuple[list[Any], list[tuple[float, Any]] | None]:
    """The items of one call, and its ``(seconds, item)`` pairs when it has them."""
    values = list(getattr(call, "timeline", call))
    if values and all(_is_pair(v) for v in values):
        return [item for _, item in values], [(float(t), item) for t, item in values]
    return values, None


def _yielded(items: Sequence[Any]) -> list[TurnMetrics]:
    """The :class:`TurnMetrics` in a stream: the one after each reply's ``SessionUpdated`` (an
    agent's with ``metrics=True``; a meter's estimate before it is skipped), or every one when
    the items are bare values."""
    found: list[TurnMetrics] = []
    after_update = False
    for item in items:
        if isinstance(item, SessionUpdated):
            after_update = True
        elif isinstance(item, ReplyStarted):
            after_update = False
        elif isinstance(item, TurnMetrics) and after_update:
            found.append(item)
            after_update = False
    return found or [item for item in items if isinstance(item, TurnMetrics)]


def _turns_of_call(call: Any) -> list[TurnMetrics]:
    if isinstance(call, TurnMetrics):
        return [call]
    items, pairs = _call_items(call)
    measured = _yielded(items)
    if measured or pairs is None:
        return measured
    replies = sum(1 for item in items if isinstance(item, ReplyStarted) and item.turn is not None)
    return [turn_metrics(pairs, k) for k in range(replies)]


def _is_call(value: Any) -> bool:
    return (
        isinstance(value, TurnMetrics)
        or hasattr(value, "timeline")
        or (isinstance(value, list | tuple) and not _is_pair(value))
    )


def turns_of(calls: Any) -> list[TurnMetrics]:
    """Every turn of ``calls``, measured: one :class:`~voicekit.TurnMetrics` per reply to a
    user turn, in order.

    ``calls`` is one call or a list of them. A call is a :class:`~voicekit.TurnMetrics`; a
    list of stream items (the :class:`~voicekit.TurnMetrics` events of an agent with
    ``metrics=True`` are read); ``(seconds, item)`` pairs or anything with a ``timeline`` of
    them (a :class:`~voicekit.conversation.Conversation`, a :class:`LiveView`): their
    :class:`~voicekit.TurnMetrics` events if there are some, else each turn as
    :func:`turn_times` reads it.

    >>> calls = [TurnMetrics(speech_end=1.0, first_audio=1.5), [TurnMetrics(), "other items"]]
    >>> [m.voice_to_voice for m in turns_of(calls)]
    [0.5, None]
    """
    if isinstance(calls, TurnMetrics) or hasattr(calls, "timeline"):
        return _turns_of_call(calls)
    values = list(calls)
    if values and all(_is_call(v) for v in values):
        return [m for call in values for m in _turns_of_call(call)]
    return _turns_of_call(values)


VOICE_TO_VOICE = "voice-to-voice"
"""The row of :func:`latencies` for the whole wait: end of speech to the first reply audio."""


def latencies(calls: Any) -> dict[str, list[float]]:
    """Seconds per step of the breakdown, over every turn of ``calls`` (as for
    :func:`turns_of`): ``{label: [seconds of each turn that has that step]}`` for the steps of
    :meth:`~voicekit.TurnMetrics.steps` (``"VAD stop"`` … ``"TTS first audio"``: the time each
    added), and ``"voice-to-voice"`` (end of speech to first audio).

    >>> fast = TurnMetrics(speech_end=1.0, vad_stop=1.2, turn_end=1.8, first_audio=2.0)
    >>> slow = TurnMetrics(speech_end=0.0, vad_stop=0.2, turn_end=0.8, first_audio=2.0)
    >>> rows = latencies([fast, slow])
    >>> rows["turn end"], rows["TTS first audio"], rows["voice-to-voice"]
    ([0.6, 0.6], [0.2, 1.2], [1.0, 2.0])
    """
    rows: dict[str, list[float]] = {label: [] for _, label in MILESTONES}
    rows[VOICE_TO_VOICE] = []
    for measured in turns_of(calls):
        for _, label, step, _ in measured.steps():
            if step is not None:
                rows[label].append(round(step, 6))
        lag = measured.voice_to_voice
        if lag is not None:
            rows[VOICE_TO_VOICE].append(round(lag, 6))
    return rows


def _horizontal(ax: Any) -> dict[str, Any]:
    """Matplotlib's way to lay a box plot on its side: ``orientation`` since 3.10, else ``vert``."""
    if "orientation" in inspect.signature(ax.boxplot).parameters:
        return {"orientation": "horizontal"}
    return {"vert": False}


def latency_plot(calls: Any, *, ax: Any = None, title: str | None = None) -> Any:
    """A matplotlib figure of how the latency of many turns is spread, step by step.

    One row per step of the breakdown that was seen (VAD stop, STT, turn end, LLM first token,
    first sentence, TTS first audio) and a last row for voice-to-voice, each a box from the
    25th to the 75th percentile with whiskers from the 10th to the 90th, the median marked,
    every turn a dot, and ``median · p90 · n`` written beside it. ``calls`` is one call or a
    list of them, as for :func:`turns_of`. Draws on ``ax`` if given, else on a new figure (not
    registered with pyplot); returns the figure. Raises ``ValueError`` when no turn has any
    step.
    """
    rows = [(label, values) for label, values in latencies(calls).items() if values]
    if not rows:
        raise ValueError("latency_plot: no turn with a measured step in these calls")
    if ax is None:
        Figure = _need("matplotlib.figure", "latency_plot()").Figure
        fig = Figure(figsize=(9, 0.55 * len(rows) + 1.4), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    positions = list(range(len(rows)))[::-1]  # the first step on top
    right = max(max(values) for _, values in rows)
    boxes = ax.boxplot(
        [values for _, values in rows],
        positions=positions,
        **_horizontal(ax),
        whis=(10, 90),
        widths=0.55,
        showfliers=False,
        patch_artist=True,
        medianprops={"color": "black"},
    )
    for patch, (label, values), row in zip(boxes["boxes"], rows, positions, strict=True):
        colour = _COLOURS.get(label, "#55a868")
        patch.set_facecolor(colour)
        patch.set_alpha(0.45)
        patch.set_gid(label)
        count = len(values)
        offsets = np.linspace(-0.18, 0.18, count) if count > 1 else np.zeros(1)
        ax.scatter(values, row + offsets, s=10, color=colour, zorder=3)
        median = float(np.median(values))
        p90 = float(np.percentile(values, 90))
        ax.text(
            right * 1.03 + 0.01,
            row,
            f"median {_seconds(median)} · p90 {_seconds(p90)} · n={count}",
            va="center",
            fontsize=8,
        )
    ax.set_yticks(positions, [label for label, _ in rows])
    ax.set_xlabel("seconds")
    ax.set_xlim(0, right * 1.45 + 0.1)
    ax.grid(axis="x", alpha=0.3)
    turns = max(len(values) for _, values in rows)
    ax.set_title(title if title is not None else f"latency over {turns} turns", fontsize=10)
    return fig



# ---------------------------------------------------------------------------------------------
# The live view


@dataclass(frozen=True, eq=False)
class LiveView:
    """Widgets following a running pipeline, and the functions that feed them.

    Made by :func:`live_view`. Display it (``display(view)``, or as a cell's last value); tap
    ``observe`` after the agent (best after the pacer that plays its audio), ``listen`` on the
    caller's audio before the agent, and optionally ``tokens`` inside the LLM (the agent does not
    pass tokens on); ``flush()`` shows the latest state at once. ``timeline`` collects
    ``(seconds, item)`` for every observed item and token, for :func:`timeline_plot`; it keeps
    the reply audio too (about 32 kB a second at 16 kHz), so make a new view per session.
    """

    widget: Any
    status: Any
    transcript: Any
    events: Any
    question: Any
    reply: Any
    observe: Callable[[Any], None]
    listen: Callable[[Any], None]
    tokens: Callable[[Any], None]
    flush: Callable[[], None]
    timeline: list[tuple[float, Any]] = field(repr=False)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


@dataclass(slots=True)
class _Line:
    role: str  # "user", "assistant" or "tool"
    text: str = ""
    pending: bool = True
    partial: str = ""
    note: str = ""  # "interrupted", "failed: …"
    from_tokens: bool = False


_QUESTION_MARGIN = 0.3  # seconds of the caller's audio kept around the speech of a turn
_KEEP_SECONDS = 60.0  # seconds of the caller's audio remembered


def _describe(item: Any) -> str:
    """One line about an item, for the event log."""
    name = type(item).__name__
    if isinstance(item, SpeechStarted | SpeechStopped | TurnStarted):
        return f"{name} t={item.t:.2f}"
    if isinstance(item, Transcript):
        return f"{name}{'' if item.final else ' (partial)'} {item.text!r}"
    if isinstance(item, TurnEnded | ReplyStarted):
        text = item.text if isinstance(item, TurnEnded) else item.turn
        return f"{name} {text!r}" if text is not None else name
    if isinstance(item, SessionUpdated):
        messages = getattr(item.session, "messages", ())
        return f"{name} ({len(messages)} messages)"
    if isinstance(item, ToolCall):
        return f"{name} {item.name}({item.arguments})"
    text = repr(item)
    return text if len(text) <= 100 else text[:99] + "…"


class _State:
    """What a live view has seen: private to :func:`live_view`'s functions."""

    def __init__(self, max_events: int) -> None:
        self.origin: float | None = None
        self.lines: list[_Line] = []
        self.log: deque[list[Any]] = deque(maxlen=max_events)  # [t, kind, text, seconds, count]
        self.status = "waiting"
        self.turns = 0
        self.latency = ""
        self.heard: deque[AudioChunk] = deque()  # the caller's audio
        self.turn_from: float | None = None  # stream time the current user turn began
        self.speech_to: float | None = None  # stream time its speech last stopped
        self.reply_chunks: list[AudioChunk] = []
        self.question_wav = b""
        self.reply_wav = b""

    def last(self, role: str) -> _Line | None:
        return next((line for line in reversed(self.lines) if line.role == role), None)

    def open(self, role: str) -> _Line:
        line = self.last(role)
        if line is None or not line.pending:
            line = _Line(role)
            self.lines.append(line)
        return line


def _transcript_html(lines: Sequence[_Line]) -> str:
    if not lines:
        return "<div style='color:#888'><i>no conversation yet</i></div>"
    rows = []
    for line in lines:
        text = html.escape(line.text + (" " + line.partial if line.partial else "")).strip()
        if line.role == "tool":
            rows.append(f"<div style='color:#777;font-size:90%'>🔧 {text}</div>")
            continue
        if line.pending:
            text = f"<i>{text}…</i>" if text else "<i>…</i>"
        note = ""
        if line.note:
            note = f" <span style='color:#b00'>[{html.escape(line.note)}]</span>"
        colour = "#1f4e99" if line.role == "user" else "#2e7d32"
        rows.append(
            f"<div><b style='color:{colour}'>{html.escape(line.role)}</b>: {text}{note}</div>"
        )
    return "<div style='line-height:1.5'>" + "".join(rows) + "</div>"


def _log_html(log: Iterable[list[Any]]) -> str:
    rows = []
    for t, kind, text, seconds, count in log:
        if kind == "audio":
            text = f"audio {seconds:.2f} s ({count} chunks)"
        elif kind == "tokens":
            text = f"Token ×{count} {text!r}"
        rows.append(f"{t:7.3f}  {text}")
    body = html.escape("\n".join(rows)) if rows else "(no events yet)"
    return f"<pre style='font-size:85%;margin:0;line-height:1.3'>{body}</pre>"


def live_view(
    *,
    max_events: int = 12,
    updates_per_second: float = 10.0,
    clock: Callable[[], float] | None = None,
) -> LiveView:
    """Widgets that follow a voice pipeline as it runs, and the functions to tap into it.

    Shows a status line (what the agent is doing, the last voice-to-voice latency), players for
    the last question and reply (updated when a turn ends and when a reply ends), the transcript
    as it grows (the user's turns, the assistant's replies — interrupted ones marked, with the
    part the user heard — and tool calls), and the last ``max_events`` events with their times
    (runs of audio chunks folded into one line). Widgets are updated at most
    ``updates_per_second`` times a second; a change held back is shown by a timer on the
    running event loop (or by the next item, or ``flush()``), so none is lost. ``clock`` gives the
    time in seconds (``time.monotonic`` by default); timeline times count from the first item
    seen. Use it like this::

        view = live_view()
        display(view)

        async def llm(messages, *, tools=None):   # optional: lets the view see the tokens
            async for event in local_responder(messages, tools=tools) | vk.tap(view.tokens):
                yield event

        bot = voice_agent(llm=llm, tts=tts.piper(), stt=stt.whisper(pass_audio=True))
        await (mic | vk.tap(view.listen) | bot | audio.paced() | vk.tap(view.observe)).list()

    Needs ipywidgets.
    """
    widgets = _need("ipywidgets", "live_view()")

    if isinstance(max_events, bool) or not isinstance(max_events, int) or max_events < 1:
        raise ValueError(f"live_view: max_events must be a positive int, got {max_events!r}")
    if not (isinstance(updates_per_second, int | float) and updates_per_second > 0):
        raise ValueError(
            f"live_view: updates_per_second must be above 0, got {updates_per_second!r}"
        )
    interval = 1.0 / float(updates_per_second)
    now = clock or time.monotonic
    state = _State(max_events)
    timeline: list[tuple[float, Any]] = []
    empty = to_wav_bytes(np.zeros(0, np.int16), 16000)

    status = widgets.HTML(value="<b>waiting</b>")
    transcript = widgets.HTML(value=_transcript_html([]))
    events = widgets.HTML(value=_log_html([]))
    question = widgets.Audio(value=empty, format="wav", autoplay=False, controls=True)
    reply = widgets.Audio(value=empty, format="wav", autoplay=False, controls=True)
    players = widgets.HBox(
        [
            widgets.VBox([widgets.HTML(value="<b>question</b>"), question]),
            widgets.VBox([widgets.HTML(value="<b>reply</b>"), reply]),
        ]
    )
    box = widgets.VBox(
        [status, players, transcript, events],
        layout=widgets.Layout(border="1px solid #ddd", padding="6px"),
    )
    throttle: dict[str, Any] = {"last": -math.inf, "timer": None}

    def render() -> None:
        timer = throttle["timer"]
        if timer is not None:
            timer.cancel()
            throttle["timer"] = None
        throttle["last"] = now()
        parts = [f"<b>{html.escape(state.status)}</b>", f"turns: {state.turns}"]
        if state.latency:
            parts.append(html.escape(state.latency))
        _assign(status, " · ".join(parts))
        _assign(transcript, _transcript_html(state.lines))
        _assign(events, _log_html(state.log))
        if state.question_wav and bytes(question.value) != state.question_wav:
            question.value = state.question_wav
        if state.reply_wav and bytes(reply.value) != state.reply_wav:
            reply.value = state.reply_wav

    def changed() -> None:
        wait = throttle["last"] + interval - now()
        if wait <= 0:
            render()
            return
        if throttle["timer"] is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop to wait on: the next item or flush() shows it
            throttle["timer"] = loop.call_later(wait, render)

    def stamp() -> float:
        t = now()
        if state.origin is None:
            state.origin = t
        return t - state.origin

    def log(t: float, item: Any) -> None:
        """Add a line to the event log; a run of audio chunks or of tokens is one line."""
        kind = (
            "audio" if isinstance(item, AudioChunk) else "tokens" if isinstance(item, Token) else ""
        )
        last = state.log[-1] if state.log else None
        if kind and last is not None and last[1] == kind:
            last[2] += item.text if kind == "tokens" else ""
            last[3] += item.duration if kind == "audio" else 0.0
            last[4] += 1
        elif kind == "audio":
            state.log.append([t, kind, "", item.duration, 1])
        elif kind == "tokens":
            state.log.append([t, kind, item.text, 0.0, 1])
        else:
            state.log.append([t, "event", _describe(item), 0.0, 0])

    def cut_question(end: float) -> None:
        if state.turn_from is None or not state.heard:
            return
        start = state.turn_from - _QUESTION_MARGIN
        stop = state.speech_to + _QUESTION_MARGIN if state.speech_to is not None else end
        pieces = []
        for chunk in state.heard:
            if chunk.end <= start or chunk.t >= stop:
                continue
            a = max(0, round((start - chunk.t) * chunk.rate))
            b = min(chunk.frames, round((stop - chunk.t) * chunk.rate))
            if b > a:
                pieces.append(AudioChunk(chunk.samples[a:b], chunk.rate, chunk.t))
        if pieces:
            samples, rate = _join_chunks(pieces, None)
            state.question_wav = to_wav_bytes(samples, rate)

    def finish_reply() -> None:
        if state.reply_chunks:
            samples, rate = _join_chunks(state.reply_chunks, None)
            state.reply_wav = to_wav_bytes(samples, rate)

    def observe(item: Any) -> None:
        line: _Line | None
        t = stamp()
        timeline.append((t, item))
        log(t, item)
        if isinstance(item, SpeechStarted):
            state.status = "user speaking"
            if state.turn_from is None:
                state.turn_from = item.t
        elif isinstance(item, SpeechStopped):
            state.status = "transcribing"
            state.speech_to = item.t
        elif isinstance(item, TurnStarted):
            state.turn_from, state.speech_to = item.t, None
            state.open("user")
        elif isinstance(item, Transcript):
            line = state.open("user")
            if item.final:
                line.text = f"{line.text} {item.text}".strip()
                line.partial = ""
            else:
                line.partial = item.text
        elif isinstance(item, TurnEnded):
            line = state.open("user")
            if item.text.strip():
                line.text, line.partial, line.pending = item.text, "", False
                state.turns += 1
                state.status = "thinking"
                cut_question(item.t)
            else:
                state.lines.remove(line)
                state.status = "listening"
            state.turn_from = state.speech_to = None
        elif isinstance(item, ReplyStarted):
            state.reply_chunks = []
            for line in state.lines:
                if line.role == "assistant":
                    line.pending = False
            state.lines.append(_Line("assistant"))
            state.status = "thinking"
        elif isinstance(item, Token):
            line = state.open("assistant")
            if not line.from_tokens:
                line.text, line.from_tokens = "", True
            line.text += item.text
        elif isinstance(item, Sentence):
            line = state.open("assistant")
            if not line.from_tokens:
                line.text = f"{line.text} {item.text}".strip()
        elif isinstance(item, AudioChunk):
            state.reply_chunks.append(item)
            state.status = "speaking"
        elif isinstance(item, ToolCall):
            state.lines.append(_Line("tool", f"{item.name}({item.arguments})", pending=False))
        elif isinstance(item, ToolResult):
            call = next((x for x in reversed(state.lines) if x.role == "tool"), None)
            if call is not None:
                call.text += f" → {item.content}"
            line = state.last("assistant")
            if line is not None and line.pending:  # the next round's text follows the result
                if line.text:
                    line.pending = False
                    state.lines.append(_Line("assistant"))
                else:
                    state.lines.remove(line)
                    state.lines.append(line)
        elif isinstance(item, Interrupted):
            line = state.last("assistant")
            if line is not None:
                line.text, line.pending, line.note = item.heard, False, "interrupted"
            state.status = "interrupted"
            finish_reply()
        elif isinstance(item, ReplyFailed):
            line = state.last("assistant")
            if line is not None:
                line.note = f"failed: {item.error}"
        elif isinstance(item, SessionUpdated):
            line = state.last("assistant")
            if line is not None and line.pending:
                said = _last_assistant_text(item.session)
                if said is not None:
                    line.text = said
                line.pending = False
                if not line.text and not line.note:
                    state.lines.remove(line)
            finish_reply()
            state.status = "listening"
            try:
                lag = turn_times(timeline).voice_to_voice
            except ValueError:
                lag = None
            if lag is not None:
                state.latency = f"last voice-to-voice {lag:.2f} s"
        changed()

    def listen(item: Any) -> None:
        stamp()
        if not isinstance(item, AudioChunk):
            return
        state.heard.append(item)
        while state.heard and state.heard[-1].end - state.heard[0].end > _KEEP_SECONDS:
            state.heard.popleft()

    def tokens(item: Any) -> None:
        if isinstance(item, Token):
            observe(item)

    return LiveView(
        widget=box,
        status=status,
        transcript=transcript,
        events=events,
        question=question,
        reply=reply,
        observe=observe,
        listen=listen,
        tokens=tokens,
        flush=render,
        timeline=timeline,
    )


def _assign(widget: Any, value: str) -> None:
    """Set a widget's value only if it changed: every assignment is a message to the browser."""
    if widget.value != value:
        widget.value = value


def _last_assistant_text(session: Any) -> str | None:
    for message in reversed(getattr(session, "messages", ())):
        if isinstance(message, Mapping) and message.get("role") == "assistant":
            content = message.get("content")
            if isinstance(content, str):
                return content
        if isinstance(message, Mapping) and message.get("role") == "user":
            return None
    return None
