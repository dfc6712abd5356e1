"""Genesys AudioHook (protocol version 2): the wire protocol as a
:class:`~voicekit.transports.Codec` and its session state as a frozen value.

A Genesys Cloud contact center opens a WebSocket to us (the *server*) and streams a call: JSON
control messages in text frames, audio in binary frames (PCMU or L16 at 8 kHz, mono or stereo
interleaved ``external`` (the caller) / ``internal`` (the agent)). Every message has the
envelope ``version: "2"``, ``id`` (the session id of the handshake), ``type``, ``seq`` and a
``parameters`` object (``{}`` when empty). Client messages also carry ``serverseq`` (the last
server ``seq`` they saw) and ``position`` (``PT<seconds>S``); server messages carry
``clientseq`` (the ``seq`` of the last client message processed).

The rules, each one checked by :func:`decode` (a violation raises
:class:`~voicekit.ProtocolError` whose text names the rule; the connection answers it with
``disconnect`` ``reason: "error"``): the client's ``seq`` is the previous one + 1, its
``serverseq`` never exceeds ours, its ``id`` is the session's, ``parameters`` is an object,
``open`` comes first and once, text messages are at most 64 KiB. Audio before ``opened`` or
while paused is dropped and counted (``state.dropped``).

The client sends ``open`` (answered with ``opened``, exactly one offered media format
selected), ``ping`` (``pong``), ``close`` (``closed``), ``update``, ``paused``/``resumed`` (its
answer to our ``pause``/``resume``, or its own), ``discarded``, ``error``, and for the Audio
Connector ``dtmf``, ``playback_started``, ``playback_completed``. We send ``pause``, ``resume``,
``event`` (barge-in, transcripts), ``reconnect`` and ``disconnect``.

Languages (codes like ``en-US``): ``open`` may name one and ask for ``supportedLanguages``;
``update`` names a new one. :func:`select_language` picks ours; the bot falls back to its
default (the first supported), a monitor waits paused (``startPaused``, or ``pause``) until an
``update`` names one it supports, then ``resume`` s. The selected language is
``CallStarted.parameters["language"]``; a change comes inbound as :class:`LanguageChanged`.
L16 audio is little-endian (as Genesys' reference implementation reads it). ``opened`` carries
``discardTo`` when the server asks for audio only from that position on; ``discarded`` and
``resumed`` move the position clock over the audio skipped.

>>> import json
>>> state = initial_state("e160e428-53e2-487c-977d-96989bf5c99d")
>>> state, events = decode(state, json.dumps(open_message(state.session_id, 1)))
>>> reply = json.loads(events[0].message)
>>> reply["type"], reply["seq"], reply["clientseq"], reply["parameters"]["media"][0]["channels"]
('opened', 1, 1, ['external', 'internal'])
>>> events[1].call_id, state.phase
('a4b6b4e2-3f6b-4f9e-8d7c-0d2b8c9f4a11', 'open')
>>> state, events = decode(state, json.dumps(client_message(state, "ping", 2)))
>>> json.loads(events[0].message)["parameters"]
{}
>>> decode(state, json.dumps(client_message(state, "ping", 9)))
Traceback (most recent call last):
...
voicekit._errors.ProtocolError: audiohook: seq 9 is not the previous seq + 1 (expected 3)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .._errors import AudioError, ConfigError, ProtocolError
from .._frozen import FrozenDict
from ..audio import ulaw_decode, ulaw_encode
from ..events import AudioChunk, CallEnded, CallStarted, Dtmf, Interrupted, Played
from ._codec import Codec, WireMessage

__all__ = [
    "DTMF_DIGITS",
    "MAX_MESSAGE",
    "MODES",
    "NULL_UUID",
    "PACKET_BYTES",
    "AudioHookState",
    "ChannelAudio",
    "Disconnect",
    "EventEntities",
    "LanguageChanged",
    "Outgoing",
    "Pause",
    "RateLimited",
    "Reconnect",
    "Resume",
    "SetOutputVariables",
    "client_message",
    "codec",
    "decode",
    "disconnect",
    "encode",
    "format_duration",
    "initial_state",
    "open_message",
    "parse_duration",
    "select_language",
    "select_media",
    "server_message",
    "transcript_entity",
]

RATE = 8000
MAX_MESSAGE = 65535
"""The largest text message accepted, in characters (64 KiB)."""
PACKET_BYTES = 1600
"""The size of the outbound audio packets: 200 ms of PCMU mono (Genesys rate-limits small
packets; 1,600 bytes is the documented safe size)."""
DTMF_DIGITS = frozenset("0123456789*#")
NULL_UUID = "00000000-0000-0000-0000-000000000000"
MODES = ("bot", "monitor")
"""``"bot"``: the Audio Connector (the agent answers the caller, audio both ways);
``"monitor"``: AudioHook Monitor / Transcription Connector (we listen and send transcripts)."""
CLIENT_TYPES = frozenset(
    {"open", "close", "ping", "update", "paused", "resumed", "discarded", "error", "dtmf",
     "playback_started", "playback_completed"}
)
_DURATION = re.compile(r"PT(\d+(?:\.\d+)?)S")
_LANGUAGE = re.compile(r"[a-z]{2,3}-[A-Za-z]{2,3}")
_OWN_PARAMETERS = frozenset({"organizationId", "mode", "language", "requestedLanguage",
                             "continues"})
_CHANNELS = ("external", "internal")


@dataclass(frozen=True, slots=True)
class AudioHookState:
    """Where an AudioHook session is, as a value.

    ``phase``: ``"new"`` (before ``open``), ``"open"``, ``"paused"``, ``"disconnecting"`` (we
    sent ``disconnect``; only ``close`` is awaited) or ``"closed"`` (we sent ``closed``).
    ``seq``: the last server seq sent; ``clientseq``: the seq of the last client message
    processed; ``position``: the client's latest ``position`` (s); ``samples``: the audio
    stream's position in samples per channel (received while open, plus what the client
    reports ``discarded``); ``dropped``: audio frames dropped (before ``opened``,
    while paused, after ``close``). ``media`` is the selected format (as offered), ``format``
    and ``channels`` its parts. ``probe`` is True for Genesys' connection probe (all-zero
    conversation id). ``pausing``/``resuming``: we asked and the client has not answered yet.
    ``language`` is the selected language (see :func:`select_language`), ``language_paused``
    True while a monitor session waits for a language it supports. ``discard_to``: the
    position (s) before which we do not want audio (``opened``'s ``discardTo``).
    """

    session_id: str
    mode: str = "bot"
    phase: str = "new"
    seq: int = 0
    clientseq: int = 0
    position: float = 0.0
    samples: int = 0
    dropped: int = 0
    media: FrozenDict = field(default_factory=FrozenDict)
    format: str = ""
    channels: tuple[str, ...] = ()
    probe: bool = False
    conversation_id: str = ""
    language: str = ""
    supported_languages: tuple[str, ...] = ()
    output_variables: FrozenDict = field(default_factory=FrozenDict)
    pausing: bool = False
    resuming: bool = False
    language_paused: bool = False
    discard_to: float = 0.0


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A server message :func:`decode` wants sent now (``opened``, ``pong``, ``closed``)."""

    message: str


@dataclass(frozen=True, slots=True)
class ChannelAudio:
    """Audio of one channel, at 8 kHz on the stream's position clock: ``channel`` is
    ``"internal"`` (the contact center's agent) or, in monitor mode, ``"external"`` (the
    caller). In bot mode the caller's channel is a plain :class:`~voicekit.AudioChunk`, for the
    agent."""

    channel: str
    chunk: AudioChunk


@dataclass(frozen=True, slots=True)
class RateLimited:
    """The client said ``error`` 429: send nothing for ``retry_after`` seconds."""

    retry_after: float
    message: str = ""


@dataclass(frozen=True, slots=True)
class LanguageChanged:
    """Inbound: the client's ``update`` selected another language (``language``, as spelled in
    the supported list), ``t`` seconds into the stream: the STT and the agent should follow."""

    language: str
    t: float = 0.0


@dataclass(frozen=True, slots=True)
class Reconnect:
    """Outbound: ask the client to reconnect (e.g. this server is draining): it opens a new
    session that names this one in ``continuedSessions``, then closes this one."""

    info: str = ""


@dataclass(frozen=True, slots=True)
class Pause:
    """Outbound: ask the client to pause the audio (it answers ``paused``)."""


@dataclass(frozen=True, slots=True)
class Resume:
    """Outbound: ask the client to resume the audio (it answers ``resumed``)."""


@dataclass(frozen=True, slots=True)
class EventEntities:
    """Outbound: an ``event`` message with these ``entities`` (``{"type", "data"}`` each)."""

    entities: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True, slots=True)
