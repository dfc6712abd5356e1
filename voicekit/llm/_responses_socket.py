"""One persistent WebSocket to a Responses API endpoint, as an explicit resource.

A :class:`ResponsesSocket` is made per conversation and opened and closed by its owner —
``async with ResponsesSocket(endpoint) as sock:`` — never kept in module state. It carries one
response at a time and looks after the connection so the streaming function does not have to:

* **Reconnect.** A connection that drops (not closed by its owner) is re-opened with exponential
  backoff (:class:`ReconnectPolicy`: waits 4, 4, 4, 8, 10 s; 3 attempts), each new connection
  verified with a ping. The call that noticed the drop gets :class:`Reconnected`, so the request
  can be sent again in full — whatever the server kept on the old connection is gone.
* **Quick failures.** A connection that dies within 5 s of being made, three times in a row,
  means a bad key or a refused session: the socket stops trying and says so.
* **Cancel and drain.** A response abandoned mid-way (barge-in) gets ``response.cancel`` (or,
  if its id is not known yet, one as soon as ``response.created`` arrives). Before the next
  request every event up to the abandoned response's terminal event is read and dropped, since
  deltas carry no response id to filter on. A drain that takes longer than ``drain_timeout``, or
  a server that rejects the cancel, gets a fresh connection instead.
* **Intentional close** (:meth:`ResponsesSocket.close`) never reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.protocol import State

from .._errors import (
    ConfigError,
    ProviderConnectError,
    ProviderStatusError,
    ProviderStreamError,
    ProviderTimeout,
)
from .._secrets import RedactingLogger
from ..session import Session
from ._responses_events import CONNECTION_LIMIT, PREVIOUS_NOT_FOUND, TERMINAL, error_details
from ._responses_request import websocket_url
from .endpoint import Endpoint
from .request import request_headers

__all__ = ["ReconnectPolicy", "Reconnected", "ResponsesSocket", "SocketStats", "responses_socket"]

log = logging.getLogger("voicekit.llm.responses")

_MAX_MESSAGE = 64 * 2**20  # a completed event repeats the whole output
_CLOSE_TIMEOUT = 2.0
_HANDSHAKE_LOG = RedactingLogger(logging.getLogger("voicekit.llm.responses.handshake"))


class Reconnected(ProviderConnectError):
    """The connection dropped and a new one was made: the request must be sent again, in full."""


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """How a dropped connection is re-made.

    ``attempts`` connections are tried, waiting :meth:`delay` seconds after each failed one:
    ``multiplier * 2 ** (attempt - 1)`` clamped to ``[min_wait, max_wait]``. A connection that
    dies less than ``stable_after`` seconds after it was made is a *quick failure*;
    ``max_quick_failures`` in a row stop all reconnecting.

    >>> [ReconnectPolicy().delay(n) for n in range(1, 6)]
    [4.0, 4.0, 4.0, 8.0, 10.0]
    """

    attempts: int = 3
    min_wait: float = 4.0
    max_wait: float = 10.0
    multiplier: float = 1.0
    stable_after: float = 5.0
    max_quick_failures: int = 3

    def __post_init__(self) -> None:
        for name in ("attempts", "max_quick_failures"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"ReconnectPolicy.{name} must be a positive integer")
        for name in ("min_wait", "max_wait", "multiplier", "stable_after"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"ReconnectPolicy.{name} must be a number >= 0, got {value!r}")
        if self.max_wait < self.min_wait:
            raise ConfigError("ReconnectPolicy.max_wait must not be below min_wait")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (from 1)."""
        try:
            wait = float(self.multiplier * 2 ** (attempt - 1))
        except OverflowError:
            return float(self.max_wait)
        return float(max(self.min_wait, min(wait, self.max_wait)))


@dataclass(slots=True)
class SocketStats:
    """Counters a socket keeps, for notebooks and tests."""

    connects: int = 0
    reconnects: int = 0
    requests: int = 0
    bytes_sent: int = 0
    cancels: int = 0
    drains: int = 0
    drain_reconnects: int = 0


class _DiedAtOnce(ProviderConnectError):
    """A connection was made but closed before its verification ping was answered."""


def _now() -> float:
    return time.monotonic()


