"""Plivo Audio Streams (bidirectional, μ-law 8 kHz) as a :class:`~voicekit.transports.Codec`.

The answer URL returns ``<Response><Stream …>wss://…</Stream></Response>``; Plivo then opens a
WebSocket and sends JSON text frames: ``start`` (``start.callId``, ``start.streamId``,
``start.mediaFormat``, and the ``extra_headers`` of the answer), ``media`` (``media.track``,
``media.payload``: base64 μ-law 8 kHz), ``dtmf``, ``playedStream`` (a checkpoint reached),
``clearedAudio`` (a clear done), ``playFailed``/``error`` and ``stop``. We send ``playAudio``,
``checkpoint``, ``clearAudio`` (and, on purpose only, ``sendDTMF``: :func:`dtmf_message`).

How "heard" is decided: Plivo answers each ``checkpoint`` with ``playedStream`` once the audio
before it has played, and only then — checkpoints whose audio a ``clearAudio`` threw away are
never answered. The codec acknowledges (``CallStarted.acknowledges`` is True), turns each
``playedStream`` of a pending checkpoint into a :class:`~voicekit.Played`, drops an answer for a
cleared one (should one come) and rejects one for a checkpoint never sent.

Plivo's ``start`` has no caller or callee: :func:`answer_xml` puts them, and the single-call
token, in ``extraHeaders`` (hex-encoded: Plivo allows only letters and digits there), and the
codec decodes them into ``CallStarted.caller``/``callee``/``parameters``.

>>> from voicekit.events import Interrupted, Mark
>>> p = codec()
>>> state = p.initial()
>>> state, events = p.decode(state, '{"event": "start", "start": {"callId": "c-1", '
...     '"streamId": "s-1", "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000}}, '
...     '"extra_headers": "vkcaller=2b3135353530303031313131"}')
>>> events[0].call_id, events[0].stream_id, events[0].caller
('c-1', 's-1', '+15550001111')
>>> state, messages = p.encode(state, Mark("m1"))
>>> messages
['{"event":"checkpoint","streamId":"s-1","name":"m1"}']
>>> p.decode(state, '{"event": "playedStream", "streamId": "s-1", "name": "m1"}')[1]
[Played(name='m1', t=0.0)]
>>> p.encode(state, Interrupted())[1]
['{"event":"clearAudio","streamId":"s-1"}']
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit
from xml.sax.saxutils import escape, quoteattr

from .._errors import ConfigError, ProtocolError
from ..events import AudioChunk, CallEnded, CallStarted, Dtmf, Interrupted, Mark, Played
from . import _json_wire as w
from ._codec import Codec, WireMessage

__all__ = [
    "CARRIER",
    "RATE",
    "TOKEN_PARAMETER",
    "PlivoState",
    "answer_xml",
    "codec",
    "dtmf_message",
    "extra_headers",
    "parse_extra_headers",
    "signature_v3",
    "verify_signature",
    "webhook_call",
]

CARRIER = "plivo"
RATE = 8000
TOKEN_PARAMETER = "token"
"""The start parameter that carries the single-call token."""

_HEX_KEYS = {"vkcaller": "caller", "vkcallee": "callee", "vktoken": TOKEN_PARAMETER}
_MAX_EXTRA_HEADERS = 512
_ALNUM = re.compile(r"[A-Za-z0-9]+")


@dataclass(frozen=True, slots=True)
class PlivoState:
    """Where a Plivo stream is: ``phase`` is ``"new"``, ``"started"`` or ``"stopped"``;
    ``samples`` counts the inbound samples decoded (their time base); ``pending`` are the
    checkpoints sent and not answered yet, ``cleared`` the ones a clearAudio threw away."""

    phase: str = "new"
    call_id: str = ""
    stream_id: str = ""
    samples: int = 0
    pending: tuple[str, ...] = ()
    cleared: tuple[str, ...] = ()

    @property
    def t(self) -> float:
        """Inbound stream time, in seconds."""
        return self.samples / RATE


def _dumps(message: Mapping[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def extra_headers(values: Mapping[str, str]) -> str:
    """``extraHeaders`` for :func:`answer_xml`: ``caller``, ``callee`` and ``token`` are
    hex-encoded (any text fits), other keys and values must be letters and digits.

    >>> extra_headers({"caller": "+1", "lang": "en"})
    'vkcaller=2b31,lang=en'
    """
    reverse = {v: k for k, v in _HEX_KEYS.items()}
    pairs = []
    for key, value in values.items():
        if not value:
            continue
        if key in reverse:
            pairs.append(f"{reverse[key]}={value.encode('utf-8').hex()}")
        elif _ALNUM.fullmatch(key) and _ALNUM.fullmatch(value):
            pairs.append(f"{key}={value}")
        else:
            raise ConfigError(
                f"plivo: extraHeaders allow only letters and digits; {key!r} does not fit"
            )
    text = ",".join(pairs)
    if len(text) > _MAX_EXTRA_HEADERS:
        raise ConfigError(
            f"plivo: extraHeaders is {len(text)} bytes, over Plivo's {_MAX_EXTRA_HEADERS}"
        )
    return text


def parse_extra_headers(raw: Any) -> dict[str, str]:
    """The ``extra_headers`` of a ``start`` as a dict: ``k=v`` pairs split on ``,`` or ``;``
    (or a JSON object), an ``X-PH-`` prefix dropped, voicekit's hex values decoded.

    >>> parse_extra_headers("X-PH-vkcallee=2b32;lang=en")
    {'callee': '+2', 'lang': 'en'}
    """
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str) and raw.lstrip().startswith("{"):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise ProtocolError("plivo: 'start' extra_headers is not valid JSON") from None
    if isinstance(raw, dict):
        pairs = [(str(k), str(v)) for k, v in raw.items()]
    elif isinstance(raw, str):
        pairs = [
            (k.strip(), v.strip())
            for k, _, v in (p.partition("=") for p in re.split(r"[;,]", raw) if p.strip())
        ]
    else:
        raise ProtocolError("plivo: 'start' extra_headers must be a string")
    out: dict[str, str] = {}
    for key, value in pairs:
        if key[:5].lower() == "x-ph-":
            key = key[5:]
        if key in _HEX_KEYS:
            try:
                out[_HEX_KEYS[key]] = bytes.fromhex(value).decode("utf-8")
            except (ValueError, binascii.Error):
                raise ProtocolError(f"plivo: extra header {key!r} is not hex-encoded") from None
        elif key:
            out[key] = value
    return out


def _same_stream(state: PlivoState, event: str, data: Mapping[str, Any]) -> None:
    stream = data.get("streamId")
    if stream is not None and stream != state.stream_id:
        raise ProtocolError(f"plivo: '{event}' names another stream than this call's")


def _start(state: PlivoState, data: dict[str, Any]) -> tuple[PlivoState, list[Any]]:
    if state.phase == "started":
        raise ProtocolError("plivo: a second 'start' on the same stream")
    start = w.field(CARRIER, "start", data, "start")
    call_id = w.as_str(CARRIER, "start", start, "callId")
    stream_id = w.as_str(CARRIER, "start", start, "streamId")
    fmt = start.get("mediaFormat")
    if fmt is not None:
        if not isinstance(fmt, dict):
            raise ProtocolError("plivo: 'start' mediaFormat must be an object")
        encoding, rate = fmt.get("encoding"), fmt.get("sampleRate")
        if not str(encoding).startswith("audio/x-mulaw") or str(rate) != str(RATE):
            raise ProtocolError(
                f"plivo: the stream is {encoding} at {rate} Hz; voicekit needs audio/x-mulaw at "
                '8000 Hz (contentType="audio/x-mulaw;rate=8000" in the answer)'
            )
    headers = data.get("extra_headers", start.get("extra_headers"))
    parameters = parse_extra_headers(headers)
    caller = parameters.pop("caller", "")
    callee = parameters.pop("callee", "")
    started = CallStarted(
        call_id=call_id,
        carrier=CARRIER,
        acknowledges=True,
        t=state.t,
        caller=caller,
        callee=callee,
        stream_id=stream_id,
        parameters=parameters,
    )
    return replace(state, phase="started", call_id=call_id, stream_id=stream_id), [started]


def _decode(state: PlivoState, message: WireMessage, *, cap: int) -> tuple[PlivoState, list[Any]]:
    data = w.parse(CARRIER, message, cap)
    event = data["event"]
    if state.phase == "stopped":
        raise ProtocolError(f"plivo: '{event}' after the stream stopped")
    if event == "start":
        return _start(state, data)
    if event == "stop":
        return replace(state, phase="stopped"), [CallEnded("hangup", t=state.t)]
    if event in ("playFailed", "error"):
        reason = next(
            (str(data[k]) for k in ("reason", "error", "message", "description") if data.get(k)),
            "no detail",
        )
        what = "could not play our audio" if event == "playFailed" else "reported an error"
        ended = CallEnded("error", detail=f"plivo {what}: {reason[:200]}", t=state.t)
        return replace(state, phase="stopped"), [ended]
    if event not in ("media", "dtmf", "playedStream", "played", "clearedAudio"):
        raise ProtocolError(f"plivo: unknown event {event[:40]!r}")
    if state.phase != "started":
        raise ProtocolError(f"plivo: '{event}' before 'start'")
    _same_stream(state, event, data)
    if event == "media":
        media = w.field(CARRIER, "media", data, "media")
        track = media.get("track", "inbound")
        if track == "outbound":
            return state, []
        if track != "inbound":
            raise ProtocolError(f"plivo: 'media' has an unknown track {str(track)[:20]!r}")
        raw = w.payload_bytes(CARRIER, "media", media)
        if not raw:
            return state, []
        chunk = w.pcmu_chunk(raw, state.samples, RATE)
        return replace(state, samples=state.samples + len(raw)), [chunk]
    if event == "dtmf":
        body = data.get("dtmf")
        value = body.get("digit") if isinstance(body, dict) else data.get("digit", body)
        return state, [Dtmf(w.digit(CARRIER, value), t=state.t)]
    if event == "clearedAudio":  # Plivo never answers the checkpoints it cleared
        return replace(state, cleared=()), []
    name = data.get("name")
    pending, cleared, heard = w.mark_echoed(CARRIER, state.pending, state.cleared, name)
    state = replace(state, pending=pending, cleared=cleared)
    return state, [Played(str(name), t=state.t)] if heard else []


def _encode(state: PlivoState, item: Any) -> tuple[PlivoState, list[WireMessage]]:
    if not isinstance(item, AudioChunk | Mark | Interrupted):
        return state, []
    if state.phase == "stopped":
        return state, []
    if state.phase != "started":
        raise ProtocolError(f"plivo: cannot send {type(item).__name__} before 'start'")
    if isinstance(item, AudioChunk):
        if item.frames == 0:
            return state, []
        media = {"contentType": "audio/x-mulaw", "sampleRate": RATE}
        media["payload"] = w.encode_payload(item)
        return state, [_dumps({"event": "playAudio", "media": media})]
    if isinstance(item, Mark):
        pending = w.mark_sent(CARRIER, state.pending, item.name)
        message = {"event": "checkpoint", "streamId": state.stream_id, "name": item.name}
        return replace(state, pending=pending), [_dumps(message)]
    pending, cleared = w.marks_cleared(state.pending, state.cleared)
    message = {"event": "clearAudio", "streamId": state.stream_id}
    return replace(state, pending=pending, cleared=cleared), [_dumps(message)]


def codec(*, max_message: int = 64 * 1024) -> Codec[PlivoState]:
    """The Plivo Audio Streams codec; ``max_message`` is the inbound size cap."""
    if not isinstance(max_message, int) or max_message <= 0:
        raise ConfigError(f"plivo: max_message must be a positive int, got {max_message!r}")

    def decode(state: PlivoState, message: WireMessage) -> tuple[PlivoState, list[Any]]:
        return _decode(state, message, cap=max_message)

    return Codec(
        name=CARRIER,
        rate=RATE,
        initial=PlivoState,
        decode=decode,
        encode=_encode,
        acknowledges=True,
        max_message=max_message,
    )


def dtmf_message(digits: str) -> str:
    """The ``sendDTMF`` message that plays ``digits`` into the call (not part of
    :func:`codec`'s ``encode``: a caller's own key presses flow past the agent and must never
    be echoed back by accident).

    >>> dtmf_message("12#")
    '{"event":"sendDTMF","dtmf":"12#"}'
    """
    if not isinstance(digits, str) or not digits or any(d not in w.DIGITS for d in digits):
        raise ConfigError(f"plivo: sendDTMF takes keypad keys (0-9, *, #, A-D), got {digits!r}")
    return _dumps({"event": "sendDTMF", "dtmf": digits})


def answer_xml(
    stream_url: str,
    *,
    caller: str = "",
    callee: str = "",
    token: str = "",
    parameters: Mapping[str, str] | None = None,
    keep_call_alive: bool = True,
) -> str:
    """The answer XML that streams the call to ``stream_url``: bidirectional, the caller's
    track, μ-law 8 kHz, and ``caller``/``callee``/``token`` (and ``parameters``) in
    ``extraHeaders`` — not in the URL, which ends up in access logs.

    >>> print(answer_xml("wss://example.test/plivo/media", token="t0k"))
    <?xml version="1.0" encoding="UTF-8"?><Response><Stream bidirectional="true" audioTrack="inbound" keepCallAlive="true" contentType="audio/x-mulaw;rate=8000" extraHeaders="vktoken=74306b">wss://example.test/plivo/media</Stream></Response>
    """  # noqa: E501
    if not isinstance(stream_url, str) or not stream_url.startswith(("wss://", "ws://")):
        raise ConfigError("plivo: the stream URL must start with wss:// (or ws://)")
    headers = extra_headers(
        {**(parameters or {}), "caller": caller, "callee": callee, TOKEN_PARAMETER: token}
    )
    attributes = (
        'bidirectional="true" audioTrack="inbound" '
        f'keepCallAlive="{"true" if keep_call_alive else "false"}" '
        'contentType="audio/x-mulaw;rate=8000"'
    )
    if headers:
        attributes += f" extraHeaders={quoteattr(headers)}"
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        f"<Stream {attributes}>{escape(stream_url)}</Stream></Response>"
    )


def webhook_call(form: Mapping[str, str]) -> tuple[str, str, str]:
    """``(call_id, caller, callee)`` from the form of Plivo's answer request (``CallUUID``,
    ``From``, ``To``); a form without ``CallUUID`` is a :class:`~voicekit.ProtocolError`.

    >>> webhook_call({"CallUUID": "c-1", "From": "+15550001111", "To": "+15550002222"})[0]
    'c-1'
    """
    call_id = form.get("CallUUID") or ""
    if not call_id:
        raise ProtocolError("plivo: the answer request has no CallUUID")
    return call_id, form.get("From", ""), form.get("To", "")


def signature_v3(auth_token: str, url: str, params: Mapping[str, str], nonce: str) -> str:
    """Plivo's ``X-Plivo-Signature-V3`` of a POST to ``url`` with form ``params``: base64
    HMAC-SHA256, keyed with the auth token, of the URL (its own query sorted, after a ``?``),
    every POST parameter's name and value sorted by name, then ``.`` and the nonce (the
    ``X-Plivo-Signature-V3-Nonce`` header).

    >>> signature_v3("token", "https://example.test/plivo/voice", {"CallUUID": "c-1"}, "12345")
    'hTachq6+Nb+ugA23ELd2iPmHEJsNmGT+fKYatGaV4o4='
    """
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    query = "&".join(f"{k}={v}" for k, v in sorted(parse_qsl(parts.query, keep_blank_values=True)))
    if params or query:
        base += "?" + query
        if query and params:
            base += "."
    base += "".join(k + params[k] for k in sorted(params))
    digest = hmac.new(auth_token.encode(), f"{base}.{nonce}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_signature(
    auth_token: str, url: str, params: Mapping[str, str], nonce: str, given: str
) -> bool:
    """True when ``given`` (the header: one signature, or several separated by commas when
    more than one auth token is active) holds the right V3 signature (constant-time)."""
    if not nonce or not given:
        return False
    expected = signature_v3(auth_token, url, params, nonce)
    return any(hmac.compare_digest(expected, g.strip()) for g in given.split(","))