class SetOutputVariables:
    """Outbound: remember output variables (strings) for ``closed``/``disconnect``, so the
    Architect flow can route the call (e.g. ``{"action": "transfer"}``)."""

    values: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Outbound: end the session from our side: ``reason`` ``"completed"``,
    ``"unauthorized"`` or ``"error"``, an ``info`` text, output variables (strings) added to
    those already set."""

    reason: str = "completed"
    info: str = ""
    output_variables: Mapping[str, str] = field(default_factory=dict)


def initial_state(
    session_id: str,
    mode: str = "bot",
    supported_languages: Sequence[str] = (),
    discard_to: float = 0.0,
) -> AudioHookState:
    """The state of a session before ``open``; ``session_id`` is the handshake's
    ``Audiohook-Session-Id``. ``discard_to`` (s, default 0: all of it) asks the client in
    ``opened`` to drop the audio before that position."""
    if mode not in MODES:
        raise ConfigError(f"audiohook: mode must be one of {', '.join(MODES)}, got {mode!r}")
    bad = [c for c in supported_languages if not isinstance(c, str) or not _LANGUAGE.fullmatch(c)]
    if bad:
        raise ConfigError(f"audiohook: supported languages must be codes like 'en-US', not {bad!r}")
    if not math.isfinite(discard_to) or discard_to < 0:
        raise ConfigError(f"audiohook: discard_to must be finite and ≥ 0, got {discard_to!r}")
    return AudioHookState(session_id, mode, supported_languages=tuple(supported_languages),
                          discard_to=float(discard_to))


def select_language(requested: str, supported: Sequence[str]) -> str | None:
    """The language we use for ``requested`` (``open``'s or ``update``'s ``language``): the entry
    of ``supported`` equal to it ignoring case (Genesys' reference compares lower-cased codes),
    ``requested`` itself when we support any (``supported`` empty), else None.

    >>> select_language("en-us", ["en-US", "fr-FR"]), select_language("de-DE", ["en-US"])
    ('en-US', None)
    >>> select_language("pt-BR", [])
    'pt-BR'
    """
    if not supported:
        return requested
    for code in supported:
        if code.lower() == requested.lower():
            return code
    return None


def _language(params: Mapping[str, Any], kind: str, required: bool) -> str:
    value = params.get("language")
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not _LANGUAGE.fullmatch(value):
        raise _fail(f"'{kind}' language {value!r} is not a language code like 'en-US'")
    return value


def _continued(params: Mapping[str, Any]) -> str:
    """The id of the session an ``open`` continues (its first ``continuedSessions`` entry)."""
    entries = params.get("continuedSessions")
    if entries is None:
        return ""
    if not isinstance(entries, list):
        raise _fail("'open' continuedSessions must be a list")
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("id"), str) \
                or not entry["id"]:
            raise _fail("'open' continuedSessions entries need a string 'id'")
        for key in ("serverseq", "clientseq"):
            value = entry.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise _fail(f"'open' continuedSessions '{key}' must be a non-negative integer, "
                            f"got {value!r}")
    return str(entries[0]["id"]) if entries else ""


def _fail(message: str) -> ProtocolError:
    return ProtocolError(f"audiohook: {message}")


def parse_duration(value: Any, what: str = "position") -> float:
    """``"PT1.25S"`` -> 1.25 seconds (ISO 8601, seconds only, non-negative).

    >>> parse_duration("PT0S"), parse_duration("PT12.5S")
    (0.0, 12.5)
    >>> parse_duration("12.5")
    Traceback (most recent call last):
    ...
    voicekit._errors.ProtocolError: audiohook: position '12.5' is not a duration PT<seconds>S
    """
    if not isinstance(value, str) or not _DURATION.fullmatch(value):
        raise _fail(f"{what} {value!r} is not a duration PT<seconds>S")
    return float(value[2:-1])


def format_duration(seconds: float) -> str:
    """1.25 -> ``"PT1.25S"`` (at most millisecond precision, no trailing zeros).

    >>> format_duration(1.25), format_duration(0), format_duration(2.0004)
    ('PT1.25S', 'PT0S', 'PT2S')
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"audiohook: a duration must be finite and ≥ 0, got {seconds!r}")
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"PT{text}S"


