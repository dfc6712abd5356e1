"""Per-turn latency of a voice agent, as a live caller lives it (used by the CLI and bench).

A :class:`LatencyProbe` watches a pipeline ``vad | stt | turns | agent`` at four points (taps
between the stages), inside the LLM function and in front of the TTS, and notes on one wall
clock, in its :attr:`~LatencyProbe.timeline`, each item where it leaves the stage that made it:
the VAD's speech markers after the VAD, transcripts after the STT, turn markers after the turn
detector, tokens and tool calls inside the LLM function, sentences in front of the TTS, and the
reply's start, audio and end after the agent. The milestones of each turn are read from that
timeline by :func:`voicekit._metrics.turn_metrics` — the function the notebook's
``turn_times`` uses — with the probe's :attr:`~LatencyProbe.origin` (the wall time of stream
time 0, set by the audio source) placing the end of speech: a source that releases each chunk
when its end has been "recorded" (real time) makes it the moment a live caller fell silent.

A turn is recorded at its first reply audio (``on_turn`` is called then) and recorded again,
complete, when its reply ends. The figures are wall-clock differences, so anything that holds
the pipeline up — a slow model, CPU contention, a stage that fell behind — shows in them.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._metrics import MILESTONES, TurnMetrics, turn_metrics
from ..events import (
    AudioChunk,
    Interrupted,
    ReplyStarted,
    Sentence,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    Token,
    ToolCall,
    Transcript,
    TurnEnded,
    TurnPending,
    TurnStarted,
)
from ..llm._signature import call_llm
from ..ops import Stage, tap
from ..vad import SpeechPaused

__all__ = [
    "STEPS",
    "LatencyProbe",
    "TurnLatency",
    "format_turn",
    "paced_audio",
    "percentile",
    "summarise",
]

STEPS = MILESTONES
"""The milestones of a turn in order: (field of :class:`TurnMetrics`, label)."""

TurnLatency = TurnMetrics
"""What the probe records per turn (a :class:`voicekit._metrics.TurnMetrics`)."""

_NOTES = {
    "vad_stop": "stop decided",
    "transcript": "transcript ready",
    "turn_end": "turn taken as finished",
    "llm_first_token": "first token of the reply",
    "first_sentence": "first sentence to speak",
    "first_audio": "first reply audio out",
}


@dataclass
class LatencyProbe:
    """Notes the timeline of one pipeline, and the milestones of every turn (see the module
    documentation).

    Put :attr:`after_vad`, :attr:`after_stt`, :attr:`after_turns` and :attr:`after_agent` between
    the stages, give the agent ``llm=probe.timed_llm(llm)`` and ``tts=probe.before_tts | tts``,
    and have the audio source set :attr:`origin`. ``turns`` holds a record per turn answered.
    """

    clock: Callable[[], float] = time.perf_counter
    origin: float | None = None
    turns: list[TurnMetrics] = field(default_factory=list)
    timeline: list[tuple[float, Any]] = field(default_factory=list)
    hints: int = 0  # VAD pause hints seen
    stops: int = 0  # VAD stops seen
    on_turn: Callable[[TurnMetrics], Any] | None = None
    _replying_to_user: bool = False  # a reply to a user turn is under way
    _recorded: int | None = None  # its record in ``turns``, once it has one
    _turn_open: bool = False
    _replying: bool = False
    _idle: asyncio.Event | None = None

    # -- the taps ---------------------------------------------------------------------------------

    @property
    def after_vad(self) -> Stage[Any, Any]:
        return tap(self._see_vad, name="latency(vad)")

    @property
    def after_stt(self) -> Stage[Any, Any]:
        return tap(self._see_stt, name="latency(stt)")

    @property
    def after_turns(self) -> Stage[Any, Any]:
        return tap(self._see_turns, name="latency(turns)")

    @property
    def after_agent(self) -> Stage[Any, Any]:
        return tap(self._see_agent, name="latency(agent)")

    @property
    def before_tts(self) -> Stage[Any, Any]:
        return tap(self._see_tts_input, name="latency(tts)")

    def timed_llm(self, llm: Callable[..., Any]) -> Callable[..., Any]:
        """``llm`` wrapped so that its tokens and tool calls are noted."""

        async def timed(
            messages: Any, /, *, caller: Any = None, **context: Any
        ) -> AsyncIterator[Any]:
            stream = call_llm(llm, messages, context={**context, "caller": caller})
            try:
                async for event in stream:
                    if isinstance(event, Token | ToolCall):
                        self._note(event)
                    yield event
            finally:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()

        timed.__name__ = getattr(llm, "__name__", "llm")
        return timed

    # -- what the taps see ------------------------------------------------------------------------

    def _note(self, item: Any) -> None:
        self.timeline.append((self.clock(), item))

    def _see_vad(self, item: Any) -> None:
        if isinstance(item, SpeechPaused):
            self.hints += 1
        elif isinstance(item, SpeechStarted | SpeechStopped):
            self.stops += isinstance(item, SpeechStopped)
            self._note(item)

    def _see_stt(self, item: Any) -> None:
        if isinstance(item, Transcript) and item.final:
            self._note(item)

    def _see_turns(self, item: Any) -> None:
        if isinstance(item, TurnStarted | TurnPending | TurnEnded):
            self._note(item)

    def _see_tts_input(self, item: Any) -> None:
        if isinstance(item, Sentence):
            self._note(item)

    def _see_agent(self, item: Any) -> None:
        if isinstance(item, TurnStarted):
            self._turn_open = True
        elif isinstance(item, TurnEnded):
            self._turn_open = False
        elif isinstance(item, ReplyStarted):
            self._note(item)
            self._replying = True
            self._replying_to_user = item.turn is not None
            self._recorded = None
        elif isinstance(item, AudioChunk):
            self._note(item)
            if self._replying_to_user and self._recorded is None:
                self._record()
        elif isinstance(item, Interrupted):
            self._note(item)
        elif isinstance(item, SessionUpdated):
            self._note(item)
            self._replying = False
            if self._replying_to_user:
                self._record()
                self._replying_to_user = False
                self._forget()
        self._signal()

    def _record(self) -> None:
        """Record the turn of the reply under way (again, complete, at its end)."""
        metrics = turn_metrics(self.timeline, origin=self.origin)
        if self._recorded is None:
            self._recorded = len(self.turns)
            self.turns.append(metrics)
            if self.on_turn is not None:
                self.on_turn(metrics)
        else:
            self.turns[self._recorded] = metrics

    def _forget(self) -> None:
        """Drop what the next turn cannot need: everything before the last reply's start."""
        last = max(
            (k for k, (_, item) in enumerate(self.timeline) if isinstance(item, ReplyStarted)),
            default=0,
        )
        del self.timeline[:last]

    # -- idleness, for sources that feed silence until the agent is done --------------------------

    @property
    def idle(self) -> bool:
        """No user turn open and no reply in progress."""
        return not self._turn_open and not self._replying

    def _signal(self) -> None:
        if self._idle is not None and self.idle:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no user turn is open and no reply is in progress."""
        while not self.idle:
            self._idle = asyncio.Event()
            await self._idle.wait()


# ---------------------------------------------------------------------------------------------
# Reporting


def _seconds(value: float | None) -> str:
    return "     –  " if value is None else f"{value:6.2f} s"


def format_turn(turn: TurnMetrics, *, indent: str = "  ") -> str:
    """The breakdown of one turn as lines of text."""
    lines = []
    for name, label, step, since in turn.steps():
        note = _NOTES[name]
        if name == "llm_first_token" and turn.tool_calls:
            calls = "call" if turn.tool_calls == 1 else "calls"
            note = f"after {turn.tool_calls} tool {calls}"
        elif name == "first_sentence" and turn.sentence:
            note = repr(turn.sentence if len(turn.sentence) <= 40 else turn.sentence[:39] + "…")
        at = "" if since is None else f"at +{since:.2f} s"
        lines.append(f"{indent}{label:<16}{_seconds(step)}   {note:<28} {at}".rstrip())
    lines.append(f"{indent}end of speech → first reply audio: {_seconds(turn.total).strip()}")
    return "\n".join(lines)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) of ``values``, linearly interpolated."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarise(turns: Sequence[TurnMetrics]) -> list[tuple[str, float, float, int]]:
    """Per step and for the total: (label, median, p90, count) over the turns that reached it."""
    rows = []
    for index, (_, label) in enumerate(STEPS):
        values = [step for t in turns if (step := t.steps()[index][2]) is not None]
        if values:
            rows.append((label, statistics.median(values), percentile(values, 90), len(values)))
    totals = [t.total for t in turns if t.total is not None]
    if totals:
        rows.append(("end of speech → first audio", statistics.median(totals),
                     percentile(totals, 90), len(totals)))  # fmt: skip
    return rows


async def paced_audio(
    chunks: AsyncIterable[AudioChunk], probe: LatencyProbe
) -> AsyncIterator[AudioChunk]:
    """Release each chunk in real time once its end has been "recorded": at ``origin + end``.

    Sets ``probe.origin`` (the wall time of stream time 0) at the first chunk. The schedule is
    absolute, so a late timer is caught up rather than added up.
    """
    clock = probe.clock
    async for chunk in chunks:
        if probe.origin is None:
            probe.origin = clock() - chunk.t
        delay = probe.origin + chunk.end - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        yield chunk
