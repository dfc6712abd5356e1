"""Per-turn latency of a voice agent, as a live caller lives it (used by the CLI and bench).

A :class:`LatencyProbe` watches a pipeline ``vad | stt | turns | agent`` at four points (taps
between the stages), inside the LLM function and in front of the TTS, and notes on one wall
clock when each milestone of a turn passed:

* the end of the user's speech: the :class:`SpeechStopped` time ``t`` (stream time), put on the
  wall clock with the moment the audio source released stream time 0 (:attr:`origin`, set by
  the source). A source that releases each chunk when its end has been "recorded" (real time)
  makes this the moment a live caller fell silent;
* the VAD's stop decision, the final transcript, the end of the turn, the LLM's first token, the
  first sentence into the TTS and the first reply audio out of the agent: when each passed its
  tap.

A turn's record is closed at its first reply audio (or when the reply ends without audio). The
figures are wall-clock differences, so anything that holds the pipeline up — a slow model, CPU
contention, a stage that fell behind — shows in them.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..events import (
    AudioChunk,
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

STEPS: tuple[tuple[str, str], ...] = (
    ("vad_stop", "VAD stop"),
    ("transcript", "STT"),
    ("turn_end", "turn end"),
    ("llm_first_token", "LLM first token"),
    ("first_sentence", "first sentence"),
    ("first_audio", "TTS first audio"),
)
"""The milestones of a turn in order: (field of :class:`TurnLatency`, label)."""

_NOTES = {
    "vad_stop": "stop decided",
    "transcript": "transcript ready",
    "turn_end": "turn taken as finished",
    "llm_first_token": "first token of the reply",
    "first_sentence": "first sentence to speak",
    "first_audio": "first reply audio out",
}


@dataclass
class TurnLatency:
    """The milestones of one turn: wall-clock seconds (the probe's clock), None if not reached.

    ``speech_end`` is the end of the user's speech on the wall clock (``speech_end_t`` in stream
    time). ``tool_calls`` counts the tool calls made before the first token of the reply.
    """

    text: str = ""
    speech_end_t: float | None = None
    speech_end: float | None = None
    vad_stop: float | None = None
    transcript: float | None = None
    turn_end: float | None = None
    llm_first_token: float | None = None
    first_sentence: float | None = None
    first_audio: float | None = None
    sentence: str = ""
    tool_calls: int = 0

    def since_end(self, name: str) -> float | None:
        """Seconds from the end of speech to milestone ``name`` (None if either is missing)."""
        value = getattr(self, name)
        if value is None or self.speech_end is None:
            return None
        return float(value - self.speech_end)

    @property
    def total(self) -> float | None:
        """End of user speech → first reply audio, in seconds."""
        return self.since_end("first_audio")

    def steps(self) -> list[tuple[str, str, float | None, float | None]]:
        """(field, label, seconds since the previous milestone, seconds since end of speech)."""
        out = []
        previous = self.speech_end
        for name, label in STEPS:
            value = getattr(self, name)
            # a milestone passed early (a reply prepared before the turn ended) took no time
            step = None if value is None or previous is None else max(0.0, value - previous)
            if name == "transcript" and value is not None and self.vad_stop is not None:
                step = max(0.0, float(value - self.vad_stop))
            out.append((name, label, step, self.since_end(name)))
            if value is not None:
                previous = max(previous, value) if previous is not None else value
        return out


@dataclass
class _State:
    speech_end_t: float | None = None
    vad_stop: float | None = None
    transcript: float | None = None
    turn_open: bool = False
    replying: bool = False


@dataclass
class LatencyProbe:
    """Notes the milestones of every turn of one pipeline (see the module documentation).

    Put :attr:`after_vad`, :attr:`after_stt`, :attr:`after_turns` and :attr:`after_agent` between
    the stages, give the agent ``llm=probe.timed_llm(llm)`` and ``tts=probe.before_tts | tts``,
    and have the audio source set :attr:`origin`. ``turns`` holds a record per finished turn.
    """

    clock: Callable[[], float] = time.perf_counter
    origin: float | None = None
    turns: list[TurnLatency] = field(default_factory=list)
    hints: int = 0  # VAD pause hints seen
    stops: int = 0  # VAD stops seen
    on_turn: Callable[[TurnLatency], Any] | None = None
    _state: _State = field(default_factory=_State)
    _pending: TurnLatency | None = None
    _early: TurnLatency | None = None  # a reply prepared on a TurnPending, before its turn ended
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
        """``llm`` wrapped so that its first token (and tool calls before it) are noted."""

        async def timed(
            messages: Any, /, *, caller: Any = None, **context: Any
        ) -> AsyncIterator[Any]:
            stream = call_llm(llm, messages, context={**context, "caller": caller})
            try:
                async for event in stream:
                    self._see_llm(event)
                    yield event
            finally:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()

        timed.__name__ = getattr(llm, "__name__", "llm")
        return timed

    # -- what the taps see ------------------------------------------------------------------------

    def _see_vad(self, item: Any) -> None:
        if isinstance(item, SpeechPaused):
            self.hints += 1
        elif isinstance(item, SpeechStopped):
            self.stops += 1
            self._state.speech_end_t = item.t
            self._state.vad_stop = self.clock()
            self._state.transcript = None

    def _see_stt(self, item: Any) -> None:
        if isinstance(item, Transcript) and item.final and item.text.strip():
            self._state.transcript = self.clock()

    def _see_turns(self, item: Any) -> None:
        if isinstance(item, TurnStarted):
            self._close_pending()  # a barge-in: the reply in progress had no audio yet
            self._early = None
        elif isinstance(item, SpeechStarted):
            self._early = None
        elif isinstance(item, TurnPending):
            if self._early is None or self._early.text.split() != item.text.split():
                self._early = TurnLatency(text=item.text)
        elif isinstance(item, TurnEnded) and item.text.strip():
            state = self._state
            end_t = state.speech_end_t
            early, self._early = self._early, None
            if early is None or early.text.split() != item.text.split():
                early = TurnLatency()
            self._pending = TurnLatency(
                text=item.text,
                speech_end_t=end_t,
                speech_end=None if end_t is None or self.origin is None else self.origin + end_t,
                vad_stop=state.vad_stop,
                transcript=state.transcript,
                turn_end=self.clock(),
                llm_first_token=early.llm_first_token,
                first_sentence=early.first_sentence,
                sentence=early.sentence,
                tool_calls=early.tool_calls,
            )

    def _see_llm(self, event: Any) -> None:
        pending = self._pending or self._early
        if pending is None or pending.llm_first_token is not None:
            return
        if isinstance(event, Token) and event.text.strip():
            pending.llm_first_token = self.clock()
        elif isinstance(event, ToolCall):
            pending.tool_calls += 1

    def _see_tts_input(self, item: Any) -> None:
        pending = self._pending or self._early
        if pending is not None and pending.first_sentence is None and isinstance(item, Sentence):
            pending.first_sentence = self.clock()
            pending.sentence = item.text

    def _see_agent(self, item: Any) -> None:
        state = self._state
        if isinstance(item, TurnStarted):
            state.turn_open = True
        elif isinstance(item, TurnEnded):
            state.turn_open = False
        elif isinstance(item, ReplyStarted):
            state.replying = True
        elif isinstance(item, SessionUpdated):
            state.replying = False
            self._close_pending()
        elif isinstance(item, AudioChunk):
            pending = self._pending
            if pending is not None and pending.first_audio is None:
                pending.first_audio = self.clock()
                self._close_pending()
        self._signal()

    def _close_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            self.turns.append(pending)
            if self.on_turn is not None:
                self.on_turn(pending)

    # -- idleness, for sources that feed silence until the agent is done --------------------------

    @property
    def idle(self) -> bool:
        """No user turn open and no reply in progress."""
        return not self._state.turn_open and not self._state.replying

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


def format_turn(turn: TurnLatency, *, indent: str = "  ") -> str:
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


def summarise(turns: Sequence[TurnLatency]) -> list[tuple[str, float, float, int]]:
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