def server_message(
    state: AudioHookState, type_: str, parameters: Mapping[str, Any] | None = None
) -> tuple[AudioHookState, str]:
    """The next server message: ``seq`` is the previous one + 1, ``clientseq`` the seq of the
    last client message processed, ``parameters`` always present (``{}`` when empty).

    >>> s, text = server_message(initial_state("abc"), "pong")
    >>> text
    '{"version":"2","id":"abc","type":"pong","seq":1,"clientseq":0,"parameters":{}}'
    """
    seq = state.seq + 1
    message = {
        "version": "2",
        "id": state.session_id,
        "type": type_,
        "seq": seq,
        "clientseq": state.clientseq,
        "parameters": dict(parameters or {}),
    }
    return replace(state, seq=seq), json.dumps(message, separators=(",", ":"))


def _int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(f"'{key}' must be a non-negative integer, got {value!r}")
    return value


def _envelope(message: str) -> dict[str, Any]:
    if len(message) > MAX_MESSAGE:
        raise _fail(f"text message of {len(message)} characters is over the 64 KiB limit")
    try:
        data = json.loads(message)
    except ValueError:
        raise _fail("text message is not valid JSON") from None
    if not isinstance(data, dict):
        raise _fail("text message is not a JSON object")
    if data.get("version") != "2":
        raise _fail(f"'version' must be \"2\", got {data.get('version')!r}")
    for key in ("id", "type"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise _fail(f"message has no string '{key}'")
    _int(data, "seq")
    _int(data, "serverseq")
    if not isinstance(data.get("parameters"), dict):
        raise _fail(f"'{data['type']}' message has no 'parameters' object")
    return data


def _media_ok(media: Any) -> bool:
    if not isinstance(media, Mapping):
        return False
    channels = media.get("channels")
    return (
        media.get("type") == "audio"
        and media.get("format") in ("PCMU", "L16")
        and media.get("rate") == RATE
        and isinstance(channels, list)
        and 1 <= len(channels) <= 2
        and all(c in _CHANNELS for c in channels)
        and len(set(channels)) == len(channels)
    )


def select_media(offered: Sequence[Any], mode: str = "bot") -> Mapping[str, Any] | None:
    """The one offered media format we take, as offered (None when none fits): PCMU before
    L16, stereo before mono (both channels are worth having: the Monitor transcribes both,
    the bot listens to the caller); in bot mode a format must carry the ``external`` channel
    (the caller). Among equals, the first offered.

    >>> offers = [{"type": "audio", "format": "PCMU", "channels": ["internal"], "rate": 8000},
    ...           {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}]
    >>> select_media(offers)["channels"], select_media(offers, "monitor")["channels"]
    (['external'], ['internal'])
    """
    best: tuple[int, int] | None = None
    chosen: Mapping[str, Any] | None = None
    for i, media in enumerate(offered):
        if not _media_ok(media):
            continue
        if mode == "bot" and "external" not in media["channels"]:
            continue
        rank = (0 if media["format"] == "PCMU" else 2) + (0 if len(media["channels"]) == 2 else 1)
        if best is None or (rank, i) < best:
            best, chosen = (rank, i), media
    return chosen


def _check_order(state: AudioHookState, data: Mapping[str, Any]) -> AudioHookState:
    seq, serverseq = data["seq"], data["serverseq"]
    if seq != state.clientseq + 1:
        raise _fail(f"seq {seq} is not the previous seq + 1 (expected {state.clientseq + 1})")
    if serverseq > state.seq:
        raise _fail(f"serverseq {serverseq} is higher than the last server seq {state.seq}")
    if data["id"] != state.session_id:
        raise _fail(f"id {data['id']!r} is not the session id {state.session_id!r}")
    position = state.position
    if "position" in data:
        position = parse_duration(data["position"])
    return replace(state, clientseq=seq, position=position)


def _open(state: AudioHookState, params: Mapping[str, Any]) -> tuple[AudioHookState, list[Any]]:
    if state.phase != "new":
        raise _fail(f"'open' in a session that is {state.phase}")
    for key in ("organizationId", "conversationId"):
        if not isinstance(params.get(key), str) or not params[key]:
            raise _fail(f"'open' parameters have no string '{key}'")
    participant = params.get("participant")
    if not isinstance(participant, Mapping) or not isinstance(participant.get("id"), str):
        raise _fail("'open' parameters have no 'participant' object with an 'id'")
    offered = params.get("media")
    if not isinstance(offered, list) or not offered:
        raise _fail("'open' parameters have no 'media' list")
    media = select_media(offered, state.mode)
    if media is None:
        raise _fail("none of the offered media formats is supported (PCMU or L16, 8000 Hz)")
    conversation = params["conversationId"]
    probe = conversation == NULL_UUID and participant["id"] == NULL_UUID
    requested = _language(params, "open", required=False)
    continues = _continued(params)
    supported = state.supported_languages
    default = supported[0] if supported else ""
    language = select_language(requested, supported) if requested else default
    # a monitor cannot transcribe a language it does not support: it starts paused until an
    # `update` names one it does (Genesys' reference transcription server does the same); the
    # bot answers in its default language rather than leave the caller in silence
    waiting = language is None and state.mode == "monitor" and not probe
    opened: dict[str, Any] = {"startPaused": waiting, "media": [dict(media)]}
    if state.discard_to > 0:
        opened["discardTo"] = format_duration(state.discard_to)
    if params.get("supportedLanguages") is True:
        opened["supportedLanguages"] = list(supported)
    state = replace(
        state,
        phase="paused" if waiting else "open",
        media=FrozenDict(media),
        format=media["format"],
        channels=tuple(media["channels"]),
        probe=probe,
        conversation_id=conversation,
        language=language or ("" if waiting else default),
        language_paused=waiting,
    )
    state, text = server_message(state, "opened", opened)
    events: list[Any] = [Outgoing(text)]
    if not probe:
        inputs = params.get("inputVariables")
        parameters: dict[str, str] = {}
        if isinstance(inputs, Mapping):  # the Architect flow's; never one of the protocol's
            parameters.update({k: v for k, v in inputs.items()
                               if isinstance(v, str) and k not in _OWN_PARAMETERS})
        parameters.update({"organizationId": params["organizationId"], "mode": state.mode,
                           "language": state.language})
        if requested:
            parameters["requestedLanguage"] = requested
        if continues:
            parameters["continues"] = continues
        events.append(
            CallStarted(
                call_id=conversation,
                carrier="audiohook",
                acknowledges=True,  # marks come back as Played by the send clock
                t=state.position,
                caller=str(participant.get("ani", "") or ""),
                callee=str(participant.get("dnis", "") or ""),
                stream_id=state.session_id,
                parameters=FrozenDict(parameters),
            )
        )
    return state, events


def _control(state: AudioHookState, data: Mapping[str, Any]) -> tuple[AudioHookState, list[Any]]:
    kind: str = data["type"]
    params: Mapping[str, Any] = data["parameters"]
    if kind not in CLIENT_TYPES:
        raise _fail(f"'{kind}' is not a client message type")
    if state.phase == "closed":
        raise _fail(f"'{kind}' after 'closed'")
    if state.phase == "disconnecting" and kind not in ("close", "error", "ping"):
        return state, []  # we said disconnect: the client's close is all that matters now
    if kind == "open":
        return _open(state, params)
    if kind == "ping":
        if "rtt" in params:
            parse_duration(params["rtt"], "ping rtt")
        state, text = server_message(state, "pong")
        return state, [Outgoing(text)]
    if kind == "close":
        closed: dict[str, Any] = {}
        if state.output_variables:
            closed["outputVariables"] = dict(state.output_variables)
        reason = params.get("reason", "")
        was_new = state.phase == "new"
        state, text = server_message(replace(state, phase="closed"), "closed", closed)
        events: list[Any] = [Outgoing(text)]
        if not state.probe and not was_new:
            events.append(CallEnded("hangup", str(reason), t=state.position))
        return state, events
    if kind == "error":
        code = params.get("code")
        message = str(params.get("message", ""))
        if code == 429 and "retryAfter" in params:
            return state, [RateLimited(parse_duration(params["retryAfter"], "retryAfter"),
                                       message)]
        return state, []
    if state.phase == "new":
        raise _fail(f"'{kind}' before 'open'")
    if kind == "update":
        return _update(state, _language(params, "update", required=True))
    if kind == "paused":
        return replace(state, phase="paused", pausing=False), []
    if kind == "resumed":
        start = parse_duration(params["start"], "resumed start") if "start" in params else None
        gap = parse_duration(params["discarded"], "resumed discarded") \
            if "discarded" in params else 0.0
        # a client that resumes while we still wait for a language stays paused by us
        phase = "paused" if state.language_paused else "open"
        return replace(state, phase=phase, resuming=False,
                       samples=_moved(state.samples, start, gap)), []
    if kind == "discarded":
        start = parse_duration(params.get("start"), "discarded start")
        gap = parse_duration(params.get("discarded"), "discarded discarded")
        # the stream's position moved on over audio we never got: our clock follows it
        return replace(state, samples=_moved(state.samples, start, gap)), []
    if kind == "dtmf":
        digit = params.get("digit")
        if not isinstance(digit, str) or digit not in DTMF_DIGITS:
            raise _fail(f"'dtmf' digit {digit!r} is not a keypad key")
        return state, [Dtmf(digit, t=state.position)]
    # playback_started / playback_completed (Audio Connector)
    return state, [Played(kind, t=state.position)]


def _moved(samples: int, start: float | None, gap: float) -> int:
    """The sample clock after ``gap`` seconds of audio were skipped from position ``start``
    (the client's word for where the gap began wins when it is ahead of ours: audio we did
    not get is skipped too)."""
    if start is not None:
        samples = max(samples, round(start * RATE))
    return samples + round(gap * RATE)


def _update(state: AudioHookState, requested: str) -> tuple[AudioHookState, list[Any]]:
    """``update`` with a language: select it; a monitor pauses the audio while the language is
    one it does not support and resumes it when a supported one comes (``pause``/``resume``
    sent at once); the bot keeps its language when the new one is unsupported."""
    language = select_language(requested, state.supported_languages)
    events: list[Any] = []
    if language is None:
        if state.mode == "monitor" and not state.language_paused:
            state = replace(state, language_paused=True, language="")
            if state.phase == "open":
                state, text = server_message(replace(state, pausing=True), "pause")
                events.append(Outgoing(text))
        return state, events
    if language != state.language:
        events.append(LanguageChanged(language, t=state.samples / RATE))
    if state.language_paused:
        state, text = server_message(
            replace(state, language=language, language_paused=False, resuming=True), "resume"
        )
        return state, [*events, Outgoing(text)]
    return replace(state, language=language), events


def _audio(state: AudioHookState, data: bytes) -> tuple[AudioHookState, list[Any]]:
    if state.phase != "open":
        return replace(state, dropped=state.dropped + 1), []
    width = len(state.channels) * (2 if state.format == "L16" else 1)
    if len(data) % width:
        raise _fail(f"audio frame of {len(data)} bytes is not whole {state.format} "
                    f"{len(state.channels)}-channel samples")
    if state.format == "L16":
        pcm = np.frombuffer(data, dtype="<i2").astype(np.int16)
    else:
        pcm = ulaw_decode(np.frombuffer(data, dtype=np.uint8))
    count = pcm.shape[0] // len(state.channels)
    t = state.samples / RATE
    events: list[Any] = []
    for i, channel in enumerate(state.channels):
        chunk = AudioChunk(np.ascontiguousarray(pcm[i :: len(state.channels)]), RATE, t)
        caller = channel == "external" and state.mode == "bot"  # the agent hears it as is
        events.append(chunk if caller else ChannelAudio(channel, chunk))
    return replace(state, samples=state.samples + count), events


def decode(state: AudioHookState, message: WireMessage) -> tuple[AudioHookState, list[Any]]:
    """One client message -> the new state and its events: :class:`Outgoing` replies to send
    at once, :class:`~voicekit.CallStarted` (on ``open``, not for a probe), audio
    (:class:`~voicekit.AudioChunk` for ``external``, :class:`ChannelAudio` for ``internal``, at
    8 kHz on the stream's position clock), :class:`~voicekit.Dtmf`,
    :class:`~voicekit.Played` (``playback_started``/``playback_completed``),
    :class:`RateLimited` and :class:`~voicekit.CallEnded` (on ``close``).

    Raises :class:`~voicekit.ProtocolError` naming the broken rule (see the module docstring).
    """
    if isinstance(message, bytes | bytearray | memoryview):
        return _audio(state, bytes(message))
    data = _envelope(message)
    state = _check_order(state, data)
    if state.phase == "new" and data["type"] not in ("open", "close", "ping", "error"):
        raise _fail(f"'{data['type']}' before 'open'")
    return _control(state, data)


def _strings(values: Mapping[str, Any]) -> dict[str, str]:
    bad = [k for k, v in values.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise ConfigError(f"audiohook: output variables must be strings, not {bad!r}")
    return dict(values)


def disconnect(
    state: AudioHookState,
    reason: str = "completed",
    info: str = "",
    output_variables: Mapping[str, str] | None = None,
) -> tuple[AudioHookState, list[str]]:
    """The ``disconnect`` message ending the session from our side (``[]`` once it is
    disconnecting or closed). Output variables are added to those already set.

    >>> s, (text,) = disconnect(initial_state("abc"), "error", "bad seq")
    >>> text
    '{"version":"2","id":"abc","type":"disconnect","seq":1,"clientseq":0,"parameters":{"reason":"error","info":"bad seq"}}'
    """  # noqa: E501
    if reason not in ("completed", "unauthorized", "error"):
        raise ConfigError(f"audiohook: disconnect reason {reason!r} is not completed, "
                          "unauthorized or error")
    if state.phase in ("disconnecting", "closed"):
        return state, []
    variables = {**state.output_variables, **_strings(output_variables or {})}
    params: dict[str, Any] = {"reason": reason}
    if info:
        params["info"] = info
    if variables:
        params["outputVariables"] = variables
    state = replace(state, phase="disconnecting", output_variables=FrozenDict(variables))
    state, text = server_message(state, "disconnect", params)
    return state, [text]


def _encode_audio(state: AudioHookState, chunk: AudioChunk) -> bytes:
    """One packet: a chunk shorter than a packet is padded with silence (Genesys rate-limits
    small packets); a longer one is the caller's choice (the connection cuts packets)."""
    if chunk.rate != RATE:
        raise AudioError(f"audiohook: outbound audio must be {RATE} Hz, got {chunk.rate} Hz")
    samples = chunk.samples
    if samples.shape[0] < PACKET_BYTES:
        samples = np.concatenate((samples, np.zeros(PACKET_BYTES - samples.shape[0], np.int16)))
    if state.format == "L16":
        return samples.astype("<i2").tobytes()
    return ulaw_encode(samples).tobytes()


def encode(state: AudioHookState, item: Any) -> tuple[AudioHookState, list[WireMessage]]:
    """One outbound item -> messages: :class:`~voicekit.AudioChunk` (8 kHz) -> a binary frame
    of at least :data:`PACKET_BYTES` (padded with silence; bot mode, while open),
    :class:`~voicekit.Interrupted` -> ``event`` with a ``barge_in`` entity,
    :class:`EventEntities` -> ``event``, :class:`Pause`/:class:`Resume` -> ``pause``/``resume``,
    :class:`Disconnect` -> ``disconnect``; :class:`SetOutputVariables` only updates the state.
    Nothing is sent before ``opened`` or once the session ends."""
    if isinstance(item, SetOutputVariables):
        merged = {**state.output_variables, **_strings(item.values)}
        return replace(state, output_variables=FrozenDict(merged)), []
    if isinstance(item, Disconnect):
        state, texts = disconnect(state, item.reason, item.info, item.output_variables)
        return state, list(texts)
    if state.phase not in ("open", "paused") or state.probe:
        return state, []
    if isinstance(item, AudioChunk):
        if state.mode != "bot" or state.phase != "open" or not item.samples.shape[0]:
            return state, []
        return state, [_encode_audio(state, item)]
    if isinstance(item, Interrupted):
        if state.mode != "bot":
            return state, []
        state, text = server_message(
            state, "event", {"entities": [{"type": "barge_in", "data": {}}]}
        )
        return state, [text]
    if isinstance(item, EventEntities):
        state, text = server_message(state, "event", {"entities": [dict(e) for e in item.entities]})
        return state, [text]
    if isinstance(item, Pause):
        state, text = server_message(replace(state, pausing=True), "pause")
        return state, [text]
    if isinstance(item, Resume):
        state, text = server_message(replace(state, resuming=True), "resume")
        return state, [text]
    if isinstance(item, Reconnect):
        state, text = server_message(state, "reconnect", {"info": item.info} if item.info else {})
        return state, [text]
    return state, []


def transcript_entity(
    text: str,
    *,
    channel: str,
    offset: float,
    duration: float,
    confidence: float = 1.0,
    language: str = "en-US",
    final: bool = True,
    id: str = "",
) -> dict[str, Any]:
    """A ``transcript`` event entity (offset and duration on the stream's position clock).

    >>> transcript_entity("hi", channel="external", offset=1.5, duration=0.5, id="u1")["data"]
    ... # doctest: +NORMALIZE_WHITESPACE
    {'id': 'u1', 'channel': 'external', 'isFinal': True, 'offset': 'PT1.5S',
     'duration': 'PT0.5S', 'alternatives': [{'confidence': 1.0, 'languages': ['en-US'],
     'interpretations': [{'type': 'display', 'transcript': 'hi'}]}]}
    """
    if channel not in _CHANNELS:
        raise ConfigError(f"audiohook: channel must be external or internal, got {channel!r}")
    alternative = {
        "confidence": float(confidence),
        "languages": [language] if language else [],
        "interpretations": [{"type": "display", "transcript": text}],
    }
    return {
        "type": "transcript",
        "data": {
            "id": id,
            "channel": channel,
            "isFinal": final,
            "offset": format_duration(max(0.0, offset)),
            "duration": format_duration(max(0.0, duration)),
            "alternatives": [alternative],
        },
    }


def client_message(
    state: AudioHookState | str,
    type_: str,
    seq: int,
    parameters: Mapping[str, Any] | None = None,
    *,
    serverseq: int | None = None,
    position: float = 0.0,
) -> dict[str, Any]:
    """A client message (for tests and teaching): ``state`` gives the id and ``serverseq``."""
    session = state if isinstance(state, str) else state.session_id
    if serverseq is None:
        serverseq = 0 if isinstance(state, str) else state.seq
    return {
        "version": "2",
        "id": session,
        "type": type_,
        "seq": seq,
        "serverseq": serverseq,
        "position": format_duration(position),
        "parameters": dict(parameters or {}),
    }


def open_message(
    session_id: str,
    seq: int = 1,
    *,
    conversation_id: str = "a4b6b4e2-3f6b-4f9e-8d7c-0d2b8c9f4a11",
    media: Sequence[Mapping[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An ``open`` message as Genesys sends it (for tests and teaching): stereo PCMU offered
    first, then mono external."""
    offers = media if media is not None else [
        {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000},
        {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000},
    ]
    params = {
        "organizationId": "d7934305-0972-4844-938e-9060eef73d05",
        "conversationId": conversation_id,
        "participant": {"id": "883efee8-3d6c-4537-b500-6d7ca4b92fa0", "ani": "+15551234567",
                        "aniName": "Caller", "dnis": "+15557654321"},
        "media": [dict(m) for m in offers],
        "language": "en-US",
        **extra,
    }
    return client_message(session_id, "open", seq, params)


def codec(
    session_id: str,
    mode: str = "bot",
    supported_languages: Sequence[str] = ("en-US",),
    discard_to: float = 0.0,
) -> Codec[AudioHookState]:
    """The AudioHook codec of one session (the id comes from the handshake). Outbound audio
    goes in :data:`PACKET_BYTES` packets (200 ms). The first of ``supported_languages`` is the
    default language (see :func:`select_language`)."""
    first = initial_state(session_id, mode, supported_languages, discard_to)
    return Codec(
        name="audiohook",
        rate=RATE,
        initial=lambda: first,
        decode=decode,
        encode=encode,
        frame_ms=PACKET_BYTES * 1000 // RATE,
        acknowledges=False,
        max_message=MAX_MESSAGE,
    )