class ResponsesSocket:
    """A persistent WebSocket to ``{base_url}/responses`` (``url`` overrides), one per conversation.

    ``session``: its session signals become handshake headers. ``reconnect``: the
    :class:`ReconnectPolicy`. ``drain_timeout``: seconds allowed to read off an abandoned
    response before reconnecting instead. ``verify_timeout``: seconds a new connection has to
    answer a ping (default: the endpoint's connect timeout).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        url: str | None = None,
        session: Session | None = None,
        reconnect: ReconnectPolicy | None = None,
        drain_timeout: float = 5.0,
        verify_timeout: float | None = None,
    ) -> None:
        if not isinstance(endpoint, Endpoint):
            raise ConfigError(f"endpoint must be an Endpoint, got {type(endpoint).__name__}")
        self.endpoint = endpoint
        self.url = url or websocket_url(endpoint)
        if not self.url.startswith(("ws://", "wss://")):
            raise ConfigError(f"a Responses WebSocket URL starts with ws:// or wss://: {self.url}")
        self.session = session
        self.policy = reconnect or ReconnectPolicy()
        self.drain_timeout = float(drain_timeout)
        self.verify_timeout = (
            float(verify_timeout) if verify_timeout else endpoint.effective_connect_timeout
        )
        self.stats = SocketStats()
        self.connection_id: str | None = None
        self._ws: ClientConnection | None = None
        self._lock = asyncio.Lock()
        self._closing = False
        self._dead: ProviderConnectError | None = None
        self._last_connect = 0.0
        self._quick = 0
        self._reset_tracking()
        self._cancel_unresolved = False

    def __repr__(self) -> str:
        state = (
            "closed"
            if self._closing
            else "failed"
            if self._dead
            else "open"
            if self.connected
            else "not connected"
        )
        return f"ResponsesSocket({self.url!r}, {state}, connection={self.connection_id})"

    # -- state ----------------------------------------------------------------------------------

    def _reset_tracking(self) -> None:
        self._in_flight = False  # a response.create was sent and its terminal event not read
        self._current_id: str | None = None
        self._needs_drain = False
        self._cancel_on_created = False
        self._cancel_wanted: str | None = None

    @property
    def connected(self) -> bool:
        """True while a connection is open."""
        return self._ws is not None and self._ws.state is State.OPEN

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closing

    @property
    def in_flight(self) -> bool:
        """True while a response is under way on this socket."""
        return self._in_flight

    # -- opening and closing --------------------------------------------------------------------

    async def __aenter__(self) -> ResponsesSocket:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Connect (once, no retry) and verify the connection with a ping."""
        self._check_usable()
        if self._ws is not None:
            return
        try:
            await self._connect_once()
        except _DiedAtOnce as exc:
            raise ProviderConnectError(
                f"{exc} (is the API key right, and does the server accept this session?)",
                provider=self.endpoint.name,
            ) from exc

    async def close(self) -> None:
        """Close for good. A closed socket never reconnects; make a new one to talk again."""
        self._closing = True
        self._reset_tracking()
        await self._discard()

    async def _discard(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await ws.close()

    def _check_usable(self) -> None:
        if self._dead is not None:
            raise self._dead
        if self._closing:
            raise ProviderConnectError(
                f"the Responses socket to {self.url} was closed; open a new one",
                provider=self.endpoint.name,
            )

    async def _connect_once(self) -> None:
        name = self.endpoint.name
        headers = request_headers(self.endpoint, self.session)
        agent = headers.pop("User-Agent", None)
        try:
            ws = await connect(
                self.url,
                additional_headers=headers,
                user_agent_header=agent,
                open_timeout=self.endpoint.effective_connect_timeout,
                close_timeout=_CLOSE_TIMEOUT,
                max_size=_MAX_MESSAGE,
                logger=_HANDSHAKE_LOG,  # logs request headers at DEBUG: redacted
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            hint = " (check the API key)" if status in (401, 403) else ""
            raise ProviderStatusError(
                f"{name} refused the WebSocket at {self.url} with HTTP {status}{hint}",
                status_code=status,
                body=exc.response.body.decode("utf-8", "replace")[:500]
                if exc.response.body
                else "",
                provider=name,
            ) from exc
        except TimeoutError as exc:
            raise ProviderTimeout(
                f"{name}: no WebSocket connection to {self.url} within "
                f"{self.endpoint.effective_connect_timeout:g} s",
                provider=name,
            ) from exc
        except (OSError, InvalidHandshake, InvalidURI) as exc:
            raise ProviderConnectError(
                f"could not connect to {name} at {self.url}: {exc}", provider=name
            ) from exc
        self._last_connect = _now()
        try:
            pong = await ws.ping()
            async with asyncio.timeout(self.verify_timeout):
                await pong
        except (ConnectionClosed, TimeoutError) as exc:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await ws.close()
            raise _DiedAtOnce(
                f"{name} closed the WebSocket at {self.url} right after connecting",
                provider=name,
            ) from exc
        self._ws = ws
        self.connection_id = uuid.uuid4().hex[:12]
        self.stats.connects += 1

    # -- losing and re-making the connection ----------------------------------------------------

    def _note_death(self) -> None:
        """Count a connection that died; stop everything after too many quick deaths."""
        quick = _now() - self._last_connect < self.policy.stable_after
        self._quick = self._quick + 1 if quick else 0
        if self._quick >= self.policy.max_quick_failures:
            self._dead = ProviderConnectError(
                f"{self.endpoint.name}: the WebSocket at {self.url} closed within "
                f"{self.policy.stable_after:g} s of connecting {self._quick} times in a row; "
                "not retrying — the API key is probably wrong or the server refuses the session",
                provider=self.endpoint.name,
            )
            self._ws = None
            raise self._dead

    async def _lost(self, cause: BaseException | None) -> None:
        """The connection died under us: reconnect (or raise why not)."""
        if self._closing:
            raise ProviderConnectError(
                f"the Responses socket to {self.url} was closed", provider=self.endpoint.name
            ) from cause
        self._ws = None
        self._note_death()
        log.info("%s: WebSocket connection lost (%s); reconnecting", self.endpoint.name, cause)
        await self.reconnect()

    async def reconnect(self, reason: str = "") -> None:
        """Replace the connection: close the old one, then try the policy's attempts."""
        self._check_usable()
        if reason:
            log.info("%s: reconnecting: %s", self.endpoint.name, reason)
        await self._discard()
        self._reset_tracking()
        self._cancel_unresolved = False
        last: Exception | None = None
        attempts = self.policy.attempts
        for attempt in range(1, attempts + 1):
            self._check_usable()
            try:
                await self._connect_once()
            except _DiedAtOnce as exc:
                last = exc
                self._note_death()
            except ProviderStatusError as exc:
                if exc.status_code in (401, 403):
                    raise
                last = exc
            except (ProviderConnectError, ProviderTimeout) as exc:
                last = exc
            else:
                self.stats.reconnects += 1
                return
            log.warning("%s: reconnection attempt %d failed: %s", self.endpoint.name, attempt, last)
            if attempt < attempts:
                await asyncio.sleep(self.policy.delay(attempt))
        raise ProviderConnectError(
            f"{self.endpoint.name}: failed to reconnect to {self.url} after {attempts} "
            f"attempts: {last}",
            provider=self.endpoint.name,
        )

    # -- one request at a time ------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[ResponsesSocket]:
        """Hold the socket for one request: wait for the previous one, then make it ready.

        Ready means connected (reconnecting if it dropped while idle) and drained of any
        abandoned response.
        """
        async with self._lock:
            self._check_usable()
            if self._ws is None and self.stats.connects == 0:
                await self.open()
            elif not self.connected:
                await self._lost(None)
            if self._needs_drain:
                await self._drain()
            yield self

    async def send(self, message: Mapping[str, Any]) -> int:
        """Send one client event; returns the bytes sent. Raises :class:`Reconnected`."""
        self._check_usable()
        ws = self._ws
        if ws is None:
            await self._lost(None)
            raise Reconnected(
                "the connection was re-made before sending", provider=self.endpoint.name
            )
        text = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
        if message.get("type") == "response.create":
            self._in_flight, self._current_id = True, None
            self.stats.requests += 1
        try:
            await ws.send(text)
        except ConnectionClosed as exc:
            await self._lost(exc)
            raise Reconnected(
                f"the connection to {self.url} dropped while sending; reconnected",
                provider=self.endpoint.name,
            ) from exc
        size = len(text.encode("utf-8"))
        self.stats.bytes_sent += size
        return size

    async def recv(self, silence: float) -> dict[str, Any]:
        """The next server event (a dict); at most ``silence`` seconds of waiting.

        Raises :class:`Reconnected` (the connection was re-made) or ProviderTimeout.
        """
        self._check_usable()
        ws = self._ws
        if ws is None:
            await self._lost(None)
            raise Reconnected("the connection was re-made", provider=self.endpoint.name)
        try:
            async with asyncio.timeout(silence):
                raw = await ws.recv()
        except TimeoutError as exc:
            raise ProviderTimeout(
                f"{self.endpoint.name} sent nothing for {silence:g} s", provider=self.endpoint.name
            ) from exc
        except ConnectionClosed as exc:
            await self._lost(exc)
            raise Reconnected(
                f"the connection to {self.url} dropped mid-response; reconnected",
                provider=self.endpoint.name,
            ) from exc
        try:
            event = json.loads(raw)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            raise ProviderStreamError(
                f"{self.endpoint.name} sent a message that is not a JSON object: "
                f"{str(raw)[:200]!r}",
                provider=self.endpoint.name,
            )
        await self._track(event)
        return event

    async def _track(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        if kind == "response.created":
            response = event.get("response")
            self._current_id = response.get("id") if isinstance(response, Mapping) else None
            self._cancel_unresolved = False  # no rejection came before it: accepted or ignored
        elif kind in TERMINAL:
            self._in_flight, self._current_id = False, None
        elif kind == "error":
            self._in_flight, self._current_id = False, None
            _, code = error_details(event)
            if self._cancel_unresolved and code not in (PREVIOUS_NOT_FOUND, CONNECTION_LIMIT):
                # An error before our response.created answers the cancel sent earlier: the
                # server rejected it, so events of that response may still be on their way.
                await self.reconnect("the server rejected response.cancel")
                raise Reconnected(
                    "the server rejected response.cancel; reconnected", provider=self.endpoint.name
                )

    # -- cancel and drain -----------------------------------------------------------------------

    async def abandon(self) -> None:
        """The consumer stopped mid-response: cancel it and drain before the next request."""
        if not self._in_flight:
            return
        self._in_flight = False
        self._needs_drain = True
        if self._current_id is None:
            self._cancel_on_created = True
        else:
            self._cancel_wanted = self._current_id
            await self._send_cancel()

    async def _send_cancel(self) -> None:
        response_id, ws = self._cancel_wanted, self._ws
        if response_id is None or ws is None:
            return
        message = json.dumps({"type": "response.cancel", "response_id": response_id})
        try:
            async with asyncio.timeout(1.0):
                await ws.send(message)
        except (ConnectionClosed, TimeoutError):
            return  # the drain will find out
        self._cancel_wanted = None
        self._cancel_unresolved = True
        self.stats.cancels += 1
        self.stats.bytes_sent += len(message)

    async def _drain(self) -> None:
        """Read and drop events until the abandoned response ends; reconnect if it will not."""
        self.stats.drains += 1
        ws = self._ws
        assert ws is not None
        reason = ""
        try:
            async with asyncio.timeout(self.drain_timeout):
                await self._send_cancel()
                while True:
                    try:
                        event = json.loads(await ws.recv())
                    except ValueError:
                        continue
                    kind = event.get("type") if isinstance(event, dict) else None
                    if kind == "response.created" and self._cancel_on_created:
                        response = event.get("response") or {}
                        self._cancel_on_created = False
                        self._cancel_wanted = response.get("id")
                        await self._send_cancel()
                    elif kind in TERMINAL:
                        response = event.get("response") or {}
                        if response.get("status") == "cancelled":
                            self._cancel_unresolved = False
                        self._needs_drain = self._cancel_on_created = False
                        self._cancel_wanted = None
                        return
                    elif kind == "error":
                        reason = f"the server rejected response.cancel: {error_details(event)[0]}"
                        break
        except TimeoutError:
            reason = f"no terminal event within {self.drain_timeout:g} s of a cancel"
        except ConnectionClosed as exc:
            await self._lost(exc)
            return
        self.stats.drain_reconnects += 1
        await self.reconnect(reason)


def responses_socket(endpoint: Endpoint, **options: Any) -> ResponsesSocket:
    """A :class:`ResponsesSocket` (not yet connected): ``async with responses_socket(ep) as s:``."""
    return ResponsesSocket(endpoint, **options)
