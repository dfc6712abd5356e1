"""The shape of every carrier's wire protocol: a :class:`Codec`, a frozen value of pure functions.

A codec knows one carrier's messages and nothing about sockets. It turns one inbound wire message
(a text frame ``str`` or a binary frame ``bytes``) into voicekit events, and one outbound item
into wire messages, threading a protocol *state* (a frozen value: "has ``start`` arrived?", the
stream id, the next sequence number…) through each call instead of keeping it in an object::

    state = codec.initial()
    state, events = codec.decode(state, message)      # inbound: wire -> events
    state, messages = codec.encode(state, item)       # outbound: item -> wire

Inbound events are :class:`~voicekit.AudioChunk` (at the codec's wire ``rate``),
:class:`~voicekit.CallStarted`, :class:`~voicekit.Dtmf`, :class:`~voicekit.Played` (a mark
echoed back) and :class:`~voicekit.CallEnded`. Outbound items are ``AudioChunk`` (at the wire
rate, at most ``frame_ms`` long: the connection layer cuts frames), :class:`~voicekit.Mark` and
:class:`~voicekit.Interrupted` (sent as the carrier's "clear"/"flush"); anything else encodes
to ``[]``. A message that breaks the protocol raises :class:`~voicekit.ProtocolError` naming
what was wrong; the connection ends that call only.

A toy codec, to show the shape — its wire is text, ``"d<digit>"`` inbound, ``"m<name>"``
outbound, and the state counts messages:

>>> from voicekit.events import Dtmf, Mark
>>> def decode(n, msg):
...     if not isinstance(msg, str) or not msg.startswith("d"):
...         raise ProtocolError(f"toy: unknown message {msg!r}")
...     return n + 1, [Dtmf(msg[1:])]
>>> def encode(n, item):
...     return (n + 1, [f"m{item.name}"]) if isinstance(item, Mark) else (n, [])
>>> toy = Codec(name="toy", rate=8000, initial=lambda: 0, decode=decode, encode=encode)
>>> state = toy.initial()
>>> state, events = toy.decode(state, "d5")
>>> events, state
([Dtmf(digit='5', t=0.0)], 1)
>>> toy.encode(state, Mark("s1"))
(2, ['ms1'])
>>> toy.decode(state, "hello")
Traceback (most recent call last):
...
voicekit._errors.ProtocolError: toy: unknown message 'hello'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .._errors import ProtocolError

__all__ = ["Codec", "ProtocolError", "WireMessage"]

S = TypeVar("S")

WireMessage = str | bytes
"""One WebSocket message: a text frame (``str``) or a binary frame (``bytes``)."""


@dataclass(frozen=True, slots=True)
class Codec(Generic[S]):
    """One carrier's wire protocol as pure functions over a frozen protocol state ``S``.

    ``name``: the carrier (``"twilio"``), also ``CallStarted.carrier``.
    ``rate``: the wire sample rate in Hz (8000 for μ-law telephony).
    ``initial()``: the protocol state before the first message.
    ``decode(state, message)``: one inbound wire message -> (new state, events); raises
    :class:`~voicekit.ProtocolError` on a malformed or out-of-order message.
    ``encode(state, item)``: one outbound item -> (new state, wire messages); ``[]`` for items
    the carrier does not send.
    ``frame_ms``: the length of the audio frames the connection hands to ``encode`` (20 ms).
    ``acknowledges``: True when the carrier echoes every sent :class:`~voicekit.Mark` back (as a
    :class:`~voicekit.Played`), so heard-ness can be taken from it.
    ``max_message``: the size cap, in bytes or characters, of one inbound message; ``decode``
    rejects a larger one.
    """

    name: str
    rate: int
    initial: Callable[[], S]
    decode: Callable[[S, WireMessage], tuple[S, list[Any]]]
    encode: Callable[[S, Any], tuple[S, list[WireMessage]]]
    frame_ms: int = 20
    acknowledges: bool = False
    max_message: int = 64 * 1024

    def __repr__(self) -> str:
        return f"Codec({self.name!r}, rate={self.rate}, frame_ms={self.frame_ms})"
