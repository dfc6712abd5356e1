"""An AudioHook client that behaves like Genesys Cloud, written from the protocol description
and independent of voicekit's codec (its own envelope, its own μ-law, its own signer).

It signs the upgrade request (``Signature-Input``/``Signature``, label ``sig1``,
``hmac-sha256``), sends ``open`` with media offers, streams paced binary audio (PCMU 8 kHz,
mono or stereo interleaved external/internal), answers the server's ``pause``/``resume`` with
``paused``/``resumed`` and its ``disconnect`` with ``close``, and closes the socket after
``closed``. Every server message is held to the rules (recorded in ``violations``): envelope
keys exactly ``version, id, type, seq, clientseq, parameters``; ``version`` "2"; the session
id; ``seq`` from 1 by exactly 1; ``clientseq`` never above our last seq and never going back;
``parameters`` an object; known server message types only; binary frames only after
``opened``.

    async with AudioHookClient(url, api_key="k", secret=b"...") as client:
        await client.open()
        await client.stream(pcm_external, pcm_internal)
        await client.close()
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import websockets
from websockets.asyncio.client import ClientConnection, connect

__all__ = ["AudioHookClient", "Refused", "mulaw", "sign_headers", "unmulaw"]

SERVER_TYPES = {"opened", "closed", "pong", "pause", "resume", "event", "disconnect",
                "reconnect", "updated"}
ENVELOPE = {"version", "id", "type", "seq", "clientseq", "parameters"}
COMPONENTS = ("@request-target", "@authority", "audiohook-organization-id",
              "audiohook-session-id", "audiohook-correlation-id", "x-api-key")


class Refused(Exception):
    """The server refused the upgrade (``status``)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"upgrade refused with HTTP {status}")
        self.status = status


