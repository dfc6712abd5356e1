"""OpenTelemetry spans of a call, built from the agent's timeline: ``agent(tracer=...)``.

Opt-in (``pip install voicekit[otel]``). ``tracer`` is an OpenTelemetry ``Tracer``, or ``True``
for ``opentelemetry.trace.get_tracer("voicekit")`` — the global provider's, which exports
nothing until you configure one with an exporter. The spans are made from the timeline an
observed agent keeps (:mod:`voicekit._observe`), with explicit start and end times, so they
are exactly the times the milestones and :class:`~voicekit._metrics.TurnMetrics` report:

* ``voicekit.call`` — the agent's whole run (its parent is the context current when the
  agent started); attribute ``voicekit.call.id``;
* ``voicekit.turn`` — a user turn and its reply, from the start of the user's speech (or the
  turn's end, when no speech was seen) to the reply's ``SessionUpdated``; the milestones as
  attributes (``voicekit.latency.*``, seconds from the end of speech), the tokens, the barge-in
  (``voicekit.turn.interrupted``, an event ``barge-in``), and status ERROR with the failures'
  kinds when the reply failed;
* under a turn: ``stt`` (from the VAD's stop to the final transcript), ``chat {model}`` per LLM
  request (GenAI semantic conventions: ``gen_ai.operation.name``, ``gen_ai.request.model``,
  ``gen_ai.provider.name``, ``gen_ai.usage.input_tokens``/``output_tokens``, an event
  ``gen_ai.first_token`` and ``gen_ai.response.time_to_first_chunk`` in seconds),
  ``execute_tool {name}`` per tool call, ``tts`` per sentence (from the sentence going in to
  its last audio out; ``voicekit.tts.time_to_first_audio``). LLM requests, TTS calls and tools
  outside a user turn (the greeting) hang from the call.

No span carries the caller's number, a key, or what anyone said: only the call id, models,
counts and times.
"""

from __future__ import annotations

from typing import Any

from ._metrics import ToolRun, TurnMetrics
from ._observe import LLMRequest, Meter, TTSCall

__all__ = ["CallSpans", "resolve_tracer"]

_LATENCIES = (
    "vad_stop",
    "transcript",
    "turn_end",
    "llm_first_token",
    "first_sentence",
    "first_audio",
    "first_played",
)


def resolve_tracer(tracer: Any) -> Any:
    """``None`` (off), a tracer as given, or for ``True`` the global provider's tracer. Raises
    :class:`~voicekit.ConfigError` when OpenTelemetry is not installed or ``tracer`` is no
    tracer."""
    from ._errors import ConfigError

    if tracer is None or tracer is False:
        return None
    if tracer is True:
        try:
            from opentelemetry import trace
        except ImportError:
            raise ConfigError(
                "agent: tracer=True needs OpenTelemetry: pip install 'voicekit[otel]'"
            ) from None
        from . import __version__

        return trace.get_tracer("voicekit", __version__)
    if not callable(getattr(tracer, "start_span", None)):
        raise ConfigError(
            "agent: tracer must be an OpenTelemetry Tracer, True (the global provider's) or "
            f"None, got {type(tracer).__name__}"
        )
    return tracer


