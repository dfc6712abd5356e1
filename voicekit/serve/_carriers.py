"""The Telnyx and Plivo routes of :func:`voicekit.serve.app`: the answer (TeXML for Telnyx, the
``<Stream>`` XML for Plivo), signed by the carrier and checked here, and the media socket.

Each answer carries a signed, expiring, single-call stream token (Telnyx: a TeXML
``<Parameter>``, sent back in ``start.custom_parameters``; Plivo: ``extraHeaders``, sent back in
``start.extra_headers``), which the media route checks on ``start`` like Twilio's.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from .._errors import ProtocolError
from ..transports import Codec, plivo, telnyx
from ..transports._token import make_token

__all__ = ["SECRETS", "carrier_routes"]

_log = logging.getLogger("voicekit.serve")

SECRETS = {"telnyx": "TELNYX_PUBLIC_KEY", "plivo": "PLIVO_AUTH_TOKEN"}
"""The environment variable each carrier's answer route checks its signature with."""


def _stream_url(base: str, path: str) -> str:
    parts = urlsplit(base)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}{parts.path}{path}"


def carrier_routes(
    carrier: str,
    *,
    secret: str,
    key: bytes,
    dev: bool,
    token_ttl: float,
    ready: Callable[[], bool],
    public_base: Callable[[Request], str],
    media: Callable[[WebSocket, Codec[Any]], Awaitable[None]],
) -> list[BaseRoute]:
    """``POST /{carrier}/voice`` and ``WS /{carrier}/media`` for ``"telnyx"`` or ``"plivo"``.
    ``secret`` checks the answer's signature (skipped when ``dev``), ``key`` signs the stream
    tokens, ``ready()`` says whether a call may start, ``media(ws, codec)`` runs a call."""
    if carrier == "telnyx":
        codec: Codec[Any] = telnyx.codec()
    elif carrier == "plivo":
        codec = plivo.codec()
    else:
        raise ValueError(f"no routes for carrier {carrier!r}")

    def signed(request: Request, raw: bytes, params: dict[str, str]) -> bool:
        headers = request.headers
        if carrier == "telnyx":
            return telnyx.verify_webhook(
                secret,
                raw,
                headers.get("telnyx-signature-ed25519", ""),
                headers.get("telnyx-timestamp", ""),
            )
        url = public_base(request) + request.url.path
        url += f"?{request.url.query}" if request.url.query else ""
        return plivo.verify_signature(
            secret,
            url,
            params,
            headers.get("x-plivo-signature-v3-nonce", ""),
            headers.get("x-plivo-signature-v3", ""),
        )

    async def voice(request: Request) -> Response:
        raw = await request.body()
        params = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        if not dev and not signed(request, raw, params):
            _log.warning("%s answer refused: bad webhook signature", carrier)
            return PlainTextResponse("bad signature", status_code=403)
        if not ready():
            return PlainTextResponse("not accepting calls", status_code=503)
        try:
            if carrier == "telnyx":
                call_id, caller, callee = telnyx.webhook_call(params)
            else:
                call_id, caller, callee = plivo.webhook_call(params)
        except ProtocolError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        token = make_token(key, call_id, ttl=token_ttl)
        stream_url = _stream_url(public_base(request), f"/{carrier}/media")
        if carrier == "telnyx":  # Telnyx sends the caller and callee in start itself
            body = telnyx.texml(stream_url, token=token)
        else:
            body = plivo.answer_xml(stream_url, caller=caller, callee=callee, token=token)
        return Response(body, media_type="application/xml")

    async def stream(ws: WebSocket) -> None:
        await media(ws, codec)

    return [
        Route(f"/{carrier}/voice", voice, methods=["POST"]),
        WebSocketRoute(f"/{carrier}/media", stream),
    ]
