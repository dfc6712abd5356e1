"""A fake Twilio on a bidirectional Media Stream (see :mod:`servers.fake_carrier`).

It sends what Twilio sends — ``connected``, ``start`` (``streamSid``, ``callSid``, the
``<Parameter>`` values as ``customParameters``), ``media`` (with ``sequenceNumber``, ``chunk``
and ``timestamp`` as JSON strings), ``dtmf``, ``stop`` — and holds the server to Twilio's rules
for what comes back: ``media`` (base64 μ-law, this stream's ``streamSid``), ``mark`` (echoed once
the audio before it has played) and ``clear`` (the queued marks are echoed at once, as Twilio
does).

:func:`answer` POSTs the voice webhook the way Twilio does (signed) and returns the stream URL
and its parameters from the TwiML.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import urlencode
from xml.etree import ElementTree

import httpx

from voicekit.transports import twilio

from .fake_carrier import AnswerRefused, Carrier

__all__ = ["TwilioCall", "answer"]


async def answer(
    base_url: str, form: dict[str, str], auth_token: str = "", path: str = "/twilio/voice"
) -> tuple[str, dict[str, str]]:
    """POST the voice webhook to ``{base_url}{path}``, signed with ``auth_token`` (when given);
    return the ``<Stream>`` URL and its ``<Parameter>`` values. A status other than 200
    raises :class:`AnswerRefused`; TwiML without a ``<Stream>`` returns ``("", {})``."""
    body = urlencode(form).encode()
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if auth_token:
        headers["x-twilio-signature"] = twilio.signature(auth_token, base_url + path, form)
    async with httpx.AsyncClient() as client:
        reply = await client.post(f"{base_url}{path}", content=body, headers=headers)
    if reply.status_code != 200:
        raise AnswerRefused(reply.status_code, reply.text)
    stream = ElementTree.fromstring(reply.text).find("Connect/Stream")
    if stream is None:
        return "", {}
    params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return stream.get("url", ""), params


class TwilioCall(Carrier):
    """One fake Twilio call to ``url``."""

    name = "twilio"

    def __init__(
        self,
        url: str,
        *,
        call_sid: str = "CAfake0000000000000000000000000001",
        stream_sid: str = "MZfake0000000000000000000000000001",
        parameters: dict[str, str] | None = None,
    ) -> None:
        super().__init__(url)
        self.call_sid, self.stream_sid = call_sid, stream_sid
        self.parameters = parameters or {}

    def opening(self) -> list[dict[str, Any]]:
        start = {"streamSid": self.stream_sid, "callSid": self.call_sid, "accountSid": "ACfake",
                 "tracks": ["inbound"], "customParameters": self.parameters,
                 "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}
        return [
            {"event": "connected", "protocol": "Call", "version": "1.0.0"},
            {"event": "start", "sequenceNumber": "1", "streamSid": self.stream_sid,
             "start": start},
        ]

    def _envelope(self, event: str, **fields: Any) -> dict[str, Any]:
        return {"event": event, "sequenceNumber": str(self._seq + 1),
                "streamSid": self.stream_sid, **fields}

    def media(self, chunk: int, payload: str) -> dict[str, Any]:
        media = {"track": "inbound", "chunk": str(chunk + 1), "timestamp": str(chunk * 20),
                 "payload": payload}
        return self._envelope("media", media=media)

    def dtmf(self, digit: str) -> dict[str, Any]:
        return self._envelope("dtmf", dtmf={"track": "inbound_track", "digit": digit})

    def stop(self) -> dict[str, Any]:
        return self._envelope("stop", stop={"accountSid": "ACfake", "callSid": self.call_sid})

    def echo(self, name: str) -> dict[str, Any]:
        return self._envelope("mark", mark={"name": name})

    async def handle(self, message: dict[str, Any]) -> None:
        event = message.get("event")
        if message.get("streamSid") != self.stream_sid:
            self.violation(f"{event} names stream {message.get('streamSid')!r}")
            return
        if event == "media":
            media = message.get("media")
            payload = media.get("payload") if isinstance(media, dict) else None
            if not isinstance(payload, str):
                self.violation("media without a payload")
                return
            try:
                self.play(base64.b64decode(payload, validate=True))
            except (binascii.Error, ValueError):
                self.violation("media payload is not base64")
        elif event == "mark":
            mark = message.get("mark")
            name = mark.get("name") if isinstance(mark, dict) else None
            if not isinstance(name, str) or not name:
                self.violation("mark without a name")
                return
            self.marker(name)
        elif event == "clear":
            for name in self.clear():  # Twilio sends the queued marks back at once
                self.record.echoed.append((self.now(), name))
                await self.send(self.echo(name))
        else:
            self.violation(f"unknown event {event!r}")
