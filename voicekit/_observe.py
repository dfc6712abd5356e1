"""An agent that measures itself: ``agent(metrics=True)`` and ``agent(tracer=...)``.

A stage placed after the agent sees what the agent yields, but not what happens inside it: the
LLM's tokens (the sentence splitter eats them), a sentence on its way into the TTS, a tool
starting. So measuring is an option of the agent, and it is built around the agent's loop
rather than into it: with the option on, :func:`observed` runs the same loop (``_run``) with

* its inbound stream tapped (speech and turn markers, transcripts, the transport's
  :class:`~voicekit.Played` acknowledgements, as the agent reads them),
* its LLM function wrapped (each token, tool call and :class:`~voicekit.Usage` as the LLM
  gives it; the start, first token and end of each request),
* its TTS stage wrapped (each sentence in, its first audio and its last audio out),
* its tools wrapped (when each call started and ended),
* and its output watched (the reply's start, audio, marks, failures, barge-in, end),

each noted on one clock — seconds since the agent started, on ``time.perf_counter`` — in a
timeline of ``(seconds, item)`` pairs. After the :class:`~voicekit.SessionUpdated` that ends a
reply to a user turn, :func:`voicekit._metrics.turn_metrics` (the one implementation of the
milestones, also behind the CLI's latency probe and ``notebook.turn_times``) reads that
timeline; the :class:`~voicekit._metrics.TurnMetrics` is yielded next (``metrics=True``) and/or
turned into OpenTelemetry spans with those exact start and end times (``tracer=``, see
:mod:`voicekit._tracing`). Data flows one way: the measurements are values in the stream.

With both options off, :func:`voicekit.agent` returns the bare loop: none of this code runs, not
even a check per item.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from ._agent_tools import Tool
from ._metrics import ToolRun, turn_metrics
from ._secrets import redact
from .events import (
    AudioChunk,
    CallStarted,
    Finish,
    Interrupted,
    Mark,
    Played,
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
    TurnPending,
    TurnStarted,
    Usage,
)
from .llm._signature import call_llm
from .llm.endpoint import Endpoint
from .ops import Flow, Stage

__all__ = ["LLMRequest", "Meter", "TTSCall", "model_of", "observed"]

_INBOUND = (
    SpeechStarted,
    SpeechStopped,
    Transcript,
    TurnStarted,
    TurnPending,
    TurnEnded,
    Played,
    CallStarted,
)
"""What of the inbound stream is noted (never the caller's audio)."""

_OUTBOUND = (ReplyStarted, AudioChunk, Interrupted, Mark, ToolResult, ReplyFailed, SessionUpdated)
"""What of the agent's output is noted: only what the agent makes (inbound items it passes on
were noted on the way in; the LLM's events inside the LLM function)."""


@dataclass(frozen=True, slots=True)
class LLMRequest:
    """A timeline item: one LLM request, from ``start`` to ``end``; ``first_token`` when its
    first token with text came; ``usage`` its summed :class:`~voicekit.Usage`; ``error`` the
    text of what it raised; ``cancelled`` True when it was closed before its end (a barge-in,
    a dropped prepared reply)."""

    start: float
    end: float
    first_token: float | None = None
    model: str = ""
    provider: str = ""
    usage: Usage | None = None
    finish: str | None = None
    error: str | None = None
    cancelled: bool = False


@dataclass(frozen=True, slots=True)
class TTSCall:
    """A timeline item: one sentence spoken by the TTS, from when it went in (``start``) to
    its last audio out (``end``); ``first_audio`` when its first audio came out (None: it gave
    none); ``chars`` its length."""

    start: float
    end: float
    first_audio: float | None = None
    chars: int = 0
    error: str | None = None


class Meter:
    """The timeline of one run of an observed agent (see the module documentation)."""

    __slots__ = ("epoch_ns", "loop", "origin", "records", "timeline")

    def __init__(self, *, records: bool = False) -> None:
        self.origin = time.perf_counter()
        self.epoch_ns = time.time_ns()  # the wall time of ``origin``
        self.loop = asyncio.get_running_loop()
        self.timeline: list[tuple[float, Any]] = []
        # the LLM requests, TTS calls and tool runs not handed to the tracer yet (tracing only)
        self.records: list[Any] | None = [] if records else None

    def now(self) -> float:
        """Seconds since the agent started."""
        return time.perf_counter() - self.origin

    def note(self, item: Any, at: float | None = None) -> None:
        self.timeline.append((self.now() if at is None else at, item))

    def record(self, item: Any, at: float) -> None:
        """Note a finished :class:`LLMRequest`, :class:`TTSCall` or :class:`ToolRun`."""
        self.timeline.append((at, item))
        if self.records is not None:
            self.records.append(item)

    def wall_ns(self, t: float) -> int:
        """Time ``t`` of the timeline as nanoseconds since the epoch (for OpenTelemetry)."""
        return self.epoch_ns + int(t * 1e9)

    def forget(self) -> None:
        """After a reply's end, drop what the next turn cannot need: everything before the
        reply's start, and its audio."""
        timeline = self.timeline
        starts = (k for k in range(len(timeline) - 1, -1, -1)
                  if isinstance(timeline[k][1], ReplyStarted))  # fmt: skip
        last = next(starts, 0)
        self.timeline = [pair for pair in timeline[last:] if not isinstance(pair[1], AudioChunk)]


def model_of(llm: Callable[..., Any]) -> tuple[str, str]:
    """The model and the provider's name of an agent's LLM function, where it can tell (an
    :class:`~voicekit.llm.Endpoint` bound with ``functools.partial``), else ``("", "")``."""
    if isinstance(llm, functools.partial):
        for value in (*llm.args, *llm.keywords.values()):
            if isinstance(value, Endpoint):
                return value.model, value.name
    return "", ""


def _timed_llm(meter: Meter, llm: Callable[..., Any]) -> Callable[..., Any]:
    model, provider = model_of(llm)

    async def timed(messages: Any, /, *, caller: Any = None, **context: Any) -> AsyncIterator[Any]:
        start = meter.now()
        first: float | None = None
        usage: list[Usage] = []
        finish: str | None = None
        error: str | None = None
        ended = False
        stream = call_llm(llm, messages, context={**context, "caller": caller})
        try:
            async for event in stream:
                if isinstance(event, str):
                    noted: Any = Token(event)
                else:
                    noted = event
                if isinstance(noted, Token):
                    if first is None and noted.text.strip():
                        first = meter.now()
                    meter.note(noted)
                elif isinstance(noted, ToolCall):
                    meter.note(noted)
                elif isinstance(noted, Usage):
                    usage.append(noted)
                    meter.note(noted)
                elif isinstance(noted, Finish):
                    finish = noted.reason
                yield event
            ended = True
        except Exception as exc:
            error = redact(f"{type(exc).__name__}: {exc}")
            ended = True
            raise
        finally:
            aclose = getattr(stream, "aclose", None)
            try:
                if aclose is not None:
                    await aclose()
            finally:
                total = None
                if usage:
                    total = Usage(
                        sum(u.prompt_tokens for u in usage),
                        sum(u.completion_tokens for u in usage),
                        sum(u.cached_tokens for u in usage),
                        sum(u.reasoning_tokens for u in usage),
                    )
                end = meter.now()
                meter.record(
                    LLMRequest(start, end, first, model, provider, total, finish, error,
                               cancelled=not ended),
                    end,
                )  # fmt: skip

    timed.__name__ = getattr(llm, "__name__", "llm")
    return timed


async def _timed_tts(
    source: AsyncIterable[Any], /, *, tts: Stage[Any, Any], meter: Meter
) -> AsyncIterator[Any]:
    """``tts`` with each sentence timed: in, first audio out, last audio out."""
    pending: deque[tuple[float, int]] = deque()  # sentences in, not yet out: (start, chars)
    current: list[Any] | None = None  # [start, chars, first_audio, last_audio]

    async def feed() -> AsyncIterator[Any]:
        async for item in source:
            if isinstance(item, Sentence | str):
                text = item if isinstance(item, str) else item.text
                if isinstance(item, Sentence):
                    meter.note(item)
                pending.append((meter.now(), len(text)))
            yield item

    def close(error: str | None = None) -> None:
        nonlocal current
        if current is not None:
            start, chars, first, last = current
            end = last if last is not None else meter.now()
            meter.record(TTSCall(start, end, first, chars, error), end)
            current = None

    error: str | None = None
    try:
        async with (Flow(feed()) | tts).open() as items:
            async for item in items:
                if isinstance(item, AudioChunk):
                    if current is None and pending:
                        start, chars = pending.popleft()
                        current = [start, chars, meter.now(), None]
                    if current is not None:
                        current[3] = meter.now()
                elif current is not None:
                    close()  # the TTS passes items on after the audio before them
                yield item
    except Exception as exc:  # not a cancellation: a barge-in is no TTS failure
        error = redact(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        close(error)
        while pending:  # sentences that gave no audio
            start, chars = pending.popleft()
            end = meter.now()
            meter.record(TTSCall(start, end, None, chars, error), end)


def _timed_tool(meter: Meter, tool: Tool) -> Tool:
    fn = tool.fn
    name = tool.name
    if inspect.iscoroutinefunction(inspect.unwrap(fn)) or (
        isinstance(fn, functools.partial) and inspect.iscoroutinefunction(fn.func)
    ):

        async def timed_async(**arguments: Any) -> Any:
            start = meter.now()
            error: str | None = None
            cancelled = False
            try:
                return await fn(**arguments)
            except asyncio.CancelledError:
                cancelled = True
                raise
            except Exception as exc:
                error = redact(f"{type(exc).__name__}: {exc}")
                raise
            finally:
                end = meter.now()
                meter.record(ToolRun(name, start, end, error, cancelled), end)

        return dataclasses.replace(tool, fn=timed_async)

    def timed_sync(**arguments: Any) -> Any:  # runs in a thread of its own (run_tool)
        start = meter.now()
        error: str | None = None
        try:
            return fn(**arguments)
        except Exception as exc:
            error = redact(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            end = meter.now()
            run = ToolRun(name, start, end, error)
            with contextlib.suppress(RuntimeError):  # a closed loop: the call is over
                meter.loop.call_soon_threadsafe(meter.record, run, end)

    return dataclasses.replace(tool, fn=timed_sync)


async def _inbound(source: AsyncIterable[Any], meter: Meter) -> AsyncGenerator[Any, None]:
    async for item in source:
        if isinstance(item, _INBOUND):
            meter.note(item)
        yield item


async def observed(
    source: AsyncIterable[Any],
    /,
    *,
    cfg: Any,
    run: Callable[..., AsyncIterator[Any]],
    metrics: bool,
    tracer: Any,
) -> AsyncIterator[Any]:
    """The agent's loop ``run`` with ``cfg``, measured: a :class:`~voicekit._metrics.TurnMetrics`
    after each reply to a user turn (``metrics``), spans (``tracer``, an OpenTelemetry tracer)."""
    meter = Meter(records=tracer is not None)
    cfg = dataclasses.replace(
        cfg,
        llm=_timed_llm(meter, cfg.llm),
        tts=Stage.of(_timed_tts, "tts", tts=cfg.tts, meter=meter),
        tools=tuple(_timed_tool(meter, t) for t in cfg.tools),
    )
    spans = None
    if tracer is not None:
        from ._tracing import CallSpans

        spans = CallSpans(tracer, meter)
    to_user = False  # the reply in flight answers a user turn
    failure: BaseException | None = None
    inbound = _inbound(source, meter)
    replies = run(inbound, cfg=cfg)
    try:
        async for item in replies:
            if isinstance(item, _OUTBOUND):
                meter.note(item)
            yield item
            if isinstance(item, ReplyStarted):
                to_user = item.turn is not None
            elif isinstance(item, SessionUpdated):
                if to_user:
                    measured = turn_metrics(meter.timeline)
                    if spans is not None:
                        spans.turn(measured)
                    if metrics:
                        yield measured
                    meter.forget()
                elif spans is not None:
                    spans.other()
                to_user = False
    except BaseException as exc:
        failure = exc
        raise
    finally:
        try:
            aclose = getattr(replies, "aclose", None)
            if aclose is not None:
                await aclose()  # the loop first (it stops its replies), then its source
            await inbound.aclose()
        finally:
            if spans is not None:
                spans.end(failure)
