"""A bare WebSocket server on 127.0.0.1 that runs one voicekit carrier codec per connection —
``decode`` on every message, ``encode`` for what a test script sends back — with no connection
layer in between, so the codec alone meets a fake carrier over a real socket.

    async with CodecServer(telnyx.codec(), script) as server:
        record = await TelnyxCall(server.url).call(audio)
    server.events  # everything decoded, in order

``script(event, send)`` is called for every decoded event; ``await send(item)`` encodes an
item (audio chunk, Mark, Interrupted) with the connection's current state and sends it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from voicekit.transports import Codec

__all__ = ["CodecServer"]

Send = Callable[[Any], Awaitable[None]]
Script = Callable[[Any, Send], Awaitable[None]]


class CodecServer:
    """See the module docstring. ``errors`` holds the ProtocolErrors the codec raised."""

    def __init__(self, codec: Codec[Any], script: Script) -> None:
        self.codec = codec
        self.script = script
        self.events: list[Any] = []
        self.errors: list[Exception] = []
        self.ended = asyncio.Event()
        self._server: Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = next(iter(self._server.sockets)).getsockname()[:2]
        return f"ws://{host}:{port}/media"

    async def _connection(self, ws: ServerConnection) -> None:
        state = self.codec.initial()

        async def send(item: Any) -> None:
            nonlocal state
            state, messages = self.codec.encode(state, item)
            for message in messages:
                await ws.send(message)

        try:
            async for message in ws:
                try:
                    state, events = self.codec.decode(state, message)
                except ValueError as exc:
                    self.errors.append(exc)
                    await ws.close(1008)
                    break
                for event in events:
                    self.events.append(event)
                    task = asyncio.create_task(self.script(event, send))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        except ConnectionClosed:
            pass
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self.ended.set()

    async def __aenter__(self) -> CodecServer:
        self._server = await serve(self._connection, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
