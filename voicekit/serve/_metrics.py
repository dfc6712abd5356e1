"""Prometheus metrics of :func:`voicekit.serve.app`: what its calls did, at ``GET /metrics``.

Opt-in (``app(..., metrics=True)``, ``voicekit serve --metrics``): with it and ``on_turn`` off
no code of this module runs on a call. Each app has its own registry (never prometheus_client's
global one), so several apps in one process do not clash; the counts are per process. The route
authenticates like every network entry point: with a token (``metrics_token=``, default
:data:`TOKEN_VARIABLE`) a scraper must send ``Authorization: Bearer <token>``; without one only
loopback clients are answered, and an app meant for a non-loopback host is refused. The
families, all prefixed ``voicekit_``:

* ``active_calls`` — calls running now (started: past the carrier's start and its token check);
* ``calls_total{carrier, outcome}`` — calls ended, by how: the reason of their
  :class:`~voicekit.CallEnded` (``hangup``, ``closed``, ``dropped``, ``error``), ``refused``
  (no valid start: a bad token, none in time), ``busy`` (the server was full or draining) or
  ``unknown`` (the pipeline was cancelled before it read the end);
* ``turns_total`` — replies to a user turn begun (:class:`~voicekit.ReplyStarted`);
* ``reply_failures_total{kind}`` — :class:`~voicekit.ReplyFailed` by ``source`` (``llm``,
  ``tts``, ``tool``…);
* ``barge_ins_total`` — replies cut by the caller (:class:`~voicekit.Interrupted`);
* ``voice_to_voice_seconds`` — end of the caller's speech → first reply audio, per turn;
* ``llm_first_token_seconds`` and ``tts_first_audio_seconds`` — the LLM's and the TTS's step of
  that wait (the breakdown of :meth:`~voicekit._metrics.TurnMetrics.steps`: from the turn's end
  to the first token — 0 for a reply prepared while the caller paused — and from the first
  sentence to its first audio);
* ``llm_tokens_total{kind}`` — ``input``, ``output`` and ``cached`` tokens of the replies;
* ``event_loop_lag_seconds`` — how late a timer fires on the server's event loop (sampled every
  ``interval`` seconds while the app runs: its ASGI lifespan starts and stops the sampler).

The counts come from events every call stream has; the latencies and tokens from the
:class:`~voicekit._metrics.TurnMetrics` the agent yields after each turn
(``voice_agent(..., metrics=True)``); without it those families stay empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from .._errors import ConfigError
from .._metrics import TurnMetrics
from .._secrets import remember
from ..events import CallEnded, CallStarted, Interrupted, ReplyFailed, ReplyStarted, SessionUpdated
from ..ops import Flow, tap

if TYPE_CHECKING:  # prometheus_client is imported when metrics are asked for
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = [
    "TOKEN_VARIABLE",
    "ServerMetrics",
    "metrics_route",
    "metrics_setup",
    "refused",
    "sampling",
    "server_metrics",
    "turn_record",
    "watched",
    "with_metrics",
]

_log = logging.getLogger("voicekit.serve")

_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # Prometheus' text format
TOKEN_VARIABLE = "VOICEKIT_METRICS_TOKEN"
"""The environment variable holding the bearer token ``/metrics`` asks for (never printed)."""
LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
"""Seconds: the bounds of the latency histograms."""
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Seconds: the bounds of the event-loop lag histogram."""


@dataclass(frozen=True, slots=True, eq=False)
class ServerMetrics:
    """The metric families of one app, in their own ``registry`` (see the module docs)."""

    registry: CollectorRegistry
    active_calls: Gauge
    calls: Counter
    turns: Counter
    reply_failures: Counter
    barge_ins: Counter
    voice_to_voice: Histogram
    llm_first_token: Histogram
    tts_first_audio: Histogram
    tokens: Counter
    loop_lag: Histogram

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format, as ``/metrics`` answers."""
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))

    def turn(self, measured: TurnMetrics) -> None:
        """Add one turn's latencies and tokens."""
        lag = measured.voice_to_voice
        if lag is not None:
            self.voice_to_voice.observe(max(0.0, lag))
        steps = {name: step for name, _, step, _ in measured.steps()}
        llm, tts = steps.get("llm_first_token"), steps.get("first_audio")
        if llm is not None:
            self.llm_first_token.observe(llm)
        if tts is not None:
            self.tts_first_audio.observe(tts)
        for kind, count in (("input", measured.input_tokens), ("output", measured.output_tokens),
                            ("cached", measured.cached_tokens)):
            if count:
                self.tokens.labels(kind=kind).inc(count)


