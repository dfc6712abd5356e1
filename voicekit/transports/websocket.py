"""voicekit's own WebSocket protocol (the server's ``/ws`` route), for your clients and browsers.

Audio is raw **16-bit little-endian mono PCM at 16 kHz** in *binary* frames, both ways. Control
messages are JSON *text* frames with a ``"type"``:

Client -> server

* ``{"type": "start", "call_id": "…", "caller": "…", "callee": "…", "acks": true,
  "token": "…", "parameters": {…}}`` — first, exactly once; every field optional (``call_id``
  defaults to a fresh id; ``acks`` says the client answers every ``mark`` with ``played``;
  ``token`` is checked when the server requires one; ``events`` asks for the display messages
  below);
* binary frames — the caller's audio (an even number of bytes);
* ``{"type": "dtmf", "digit": "5"}``, ``{"type": "played", "name": "…"}`` (the audio up to
  that mark has been played), ``{"type": "stop"}`` (hang up).

Server -> client: binary frames of the agent's audio, ``{"type": "mark", "name": "…"}`` after
each sentence, ``{"type": "clear"}`` (drop the audio not yet played: the caller barged in).
With ``"events": true`` in ``start`` (the browser page asks for it) the server also sends what a
page shows: ``{"type": "speech", "state": "started"|"stopped"}``, ``{"type": "transcript",
"text": "…", "final": true}``, ``{"type": "turn", "text": "…"}`` (the user's turn ended),
``{"type": "reply"}``, ``{"type": "tool_call", "name": "…", "arguments": {…}}``,
``{"type": "tool_result", "name": "…", "content": "…"}``, ``"text"`` in each ``mark`` (the
sentence spoken up to it) and ``{"type": "metrics", "spans": [[label, start, end], …],
"voice_to_voice": s}`` (a turn's latency, from :func:`voicekit.web.turn_meter`).

>>> import json
>>> s, events = codec.decode(codec.initial(), json.dumps({"type": "start", "call_id": "c1"}))
>>> events
[CallStarted(call_id='c1', carrier='ws', acknowledges=False, t=0.0, caller='', callee='', stream_id='', parameters=FrozenDict({'token': ''}))]
>>> s, events = codec.decode(s, b"\\x01\\x00\\xff\\xff")
>>> events[0].samples.tolist()
[1, -1]
"""  # noqa: E501

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._errors import AudioError, ProtocolError
from .._frozen import FrozenDict
from .._metrics import TurnMetrics
from ..events import (
    AudioChunk,
    CallEnded,
    CallStarted,
    Dtmf,
    Interrupted,
    Mark,
    Played,
    ReplyStarted,
    SpeechStarted,
    SpeechStopped,
    ToolCall,
    ToolResult,
    Transcript,
    TurnEnded,
)
from ..session import new_call_id
from ._codec import Codec, WireMessage

__all__ = ["MAX_MESSAGE", "RATE", "WsState", "codec", "decode", "encode"]

RATE = 16000
MAX_MESSAGE = 64 * 1024
_DIGITS = frozenset("0123456789*#ABCD")


@dataclass(frozen=True, slots=True)
class WsState:
    """``phase`` (``"new"``, ``"started"``, ``"stopped"``) and the caller audio received (s).
    The ``start`` message's ``token`` travels in ``CallStarted.parameters["token"]``;
    ``events``: the client asked for the display messages."""

    phase: str = "new"
    t: float = 0.0
    events: bool = False


def _fail(message: str) -> ProtocolError:
    return ProtocolError(f"ws: {message}")


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise _fail(f"'{key}' must be a string, got {type(value).__name__}")
    return value


