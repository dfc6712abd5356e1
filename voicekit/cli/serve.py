"""``voicekit serve``: answer phone calls with the voice agent (:func:`voicekit.serve.app` run by
uvicorn).

The agent options are those of ``demo`` (``--llm --stt --tts --voice --system``); the server's
are ``--carrier --host --port --public-url --max-calls --workers --dev --drain-timeout
--inbound-ms --record``. Each
worker process loads the models once, at start. SIGTERM drains: ``/readyz`` turns 503 and new
calls are refused, running calls go on until they end or ``--drain-timeout`` passes, then the
server stops (a second SIGTERM stops it at once). It logs one line per finished turn (the
voice-to-voice latency, the LLM's and the TTS's part of it, the tokens); ``--log-format json``
writes every log record as one JSON object, each record of a call with its ``call_id``;
``--metrics`` serves Prometheus metrics at ``/metrics``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import logging.config
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .._agent import voice_agent
from .._errors import ConfigError, VoicekitError
from .._logging import FORMATS, log_config
from .._metrics import TurnMetrics
from .._recording import recorder
from ..session import Session
from ..web import turn_meter
from ._agent import add_agent_options, build_engines, prepare, report_error

__all__ = ["add_parser", "make_app", "run"]

_OPTIONS = "VOICEKIT_SERVE_OPTIONS"
_log = logging.getLogger("voicekit.serve")
CARRIERS = ("twilio", "telnyx", "plivo", "audiohook", "none")
SECRETS = {
    "twilio": "TWILIO_AUTH_TOKEN", "telnyx": "TELNYX_PUBLIC_KEY", "plivo": "PLIVO_AUTH_TOKEN",
    "audiohook": "VOICEKIT_AUDIOHOOK_KEYS",
}
"""The environment variable holding each carrier's signing secret (never printed)."""
WS_MAX_SIZE = 256 * 1024
"""The largest WebSocket message the server reads (a 20 ms Twilio frame is ~400 bytes); the
codecs reject anything over 64 KiB."""

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="answer phone calls (Twilio Media Streams, …) with the voice agent",
        description=(
            "Run the voice agent as a server: point the phone number's voice webhook at "
            "PUBLIC_URL/CARRIER/voice. Carrier credentials come from the environment "
            "(TWILIO_AUTH_TOKEN, …) and are never printed."
        ),
    )
    group = parser.add_argument_group("server")
    group.add_argument("--carrier", choices=CARRIERS, default="twilio",
                       help="the phone carrier (default: %(default)s); none: no phone routes, "
                       "the browser page at / to talk to the agent")
    group.add_argument("--host", default="127.0.0.1",
                       help="the address to listen on (default: %(default)s)")
    group.add_argument("--port", type=int, default=8000,
                       help="the port to listen on (default: %(default)s)")
    group.add_argument("--public-url", metavar="URL", default=None,
                       help="the https:// address the carrier calls (default: from each "
                       "request's Host header)")
    group.add_argument("--max-calls", type=int, default=100,
                       help="calls at once per worker; /readyz is 503 beyond (default: "
                       "%(default)s)")
    group.add_argument("--workers", type=int, default=1,
                       help="worker processes (default: %(default)s)")
    group.add_argument("--drain-timeout", type=float, default=30.0, metavar="SECONDS",
                       help="after SIGTERM, how long running calls may go on (default: "
                       "%(default)s)")
    group.add_argument("--inbound-ms", type=float, default=20, metavar="MS",
                       help="hand the caller's audio to the agent in chunks of MS ms; 40-60 "
                       "halves the agent's CPU per call for that much delay (default: "
                       "%(default)s)")
    group.add_argument("--record", metavar="DIR", default=None,
                       help="record every call into DIR: a stereo WAV (caller left, agent right, "
                       "what the caller heard) and a JSON transcript, named after the call id "
                       "(default: no recording)")
    group.add_argument("--metrics", action="store_true",
                       help="serve Prometheus metrics at /metrics; with VOICEKIT_METRICS_TOKEN "
                       "set scrapers must send it as a bearer token, without it only loopback "
                       "clients are answered (and --host must be loopback)")
    group.add_argument("--log-format", choices=FORMATS, default="text",
                       help="log lines as text or as one JSON object each; every record of a "
                       "call names its call id, none holds a key or a phone number "
                       "(default: %(default)s)")
    group.add_argument("--dev", action="store_true",
                       help="turn the signature and token checks off (loopback --host only)")
    group.add_argument("--audiohook-mode", choices=("bot", "monitor"), default="bot",
                       help="with --carrier audiohook (Genesys, WS /audiohook): bot = the agent "
                       "answers the caller (Audio Connector); monitor = transcribe both channels "
                       "and send the transcripts back (default: %(default)s)")
    add_agent_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``voicekit serve``: runs until stopped; 0 after a clean stop, 2 for bad options."""
    from ..serve import is_loopback

    try:
        if args.dev and not is_loopback(args.host):
            raise ConfigError(f"--dev turns security checks off: it needs a loopback --host, "
                              f"not {args.host!r}")
        if args.workers < 1 or args.max_calls < 1:
            raise ConfigError("--workers and --max-calls must be at least 1")
        if getattr(args, "metrics", False):
            from ..serve._metrics import TOKEN_VARIABLE

            if args.workers > 1:
                raise ConfigError("--metrics counts per process, and a scrape reaches one "
                                  "worker: use --workers 1 (one server per port) with it")
            if not is_loopback(args.host) and not os.environ.get(TOKEN_VARIABLE):
                raise ConfigError(f"--metrics on a non-loopback --host needs {TOKEN_VARIABLE}"
                                  " (the bearer token scrapers send)")
        if args.record is not None:
            if args.carrier == "audiohook":
                raise ConfigError("--record is not supported with --carrier audiohook yet")
            recorder(args.record)  # the directory can be created and written into
        secret = SECRETS.get(args.carrier, "")
        if secret and not args.dev and not os.environ.get(secret):
            raise ConfigError(f"{secret} is not set: the {args.carrier} routes cannot check "
                              "the carrier's signature (set it, or use --dev on a loopback host)")
        import uvicorn
    except ImportError:
        print("voicekit serve: needs the serve extra: pip install 'voicekit[serve]'",
              file=sys.stderr)
        return 2
    except VoicekitError as exc:
        return report_error("serve", exc, args)
    options = {k: v for k, v in vars(args).items() if k != "func"}
    os.environ[_OPTIONS] = json.dumps(options)
    from uvicorn.config import LOGGING_CONFIG

    logs = log_config(getattr(args, "log_format", "text"), base=LOGGING_CONFIG)
    logging.config.dictConfig(logs)  # uvicorn applies it again (in each worker)
    if args.dev:
        _log.warning("voicekit serve: DEV MODE: signature and token checks are OFF")
    if args.carrier == "none":
        _announce_page(args)
    uvicorn.run(
        "voicekit.cli.serve:make_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        ws="websockets-sansio",
        ws_max_size=WS_MAX_SIZE,
        lifespan="on",
        log_level="info",
        log_config=logs,
        timeout_graceful_shutdown=5,
    )
    return 0


def _announce_page(args: argparse.Namespace) -> None:
    """Say where the page is. Without ``--dev`` the page needs the ``/ws`` token: a fresh one
    per run (in the address to open, like Jupyter's) unless ``VOICEKIT_WS_TOKEN`` is set."""
    address = f"http://{args.host}:{args.port}/"
    if args.dev:
        print(f"voicekit serve: talk to the agent at {address}", flush=True)
        return
    if os.environ.get("VOICEKIT_WS_TOKEN"):
        print(f"voicekit serve: talk to the agent at {address}#token=<VOICEKIT_WS_TOKEN>",
              flush=True)
        return
    token = secrets.token_urlsafe(18)
    os.environ["VOICEKIT_WS_TOKEN"] = token  # the workers inherit it
    print(f"voicekit serve: talk to the agent at {address}#token={token}", flush=True)


def make_app() -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The ASGI app of one worker, from the options ``run`` left in the environment: the
    models load at startup (lifespan), and SIGTERM drains."""
    from ..serve import app

    args = argparse.Namespace(**json.loads(os.environ[_OPTIONS]))
    engines: list[Any] = []

    page = args.carrier == "none"
    if getattr(args, "log_format", "text") == "json":
        sys.stderr = _LogLines(logging.getLogger("voicekit.stderr"))

    async def on_call(call: Any) -> Any:
        (eng,) = engines
        if args.carrier == "audiohook":
            return await _audiohook_call(eng, call, getattr(args, "audiohook_mode", "bot"))
        bot = voice_agent(
            llm=eng.llm, tts=eng.tts, stt=eng.stt, session=call.session, system=eng.system,
            tools=eng.tools, llm_error_message="Sorry, I could not reach the language model.",
            metrics=True,  # a TurnMetrics after each turn: the turn's log line, /metrics
        )
        if page:  # the page shows each turn's latency
            await (call.inbound | bot | turn_meter() | call.outbound)
        else:
            await (call.inbound | bot | call.outbound)

    began: dict[str, float] = {}

    def on_end(session: Session) -> None:
        turns = sum(1 for m in session.messages if m["role"] == "user")
        _log.info("call %s ended: %d turn(s), caller %s", session.call_id, turns,
                  session.caller_hash or "-")
        began.pop(session.call_id, None)

    inner = app(
        on_call, None if page else args.carrier, public_url=args.public_url,
        max_calls=args.max_calls,
        dev=args.dev, host=args.host, on_end=on_end, inbound_ms=args.inbound_ms,
        metrics=getattr(args, "metrics", False), on_turn=_log_turn,
        mode=getattr(args, "audiohook_mode", "bot"),
        record_dir=getattr(args, "record", None),
    )
    state = inner.state.voicekit

    async def startup() -> None:
        eng = await build_engines(args)
        for line in eng.about:
            _log.info("%s", line)
        await prepare(eng, out=_LogLines())
        engines.append(eng)
        _drain_on_sigterm(state, args.drain_timeout)

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await inner(scope, receive, send)
            return
        running = contextlib.AsyncExitStack()  # the app's own lifespan (the metrics sampler)
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await startup()
                except Exception as exc:  # a bad option or an unreachable LLM: say why, stop
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await running.enter_async_context(inner.router.lifespan_context(inner))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await running.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    return application


def _drain_on_sigterm(state: Any, deadline: float) -> None:
    """On SIGTERM: refuse new calls, wait for the running ones (up to ``deadline`` s), then
    hand the signal to the server's own handler (uvicorn's), which stops it."""
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)

    def stop() -> None:
        if callable(previous):
            previous(signal.SIGTERM, None)

    async def drain() -> None:
        until = time.monotonic() + deadline
        _log.info("draining: %d call(s) running, new calls refused", state.calls)
        while state.calls and time.monotonic() < until:  # noqa: ASYNC110 - a counter
            await asyncio.sleep(0.1)
        stop()

    def on_term(signum: int, frame: Any) -> None:
        if state.draining:  # a second SIGTERM: stop now
            stop()
            return
        state.draining = True
        loop.call_soon_threadsafe(lambda: loop.create_task(drain()))

    signal.signal(signal.SIGTERM, on_term)


class _LogLines:
    """A text stream whose lines become INFO records of ``logger``: for what a helper prints
    (``loading models …``), and with ``--log-format json`` for the process's stderr, so every
    line the server writes is a JSON record (a model loading on first use prints there)."""

    def __init__(self, logger: logging.Logger = _log) -> None:
        self.logger = logger
        self.writing = threading.local()  # per thread: models load on threads side by side

    def write(self, text: str) -> int:
        if getattr(self.writing, "busy", False):  # logging itself complained (to stderr)
            return sys.__stderr__.write(text) if sys.__stderr__ is not None else len(text)
        self.writing.busy = True
        try:
            for line in text.splitlines():
                if line.strip():
                    self.logger.info("%s", line)
        finally:
            self.writing.busy = False
        return len(text)

    def flush(self) -> None:
        pass


def _log_turn(turn: TurnMetrics) -> None:
    """One line per finished turn; the record names its call (``call_id``) and, in JSON,
    carries the numbers as ``turn``."""
    from ..serve._metrics import turn_record

    line, fields = turn_record(turn)
    _log.info("%s", line, extra={"turn": fields})


async def _audiohook_call(eng: Any, call: Any, mode: str) -> Any:
    """A Genesys AudioHook session: the agent answers (bot; the caller's 0 asks for a
    transfer), or both channels are transcribed and sent back (monitor)."""
    from ..transports import agent_call, transcriber
    from ..vad import vad

    if mode == "monitor":
        return await transcriber(lambda: eng.stt, vad=vad)(call)

    def agent(session: Session) -> Any:
        return voice_agent(
            llm=eng.llm, tts=eng.tts, stt=eng.stt, session=session, system=eng.system,
            tools=eng.tools, llm_error_message="Sorry, I could not reach the language model.",
            metrics=True,
        )

    return await agent_call(agent)(call)
