"""The browser page's WebRTC route: ``GET /webrtc`` (the ICE servers) and ``POST /webrtc`` (an
SDP offer in, the answer out), for talking to the agent across networks.

Signalling is one authenticated HTTP exchange (no trickle ICE: both sides gather their
candidates first): the page sends ``{"type": "offer", "sdp": "…"}`` with
``Authorization: Bearer <token>`` (the ``/ws`` token); the server answers ``{"type":
"answer", "sdp": "…"}`` and the call runs on an aiortc peer connection
(:mod:`voicekit.serve._webrtc_peer`): the microphone's Opus track in, the agent's Opus track
out, and a data channel with the JSON messages of :mod:`voicekit.transports.websocket`. ICE
uses host candidates only unless ``ice_servers`` names STUN/TURN servers: no server is
contacted by default, so it works offline.

This module needs no aiortc: without it the route answers 501 with what to install.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .._errors import ConfigError
from .._secrets import remember

__all__ = ["Peers", "check_offer", "ice_config", "webrtc_route"]

_log = logging.getLogger("voicekit.serve")

MAX_OFFER = 64 * 1024
"""The largest offer body accepted (a browser's offer is 3-6 KB)."""

_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")
_OPUS = re.compile(r"^a=rtpmap:\d+ opus/48000", re.IGNORECASE | re.MULTILINE)


def ice_config(servers: Sequence[str | Mapping[str, str]]) -> list[dict[str, str]]:
    """The ICE servers as the browser's ``RTCPeerConnection`` takes them: each a ``stun:`` /
    ``turn:`` URL, or a mapping with ``urls`` and, for TURN, ``username`` and ``credential``
    (remembered as secrets: never logged).

    >>> ice_config(["stun:stun.example.org:3478"])
    [{'urls': 'stun:stun.example.org:3478'}]
    >>> ice_config([{"urls": "turn:turn.example.org", "username": "u", "credential": "p"}])
    [{'urls': 'turn:turn.example.org', 'username': 'u', 'credential': 'p'}]
    >>> ice_config(["http://example.org"])
    Traceback (most recent call last):
    ...
    voicekit._errors.ConfigError: serve: ice_servers: 'http://example.org' is not a stun:/turn: URL
    """
    if isinstance(servers, str | Mapping):
        raise ConfigError("serve: ice_servers must be a list of URLs or mappings, not one")
    out = []
    for server in servers:
        entry = {"urls": server} if isinstance(server, str) else dict(server)
        url = entry.get("urls")
        if not isinstance(url, str) or not url.startswith(_SCHEMES):
            shown = server if isinstance(server, str) else url
            raise ConfigError(f"serve: ice_servers: {shown!r} is not a stun:/turn: URL")
        unknown = set(entry) - {"urls", "username", "credential"}
        if unknown:
            raise ConfigError(f"serve: ice_servers: unknown key(s) {sorted(unknown)} for {url!r}")
        if url.startswith(("turn:", "turns:")) and not (entry.get("username")
                                                        and entry.get("credential")):
            raise ConfigError(f"serve: ice_servers: TURN server {url!r} needs a username and "
                              "a credential")
        remember(entry.get("credential"))
        out.append(entry)
    return out


def check_offer(body: bytes) -> str:
    """The SDP of a ``POST /webrtc`` body, or a ValueError naming what is wrong with it.

    >>> check_offer(b'{"type": "answer", "sdp": "v=0"}')
    Traceback (most recent call last):
    ...
    ValueError: 'type' must be "offer", got 'answer'
    >>> check_offer(json.dumps({"type": "offer", "sdp": "v=0\\nm=audio 9 RTP/SAVPF 0\\n"}).encode())
    Traceback (most recent call last):
    ...
    ValueError: the offer's audio has no Opus codec (a=rtpmap:… opus/48000/2)
    """
    if len(body) > MAX_OFFER:
        raise ValueError(f"the body of {len(body)} bytes is over the {MAX_OFFER} cap")
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"the body is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError('the body must be a JSON object {"type": "offer", "sdp": "…"}')
    if data.get("type") != "offer":
        raise ValueError(f"'type' must be \"offer\", got {data.get('type')!r}")
    sdp = data.get("sdp")
    if not isinstance(sdp, str) or not sdp.strip():
        raise ValueError("'sdp' must be the offer's SDP text")
    if not sdp.lstrip().startswith("v=0"):
        raise ValueError("'sdp' is not SDP: it must start with v=0")
    lines = sdp.replace("\r\n", "\n").split("\n")
    if not any(line.startswith("m=audio ") for line in lines):
        raise ValueError("the offer has no audio (m=audio): add the microphone's track")
    if not _OPUS.search(sdp.replace("\r\n", "\n")):
        raise ValueError("the offer's audio has no Opus codec (a=rtpmap:… opus/48000/2)")
    if not any(line.startswith("m=application ") for line in lines):
        raise ValueError("the offer has no data channel (m=application): create one before "
                         "the offer")
    return sdp


class Peers:
    """The app's WebRTC calls (``app.state.webrtc``): ``live`` maps each running call's peer
    (a :class:`~voicekit.serve._webrtc_peer.Peer`) to its task; ``ended`` keeps the last few
    peers whose call is over (their peer connection closed)."""

    def __init__(self) -> None:
        self.live: dict[Any, asyncio.Task[None]] = {}
        self.ended: list[Any] = []

    def start(self, peer: Any, run: Callable[[Any], Awaitable[Any]]) -> None:
        async def serve() -> None:
            try:
                await run(peer)
            finally:
                await peer.close()
                self.live.pop(peer, None)
                self.ended.append(peer)
                del self.ended[:-16]  # a few, for tests and the curious

        self.live[peer] = asyncio.create_task(serve(), name="voicekit webrtc call")


def _denied(request: Request, secret: str, dev: bool) -> Response | None:
    """401 without a bearer token, 403 with a wrong one (or when none is configured)."""
    if dev:
        return None
    given = request.headers.get("authorization", "")
    if not given.lower().startswith("bearer ") or not given[7:].strip():
        return PlainTextResponse("webrtc: missing token (Authorization: Bearer …)",
                                 status_code=401, headers={"www-authenticate": "Bearer"})
    token = given[7:].strip()
    if not secret or not secrets.compare_digest(token.encode(), secret.encode()):
        _log.warning("webrtc offer refused: wrong token")
        return PlainTextResponse("webrtc: wrong token", status_code=403)
    return None


def webrtc_route(
    run: Callable[[Any], Awaitable[Any]],
    *,
    secret: str,
    dev: bool,
    ready: Callable[[], bool],
    ice_servers: Sequence[str | Mapping[str, str]] = (),
    peers: Peers | None = None,
) -> Route:
    """``/webrtc``: GET gives the ICE servers to the page, POST turns an offer into an answer
    and starts ``run(peer)`` (a :class:`~voicekit.serve._webrtc_peer.Peer`, which ``run_call``
    takes as it takes a WebSocket) as a task held in ``peers`` (a ``Peers``; one is made when
    None). Both check the bearer ``secret`` unless ``dev``."""
    servers = ice_config(ice_servers)
    registry = peers if peers is not None else Peers()

    async def endpoint(request: Request) -> Response:
        denied = _denied(request, secret, dev)
        if denied is not None:
            return denied
        if request.method == "GET":
            return JSONResponse({"iceServers": servers}, headers={"cache-control": "no-store"})
        try:
            sdp = check_offer(await request.body())
        except ValueError as exc:
            return PlainTextResponse(f"webrtc: {exc}", status_code=400)
        if not ready():
            return PlainTextResponse("not accepting calls", status_code=503)
        try:
            from ._webrtc_peer import answer
        except ImportError as exc:  # the extra is not installed
            return PlainTextResponse(f"webrtc: needs aiortc ({exc}): pip install "
                                     "'voicekit[webrtc]'", status_code=501)
        try:
            sdp_answer = await answer(sdp, run, servers, registry)
        except ValueError as exc:
            return PlainTextResponse(f"webrtc: the offer was refused: {exc}", status_code=400)
        return JSONResponse({"type": "answer", "sdp": sdp_answer})

    return Route("/webrtc", endpoint, methods=["GET", "POST"])
