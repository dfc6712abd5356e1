"""A fake Telnyx on a bidirectional Media Streaming WebSocket (see :mod:`servers.fake_carrier`).

It sends what Telnyx sends — ``connected`` (with the stream auth token, when there is one),
``start`` (``call_control_id``, ``from``, ``to``, ``custom_parameters``, PCMU 8 kHz),
``media`` with ``track: inbound`` and string counters, ``dtmf``, ``stop`` — and holds the server
to Telnyx's rules for what comes back: ``media`` with a base64 payload only, ``mark`` with a
name, ``clear``; a mark is returned once the audio before it has played, and a ``clear``
returns the marks still queued (as Telnyx documents).

    record = await TelnyxCall("ws://127.0.0.1:8000/telnyx/media", token=...).call(audio)

:func:`answer` asks a voicekit server's TeXML route for the stream URL and parameters, the
way Telnyx does when a call comes in.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode
from xml.etree import ElementTree

import httpx

from .fake_carrier import AnswerRefused, Carrier

__all__ = ["AnswerRefused", "TelnyxCall", "answer"]


async def answer(
    base_url: str, form: dict[str, str], sign: Callable[[bytes], dict[str, str]] | None = None
) -> tuple[str, dict[str, str]]:
    """POST the voice webhook to ``{base_url}/telnyx/voice``; return the TeXML's stream URL and
    its ``<Parameter>`` values. ``sign(body)`` gives the signature headers, as the carrier
    would send them; a status other than 200 raises :class:`AnswerRefused`."""
    body = urlencode(form).encode()
    head = {"content-type": "application/x-www-form-urlencoded", **(sign(body) if sign else {})}
    async with httpx.AsyncClient() as client:
        reply = await client.post(f"{base_url}/telnyx/voice", content=body, headers=head)
    if reply.status_code != 200:
        raise AnswerRefused(reply.status_code, reply.text)
    stream = ElementTree.fromstring(reply.text).find("Connect/Stream")
    if stream is None or not stream.get("url"):
        raise AssertionError(f"no <Connect><Stream url> in the TeXML: {reply.text[:200]}")
    if (stream.get("bidirectionalMode"), stream.get("bidirectionalCodec")) != ("rtp", "PCMU"):
        raise AssertionError("the TeXML does not ask for bidirectional RTP PCMU")
    params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return str(stream.get("url")), params


class TelnyxCall(Carrier):
    """One fake Telnyx call to ``url``."""

    name = "telnyx"

    def __init__(
        self,
        url: str,
        *,
        call_control_id: str = "v3:fake-call-1",
        caller: str | None = "+15550001111",
        callee: str | None = "+15550002222",
        token: str = "",
        custom_parameters: dict[str, str] | None = None,
        stream_id: str = "fake-stream-1",
    ) -> None:
        headers = {"x-telnyx-streaming-auth-token": token} if token else {}
        super().__init__(url, headers=headers)
        self.call_control_id = call_control_id
        self.caller, self.callee, self.token = caller, callee, token
        self.custom_parameters = custom_parameters or {}
        self.stream_id = stream_id

    def _envelope(self, event: str, **fields: Any) -> dict[str, Any]:
        return {"event": event, "sequence_number": str(self._seq + 1), "stream_id": self.stream_id,
                **fields}

    def opening(self) -> list[dict[str, Any]]:
        connected: dict[str, Any] = {"event": "connected", "version": "1.0.0"}
        if self.token:
            connected["connected"] = {"x-telnyx-streaming-auth-token": self.token}
        start = {
            "user_id": "fake-user",
            "call_control_id": self.call_control_id,
            "call_session_id": "fake-session",
            "from": self.caller,
            "to": self.callee,
            "custom_parameters": self.custom_parameters,
            "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1},
        }
        return [connected, self._envelope("start", start=start)]

    def media(self, chunk: int, payload: str) -> dict[str, Any]:
        media = {"track": "inbound", "chunk": str(chunk + 1), "timestamp": str(chunk * 20),
                 "payload": payload}
        return self._envelope("media", media=media)

    def dtmf(self, digit: str) -> dict[str, Any]:
        return self._envelope("dtmf", dtmf={"digit": digit})

    def stop(self) -> dict[str, Any]:
        return self._envelope("stop", stop={"call_control_id": self.call_control_id,
                                            "user_id": "fake-user"})

    def echo(self, name: str) -> dict[str, Any]:
        return self._envelope("mark", mark={"name": name})

    async def handle(self, message: dict[str, Any]) -> None:
        event = message.get("event")
        if event == "media":
            media = message.get("media")
            payload = media.get("payload") if isinstance(media, dict) else None
            if set(message) != {"event", "media"} or not isinstance(payload, str):
                self.violation(f"media frame not as Telnyx takes it: {sorted(message)}")
                return
            try:
                audio = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                self.violation("media payload is not base64")
                return
            if not 160 <= len(audio) <= 8000 * 30:  # Telnyx takes 20 ms to 30 s per frame
                self.violation(f"media frame of {len(audio)} bytes")
            self.play(audio)
        elif event == "mark":
            mark = message.get("mark")
            name = mark.get("name") if isinstance(mark, dict) else None
            if not isinstance(name, str) or not name:
                self.violation("mark without a name")
                return
            self.marker(name)
        elif event == "clear":
            for name in self.clear():  # Telnyx returns the marks still queued
                self.record.echoed.append((self.now(), name))
                await self.send(self.echo(name))
        else:
            self.violation(f"unknown event {event!r}")
