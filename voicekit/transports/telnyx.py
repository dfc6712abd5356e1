"""Telnyx Media Streaming (bidirectional, RTP PCMU 8 kHz) as a :class:`~voicekit.transports.Codec`.

Telnyx opens a WebSocket to the ``stream_url`` of the call and sends JSON text frames:
``connected`` (with the ``stream_auth_token`` of the answer, if one was given), ``start``
(``start.call_control_id``, ``from``, ``to``, ``custom_parameters``, ``media_format``),
``media`` (``media.track``, ``media.payload``: base64 μ-law 8 kHz; Telnyx does not promise
their order, so a frame whose ``media.chunk`` number is not above every one before it — late or
repeated — is dropped rather than played out of place), ``dtmf``, ``mark`` (the echo
of a mark we sent, once the audio before it has played), ``error`` and ``stop``. We send
``media`` frames (at least 20 ms: a shorter one is padded with silence), ``mark`` and ``clear``.

How "heard" is decided: Telnyx echoes every ``mark`` once the audio before it has played, and
returns the marks still queued when it gets a ``clear``. So the codec acknowledges
(``CallStarted.acknowledges`` is True) and keeps the marks it sent in its state: the echo of a
pending mark is a :class:`~voicekit.Played`; the echo of a mark whose audio a ``clear`` threw
away is dropped (nothing was heard); an echo of a mark never sent is a protocol error. With
``codec(marks=False)`` (for accounts that do not echo marks) no mark is sent and the call says
``acknowledges=False``: the agent then counts what it handed on as heard.

>>> from voicekit.events import Mark
>>> t = codec()
>>> state = t.initial()
>>> state, events = t.decode(state, '{"event": "connected", "version": "1.0.0"}')
>>> state, events = t.decode(state, '{"event": "start", "stream_id": "s-1", '
...     '"start": {"call_control_id": "v3:abc", "from": "+15550001111", "to": "+15550002222"}}')
>>> events[0].call_id, events[0].carrier, events[0].acknowledges
('v3:abc', 'telnyx', True)
>>> state, events = t.decode(state, '{"event": "media", "media": '
...     '{"track": "inbound", "payload": "//////////8="}}')
>>> events
[AudioChunk(8 samples, rate=8000, t=0.000, duration=1.0 ms)]
>>> t.encode(state, Mark("m1"))[1]
['{"event":"mark","mark":{"name":"m1"}}']
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from xml.sax.saxutils import quoteattr

from .._errors import ConfigError, ProtocolError
from ..audio import ulaw_encode_chunk
from ..events import AudioChunk, CallEnded, CallStarted, Dtmf, Interrupted, Mark, Played
from . import _json_wire as w
from ._codec import Codec, WireMessage

__all__ = [
    "CARRIER",
    "MIN_FRAME",
    "RATE",
    "TOKEN_PARAMETER",
    "TelnyxState",
    "answer_command",
    "codec",
    "texml",
    "verify_webhook",
    "webhook_call",
]

CARRIER = "telnyx"
RATE = 8000
TOKEN_PARAMETER = "token"
"""The start parameter that carries the single-call token (a TeXML ``<Parameter>``, or the
``stream_auth_token`` of a Call Control answer, which Telnyx sends in ``connected``)."""

_TOKEN_FIELD = "x-telnyx-streaming-auth-token"
MIN_FRAME = RATE // 50
"""Telnyx plays RTP chunks of 20 ms to 30 s: a shorter outbound frame is padded with silence."""


@dataclass(frozen=True, slots=True)
class TelnyxState:
    """Where a Telnyx stream is: ``phase`` is ``"new"``, ``"connected"``, ``"started"`` or
    ``"stopped"``; ``samples`` counts the inbound samples decoded (their time base);
    ``pending`` are the marks sent and not echoed yet, ``cleared`` the ones a clear threw away;
    ``chunk`` is the highest ``media.chunk`` number seen."""

    phase: str = "new"
    call_id: str = ""
    stream_id: str = ""
    token: str = ""
    samples: int = 0
    pending: tuple[str, ...] = ()
    cleared: tuple[str, ...] = ()
    chunk: int = 0

    @property
    def t(self) -> float:
        """Inbound stream time, in seconds."""
        return self.samples / RATE


def _chunk_number(media: Mapping[str, Any]) -> int | None:
    """``media.chunk`` as a number (Telnyx sends it as a string), or None when absent."""
    value = media.get("chunk")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _dumps(message: Mapping[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def _start(state: TelnyxState, data: dict[str, Any], marks: bool) -> tuple[TelnyxState, list[Any]]:
    if state.phase == "started":
        raise ProtocolError("telnyx: a second 'start' on the same stream")
    start = w.field(CARRIER, "start", data, "start")
    call_id = w.as_str(CARRIER, "start", start, "call_control_id")
    caller = w.as_str(CARRIER, "start", start, "from", required=False)
    callee = w.as_str(CARRIER, "start", start, "to", required=False)
    stream_id = w.as_str(CARRIER, "start", data, "stream_id", required=False)
    fmt = start.get("media_format")
    if fmt is not None:
        if not isinstance(fmt, dict):
            raise ProtocolError("telnyx: 'start' media_format must be an object")
        encoding, rate = fmt.get("encoding"), fmt.get("sample_rate")
        if str(encoding).upper() != "PCMU" or str(rate) != str(RATE):
            raise ProtocolError(
                f"telnyx: the stream is {encoding} at {rate} Hz; voicekit needs PCMU at 8000 Hz "
                "(stream_codec / bidirectionalCodec PCMU in the answer)"
            )
    custom = start.get("custom_parameters") or {}
    if not isinstance(custom, dict):
        raise ProtocolError("telnyx: 'start' custom_parameters must be an object")
    parameters = {str(k): str(v) for k, v in custom.items() if v is not None}
    if state.token and TOKEN_PARAMETER not in parameters:
        parameters[TOKEN_PARAMETER] = state.token
    started = CallStarted(
        call_id=call_id,
        carrier=CARRIER,
        acknowledges=marks,
        t=state.t,
        caller=caller,
        callee=callee,
        stream_id=stream_id,
        parameters=parameters,
    )
    return replace(state, phase="started", call_id=call_id, stream_id=stream_id), [started]


def _decode(
    state: TelnyxState, message: WireMessage, *, marks: bool, cap: int
) -> tuple[TelnyxState, list[Any]]:
    data = w.parse(CARRIER, message, cap)
    event = data["event"]
    if state.phase == "stopped":
        raise ProtocolError(f"telnyx: '{event}' after the stream stopped")
    if event == "connected":
        if state.phase != "new":
            raise ProtocolError(f"telnyx: 'connected' when the stream is already {state.phase}")
        body = data.get("connected")
        token = body.get(_TOKEN_FIELD) if isinstance(body, dict) else None
        return replace(state, phase="connected", token=token if isinstance(token, str) else ""), []
    if event == "start":
        return _start(state, data, marks)
    if event == "stop":
        return replace(state, phase="stopped"), [CallEnded("hangup", t=state.t)]
    if event == "error":
        body = data.get("payload")
        body = body if isinstance(body, dict) else {}
        detail = " ".join(
            str(body[k]) for k in ("code", "title", "detail") if body.get(k) not in (None, "")
        )
        ended = CallEnded("error", detail=f"telnyx reported an error: {detail or '?'}", t=state.t)
        return replace(state, phase="stopped"), [ended]
    if event not in ("media", "dtmf", "mark"):
        raise ProtocolError(f"telnyx: unknown event {event[:40]!r}")
    if state.phase != "started":
        raise ProtocolError(f"telnyx: '{event}' before 'start'")
    if event == "media":
        media = w.field(CARRIER, "media", data, "media")
        track = media.get("track", "inbound")
        if track == "outbound":  # our own audio, when both tracks are streamed
            return state, []
        if track != "inbound":
            raise ProtocolError(f"telnyx: 'media' has an unknown track {str(track)[:20]!r}")
        raw = w.payload_bytes(CARRIER, "media", media)
        number = _chunk_number(media)
        if number is not None:
            if number <= state.chunk:  # late or repeated: Telnyx does not promise the order
                return state, []
            state = replace(state, chunk=number)
        if not raw:
            return state, []
        chunk = w.pcmu_chunk(raw, state.samples, RATE)
        return replace(state, samples=state.samples + len(raw)), [chunk]
    if event == "dtmf":
        key = w.digit(CARRIER, w.field(CARRIER, "dtmf", data, "dtmf").get("digit"))
        return state, [Dtmf(key, t=state.t)]
    name = w.field(CARRIER, "mark", data, "mark").get("name")
    pending, cleared, heard = w.mark_echoed(CARRIER, state.pending, state.cleared, name)
    state = replace(state, pending=pending, cleared=cleared)
    return state, [Played(str(name), t=state.t)] if heard else []


def _encode(state: TelnyxState, item: Any, *, marks: bool) -> tuple[TelnyxState, list[WireMessage]]:
    if not isinstance(item, AudioChunk | Mark | Interrupted):
        return state, []
    if state.phase == "stopped":
        return state, []  # the call is over: nothing more goes out
    if state.phase != "started":
        raise ProtocolError(f"telnyx: cannot send {type(item).__name__} before 'start'")
    if isinstance(item, AudioChunk):
        if item.frames == 0:
            return state, []
        raw = ulaw_encode_chunk(item).ljust(MIN_FRAME, b"\xff")  # μ-law silence pads
        payload = base64.b64encode(raw).decode("ascii")
        return state, [_dumps({"event": "media", "media": {"payload": payload}})]
    if isinstance(item, Mark):
        if not marks:
            return state, []
        pending = w.mark_sent(CARRIER, state.pending, item.name)
        return replace(state, pending=pending), [
            _dumps({"event": "mark", "mark": {"name": item.name}})
        ]
    pending, cleared = w.marks_cleared(state.pending, state.cleared)
    return replace(state, pending=pending, cleared=cleared), [_dumps({"event": "clear"})]


def codec(*, marks: bool = True, max_message: int = 64 * 1024) -> Codec[TelnyxState]:
    """The Telnyx Media Streaming codec. ``marks=False``: send no marks and do not
    acknowledge (see the module docstring); ``max_message``: the inbound size cap."""
    if not isinstance(max_message, int) or max_message <= 0:
        raise ConfigError(f"telnyx: max_message must be a positive int, got {max_message!r}")

    def decode(state: TelnyxState, message: WireMessage) -> tuple[TelnyxState, list[Any]]:
        return _decode(state, message, marks=marks, cap=max_message)

    def encode(state: TelnyxState, item: Any) -> tuple[TelnyxState, list[WireMessage]]:
        return _encode(state, item, marks=marks)

    return Codec(
        name=CARRIER,
        rate=RATE,
        initial=TelnyxState,
        decode=decode,
        encode=encode,
        acknowledges=marks,
        max_message=max_message,
    )


def answer_command(stream_url: str, *, token: str = "") -> dict[str, Any]:
    """The parameters of the Call Control ``answer`` command (``POST
    /v2/calls/{call_control_id}/actions/answer``) that stream the call to ``stream_url``:
    the caller's track in, RTP PCMU 8 kHz both ways, our audio to this leg only. ``token``
    goes in ``stream_auth_token`` (Telnyx returns it in ``connected``). The caller and callee
    are not put in the URL: Telnyx sends them in ``start``, and URLs end up in access logs.

    >>> answer_command("wss://example.test/telnyx/media", token="t0k")["stream_bidirectional_codec"]
    'PCMU'
    """
    _check_ws_url(stream_url)
    command: dict[str, Any] = {
        "stream_url": stream_url,
        "stream_track": "inbound_track",
        "stream_bidirectional_mode": "rtp",
        "stream_bidirectional_codec": "PCMU",
        "stream_bidirectional_sampling_rate": RATE,
        "stream_bidirectional_target_legs": "self",
    }
    if token:
        command["stream_auth_token"] = token
    return command


def texml(stream_url: str, *, token: str = "", parameters: Mapping[str, str] | None = None) -> str:
    """The TeXML answer that connects the call to ``stream_url`` (bidirectional RTP PCMU
    8 kHz); ``token`` and ``parameters`` become ``<Parameter>``s, which Telnyx sends in
    ``start.custom_parameters``.

    >>> print(texml("wss://example.test/telnyx/media", token="t0k"))
    <?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://example.test/telnyx/media" track="inbound_track" bidirectionalMode="rtp" bidirectionalCodec="PCMU" bidirectionalSamplingRate="8000"><Parameter name="token" value="t0k"/></Stream></Connect></Response>
    """  # noqa: E501
    _check_ws_url(stream_url)
    params = dict(parameters or {})
    if token:
        params[TOKEN_PARAMETER] = token
    children = "".join(
        f"<Parameter name={quoteattr(str(k))} value={quoteattr(str(v))}/>"
        for k, v in params.items()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
        f'<Stream url={quoteattr(stream_url)} track="inbound_track" bidirectionalMode="rtp" '
        f'bidirectionalCodec="PCMU" bidirectionalSamplingRate="{RATE}">{children}</Stream>'
        "</Connect></Response>"
    )


def webhook_call(form: Mapping[str, str]) -> tuple[str, str, str]:
    """``(call_id, caller, callee)`` from the form of a TeXML voice webhook (``CallSid``,
    ``From``, ``To``); a form without ``CallSid`` is a :class:`~voicekit.ProtocolError`.

    >>> webhook_call({"CallSid": "v3:abc", "From": "+15550001111", "To": "+15550002222"})[0]
    'v3:abc'
    """
    call_id = form.get("CallSid") or form.get("CallControlId") or ""
    if not call_id:
        raise ProtocolError("telnyx: the voice webhook has no CallSid")
    return call_id, form.get("From", ""), form.get("To", "")


def _check_ws_url(url: str) -> None:
    if not isinstance(url, str) or not url.startswith(("wss://", "ws://")):
        raise ConfigError("telnyx: the stream URL must start with wss:// (or ws://)")


WEBHOOK_TOLERANCE = 300.0
"""How old (or how far in the future), in seconds, a signed webhook may be."""


def verify_webhook(
    public_key: str,
    body: bytes,
    signature: str,
    timestamp: str,
    *,
    now: float | None = None,
    tolerance: float = WEBHOOK_TOLERANCE,
) -> bool:
    """True when ``signature`` (the ``telnyx-signature-ed25519`` header, base64) is Telnyx's
    Ed25519 signature of ``"{timestamp}|{body}"`` under ``public_key`` (the account's public
    key, base64, as in ``TELNYX_PUBLIC_KEY``) and ``timestamp`` (``telnyx-timestamp``, Unix
    seconds) is within ``tolerance`` of ``now``. Needs ``cryptography`` (the ``serve`` extra).
    """
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError as exc:  # pragma: no cover - the serve extra installs it
        raise ConfigError(
            'telnyx: checking webhook signatures needs cryptography: pip install "voicekit[serve]"'
        ) from exc
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise ConfigError("telnyx: TELNYX_PUBLIC_KEY is not a base64 Ed25519 public key") from exc
    if not timestamp.isdigit():
        return False
    clock = time.time() if now is None else now
    if abs(clock - int(timestamp)) > tolerance:
        return False
    try:
        key.verify(base64.b64decode(signature, validate=True), timestamp.encode() + b"|" + body)
    except (binascii.Error, ValueError, InvalidSignature):
        return False
    return True
