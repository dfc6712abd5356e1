"""The ``WS /audiohook`` endpoint: the handshake checked before the upgrade is accepted, then one
:func:`run_session` per connection."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from .._errors import ConfigError
from .._secrets import redact
from ..session import Session
from ._audiohook_auth import Nonces, parse_keys, verify_handshake
from ._audiohook_connection import AudioHookCall, run_session
from .audiohook import MODES, codec

__all__ = ["KEYS_VARIABLE", "ORGS_VARIABLE", "audiohook_endpoint"]

_log = logging.getLogger("voicekit.transports")

KEYS_VARIABLE = "VOICEKIT_AUDIOHOOK_KEYS"
"""``apikey:base64clientsecret`` pairs, comma-separated (an empty secret: unsigned requests)."""
ORGS_VARIABLE = "VOICEKIT_AUDIOHOOK_ORGS"
"""An optional allow-list of Genesys organization ids, comma-separated."""
FAIL_DELAY = 0.5
"""Seconds from the request to the answer of every refused handshake (no timing oracle)."""


def audiohook_endpoint(
    on_call: Callable[[AudioHookCall], Awaitable[Any]],
    *,
    mode: str = "bot",
    dev: bool = False,
    keys: str | None = None,
    organizations: str | None = None,
    ready: Callable[[], bool] = lambda: True,
    started: Callable[[], None] = lambda: None,
    stopped: Callable[[], None] = lambda: None,
    rate: int = 16000,
    lead: float = 0.4,
    on_end: Callable[[Session], Any] | None = None,
    grace: float = 0.5,
    max_age: float = 300.0,
    fail_delay: float = FAIL_DELAY,
    supported_languages: tuple[str, ...] = ("en-US",),
) -> Callable[[Any], Awaitable[None]]:
    """A WebSocket endpoint (Starlette's ``WebSocket``) serving AudioHook sessions.

    ``keys`` (default ``VOICEKIT_AUDIOHOOK_KEYS``) and ``organizations`` (default
    ``VOICEKIT_AUDIOHOOK_ORGS``) configure the handshake check; without keys the endpoint
    refuses to be built unless ``dev`` (which turns the checks off). ``ready()`` says whether a
    new session may start; ``started``/``stopped`` count them.
    """
    if mode not in MODES:
        raise ConfigError(f"audiohook: mode must be one of {', '.join(MODES)}, got {mode!r}")
    table = parse_keys(keys if keys is not None else os.environ.get(KEYS_VARIABLE, ""))
    orgs_text = organizations if organizations is not None else os.environ.get(ORGS_VARIABLE, "")
    orgs = frozenset(o.strip() for o in orgs_text.split(",") if o.strip())
    if not table and not dev:
        raise ConfigError(f"serve: {KEYS_VARIABLE} is not set: the audiohook route cannot check "
                          "Genesys' API key (set it, or use --dev on a loopback host)")
    nonces = Nonces(ttl=max_age + 60)

    async def refuse(ws: Any, began: float, reason: str, status: int) -> None:
        _log.warning("audiohook handshake refused: %s", redact(reason))
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, began + fail_delay - loop.time()))
        if "websocket.http.response" in ws.scope.get("extensions", {}):
            from starlette.responses import PlainTextResponse

            await ws.send_denial_response(PlainTextResponse("refused", status_code=status))
        else:
            await ws.close(1008)

    async def endpoint(ws: Any) -> None:
        began = asyncio.get_running_loop().time()
        headers = {k.lower(): v for k, v in ws.headers.items()}
        session_id = headers.get("audiohook-session-id", "")
        if not dev:
            query = ws.url.query
            reason = verify_handshake(
                headers,
                target=ws.url.path + (f"?{query}" if query else ""),
                authority=headers.get("host", ""),
                keys=table,
                nonces=nonces,
                max_age=max_age,
                organizations=orgs,
            )
            if reason:
                await refuse(ws, began, reason, 401)
                return
        if not session_id:
            await refuse(ws, began, "missing audiohook-session-id header", 400)
            return
        if not ready():
            await refuse(ws, began, "not accepting calls", 503)
            return
        await ws.accept()
        started()
        try:
            await run_session(
                ws, codec(session_id, mode, supported_languages), on_call, rate=rate,
                lead=lead, on_end=on_end, grace=grace,
            )
        finally:
            stopped()

    return endpoint