def decode(state: WsState, message: WireMessage) -> tuple[WsState, list[Any]]:
    """One client message -> the new state and its events (see the module docstring)."""
    if len(message) > MAX_MESSAGE:
        raise _fail(f"message of {len(message)} bytes is over the {MAX_MESSAGE} cap")
    if state.phase == "stopped":
        raise _fail("message after 'stop'")
    if isinstance(message, bytes):
        if state.phase != "started":
            raise _fail("audio before 'start'")
        if len(message) % 2:
            raise _fail(f"audio frame of {len(message)} bytes is not 16-bit samples")
        samples = np.frombuffer(message, dtype="<i2").astype(np.int16)
        chunk = AudioChunk(samples, RATE, state.t)
        return dataclasses.replace(state, t=chunk.end), [chunk]
    try:
        data = json.loads(message)
    except ValueError as exc:
        raise _fail(f"message is not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise _fail("a text message must be a JSON object with a string 'type'")
    kind = data["type"]
    if kind == "start":
        if state.phase != "new":
            raise _fail("a second 'start'")
        params = data.get("parameters") or {}
        if not isinstance(params, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in params.items()
        ):
            raise _fail("'parameters' must map names to strings")
        started = CallStarted(
            call_id=_text(data, "call_id") or new_call_id(),
            carrier="ws",
            acknowledges=data.get("acks") is True,
            caller=_text(data, "caller"),
            callee=_text(data, "callee"),
            parameters=FrozenDict({**params, "token": _text(data, "token")}),
        )
        return WsState("started", 0.0, data.get("events") is True), [started]
    if state.phase != "started":
        raise _fail(f"'{kind}' before 'start'")
    if kind == "dtmf":
        digit = _text(data, "digit")
        if digit not in _DIGITS:
            raise _fail(f"'digit' {digit!r} is not a keypad key")
        return state, [Dtmf(digit, state.t)]
    if kind == "played":
        return state, [Played(_text(data, "name"), state.t)]
    if kind == "stop":
        return dataclasses.replace(state, phase="stopped"), [CallEnded("hangup", t=state.t)]
    raise _fail(f"unknown message type {kind!r}")


def encode(state: WsState, item: Any) -> tuple[WsState, list[WireMessage]]:
    """One outbound item -> messages: audio (16 kHz) -> a binary frame, ``Mark`` -> ``mark``,
    ``Interrupted`` -> ``clear``; anything else -> ``[]``."""
    if isinstance(item, AudioChunk):
        if item.rate != RATE:
            raise AudioError(f"ws: outbound audio must be {RATE} Hz, got {item.rate} Hz")
        return state, [item.samples.astype("<i2").tobytes()]
    if isinstance(item, Mark):
        mark = {"type": "mark", "name": item.name}
        if state.events:
            mark["text"] = item.text
        return state, [json.dumps(mark)]
    if isinstance(item, Interrupted):
        return state, ['{"type": "clear"}']
    if state.events:
        shown = _display(item)
        if shown is not None:
            return state, [json.dumps(shown, default=str)]
    return state, []


def _display(item: Any) -> dict[str, Any] | None:
    """The display message of an outbound event, for a client that asked for ``events``."""
    if isinstance(item, SpeechStarted | SpeechStopped):
        return {"type": "speech", "state": "started" if isinstance(item, SpeechStarted)
                else "stopped"}
    if isinstance(item, Transcript):
        return {"type": "transcript", "text": item.text, "final": item.final}
    if isinstance(item, TurnEnded):
        return {"type": "turn", "text": item.text}
    if isinstance(item, ReplyStarted):
        return {"type": "reply", "turn": item.turn}
    if isinstance(item, ToolCall):
        return {"type": "tool_call", "name": item.name, "arguments": item.arguments}
    if isinstance(item, ToolResult):
        return {"type": "tool_result", "name": item.name, "content": item.content[:500]}
    if isinstance(item, TurnMetrics):
        return {"type": "metrics", "text": item.text, "interrupted": item.interrupted,
                "spans": [[label, round(a, 4), round(b, 4)] for label, a, b in item.spans()],
                "voice_to_voice": item.voice_to_voice}
    return None


codec: Codec[WsState] = Codec(
    name="ws",
    rate=RATE,
    initial=WsState,
    decode=decode,
    encode=encode,
    frame_ms=20,
    acknowledges=False,
    max_message=MAX_MESSAGE,
)
"""The ``/ws`` codec."""