def server_metrics(*, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> ServerMetrics:
    """A fresh set of the families in a registry of their own.

    >>> m = server_metrics()
    >>> m.calls.labels(carrier="twilio", outcome="hangup").inc()
    >>> b'voicekit_calls_total{carrier="twilio",outcome="hangup"} 1.0' in m.exposition()
    True
    """
    try:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    except ImportError as exc:
        raise ConfigError(
            "serve: metrics need prometheus-client: pip install 'voicekit[serve]'"
        ) from exc

    registry = CollectorRegistry(auto_describe=True)

    def histogram(name: str, text: str, bounds: tuple[float, ...] = buckets) -> Histogram:
        return Histogram(name, text, registry=registry, buckets=bounds)

    return ServerMetrics(
        registry=registry,
        active_calls=Gauge("voicekit_active_calls", "Calls running now.", registry=registry),
        calls=Counter("voicekit_calls", "Calls ended, by carrier and outcome.",
                      ("carrier", "outcome"), registry=registry),
        turns=Counter("voicekit_turns", "Replies to a user turn begun.", registry=registry),
        reply_failures=Counter("voicekit_reply_failures", "Failed replies, by what failed.",
                               ("kind",), registry=registry),
        barge_ins=Counter("voicekit_barge_ins", "Replies cut by the caller.", registry=registry),
        voice_to_voice=histogram("voicekit_voice_to_voice_seconds",
                                 "End of the caller's speech to the first reply audio."),
        llm_first_token=histogram("voicekit_llm_first_token_seconds",
                                  "From the end of the turn to the LLM's first token."),
        tts_first_audio=histogram("voicekit_tts_first_audio_seconds",
                                  "From the first sentence to the first reply audio."),
        tokens=Counter("voicekit_llm_tokens", "LLM tokens of the replies, by kind.", ("kind",),
                       registry=registry),
        loop_lag=histogram("voicekit_event_loop_lag_seconds",
                           "How late a timer fired on the event loop.", LAG_BUCKETS),
    )


class _Watch:
    """What one call did, seen as it passes: its inbound stream's end, the agent's output."""

    __slots__ = ("after_update", "carrier", "metrics", "on_turn", "outcome", "started")

    def __init__(self, metrics: ServerMetrics | None,
                 on_turn: Callable[[TurnMetrics], Any] | None) -> None:
        self.metrics = metrics
        self.on_turn = on_turn
        self.carrier = ""
        self.outcome: str | None = None
        self.started = False
        self.after_update = False  # a SessionUpdated passed: the turn's TurnMetrics comes next

    def inbound(self, item: Any) -> None:
        if isinstance(item, CallEnded):
            self.outcome = item.reason or "unknown"

    def outbound(self, item: Any) -> None:
        try:
            self._outbound(item)
        except Exception as exc:  # measuring never breaks a call
            _log.warning("metrics: counting a %s failed: %s", type(item).__name__,
                         type(exc).__name__)

    def _outbound(self, item: Any) -> None:
        metrics = self.metrics
        if isinstance(item, SessionUpdated):
            self.after_update = True
        elif isinstance(item, TurnMetrics):
            if not self.after_update:
                return  # a stage's early estimate (the page's meter): the one after the end counts
            self.after_update = False
            if metrics is not None:
                metrics.turn(item)
            if self.on_turn is not None:
                self.on_turn(item)
        elif isinstance(item, ReplyStarted):
            self.after_update = False
            if metrics is not None and item.turn is not None:
                metrics.turns.inc()
        elif metrics is None:
            return
        elif isinstance(item, ReplyFailed):
            metrics.reply_failures.labels(kind=str(item.source) or "unknown").inc()
        elif isinstance(item, Interrupted):
            metrics.barge_ins.inc()

    def begin(self, started: CallStarted) -> None:
        self.started = True
        self.carrier = started.carrier
        if self.metrics is not None:
            self.metrics.active_calls.inc()

    def end(self) -> None:
        """Count the call's outcome (once its ``on_call`` is over)."""
        if self.metrics is not None:
            self.metrics.active_calls.dec()
            outcome = self.outcome or "unknown"
            self.metrics.calls.labels(carrier=self.carrier, outcome=outcome).inc()


def watched(
    on_call: Callable[[Any], Awaitable[Any]],
    metrics: ServerMetrics | None,
    on_turn: Callable[[TurnMetrics], Any] | None = None,
) -> Callable[[Any], Awaitable[Any]]:
    """``on_call`` with each call's streams watched: counted into ``metrics``, each turn's
    :class:`~voicekit._metrics.TurnMetrics` handed to ``on_turn``. The call
    (:class:`voicekit.transports.Call` or ``AudioHookCall``) is handed on with its inbound and
    outbound tapped; everything else is the same."""

    async def run(call: Any) -> Any:
        watch = _Watch(metrics, on_turn)
        watch.begin(call.started)
        original = call.outbound

        def outbound(items: Any) -> Awaitable[None]:
            return original(Flow(items) | tap(watch.outbound, name="metrics"))

        seen = dataclasses.replace(
            call, inbound=call.inbound | tap(watch.inbound, name="metrics"), outbound=outbound
        )
        try:
            result = await on_call(seen)
            if watch.outcome is None:
                watch.outcome = "closed"  # on_call returned before the caller hung up
            return result
        except Exception:
            watch.outcome = watch.outcome or "error"
            raise
        finally:
            watch.end()

    return run


def refused(metrics: ServerMetrics | None, carrier: str, outcome: str = "refused") -> None:
    """Count a call that never started: ``refused`` (no valid start) or ``busy``."""
    if metrics is not None:
        metrics.calls.labels(carrier=carrier, outcome=outcome).inc()


def _loopback_client(request: Request) -> bool:
    host = request.client.host if request.client is not None else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def metrics_route(metrics: ServerMetrics, token: str) -> Route:
    """``GET /metrics``: the exposition. With ``token``, only for ``Authorization: Bearer
    <token>`` (401 otherwise); without one, only for a client on a loopback address (403)."""
    expected = f"Bearer {token}".encode()

    async def scrape(request: Request) -> Response:
        if token:
            given = request.headers.get("authorization", "").encode()
            if not secrets.compare_digest(given, expected):
                return PlainTextResponse("unauthorized", status_code=401,
                                         headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        elif not _loopback_client(request):
            return PlainTextResponse("metrics are served to loopback clients only (set "
                                     "VOICEKIT_METRICS_TOKEN to scrape from elsewhere)",
                                     status_code=403)
        return Response(metrics.exposition(), media_type=_CONTENT_TYPE)

    return Route("/metrics", scrape, methods=["GET"])


async def _sample(metrics: ServerMetrics, interval: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(interval)
        metrics.loop_lag.observe(max(0.0, loop.time() - before - interval))


@contextlib.asynccontextmanager
async def sampling(metrics: ServerMetrics, interval: float = 0.5) -> AsyncIterator[None]:
    """Sample the event loop's lag into ``metrics`` every ``interval`` seconds while inside
    (an app's lifespan); the sampler task is gone when it exits."""
    task = asyncio.create_task(_sample(metrics, interval), name="voicekit metrics loop lag")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def metrics_setup(
    enabled: bool, token: str | None, host: str
) -> tuple[ServerMetrics | None, list[Route]]:
    """The metrics and the ``/metrics`` route of an app: none when not ``enabled``. ``token``
    (default :data:`TOKEN_VARIABLE`) is the bearer token scrapers must send; without one the
    route answers loopback clients only, and a ``host`` that is not loopback is refused (a
    :class:`~voicekit.ConfigError`): every network entry point authenticates."""
    from ._app import is_loopback

    if not isinstance(enabled, bool):
        raise ConfigError(f"serve: metrics must be True or False, got {enabled!r}")
    if not enabled:
        return None, []
    secret = token if token is not None else os.environ.get(TOKEN_VARIABLE, "")
    if not secret and not is_loopback(host):
        raise ConfigError(
            f"serve: metrics on a non-loopback host ({host!r}) need a bearer token: set "
            f"{TOKEN_VARIABLE} (scrapers send 'Authorization: Bearer <token>')"
        )
    remember(secret)
    metrics = server_metrics()
    return metrics, [metrics_route(metrics, secret)]


def with_metrics(
    application: Starlette, metrics: ServerMetrics | None, routes: list[Route]
) -> Starlette:
    """``application`` with ``routes`` added and the lag sampler in its lifespan (when
    ``metrics``); ``application.state.metrics`` is ``metrics`` either way."""
    application.state.metrics = metrics
    if metrics is not None:
        application.router.routes.extend(routes)
        application.router.lifespan_context = lambda app: sampling(metrics)
    return application


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def turn_record(turn: TurnMetrics) -> tuple[str, dict[str, Any]]:
    """One finished turn as a log line and its fields (for a JSON log's ``turn``): the
    voice-to-voice latency, the LLM's and the TTS's step of it, the tokens, whether it was cut
    or failed. Never the words said (a transcript may hold what a caller would not log).

    >>> line, fields = turn_record(TurnMetrics(speech_end=1.0, turn_end=1.8, reply_start=1.8,
    ...     llm_first_token=2.1, first_audio=2.25, input_tokens=120, output_tokens=9))
    >>> line
    'turn: voice-to-voice 1.25 s (LLM first token 0.30 s, TTS first audio 0.15 s), tokens 120 in / 9 out'
    >>> fields["voice_to_voice"], fields["errors"]
    (1.25, [])
    """  # noqa: E501
    steps = {name: step for name, _, step, _ in turn.steps()}
    lag = turn.voice_to_voice
    fields: dict[str, Any] = {
        "voice_to_voice": None if lag is None else round(lag, 6),
        "llm_first_token": steps.get("llm_first_token"),
        "tts_first_audio": steps.get("first_audio"),
        "input_tokens": turn.input_tokens,
        "output_tokens": turn.output_tokens,
        "cached_tokens": turn.cached_tokens,
        "tool_seconds": round(turn.tool_seconds, 6),
        "interrupted": turn.interrupted,
        "errors": list(turn.errors),
    }
    line = (
        f"turn: voice-to-voice {_seconds(lag)} (LLM first token "
        f"{_seconds(fields['llm_first_token'])}, TTS first audio "
        f"{_seconds(fields['tts_first_audio'])}), tokens {turn.input_tokens} in / "
        f"{turn.output_tokens} out"
    )
    if turn.interrupted:
        line += ", cut by the caller"
    if turn.errors:
        line += f", failed: {', '.join(turn.errors)}"
    return line, fields
