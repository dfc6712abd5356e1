"""Twilio Media Streams: the wire protocol as a :class:`~voicekit.transports.Codec`, the TwiML
answer and the webhook signature, all pure functions.

A bidirectional stream (TwiML ``<Connect><Stream>``) is one WebSocket of JSON text frames.
Twilio sends ``connected``, ``start`` (the stream and call ids, the ``<Parameter>`` values),
then ``media`` (20 ms of base64 μ-law at 8 kHz), ``mark`` (the echo of a mark we sent, once the
audio before it has played), ``dtmf`` and finally ``stop``. We send ``media``, ``mark`` and
``clear`` (drop the audio Twilio still holds). ``sequenceNumber``, ``chunk`` and ``timestamp``
are JSON *strings* holding numbers.

>>> import json
>>> state = codec.initial()
>>> state, events = codec.decode(state, json.dumps({"event": "start", "sequenceNumber": "1",
...     "streamSid": "MZ1", "start": {"streamSid": "MZ1", "callSid": "CA1",
...     "customParameters": {"caller": "+15551230000"}}}))
>>> events[0].call_id, events[0].acknowledges
('CA1', True)
>>> state, events = codec.decode(state, json.dumps({"event": "media", "sequenceNumber": "2",
...     "streamSid": "MZ1", "media": {"track": "inbound", "chunk": "1", "timestamp": "20",
...     "payload": "//8="}}))
>>> events
[AudioChunk(2 samples, rate=8000, t=0.020, duration=0.2 ms)]
>>> from voicekit.events import Mark
>>> codec.encode(state, Mark("s1"))[1]
['{"event":"mark","streamSid":"MZ1","mark":{"name":"s1"}}']
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from .._errors import AudioError, ProtocolError
from .._frozen import FrozenDict
from ..audio import ulaw_decode_bytes, ulaw_encode_chunk
from ..events import AudioChunk, CallEnded, CallStarted, Dtmf, Interrupted, Mark, Played
from ._codec import Codec, WireMessage

__all__ = [
    "DTMF_DIGITS",
    "MAX_MESSAGE",
    "TOKEN_PARAMETER",
    "TwilioState",
    "codec",
    "decode",
    "encode",
    "signature",
    "twiml",
    "verify_signature",
]

RATE = 8000
MAX_MESSAGE = 64 * 1024
"""The largest inbound message accepted, in characters (a 20 ms media frame is ~400)."""
DTMF_DIGITS = frozenset("0123456789*#ABCD")
TOKEN_PARAMETER = "token"
"""The ``<Parameter>`` that carries the stream token (the connection layer removes it from
``CallStarted.parameters`` once checked)."""


@dataclass(frozen=True, slots=True)
class TwilioState:
    """Where a Media Stream is: ``phase`` is ``"new"``, ``"started"`` or ``"stopped"``;
    ``stream_sid`` and ``call_sid`` come from ``start``; ``t`` is the latest media time (s)."""

    phase: str = "new"
    stream_sid: str = ""
    call_sid: str = ""
    t: float = 0.0


def _fail(message: str) -> ProtocolError:
    return ProtocolError(f"twilio: {message}")


def _number(value: Any, what: str) -> int:
    """A counter Twilio sends as a JSON string (``"20"``); a plain number is accepted too."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _fail(f"{what} must be a number in a JSON string, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise _fail(f"{what} must be a number in a JSON string, got {value!r}") from None
    if number < 0:
        raise _fail(f"{what} must not be negative, got {value!r}")
    return number


def _object(data: Mapping[str, Any], key: str, event: str) -> Mapping[str, Any]:
    value = data.get(key)
    if not isinstance(value, Mapping):
        raise _fail(f"'{event}' message has no '{key}' object")
    return value


