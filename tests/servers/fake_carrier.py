"""What a phone carrier does on a bidirectional media WebSocket, for the fake Telnyx and Plivo
peers (:mod:`servers.fake_telnyx`, :mod:`servers.fake_plivo`): a real WebSocket client that

* sends the caller's audio as 20 ms μ-law frames, paced on an absolute clock, then silence;
  key presses at given times; and ``stop`` when the script says the caller hangs up;
* *plays* the audio it receives in real time (a play-out clock: each frame starts when the one
  before it has finished), answers a marker once the audio before it has played, and on a
  "clear" throws away what has not played yet (what it does with the markers still queued is
  the carrier's choice: Telnyx returns them, Plivo drops them and says ``clearedAudio``);
* records everything it received, with its arrival time, the audio the caller heard, and every
  message that breaks the carrier's rules (``violations``: a test asserts there are none).

A carrier subclass says how its messages look (:class:`Carrier`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from voicekit.audio import load, ulaw_decode_bytes, ulaw_encode

__all__ = ["AnswerRefused", "Carrier", "Heard", "Received", "Record", "caller_audio"]

RATE = 8000
FRAME = 160  # 20 ms at 8 kHz
SILENCE = b"\xff" * FRAME


def caller_audio(wav: str | Path | None = None, *, seconds: float = 0.0) -> bytes:
    """μ-law 8 kHz bytes of ``wav`` (resampled), or ``seconds`` of a soft 300 Hz tone."""
    if wav is not None:
        samples, _ = load(wav, rate=RATE)
    else:
        t = np.arange(int(seconds * RATE)) / RATE
        samples = (3000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)
    return bytes(ulaw_encode(samples).tobytes())


class AnswerRefused(Exception):
    """The server's answer route said no (``status``, ``body``)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"answer refused with {status}: {body[:200]}")
        self.status, self.body = status, body


@dataclass(frozen=True, slots=True)
class Received:
    """One message from the server, ``t`` seconds after the call started."""

    t: float
    message: dict[str, Any]

    @property
    def event(self) -> str:
        return str(self.message.get("event", ""))


@dataclass(slots=True)
class Heard:
    """A stretch of the server's audio the caller heard, starting ``start`` s into the call."""

    start: float
    audio: bytes


@dataclass(slots=True)
class Record:
    """Everything one fake call saw. Times are seconds since the call's start."""

    received: list[Received] = field(default_factory=list)
    sent: list[tuple[float, str]] = field(default_factory=list)  # (t, event) we sent
    echoed: list[tuple[float, str]] = field(default_factory=list)  # markers answered
    dropped: list[str] = field(default_factory=list)  # markers a clear dropped
    heard: list[Heard] = field(default_factory=list)
    clears: list[float] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    closed_by_server: bool = False
    close_code: int | None = None
    ended_at: float = 0.0

    def events(self, name: str) -> list[Received]:
        return [r for r in self.received if r.event == name]

    def heard_audio(self) -> np.ndarray[Any, np.dtype[np.int16]]:
        """The server's audio as the caller heard it (int16, 8 kHz)."""
        raw = b"".join(h.audio for h in self.heard)
        return ulaw_decode_bytes(raw).samples

    @property
    def heard_seconds(self) -> float:
        return sum(len(h.audio) for h in self.heard) / RATE