def mulaw(pcm: np.ndarray) -> bytes:
    """G.711 μ-law of int16 samples (bias 0x84, clip 32635)."""
    x = pcm.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    mag = np.minimum(np.abs(x), 32635) + 0x84
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def unmulaw(data: bytes) -> np.ndarray:
    """int16 samples of G.711 μ-law bytes."""
    u = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    mag = (((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 0x07)
    return np.where(u & 0x80, 0x84 - mag, mag - 0x84).astype(np.int16)


def sign_headers(
    url: str, headers: dict[str, str], secret: bytes, *, created: int | None = None,
    expires: int | None = None, nonce: str | None = None, keyid: str | None = None,
    components: tuple[str, ...] = COMPONENTS,
) -> dict[str, str]:
    """``Signature-Input`` and ``Signature`` for an upgrade to ``url`` with ``headers``."""
    parts = urlsplit(url)
    derived = {"@request-target": parts.path + (f"?{parts.query}" if parts.query else ""),
               "@authority": parts.netloc}
    created = int(time.time()) if created is None else created
    expires = created + 180 if expires is None else expires
    nonce = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=") \
        if nonce is None else nonce
    keyid = headers["X-API-KEY"] if keyid is None else keyid
    listed = " ".join(f'"{c}"' for c in components)
    params = (f'({listed});keyid="{keyid}";nonce="{nonce}";alg="hmac-sha256";'
              f"created={created};expires={expires}")
    lower = {k.lower(): v for k, v in headers.items()}
    text = "".join(f'"{c}": {derived[c] if c.startswith("@") else lower[c]}\n'
                   for c in components)
    text += f'"@signature-params": {params}'
    mac = base64.b64encode(hmac.new(secret, text.encode(), hashlib.sha256).digest()).decode()
    return {"Signature-Input": f"sig1={params}", "Signature": f"sig1=:{mac}:"}


@dataclass
class Record:
    """What the client saw."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    audio: list[bytes] = field(default_factory=list)
    audio_at: list[float] = field(default_factory=list)  # loop time of each binary frame
    violations: list[str] = field(default_factory=list)
    closed_by_server: bool = False

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == type_]


class AudioHookClient:
    """One Genesys-like AudioHook session against ``url`` (``ws://host:port/audiohook``)."""

    def __init__(
        self, url: str, *, api_key: str = "test-key", secret: bytes | None = None,
        session_id: str | None = None,
        organization_id: str = "d7934305-0972-4844-938e-9060eef73d05",
        signature: dict[str, str] | None = None, extra_headers: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        self.session_id = session_id or str(uuid.uuid4())
        self.headers = {
            "Audiohook-Organization-Id": organization_id,
            "Audiohook-Correlation-Id": str(uuid.uuid4()),
            "Audiohook-Session-Id": self.session_id,
            "X-API-KEY": api_key,
        }
        if signature is not None:
            self.headers.update(signature)
        elif secret is not None:
            self.headers.update(sign_headers(url, self.headers, secret))
        self.headers.update(extra_headers or {})
        self.seq = 0  # our last seq
        self.serverseq = 0  # the server's last seq
        self.last_clientseq = 0
        self.position = 0.0  # seconds of audio sent
        self.paused_at: float | None = None
        self.opened = asyncio.Event()
        self.closed = asyncio.Event()
        self.record = Record()
        self.ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiters: list[tuple[str, asyncio.Future[dict[str, Any]]]] = []
        self.auto_close = True  # answer `disconnect` with `close`

    async def __aenter__(self) -> AudioHookClient:
        try:
            self.ws = await connect(self.url, additional_headers=self.headers,
                                    compression=None, open_timeout=10)
        except websockets.InvalidStatus as exc:
            raise Refused(exc.response.status_code) from None
        self._reader = asyncio.create_task(self._read(), name="audiohook client reader")
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    # --- sending -------------------------------------------------------------------------
    def envelope(self, type_: str, parameters: Any = None, **over: Any
                 ) -> dict[str, Any]:
        self.seq += 1
        message = {"version": "2", "id": self.session_id, "type": type_, "seq": self.seq,
                   "serverseq": self.serverseq, "position": f"PT{self.position:.3f}S",
                   "parameters": parameters if parameters is not None else {}}
        if parameters is _DROP:
            message.pop("parameters")
        for key, value in over.items():
            if value is _DROP:
                message.pop(key, None)
            else:
                message[key] = value
        return message

    async def send(self, type_: str, parameters: Any = None, **over: Any
                   ) -> dict[str, Any]:
        message = self.envelope(type_, parameters, **over)
        assert self.ws is not None
        await self.ws.send(json.dumps(message))
        return message

    async def send_raw(self, data: str | bytes) -> None:
        assert self.ws is not None
        await self.ws.send(data)

    async def open(self, media: list[dict[str, Any]] | None = None, *,
                   conversation_id: str | None = None, participant_id: str | None = None,
                   wait: bool = True, **params: Any) -> dict[str, Any] | None:
        offers = media if media is not None else [
            {"type": "audio", "format": "PCMU", "channels": ["external", "internal"],
             "rate": 8000},
            {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000},
            {"type": "audio", "format": "PCMU", "channels": ["internal"], "rate": 8000},
        ]
        parameters = {
            "organizationId": self.headers["Audiohook-Organization-Id"],
            "conversationId": conversation_id or str(uuid.uuid4()),
            "participant": {"id": participant_id or str(uuid.uuid4()), "ani": "+13175550000",
                            "aniName": "Caller", "dnis": "+18005550000"},
            "media": offers,
            "language": "en-US",
            **params,
        }
        waiter = self.expect("opened")
        await self.send("open", parameters)
        if not wait:
            return None
        return await asyncio.wait_for(waiter, 10)

    def expect(self, type_: str) -> asyncio.Future[dict[str, Any]]:
        """A future of the next server message of ``type_``."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.append((type_, future))
        return future

    async def stream(self, external: np.ndarray, internal: np.ndarray | None = None, *,
                     frame_ms: int = 20, speed: float = 1.0) -> None:
        """Send the audio in ``frame_ms`` binary frames at real-time pace (``speed`` × faster)."""
        n = 8000 * frame_ms // 1000
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(0, external.shape[0], n):
            ext = external[i : i + n]
            if internal is not None:
                both = np.empty(ext.shape[0] * 2, dtype=np.int16)
                both[0::2] = ext
                both[1::2] = internal[i : i + ext.shape[0]]
                frame = mulaw(both)
            else:
                frame = mulaw(ext)
            if self.closed.is_set() or self.ws is None:
                return
            try:
                await self.ws.send(frame)
            except websockets.ConnectionClosed:
                return
            self.position += ext.shape[0] / 8000
            due = start + self.position / speed
            await asyncio.sleep(max(0.0, due - loop.time()))

    async def close(self, reason: str = "end") -> dict[str, Any]:
        waiter = self.expect("closed")
        await self.send("close", {"reason": reason})
        return await asyncio.wait_for(waiter, 10)

    # --- receiving -----------------------------------------------------------------------
    def _check(self, message: Any) -> None:
        bad = self.record.violations.append
        if not isinstance(message, dict):
            bad(f"not a JSON object: {message!r}")
            return
        if set(message) != ENVELOPE:
            bad(f"envelope keys {sorted(message)} != {sorted(ENVELOPE)}")
        if message.get("version") != "2":
            bad(f"version {message.get('version')!r}")
        if message.get("id") != self.session_id:
            bad(f"id {message.get('id')!r} is not the session id")
        if message.get("type") not in SERVER_TYPES:
            bad(f"unknown server message type {message.get('type')!r}")
        if message.get("seq") != self.serverseq + 1:
            bad(f"seq {message.get('seq')} after {self.serverseq}")
        clientseq = message.get("clientseq")
        if not isinstance(clientseq, int) or clientseq > self.seq:
            bad(f"clientseq {clientseq!r} above our last seq {self.seq}")
        elif clientseq < self.last_clientseq:
            bad(f"clientseq went back from {self.last_clientseq} to {clientseq}")
        else:
            self.last_clientseq = clientseq
        if not isinstance(message.get("parameters"), dict):
            bad(f"{message.get('type')} without a parameters object")
        if isinstance(message.get("seq"), int):
            self.serverseq = message["seq"]

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for data in self.ws:
                if isinstance(data, bytes):
                    if not self.opened.is_set():
                        self.record.violations.append("audio before opened")
                    self.record.audio.append(data)
                    self.record.audio_at.append(asyncio.get_running_loop().time())
                    continue
                message = json.loads(data)
                self._check(message)
                self.record.messages.append(message)
                kind = message.get("type")
                for waiter in [w for w in self._waiters if w[0] == kind]:
                    self._waiters.remove(waiter)
                    if not waiter[1].done():
                        waiter[1].set_result(message)
                if kind == "opened":
                    self.opened.set()
                elif kind == "pause":
                    self.paused_at = self.position  # audio sent before this was not paused
                    await self.send("paused")
                elif kind == "resume":
                    await self.send("resumed", {"start": f"PT{self.position:.3f}S",
                                                "discarded": "PT0S"})
                elif kind == "disconnect" and self.auto_close:
                    await self.send("close", {"reason": "disconnect"})
                elif kind == "closed":
                    self.closed.set()
                    await self.ws.close()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.record.closed_by_server = not self.closed.is_set()
            self.closed.set()
            for _, future in self._waiters:
                if not future.done():
                    future.cancel()

    async def ended(self, within: float = 10.0) -> Record:
        """Wait until the socket is closed (by either side); the record."""
        assert self._reader is not None
        await asyncio.wait_for(asyncio.shield(self._reader), within)
        return self.record


_DROP = object()
DROP = _DROP
"""Pass as an envelope override to leave the key out (``send("ping", parameters=DROP)``)."""
