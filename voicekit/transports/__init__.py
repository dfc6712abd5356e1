"""Phone lines and sockets as voicekit stages: one :class:`Codec` per carrier (pure functions
from wire messages to events and back) plus a connection layer that runs a codec over a socket.
"""

from ._codec import Codec, WireMessage

__all__ = ["Codec", "WireMessage"]
