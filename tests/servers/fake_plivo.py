"""A fake Plivo on a bidirectional Audio Streams WebSocket (see :mod:`servers.fake_carrier`).

It sends what Plivo sends — ``start`` (``callId``, ``streamId``, μ-law 8 kHz ``mediaFormat``,
the ``extra_headers`` of the answer XML), ``media`` with ``track: inbound``, ``dtmf``, ``stop`` —
and holds the server to Plivo's rules for what comes back: ``playAudio`` (``audio/x-mulaw`` at
8000 Hz, base64), ``checkpoint`` and ``clearAudio`` with this stream's ``streamId``. A
checkpoint is answered with ``playedStream`` once the audio before it has played; a
``clearAudio`` drops the queued audio and checkpoints (never answered) and is answered with
``clearedAudio``.

    record = await PlivoCall("ws://127.0.0.1:8000/plivo/media", extra_headers=...).call(audio)

:func:`answer` asks a voicekit server's answer route for the XML, the way Plivo does when a
call comes in, and returns the stream URL and the ``extraHeaders`` attribute.
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

__all__ = ["AnswerRefused", "PlivoCall", "answer"]


async def answer(
    base_url: str, form: dict[str, str], sign: Callable[[bytes], dict[str, str]] | None = None
) -> tuple[str, str]:
    """POST the answer request to ``{base_url}/plivo/voice``; return the ``<Stream>`` URL and
    its ``extraHeaders``. ``sign(body)`` gives the signature headers, as the carrier would send
    them; a status other than 200 raises :class:`AnswerRefused`."""
    body = urlencode(form).encode()
    head = {"content-type": "application/x-www-form-urlencoded", **(sign(body) if sign else {})}
    async with httpx.AsyncClient() as client:
        reply = await client.post(f"{base_url}/plivo/voice", content=body, headers=head)
    if reply.status_code != 200:
        raise AnswerRefused(reply.status_code, reply.text)
    stream = ElementTree.fromstring(reply.text).find("Stream")
    if stream is None or not (stream.text or "").strip():
        raise AssertionError(f"no <Stream>URL</Stream> in the answer: {reply.text[:200]}")
    if stream.get("bidirectional") != "true":
        raise AssertionError("the answer does not ask for a bidirectional stream")
    if stream.get("contentType") != "audio/x-mulaw;rate=8000":
        raise AssertionError(f"the answer asks for {stream.get('contentType')}")
    return (stream.text or "").strip(), stream.get("extraHeaders", "")


class PlivoCall(Carrier):
    """One fake Plivo call to ``url``."""

    name = "plivo"

    def __init__(
        self,
        url: str,
        *,
        call_id: str = "fake-call-uuid-1",
        stream_id: str = "fake-stream-1",
        extra_headers: str = "",
    ) -> None:
        super().__init__(url)
        self.call_id, self.stream_id, self.extra_headers = call_id, stream_id, extra_headers

    def _envelope(self, event: str, **fields: Any) -> dict[str, Any]:
        return {"event": event, "sequenceNumber": self._seq + 1, "streamId": self.stream_id,
                **fields}

    def opening(self) -> list[dict[str, Any]]:
        start = {
            "callId": self.call_id,
            "streamId": self.stream_id,
            "accountId": "MAFAKE",
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
        }
        return [{"event": "start", "sequenceNumber": 1, "start": start,
                 "extra_headers": self.extra_headers}]

    def media(self, chunk: int, payload: str) -> dict[str, Any]:
        media = {"track": "inbound", "timestamp": str(1_700_000_000_000 + chunk * 20),
                 "chunk": chunk + 1, "payload": payload}
        return self._envelope("media", media=media, extra_headers=self.extra_headers)

    def dtmf(self, digit: str) -> dict[str, Any]:
        return self._envelope("dtmf", dtmf={"digit": digit})

    def stop(self) -> dict[str, Any]:
        return self._envelope("stop")

    def echo(self, name: str) -> dict[str, Any]:
        return {"event": "playedStream", "streamId": self.stream_id, "name": name}

    def _ours(self, message: dict[str, Any]) -> bool:
        if message.get("streamId") != self.stream_id:
            self.violation(f"{message.get('event')} names stream {message.get('streamId')!r}")
            return False
        return True

    async def handle(self, message: dict[str, Any]) -> None:
        event = message.get("event")
        if event == "playAudio":
            media = message.get("media")
            shape = (media.get("contentType"), media.get("sampleRate")) if isinstance(
                media, dict
            ) else None
            if not isinstance(media, dict) or shape != ("audio/x-mulaw", 8000):
                self.violation("playAudio is not audio/x-mulaw at 8000 Hz")
                return
            try:
                audio = base64.b64decode(str(media.get("payload")), validate=True)
            except (binascii.Error, ValueError):
                self.violation("playAudio payload is not base64")
                return
            self.play(audio)
        elif event == "checkpoint":
            name = message.get("name")
            if self._ours(message) and isinstance(name, str) and name:
                self.marker(name)
            elif not isinstance(name, str) or not name:
                self.violation("checkpoint without a name")
        elif event == "clearAudio":
            if self._ours(message):
                self.record.dropped += self.clear()  # Plivo never answers these
                await self.send({"event": "clearedAudio", "sequenceNumber": self._seq + 1,
                                 "streamId": self.stream_id})
        elif event == "sendDTMF":
            if not isinstance(message.get("dtmf"), str):
                self.violation("sendDTMF without a dtmf string")
        else:
            self.violation(f"unknown event {event!r}")