def _string(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise _fail(f"{where} has no string '{key}'")
    return value


def _parse(message: WireMessage) -> dict[str, Any]:
    if not isinstance(message, str):
        raise _fail(f"got a binary frame of {len(message)} bytes; Media Streams are JSON text")
    if len(message) > MAX_MESSAGE:
        raise _fail(f"message of {len(message)} characters is over the {MAX_MESSAGE} cap")
    try:
        data = json.loads(message)
    except ValueError as exc:
        raise _fail(f"message is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _fail(f"message is a JSON {type(data).__name__}, not an object")
    if not isinstance(data.get("event"), str):
        raise _fail("message has no string 'event'")
    return data


def decode(state: TwilioState, message: WireMessage) -> tuple[TwilioState, list[Any]]:
    """One message from Twilio -> the new state and its events (see the module docstring).

    Raises :class:`~voicekit.ProtocolError` for a binary or oversized frame, bad JSON, an
    unknown event, a message out of sequence (``media`` before ``start``, anything after
    ``stop``), a bad base64 payload or a malformed field.
    """
    data = _parse(message)
    event = data["event"]
    if state.phase == "stopped":
        raise _fail(f"'{event}' after 'stop'")
    if event == "connected":
        if state.phase != "new":
            raise _fail("'connected' after 'start'")
        return state, []
    if event == "start":
        if state.phase != "new":
            raise _fail("a second 'start'")
        start = _object(data, "start", event)
        stream_sid = _string(start, "streamSid", "'start'")
        call_sid = _string(start, "callSid", "'start'")
        raw = start.get("customParameters") or {}
        if not isinstance(raw, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
        ):
            raise _fail("'start.customParameters' must map names to strings")
        params = dict(raw)
        started = CallStarted(
            call_id=call_sid,
            carrier="twilio",
            acknowledges=True,
            caller=params.get("caller", ""),
            callee=params.get("callee", ""),
            stream_id=stream_sid,
            parameters=FrozenDict(params),
        )
        return TwilioState("started", stream_sid, call_sid), [started]
    if state.phase != "started":
        raise _fail(f"'{event}' before 'start'")
    if event == "media":
        media = _object(data, "media", event)
        track = media.get("track", "inbound")
        payload = media.get("payload")
        if not isinstance(payload, str):
            raise _fail("'media' message has no string 'media.payload'")
        t = _number(media.get("timestamp", "0"), "media.timestamp") / 1000
        _number(media.get("chunk", "0"), "media.chunk")
        try:
            audio = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise _fail(f"'media.payload' is not valid base64 ({payload[:40]!r}…)") from None
        state = TwilioState(state.phase, state.stream_sid, state.call_sid, t)
        if track != "inbound":  # a bidirectional stream carries the caller only
            return state, []
        return state, [ulaw_decode_bytes(audio, t=t)]
    if event == "mark":
        name = _string(_object(data, "mark", event), "name", "'mark'")
        return state, [Played(name, t=state.t)]
    if event == "dtmf":
        digit = _string(_object(data, "dtmf", event), "digit", "'dtmf'")
        if digit not in DTMF_DIGITS:
            raise _fail(f"'dtmf.digit' {digit!r} is not a keypad key")
        return state, [Dtmf(digit, t=state.t)]
    if event == "stop":
        return dataclasses.replace(state, phase="stopped"), [CallEnded("hangup", t=state.t)]
    raise _fail(f"unknown event {event!r}")


def _dump(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def encode(state: TwilioState, item: Any) -> tuple[TwilioState, list[WireMessage]]:
    """One outbound item -> Twilio messages: an :class:`~voicekit.AudioChunk` at 8 kHz ->
    ``media``, a :class:`~voicekit.Mark` -> ``mark``, :class:`~voicekit.Interrupted` ->
    ``clear``; anything else -> ``[]``. Nothing can be sent before ``start`` or after ``stop``
    (:class:`~voicekit.ProtocolError`)."""
    if not isinstance(item, AudioChunk | Mark | Interrupted):
        return state, []
    if state.phase != "started":
        raise _fail(f"cannot send {type(item).__name__} while the stream is {state.phase!r}")
    sid = state.stream_sid
    if isinstance(item, AudioChunk):
        if item.rate != RATE:
            raise AudioError(f"twilio: outbound audio must be {RATE} Hz, got {item.rate} Hz")
        payload = base64.b64encode(ulaw_encode_chunk(item)).decode("ascii")
        return state, [_dump({"event": "media", "streamSid": sid, "media": {"payload": payload}})]
    if isinstance(item, Mark):
        return state, [_dump({"event": "mark", "streamSid": sid, "mark": {"name": item.name}})]
    return state, [_dump({"event": "clear", "streamSid": sid})]


codec: Codec[TwilioState] = Codec(
    name="twilio",
    rate=RATE,
    initial=TwilioState,
    decode=decode,
    encode=encode,
    frame_ms=20,
    acknowledges=True,
    max_message=MAX_MESSAGE,
)
"""The Twilio Media Streams codec."""


def twiml(stream_url: str, parameters: Mapping[str, str]) -> str:
    """The TwiML that answers a call by connecting it to the Media Stream at ``stream_url``
    (``wss://…``), with ``parameters`` as ``<Parameter>`` elements (Twilio drops a query string
    from the stream URL, so per-call values travel this way).

    >>> print(twiml("wss://example.test/twilio/media", {"caller": "+1555"}))
    <?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://example.test/twilio/media"><Parameter name="caller" value="+1555"/></Stream></Connect></Response>
    """  # noqa: E501
    params = "".join(
        f'<Parameter name="{_attr(k)}" value="{_attr(v)}"/>' for k, v in parameters.items()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
        f'<Stream url="{_attr(stream_url)}">{params}</Stream></Connect></Response>'
    )


def _attr(value: str) -> str:
    return escape(value, {'"': "&quot;"})


def signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """Twilio's ``X-Twilio-Signature`` of a webhook: base64 HMAC-SHA1, keyed with the account's
    auth token, of the full URL followed by every POST parameter's name and value, sorted by
    name.

    >>> signature("secret", "https://example.test/twilio/voice", {"CallSid": "CA1", "From": "+1"})
    'zNTX3m+1waugrPR0bkm9C5RIffg='
    """
    data = url + "".join(k + params[k] for k in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_signature(auth_token: str, url: str, params: Mapping[str, str], given: str) -> bool:
    """True when ``given`` is the right signature (compared in constant time)."""
    return hmac.compare_digest(signature(auth_token, url, params), given or "")
