"""Local peers for trying and testing voicekit without a network or an account.

:class:`ResponsesServer` is a real OpenAI-compatible server on 127.0.0.1: the Responses API
over a WebSocket and over HTTP (SSE or JSON) and a streaming Chat Completions route, on one port.
Its replies are deterministic (an echo of the last user message, or a scripted :class:`Reply`),
it records every request (:class:`Recorded`) and can misbehave on purpose: slow deltas,
dropped connections, failed responses, HTTP error statuses with ``Retry-After``.

>>> import asyncio
>>> import voicekit as vk
>>> from voicekit.llm import chat, custom, reply_text
>>> async def ask() -> tuple[str, str]:
...     async with ResponsesServer() as server:
...         endpoint = custom(base_url=server.base_url, model="demo")
...         session = vk.Session().add_user("Hello")
...         events = [event async for event in chat(endpoint, session)]
...         return reply_text(events), server.requests[-1].path
>>> asyncio.run(ask())
('You said: Hello. I know 1 items.', '/v1/chat/completions')
"""

from __future__ import annotations

from ._responses_server import (
    Check,
    Connection,
    Recorded,
    Reply,
    ResponsesServer,
    comparable,
    echo_text,
)

__all__ = [
    "Check",
    "Connection",
    "Recorded",
    "Reply",
    "ResponsesServer",
    "comparable",
    "echo_text",
]
