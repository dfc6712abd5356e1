"""Answer phone calls over the network: :func:`app` is an ASGI application (Starlette).

>>> import voicekit as vk, voicekit.serve
>>> async def on_call(call):
...     await (call.inbound | vk.voice_agent(llm=..., session=call.session) | call.outbound)
>>> application = vk.serve.app(on_call, carrier="twilio", dev=True)   # then: uvicorn
>>> sorted(r.path for r in application.routes)
['/healthz', '/readyz', '/twilio/amd', '/twilio/media', '/twilio/voice', '/ws']

:func:`dial` places an outbound call that the same app answers (``voicemail="message"`` or
``"hangup"`` for answering machines); :class:`CarrierApi` says where a carrier's REST API is
(credentials from the environment by default; a local fake in tests).

Needs the ``serve`` extra (``pip install "voicekit[serve]"``). ``voicekit serve`` runs it.
"""

from ..transports._rest import CarrierApi
from ._app import ServerState, app, is_loopback
from ._dial import Dialed, dial

__all__ = ["CarrierApi", "Dialed", "ServerState", "app", "dial", "is_loopback"]
