"""Phone lines and sockets as voicekit stages.

Each carrier's wire protocol is a :class:`Codec`: pure functions from one wire message to
voicekit events and from one outbound item to wire messages, threading a frozen protocol state
(:mod:`voicekit.transports.twilio`, :mod:`voicekit.transports.telnyx`,
:mod:`voicekit.transports.plivo`, :mod:`voicekit.transports.websocket`). :func:`run_call` runs
a codec over one accepted WebSocket and hands your ``on_call`` a :class:`Call`::

    async def on_call(call):
        await (call.inbound | vk.voice_agent(llm=..., session=call.session) | call.outbound)

:mod:`voicekit.serve` puts the carriers' routes in an ASGI app.
"""

from . import plivo, telnyx, twilio, websocket
from ._codec import Codec, WireMessage
from ._connection import Call, run_call
from ._resample import StreamResampler

__all__ = [
    "Call",
    "Codec",
    "StreamResampler",
    "WireMessage",
    "plivo",
    "run_call",
    "telnyx",
    "twilio",
    "websocket",
]
