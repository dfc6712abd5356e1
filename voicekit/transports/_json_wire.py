"""Checks shared by the carriers whose wire is JSON text frames (Telnyx, Plivo).

Each helper takes the carrier's name and raises :class:`~voicekit.ProtocolError` with a message
that names the carrier, the event and the field that was wrong — never the message's content
(a start message carries the caller's number, which must not reach a log).

>>> parse("telnyx", '{"event": "stop"}', 1024)
{'event': 'stop'}
>>> payload_bytes("telnyx", "media", {"payload": "//8="})
b'\\xff\\xff'
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._errors import ProtocolError
from ..audio import ulaw_decode_bytes, ulaw_encode_chunk
from ..events import AudioChunk

__all__ = [
    "DIGITS",
    "MAX_CLEARED",
    "as_str",
    "digit",
    "encode_payload",
    "field",
    "mark_echoed",
    "mark_sent",
    "marks_cleared",
    "parse",
    "payload_bytes",
    "pcmu_chunk",
    "silence",
]

DIGITS = frozenset("0123456789*#ABCD")
"""The keypad keys a DTMF event may name."""


def parse(carrier: str, message: str | bytes, cap: int) -> dict[str, Any]:
    """One inbound text frame as a JSON object with a string ``event``."""
    if isinstance(message, bytes | bytearray | memoryview):
        raise ProtocolError(f"{carrier}: got a binary frame; {carrier} sends JSON text frames")
    if not isinstance(message, str):
        raise ProtocolError(f"{carrier}: a message must be text, got {type(message).__name__}")
    if len(message) > cap:
        raise ProtocolError(
            f"{carrier}: a message of {len(message)} characters is over the cap of {cap}"
        )
    try:
        data = json.loads(message)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"{carrier}: a message is not valid JSON ({exc.msg})") from None
    except ValueError:
        raise ProtocolError(f"{carrier}: a message is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"{carrier}: a message must be a JSON object")
    event = data.get("event")
    if not isinstance(event, str) or not event:
        raise ProtocolError(f"{carrier}: a message has no 'event' name")
    return data


def field(carrier: str, event: str, data: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The object ``data[name]`` of an ``event`` message."""
    value = data.get(name)
    if not isinstance(value, dict):
        raise ProtocolError(f"{carrier}: '{event}' has no '{name}' object")
    return value


def as_str(
    carrier: str, event: str, data: Mapping[str, Any], name: str, *, required: bool = True
) -> str:
    """The string ``data[name]`` (``""`` when absent, null and not ``required``)."""
    value = data.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise ProtocolError(f"{carrier}: '{event}' needs a non-empty string '{name}'")
    return value


def digit(carrier: str, value: Any) -> str:
    """A DTMF key, checked."""
    if not isinstance(value, str) or value.upper() not in DIGITS or len(value) != 1:
        raise ProtocolError(f"{carrier}: 'dtmf' names no keypad key (0-9, *, #, A-D)")
    return value.upper()


def payload_bytes(carrier: str, event: str, media: Mapping[str, Any]) -> bytes:
    """The base64 ``payload`` of a media object, strictly decoded."""
    payload = media.get("payload")
    if not isinstance(payload, str):
        raise ProtocolError(f"{carrier}: '{event}' has no base64 'payload' string")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(f"{carrier}: '{event}' payload is not valid base64") from None


def pcmu_chunk(raw: bytes, samples_before: int, rate: int) -> AudioChunk:
    """μ-law bytes as an :class:`AudioChunk` starting after ``samples_before`` samples."""
    return ulaw_decode_bytes(raw, rate=rate, t=samples_before / rate)


def encode_payload(chunk: AudioChunk) -> str:
    """The base64 μ-law payload of an 8 kHz chunk (raises AudioError at another rate)."""
    return base64.b64encode(ulaw_encode_chunk(chunk)).decode("ascii")


def silence(ms: int, rate: int = 8000) -> AudioChunk:
    """``ms`` milliseconds of silence at ``rate`` (for tests and doctests)."""
    return AudioChunk(np.zeros(rate * ms // 1000, dtype=np.int16), rate=rate)


MAX_CLEARED = 256
"""How many cleared mark names are remembered (a carrier that drops them never echoes them)."""


def mark_sent(carrier: str, pending: tuple[str, ...], name: str) -> tuple[str, ...]:
    """``pending`` with mark ``name`` added; a name already pending is a caller bug."""
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"{carrier}: a Mark needs a non-empty name")
    if name in pending:
        raise ProtocolError(f"{carrier}: mark {name!r} is already waiting for its echo")
    return (*pending, name)


def marks_cleared(
    pending: tuple[str, ...], cleared: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """After a clear: no mark is pending, and the ones that were are remembered as cleared —
    their audio was thrown away, so an echo of them (Telnyx and Twilio send one) means nothing
    was heard, and a carrier that drops them (Plivo) is fine too."""
    return (), (*cleared, *pending)[-MAX_CLEARED:]


def mark_echoed(
    carrier: str, pending: tuple[str, ...], cleared: tuple[str, ...], name: Any
) -> tuple[tuple[str, ...], tuple[str, ...], bool]:
    """An echo of mark ``name``: (pending, cleared, heard). Heard only when it was pending;
    an echo of a cleared mark is dropped; an echo of a mark never sent is a protocol error."""
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"{carrier}: a mark echo has no name")
    if name in pending:
        return tuple(n for n in pending if n != name), cleared, True
    if name in cleared:
        return pending, tuple(n for n in cleared if n != name), False
    raise ProtocolError(f"{carrier}: mark {name!r} came back but was never sent")
