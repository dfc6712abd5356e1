"""The ASGI application: carrier routes, the generic ``/ws`` route and health checks."""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from .._errors import ConfigError, ProtocolError
from .._metrics import TurnMetrics
from .._recording import recorder
from .._secrets import remember
from ..events import CallStarted
from ..session import Session
from ..transports import Call, run_call, telnyx, twilio, websocket
from ..transports._control import CallControl
from ..transports._rest import CarrierApi, api_from_env
from ..transports._token import Spent, check_token, derive_key, make_token
from ._carriers import SECRETS, carrier_routes
from ._dial import (
    DtmfResumes,
    amd_route,
    plivo_transfer_route,
    signed_transfer_url,
    stream_url_of,
    twilio_resume,
)
from ._metrics import metrics_setup, refused, watched, with_metrics
from ._page import page_routes
from ._webrtc import Peers, webrtc_route

__all__ = ["ServerState", "app"]

_log = logging.getLogger("voicekit.serve")

CARRIERS = ("twilio", "telnyx", "plivo", "audiohook")
LOOPBACK = ("localhost",)


@dataclass(slots=True)
class ServerState:
    """What the server knows about itself: calls running, and whether it is draining (then
    ``/readyz`` answers 503 and new calls are refused)."""

    max_calls: int
    calls: int = 0
    draining: bool = False
    ended: list[Session] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return not self.draining and self.calls < self.max_calls


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.1``, ``::1``)."""
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _public_base(request: Request, public_url: str | None) -> str:
    if public_url:
        return public_url.rstrip("/")
    proto = request.headers.get("x-forwarded-proto", request.url.scheme)
    return f"{proto}://{request.headers.get('host', request.url.netloc)}"


def app(
    on_call: Callable[[Call], Awaitable[Any]],
    carrier: str | None = "twilio",
    *,
    public_url: str | None = None,
    max_calls: int = 100,
    dev: bool = False,
    host: str = "127.0.0.1",
    rate: int = 16000,
    lead: float = 0.2,
    inbound_ms: float = 20,
    on_end: Callable[[Session], Any] | None = None,
    token_ttl: float = 300.0,
    ws_token: str | None = None,
    metrics: bool = False,
    metrics_token: str | None = None,
    on_turn: Callable[[TurnMetrics], Any] | None = None,
    grace: float = 0.5,
    mode: str = "bot",
    record_dir: str | Path | None = None,
    api: CarrierApi | None = None,
    ice_servers: Sequence[str | Mapping[str, str]] = (),
) -> Starlette:
    """An ASGI application that answers phone calls with ``on_call(call)`` (see
    :class:`voicekit.transports.Call`); serve it with uvicorn or mount it in FastAPI.

    Routes: ``POST /twilio/voice`` (the TwiML answer: point the number's voice webhook here),
    ``WS /twilio/media`` (the Media Stream), ``WS /ws`` (voicekit's own protocol, see
    :mod:`voicekit.transports.websocket`), ``GET /healthz`` and ``GET /readyz`` (503 while
    draining or with ``max_calls`` calls running).

    Security: the answer route checks ``X-Twilio-Signature`` with ``TWILIO_AUTH_TOKEN`` (from
    the environment; 403 when wrong) and puts a signed, expiring, single-use token for that
    call in the stream's ``<Parameter>`` s; the media socket checks it on ``start``, before any
    audio is processed. ``/ws`` requires ``ws_token`` (default ``VOICEKIT_WS_TOKEN``) in its
    start message; without one it is closed. ``dev=True`` turns the checks off — allowed only
    when ``host`` is a loopback address — and says so in the log. ``public_url`` is the
    ``https://`` address Twilio calls (default: from the request's Host header); the signature
    is computed over it. ``rate`` is the pipeline's sample rate, ``lead`` how far outbound
    audio runs ahead of real time, ``on_end(session)`` receives each call's final Session,
    ``grace`` is how long a pipeline may run on after the caller hung up, ``inbound_ms`` the
    length of the caller's audio chunks (see :func:`voicekit.transports.run_call`).
    ``record_dir`` records every call there: a stereo WAV (caller left, agent right, what the
    caller heard) and a JSON transcript per call, named after the call id (see
    :func:`voicekit.recorder`); off by default.

    ``carrier="telnyx"``: ``POST /telnyx/voice`` (TeXML; Telnyx's Ed25519 webhook signature
    checked with ``TELNYX_PUBLIC_KEY``; stream tokens keyed with ``TELNYX_API_KEY``, else a
    per-process key) and ``WS /telnyx/media``. ``carrier="plivo"``: ``POST /plivo/voice`` (the
    ``<Stream>`` XML; ``X-Plivo-Signature-V3`` checked with ``PLIVO_AUTH_TOKEN``) and
    ``WS /plivo/media``. See :mod:`voicekit.transports.telnyx` and ``…plivo``.

    ``carrier="audiohook"``: ``WS /audiohook`` (Genesys AudioHook; ``X-API-KEY`` and the
    request signature checked against ``VOICEKIT_AUDIOHOOK_KEYS`` before the upgrade); ``mode``
    is ``"bot"`` (Audio Connector: ``on_call`` answers, see
    :func:`voicekit.transports.agent_call`) or ``"monitor"`` (``on_call`` transcribes, see
    :func:`voicekit.transports.transcriber`).

    Call control: ``HangUp``, ``TransferCall`` and ``SendDtmf`` on a call's outbound stream
    go through the carrier's REST API, ``api`` (default: from the environment,
    ``TWILIO_ACCOUNT_SID``/``TWILIO_AUTH_TOKEN``, ``TELNYX_API_KEY``,
    ``PLIVO_AUTH_ID``/``PLIVO_AUTH_TOKEN``). Twilio and Telnyx also get ``POST /{carrier}/amd``
    (the asynchronous answering-machine result of :func:`voicekit.serve.dial`), Plivo
    ``/plivo/transfer`` (the ``<Dial>`` a transfer fetches).

    ``metrics=True`` adds ``GET /metrics`` (Prometheus; the families are listed in
    :mod:`voicekit.serve._metrics`): with ``metrics_token`` (default ``VOICEKIT_METRICS_TOKEN``)
    a scraper must send ``Authorization: Bearer <token>``; without one only loopback clients
    are answered, and a ``host`` that is not loopback is refused. ``on_turn(turn)`` receives
    the :class:`~voicekit.TurnMetrics` of every finished turn of every call (the agent yields
    them with ``metrics=True``). With both off, nothing watches the calls.

    ``carrier=None``: no phone routes (and no carrier credentials needed); ``GET /`` is the page
    to talk to the agent from a browser (:mod:`voicekit.web`, its files at ``/static/``), which
    calls ``/ws`` with the token given in its address (``/#token=…``). Its WebRTC switch uses
    ``GET``/``POST /webrtc`` (an SDP offer → answer, the same token as a bearer; the ``webrtc``
    extra, see :mod:`voicekit.serve._webrtc`): ICE with host candidates only, unless
    ``ice_servers`` lists ``stun:``/``turn:`` URLs (or mappings with ``urls``, ``username``,
    ``credential``).
    """
    if carrier is not None and carrier not in CARRIERS:
        raise ConfigError(f"serve: carrier must be one of {', '.join(CARRIERS)}, got {carrier!r}")
    if isinstance(max_calls, bool) or not isinstance(max_calls, int) or max_calls < 1:
        raise ConfigError(f"serve: max_calls must be an int ≥ 1, got {max_calls!r}")
    if dev and not is_loopback(host):
        raise ConfigError(f"serve: dev=True turns security checks off; it needs a loopback host, "
                          f"not {host!r}")
    state = ServerState(max_calls=max_calls)
    counted, metric_routes = metrics_setup(metrics, metrics_token, host)
    if counted is not None or on_turn is not None:
        on_call = watched(on_call, counted, on_turn)
    if carrier == "audiohook" and record_dir is not None:
        raise ConfigError("serve: record_dir is not supported with carrier='audiohook' yet")
    record = recorder(record_dir) if record_dir is not None else None
    if carrier == "audiohook":
        hook = _audiohook_app(on_call, state, mode=mode, dev=dev, rate=rate, lead=lead,
                              on_end=on_end, grace=grace)
        return with_metrics(hook, counted, metric_routes)
    secret_name = SECRETS.get(carrier or "", "TWILIO_AUTH_TOKEN")
    auth_token = os.environ.get(secret_name, "") if carrier is not None else ""
    ws_secret = ws_token if ws_token is not None else os.environ.get("VOICEKIT_WS_TOKEN", "")
    # Telnyx signs with a *public* key: the stream tokens need a secret of their own
    key_secret = os.environ.get("TELNYX_API_KEY", "") if carrier == "telnyx" else auth_token
    remember(auth_token, ws_secret, key_secret)
    if not dev and not auth_token and carrier is not None:
        raise ConfigError(
            f"serve: {secret_name} is not set: the {carrier} routes cannot check {carrier}'s "
            "signature (set it, or use dev=True / --dev on a loopback host for local tests)"
        )
    if dev:
        _log.warning("voicekit serve: DEV MODE: signature and token checks are OFF (loopback)")
    key = derive_key(key_secret) if key_secret else secrets.token_bytes(32)
    spent = Spent()

    def ended(session: Session) -> Any:
        return on_end(session) if on_end is not None else None

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        if state.ready:
            return PlainTextResponse("ready")
        return PlainTextResponse("draining" if state.draining else "full", status_code=503)

    async def twilio_voice(request: Request) -> Response:
        body = (await request.body()).decode("utf-8", "replace")
        params = dict(parse_qsl(body, keep_blank_values=True))
        base = _public_base(request, public_url)
        if not dev:
            url = base + request.url.path + (f"?{request.url.query}" if request.url.query else "")
            given = request.headers.get("x-twilio-signature", "")
            if not twilio.verify_signature(auth_token, url, params, given):
                _log.warning("twilio answer refused: bad X-Twilio-Signature")
                return PlainTextResponse("bad signature", status_code=403)
        if not state.ready:
            return PlainTextResponse("not accepting calls", status_code=503)
        call_sid = params.get("CallSid", "")
        if not call_sid:
            return PlainTextResponse("no CallSid", status_code=400)
        parts = urlsplit(base)
        scheme = "wss" if parts.scheme == "https" else "ws"
        stream_url = f"{scheme}://{parts.netloc}{parts.path}/twilio/media"
        parameters = {
            "caller": params.get("From", ""),
            "callee": params.get("To", ""),
            twilio.TOKEN_PARAMETER: make_token(key, call_sid, ttl=token_ttl),
        }
        if params.get("AnsweredBy"):  # an outbound call with machine detection (dial)
            parameters["answered_by"] = params["AnsweredBy"]
        return Response(twilio.twiml(stream_url, parameters), media_type="application/xml")

    def verify_twilio(request: Request, form: dict[str, str]) -> bool:
        url = _public_base(request, public_url) + request.url.path
        url += f"?{request.url.query}" if request.url.query else ""
        given = request.headers.get("x-twilio-signature", "")
        return twilio.verify_signature(auth_token, url, form, given)

    def authorize_twilio(started: CallStarted) -> None:
        if dev:
            return
        token = started.parameters.get(twilio.TOKEN_PARAMETER, "")
        check_token(key, token, started.call_id)
        spent.use(token)

    def authorize_ws(started: CallStarted) -> None:
        if dev:
            return
        given = started.parameters.get("token", "")
        if not ws_secret or not secrets.compare_digest(given.encode(), ws_secret.encode()):
            raise ProtocolError("ws: missing or wrong token")

    def rest_api() -> CarrierApi:
        return api if api is not None else api_from_env(carrier or "twilio")

    resumes = DtmfResumes(ttl=token_ttl)  # Twilio calls coming back after <Play digits>

    def control_for(ws: WebSocket) -> CallControl:
        the_api = rest_api() if carrier in ("twilio", "telnyx", "plivo") else None
        if carrier == "twilio":
            media_url = stream_url_of(ws, public_url, "/twilio/media")
            resume = twilio_resume(media_url, None if dev else key, token_ttl,
                                   on_resume=resumes.expect) if media_url else None
            return CallControl(the_api, resume=resume)
        if carrier == "plivo" and public_url:
            base = public_url.rstrip("/")
            return CallControl(the_api, transfer_url=lambda to: signed_transfer_url(base, key, to))
        return CallControl(the_api)

    async def serve_socket(ws: WebSocket, codec: Any, authorize: Any) -> None:
        await ws.accept()
        if not state.ready:
            await ws.close(1013)  # try again later
            refused(counted, codec.name, "busy")
            return
        state.calls += 1
        try:
            final = await run_call(
                ws, codec, on_call, rate=rate, lead=lead, inbound_ms=inbound_ms,
                authorize=authorize, on_end=ended, grace=grace, record=record,
                control=control_for(ws),
                resume=resumes.take if codec.name == "twilio" else None,
            )
            if final is not None and codec.name == "twilio":
                resumes.ended(final)
        finally:
            state.calls -= 1
        if final is None:  # no call started: no valid start (or none in time)
            refused(counted, codec.name)

    async def twilio_media(ws: WebSocket) -> None:
        await serve_socket(ws, twilio.codec, authorize_twilio)

    async def generic(ws: WebSocket) -> None:
        await serve_socket(ws, websocket.codec, authorize_ws)

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        WebSocketRoute("/ws", generic),
    ]
    if carrier is None:
        routes += page_routes()

        async def serve_peer(peer: Any) -> None:
            state.calls += 1
            try:
                final = await run_call(
                    peer, websocket.codec, on_call, rate=rate, lead=lead, inbound_ms=inbound_ms,
                    on_end=ended, grace=grace, record=record,  # the offer was authenticated
                )
            finally:
                state.calls -= 1
            if final is None:
                refused(counted, "webrtc")

        peers = Peers()
        routes.append(webrtc_route(serve_peer, secret=ws_secret, dev=dev, peers=peers,
                                   ready=lambda: state.ready, ice_servers=ice_servers))
    elif carrier == "twilio":
        routes[2:2] = [
            Route("/twilio/voice", twilio_voice, methods=["POST"]),
            WebSocketRoute("/twilio/media", twilio_media),
            amd_route(verify=None if dev else lambda r, _raw, form: verify_twilio(r, form),
                      control=rest_api),
        ]
    else:
        if carrier == "plivo" and public_url:  # a transfer's <Dial>, at a URL Plivo can reach
            routes.append(plivo_transfer_route(key))
        if carrier == "telnyx":  # dial(voicemail="hangup"): the answering-machine result

            def verify_telnyx(request: Request, raw: bytes, _form: dict[str, str]) -> bool:
                return telnyx.verify_webhook(
                    auth_token, raw, request.headers.get("telnyx-signature-ed25519", ""),
                    request.headers.get("telnyx-timestamp", ""))

            routes.append(amd_route(verify=None if dev else verify_telnyx, control=rest_api,
                                    carrier="telnyx"))
        routes += carrier_routes(
            carrier, secret=auth_token, key=key, dev=dev, token_ttl=token_ttl,
            ready=lambda: state.ready, public_base=lambda r: _public_base(r, public_url),
            media=lambda ws, codec: serve_socket(ws, codec, authorize_twilio),
        )
    application = Starlette(routes=routes)
    application.state.voicekit = state
    if carrier is None:
        application.state.webrtc = peers  # the page's WebRTC calls
    return with_metrics(application, counted, metric_routes)


def _audiohook_app(
    on_call: Callable[[Any], Awaitable[Any]], state: ServerState, *, mode: str, dev: bool,
    rate: int, lead: float, on_end: Callable[[Session], Any] | None, grace: float,
) -> Starlette:
    """The app of ``carrier="audiohook"``: ``WS /audiohook``, ``/healthz``, ``/readyz``."""
    from ..transports._audiohook_server import audiohook_endpoint

    if dev:
        _log.warning("voicekit serve: DEV MODE: AudioHook API key and signature checks are OFF")

    def started() -> None:
        state.calls += 1

    def stopped() -> None:
        state.calls -= 1

    endpoint = audiohook_endpoint(
        on_call, mode=mode, dev=dev, ready=lambda: state.ready, started=started,
        stopped=stopped, rate=rate, lead=max(lead, 0.4), on_end=on_end, grace=grace,
    )

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        if state.ready:
            return PlainTextResponse("ready")
        return PlainTextResponse("draining" if state.draining else "full", status_code=503)

    application = Starlette(routes=[
        Route("/healthz", healthz), Route("/readyz", readyz),
        WebSocketRoute("/audiohook", endpoint),
    ])
    application.state.voicekit = state
    return application
