"""Phone lines and sockets as voicekit stages.

Each carrier's wire protocol is a :class:`Codec`: pure functions from one wire message to
voicekit events and from one outbound item to wire messages, threading a frozen protocol state
(:mod:`voicekit.transports.twilio`, :mod:`voicekit.transports.telnyx`,
:mod:`voicekit.transports.plivo`, :mod:`voicekit.transports.websocket`,
:mod:`voicekit.transports.audiohook`). :func:`run_call` runs
a codec over one accepted WebSocket and hands your ``on_call`` a :class:`Call`::

    async def on_call(call):
        await (call.inbound | vk.voice_agent(llm=..., session=call.session) | call.outbound)

:mod:`voicekit.serve` puts the carriers' routes in an ASGI app.
"""

from . import audiohook, plivo, telnyx, twilio, websocket
from ._audiohook_connection import AudioHookCall, run_session
from ._audiohook_roles import agent_call, transcriber
from ._codec import Codec, WireMessage
from ._connection import Call, run_call
from ._resample import StreamResampler

__all__ = [
    "AudioHookCall",
    "Call",
    "Codec",
    "StreamResampler",
    "WireMessage",
    "agent_call",
    "audiohook",
    "plivo",
    "run_call",
    "run_session",
    "telnyx",
    "transcriber",
    "twilio",
    "websocket",
]