class CallSpans:
    """The spans of one run of an observed agent: the call's is open from the start; each
    turn's are made, whole, when its reply ends."""

    __slots__ = ("call", "call_id", "context", "meter", "trace", "tracer")

    def __init__(self, tracer: Any, meter: Meter) -> None:
        from opentelemetry import trace

        self.trace = trace
        self.tracer = tracer
        self.meter = meter
        self.call = tracer.start_span("voicekit.call", start_time=meter.wall_ns(0.0))
        self.context = trace.set_span_in_context(self.call)
        self.call_id = ""

    def _span(self, name: str, start: float, end: float, parent: Any, **attributes: Any) -> Any:
        span = self.tracer.start_span(
            name,
            context=parent,
            start_time=self.meter.wall_ns(start),
            attributes={k: v for k, v in attributes.items() if v is not None},
        )
        return span

    def _end(self, span: Any, end: float) -> None:
        span.end(end_time=self.meter.wall_ns(end))

    def _error(self, span: Any, description: str) -> None:
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, description))

    def _records(self, parent: Any, since: float | None) -> None:
        """Spans for the LLM requests, TTS calls and tools noted since the last time: under
        ``parent`` those that started at ``since`` or later, the others under the call."""
        records = self.meter.records
        if not records:
            return
        taken, self.meter.records = records, []
        for record in taken:
            under = parent if since is not None and record.start >= since else self.context
            if isinstance(record, LLMRequest):
                self._llm(record, under)
            elif isinstance(record, TTSCall):
                span = self._span(
                    "tts",
                    record.start,
                    record.end,
                    under,
                    **{
                        "voicekit.tts.characters": record.chars,
                        "voicekit.tts.time_to_first_audio": (
                            None
                            if record.first_audio is None
                            else record.first_audio - record.start
                        ),
                    },
                )
                if record.error is not None:
                    self._error(span, record.error)
                self._end(span, record.end)
            elif isinstance(record, ToolRun):
                span = self._span(
                    f"execute_tool {record.name}",
                    record.start,
                    record.end,
                    under,
                    **{
                        "gen_ai.operation.name": "execute_tool",
                        "gen_ai.tool.name": record.name,
                        "voicekit.cancelled": record.cancelled or None,
                    },
                )
                if record.error is not None:
                    self._error(span, record.error)
                self._end(span, record.end)

    def _llm(self, request: LLMRequest, parent: Any) -> None:
        usage = request.usage
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": request.model or None,
            "gen_ai.provider.name": request.provider or None,
            "voicekit.cancelled": request.cancelled or None,
        }
        if usage is not None:
            attributes["gen_ai.usage.input_tokens"] = usage.prompt_tokens
            attributes["gen_ai.usage.output_tokens"] = usage.completion_tokens
            attributes["gen_ai.usage.cache_read.input_tokens"] = usage.cached_tokens
        if request.finish is not None:
            attributes["gen_ai.response.finish_reasons"] = (request.finish,)
        if request.first_token is not None:
            attributes["gen_ai.response.time_to_first_chunk"] = (
                request.first_token - request.start
            )
        name = f"chat {request.model}" if request.model else "chat"
        span = self._span(name, request.start, request.end, parent, **attributes)
        if request.first_token is not None:
            span.add_event("gen_ai.first_token", timestamp=self.meter.wall_ns(request.first_token))
        if request.error is not None:
            self._error(span, request.error)
        self._end(span, request.end)

    def turn(self, metrics: TurnMetrics) -> None:
        """The spans of a user turn whose reply just ended."""
        end = metrics.reply_end if metrics.reply_end is not None else self.meter.now()
        start = next(
            (
                t
                for t in (metrics.speech_start, metrics.speech_end, metrics.turn_end)
                if t is not None
            ),
            metrics.reply_start if metrics.reply_start is not None else end,
        )
        if metrics.call_id and not self.call_id:
            self.call_id = metrics.call_id
            self.call.set_attribute("voicekit.call.id", metrics.call_id)
        attributes: dict[str, Any] = {
            "voicekit.call.id": metrics.call_id or None,
            "voicekit.turn.interrupted": metrics.interrupted,
            "voicekit.turn.tool_calls": metrics.tool_calls,
            "voicekit.turn.tool_seconds": metrics.tool_seconds,
            "gen_ai.usage.input_tokens": metrics.input_tokens,
            "gen_ai.usage.output_tokens": metrics.output_tokens,
            "gen_ai.usage.cache_read.input_tokens": metrics.cached_tokens,
            "voicekit.latency.voice_to_voice": metrics.voice_to_voice,
        }
        for name in _LATENCIES:
            attributes[f"voicekit.latency.{name}"] = metrics.since_end(name)
        if metrics.errors:
            attributes["voicekit.turn.errors"] = metrics.errors
        span = self._span("voicekit.turn", start, end, self.context, **attributes)
        cut = metrics.audio_end if metrics.audio_end is not None else metrics.reply_end
        if metrics.interrupted and cut is not None:
            span.add_event("barge-in", timestamp=self.meter.wall_ns(cut))
        if metrics.errors:
            self._error(span, "reply failed: " + ", ".join(metrics.errors))
        parent = self.trace.set_span_in_context(span)
        if metrics.vad_stop is not None and metrics.transcript is not None:
            stt = self._span("stt", metrics.vad_stop, metrics.transcript, parent)
            self._end(stt, metrics.transcript)
        self._records(parent, start)
        self._end(span, end)

    def other(self) -> None:
        """A reply to no user turn (the greeting) ended: its spans hang from the call."""
        self._records(None, None)

    def end(self, failure: BaseException | None) -> None:
        """The agent's run is over."""
        self._records(None, None)
        if isinstance(failure, Exception):
            self._error(self.call, type(failure).__name__)
        self.call.end(end_time=self.meter.wall_ns(self.meter.now()))
