"""Answer phone calls over the network: :func:`app` is an ASGI application (Starlette).

>>> import voicekit as vk, voicekit.serve
>>> async def on_call(call):
...     await (call.inbound | vk.voice_agent(llm=..., session=call.session) | call.outbound)
>>> application = vk.serve.app(on_call, carrier="twilio", dev=True)   # then: uvicorn
>>> sorted(r.path for r in application.routes)
['/healthz', '/readyz', '/twilio/media', '/twilio/voice', '/ws']

Needs the ``serve`` extra (``pip install "voicekit[serve]"``). ``voicekit serve`` runs it.
"""

from ._app import ServerState, app, is_loopback

__all__ = ["ServerState", "app", "is_loopback"]
