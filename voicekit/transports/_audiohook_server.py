"""The ``WS /audiohook`` endpoint: the handshake checked before the upgrade is accepted, then one
:func:`run_session` per connection.

Reconnects: a session whose socket dropped, or that the client closed with reason
``reconnect``, is kept for ``resume_window`` seconds; a new session whose ``open`` names it first
in ``continuedSessions`` (or that reconnects under the same session id) — same organization,
same conversation — goes on from its Session (the conversation so far), once; if the session it
names is still running, it waits up to ``resume_wait`` seconds for it to end (the client opens
the new session, then closes the old one). Anything else is a new conversation. Kept sessions
live in this process only: behind several workers or hosts a reconnect that lands elsewhere
starts afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from .._errors import ConfigError
from .._secrets import redact
from ..events import CallStarted
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


class _Kept:
    """Sessions a reconnecting client may continue. ``running``: session id -> set once it
    ended; ``items``: session id -> (until, final Session, organization id)."""

    def __init__(self, window: float, wait: float) -> None:
        self.window = window
        self.wait = wait
        self.running: dict[str, asyncio.Event] = {}
        self.items: dict[str, tuple[float, Session, str]] = {}

    def _prune(self, now: float) -> None:
        for key in [k for k, (until, _, _) in self.items.items() if until <= now]:
            del self.items[key]

    def begin(self, session_id: str) -> None:
        self.running.setdefault(session_id, asyncio.Event())

    def keep(self, session_id: str, session: Session, organization: str) -> None:
        now = asyncio.get_running_loop().time()
        self._prune(now)
        if self.window > 0:
            self.items[session_id] = (now + self.window, session, organization)

    def end(self, session_id: str) -> None:
        ended = self.running.pop(session_id, None)
        if ended is not None:
            ended.set()

    async def take(self, started: CallStarted) -> Session | None:
        """The Session ``started`` continues (the first of ``continuedSessions``, else a kept
        session of the same id), once; a continued session still running (the client opens
        the new one before it closes the old) is awaited up to ``wait`` s."""
        old = started.parameters.get("continues", "") or started.stream_id
        if not old or self.window <= 0:
            return None
        running = self.running.get(old)
        if running is not None and old != started.stream_id:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(running.wait(), self.wait)
        self._prune(asyncio.get_running_loop().time())
        entry = self.items.get(old)
        if entry is None:
            return None
        _, session, organization = entry
        if session.call_id != started.call_id or \
                organization != started.parameters.get("organizationId"):
            return None  # another conversation's session: not this caller's history
        del self.items[old]
        return session


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
    resume_window: float = 60.0,
    resume_wait: float = 5.0,
) -> Callable[[Any], Awaitable[None]]:
    """A WebSocket endpoint (Starlette's ``WebSocket``) serving AudioHook sessions.

    ``keys`` (default ``VOICEKIT_AUDIOHOOK_KEYS``) and ``organizations`` (default
    ``VOICEKIT_AUDIOHOOK_ORGS``) configure the handshake check; without keys the endpoint
    refuses to be built unless ``dev`` (which turns the checks off). ``ready()`` says whether a
    new session may start; ``started``/``stopped`` count them. ``supported_languages``: the
    languages offered (the first is the default); ``resume_window``: how long a dropped session
    may be continued by a reconnecting client (0: never; see the module docstring), and
    ``resume_wait`` how long a new session waits for the one it continues to end.
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
    kept = _Kept(resume_window, resume_wait)

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
        organization = [headers.get("audiohook-organization-id", "")]

        async def resume(call: CallStarted) -> Session | None:
            opened_by = call.parameters.get("organizationId", "")
            if organization[0] and opened_by != organization[0]:
                organization[0] = ""  # the open contradicts the handshake: never continued
                return None
            organization[0] = opened_by
            return await kept.take(call)

        def keep(ended_id: str, session: Session) -> None:
            if organization[0]:
                kept.keep(ended_id, session, organization[0])

        kept.begin(session_id)
        try:
            await run_session(
                ws, codec(session_id, mode, supported_languages), on_call, rate=rate,
                lead=lead, on_end=on_end, grace=grace, resume=resume, keep=keep,
            )
        finally:
            kept.end(session_id)
            stopped()

    return endpoint