class Carrier:
    """One fake call. Subclasses define the wire shapes: :meth:`opening` (what is sent before
    the audio), :meth:`media`, :meth:`dtmf`, :meth:`stop`, and :meth:`handle` for what the
    server sends."""

    name = "carrier"
    clear_returns_markers = False

    def __init__(self, url: str, *, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.headers = headers or {}
        self.record = Record()
        self._ws: ClientConnection | None = None
        self._t0 = 0.0
        self._play_end = 0.0  # call time when all queued audio has played
        self._markers: list[tuple[float, str]] = []  # (due, name), not answered yet
        self._wake = asyncio.Event()
        self._seq = 0
        self._hung_up = False

    # -- the carrier's wire shapes ------------------------------------------------------------

    def opening(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def media(self, chunk: int, payload: str) -> dict[str, Any]:
        raise NotImplementedError

    def dtmf(self, digit: str) -> dict[str, Any]:
        raise NotImplementedError

    def stop(self) -> dict[str, Any]:
        raise NotImplementedError

    async def handle(self, message: dict[str, Any]) -> None:
        raise NotImplementedError

    def echo(self, name: str) -> dict[str, Any]:
        raise NotImplementedError

    # -- the play-out clock -------------------------------------------------------------------

    def now(self) -> float:
        return time.monotonic() - self._t0

    def violation(self, text: str) -> None:
        self.record.violations.append(text)

    def play(self, audio: bytes) -> None:
        """Queue ``audio`` (μ-law) for play-out after what is queued."""
        start = max(self.now(), self._play_end)
        self._play_end = start + len(audio) / RATE
        self.record.heard.append(Heard(start, audio))

    def marker(self, name: str) -> None:
        """A marker: answered once the audio queued before it has played."""
        self._markers.append((max(self.now(), self._play_end), name))
        self._wake.set()

    def clear(self) -> list[str]:
        """Throw away the audio not played yet; return the markers that were still queued."""
        now = self.now()
        self.record.clears.append(now)
        kept: list[Heard] = []
        for h in self.record.heard:
            if h.start >= now:
                continue
            played = int((now - h.start) * RATE)
            kept.append(h if played >= len(h.audio) else Heard(h.start, h.audio[:played]))
        self.record.heard = kept
        self._play_end = now
        queued = [name for _, name in self._markers]
        self._markers = []
        return queued

    async def send(self, message: dict[str, Any]) -> None:
        if self._ws is None:
            return
        self._seq += 1
        self.record.sent.append((self.now(), str(message.get("event"))))
        await self._ws.send(json.dumps(message))

    async def _answer_markers(self) -> None:
        while True:
            if not self._markers:
                self._wake.clear()
                await self._wake.wait()
                continue
            due, name = self._markers[0]
            delay = due - self.now()
            if delay > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                continue
            self._markers.pop(0)
            self.record.echoed.append((self.now(), name))
            with contextlib.suppress(ConnectionClosed):
                await self.send(self.echo(name))

    async def _receive(self) -> None:
        assert self._ws is not None
        try:
            async for raw in self._ws:
                if not isinstance(raw, str):
                    self.violation(f"a binary frame of {len(raw)} bytes")
                    continue
                try:
                    message = json.loads(raw)
                except ValueError:
                    self.violation(f"not JSON: {raw[:60]!r}")
                    continue
                if not isinstance(message, dict):
                    self.violation(f"not a JSON object: {raw[:60]!r}")
                    continue
                self.record.received.append(Received(self.now(), message))
                await self.handle(message)
        except ConnectionClosed:
            pass
        self.record.closed_by_server = not self._hung_up

    # -- the call -----------------------------------------------------------------------------

    async def call(
        self,
        audio: bytes = b"",
        *,
        digits: Sequence[tuple[float, str]] = (),
        hangup_at: float | None = None,
        until: Callable[[Record], bool] | None = None,
        max_seconds: float = 20.0,
        linger: float = 0.0,
    ) -> Record:
        """Place the call: ``audio`` (μ-law 8 kHz) then silence, a key of ``digits`` at its
        time; hang up at ``hangup_at``, or ``linger`` seconds after ``until(record)`` holds, or
        when the server closes; :class:`TimeoutError` after ``max_seconds``."""
        pending_digits = sorted(digits)
        async with connect(self.url, additional_headers=self.headers, open_timeout=5) as ws:
            self._ws = ws
            self._t0 = time.monotonic()
            receiver = asyncio.create_task(self._receive())
            answerer = asyncio.create_task(self._answer_markers())
            try:
                for message in self.opening():
                    await self.send(message)
                frame = 0
                satisfied_at: float | None = None
                while not self.record.closed_by_server:
                    t = frame * FRAME / RATE
                    if hangup_at is not None and t >= hangup_at:
                        break
                    if satisfied_at is None and until is not None and until(self.record):
                        satisfied_at = t
                    if satisfied_at is not None and t >= satisfied_at + linger:
                        break
                    if t > max_seconds:
                        raise TimeoutError(f"fake {self.name} call: nothing ended it in {t:.1f} s")
                    while pending_digits and pending_digits[0][0] <= t:
                        await self.send(self.dtmf(pending_digits.pop(0)[1]))
                    piece = audio[frame * FRAME : (frame + 1) * FRAME] or SILENCE
                    piece = piece.ljust(FRAME, b"\xff")
                    with contextlib.suppress(ConnectionClosed):
                        payload = base64.b64encode(piece).decode("ascii")
                        await self.send(self.media(frame, payload))
                    frame += 1
                    delay = self._t0 + frame * FRAME / RATE - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                if not self.record.closed_by_server:
                    self._hung_up = True
                    with contextlib.suppress(ConnectionClosed):
                        await self.send(self.stop())
                    await ws.close()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(receiver), 5)
            finally:
                self.record.ended_at = self.now()
                answerer.cancel()
                receiver.cancel()
                await asyncio.gather(answerer, receiver, return_exceptions=True)
                self.record.close_code = ws.close_code
                self._ws = None
        return self.record
