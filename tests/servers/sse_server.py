"""A small, real HTTP/1.1 server on 127.0.0.1 that speaks OpenAI-style SSE, with faults on demand.

Written on raw asyncio (no web framework) so that every byte it sends is under the test's control:
status codes with JSON bodies, a slow first byte, pauses, keep-alive comments, malformed chunks,
``error`` events, a wrong content type, a stream that ends without ``[DONE]``, and a connection
dropped mid-body. It records each request (method, path, headers, body) and each client
disconnect that happens while a response is still being written, so tests can assert exactly
what went over the wire and that a cancelled client really hung up.

    async with SSEServer() as server:
        server.enqueue(text_reply(["Hel", "lo"]))
        ...  # point an endpoint at server.base_url
        server.requests[-1].json()["model"]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal

__all__ = [
    "Disconnect",
    "Recorded",
    "Reply",
    "SSEServer",
    "chunk",
    "chunked_body",
    "json_reply",
    "sse",
    "stream_reply",
    "text_reply",
    "tool_chunks",
]


# ---------------------------------------------------------------------------------------------
# What the server records


@dataclass
class Recorded:
    """One request as received: header names lower-cased (``header_list`` keeps order/case)."""

    method: str
    path: str
    header_list: list[tuple[str, str]]
    body: bytes

    @property
    def headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.header_list}

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Disconnect:
    """The client went away while a response was being written."""

    path: str
    phase: Literal["before-first-byte", "mid-body"]
    after: float  # seconds since the request arrived


# ---------------------------------------------------------------------------------------------
# What the server sends


Part = bytes | float
"""A body part: bytes are sent as one HTTP chunk; a float pauses that many seconds."""


@dataclass
class Reply:
    """A scripted response.

    ``delay``: seconds before anything (even the status line) is sent. ``parts``: the body,
    chunk by chunk (streamed with ``Transfer-Encoding: chunked``) unless ``body`` is given (sent
    with ``Content-Length``). ``end``: ``"done"`` finishes the chunked body properly, ``"drop"``
    closes the socket without finishing it, ``"hang"`` never finishes (until the client leaves).
    ``raw``: pre-framed body bytes written in one go (for benchmarks).
    """

    status: int = 200
    headers: list[tuple[str, str]] = field(
        default_factory=lambda: [("Content-Type", "text/event-stream")]
    )
    parts: list[Part] = field(default_factory=list)
    body: bytes | None = None
    delay: float = 0.0
    end: Literal["done", "drop", "hang"] = "done"
    raw: bytes | None = None


def chunk(
    content: str | None = None,
    *,
    role: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    finish: str | None = None,
    usage: Mapping[str, Any] | None = None,
    no_choices: bool = False,
    id: str = "chatcmpl-test",
    model: str = "test-model",
) -> dict[str, Any]:
    """One ``chat.completion.chunk`` object."""
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    if tool_calls is not None:
        delta["tool_calls"] = tool_calls
    out: dict[str, Any] = {
        "id": id,
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": []
        if no_choices
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if usage is not None:
        out["usage"] = dict(usage)
    return out


def sse(data: Any) -> bytes:
    """One SSE event: ``data: <json>\\n\\n`` (a str or bytes is sent as given)."""
    if isinstance(data, bytes):
        payload = data
    elif isinstance(data, str):
        payload = data.encode()
    else:
        payload = json.dumps(data, separators=(",", ":")).encode()
    return b"data: " + payload + b"\n\n"


def tool_chunks(index: int, id: str, name: str, *arguments: str) -> list[dict[str, Any]]:
    """Chunks for one streamed tool call: id and name first, then argument fragments."""
    first = {
        "index": index,
        "id": id,
        "type": "function",
        "function": {"name": name, "arguments": ""},
    }
    out = [chunk(tool_calls=[first])]
    for fragment in arguments:
        out.append(chunk(tool_calls=[{"index": index, "function": {"arguments": fragment}}]))
    return out


def stream_reply(
    items: Iterable[dict[str, Any] | bytes | str | float],
    *,
    done: bool = True,
    end: Literal["done", "drop", "hang"] = "done",
    delay: float = 0.0,
    content_type: str = "text/event-stream",
) -> Reply:
    """An SSE reply: dicts become ``data:`` events, bytes/str are sent raw, floats pause."""
    parts: list[Part] = []
    for item in items:
        if isinstance(item, dict):
            parts.append(sse(item))
        elif isinstance(item, str):
            parts.append(item.encode())
        else:
            parts.append(item)
    if done:
        parts.append(b"data: [DONE]\n\n")
    return Reply(headers=[("Content-Type", content_type)], parts=parts, end=end, delay=delay)


DEFAULT_USAGE = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}


def text_reply(
    texts: Iterable[str] = ("Hello", " world"),
    *,
    finish: str = "stop",
    usage: Mapping[str, Any] | None = DEFAULT_USAGE,
    **kwargs: Any,
) -> Reply:
    """A normal streamed text answer: role chunk, text chunks, finish chunk, usage, [DONE]."""
    items: list[dict[str, Any] | bytes | str | float] = [chunk("", role="assistant")]
    items += [chunk(t) for t in texts]
    items.append(chunk(finish=finish))
    if usage is not None:
        items.append(chunk(usage=usage, no_choices=True))
    return stream_reply(items, **kwargs)


def json_reply(status: int, data: Any, *, delay: float = 0.0) -> Reply:
    """A non-streamed JSON response (errors, ``/models``)."""
    body = json.dumps(data).encode()
    return Reply(
        status=status, headers=[("Content-Type", "application/json")], body=body, delay=delay
    )


def chunked_body(events: Iterable[bytes], *, per_chunk: int = 1) -> bytes:
    """Pre-frame SSE events as a chunked HTTP body (``per_chunk`` events per HTTP chunk)."""
    out = bytearray()
    batch: list[bytes] = []
    for event in events:
        batch.append(event)
        if len(batch) == per_chunk:
            data = b"".join(batch)
            out += b"%x\r\n%s\r\n" % (len(data), data)
            batch.clear()
    if batch:
        data = b"".join(batch)
        out += b"%x\r\n%s\r\n" % (len(data), data)
    out += b"0\r\n\r\n"
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# The server


Handler = Callable[[Recorded], "Reply | Awaitable[Reply]"]


class SSEServer:
    """An HTTP/1.1 server on 127.0.0.1 (a free port) answering from a script.

    Replies come from ``enqueue``-d replies first (for ``POST .../chat/completions``), else from
    ``handler`` if set, else a default: a short text stream for chat, a model list for
    ``GET .../models``, 404 otherwise.
    """

    def __init__(self, *, handler: Handler | None = None) -> None:
        self.handler = handler
        self.requests: list[Recorded] = []
        self.disconnects: list[Disconnect] = []
        self.models = ["test-model", "other-model"]
        self.connections = 0  # TCP connections accepted so far
        self._queue: deque[Reply] = deque()
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._changed = asyncio.Event()
        self.port = 0

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def enqueue(self, *replies: Reply) -> None:
        """Answer the next chat requests with these replies, in order."""
        self._queue.extend(replies)

    async def start(self) -> SSEServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            connections = list(self._connections)
            for conn in connections:
                conn.abort()
            tasks = [c.task for c in connections if c.task is not None]
            if tasks:
                await asyncio.wait(tasks, timeout=2)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def __aenter__(self) -> SSEServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_disconnect(self, within: float = 2.0) -> Disconnect:
        """Wait until a client has hung up mid-response; return that record."""
        deadline = time.monotonic() + within
        while not self.disconnects:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the client did not disconnect")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return self.disconnects[-1]

    async def wait_requests(self, count: int, within: float = 2.0) -> None:
        """Wait until at least ``count`` requests have arrived."""
        deadline = time.monotonic() + within
        while len(self.requests) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"only {len(self.requests)} of {count} requests arrived")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    # -- routing ---------------------------------------------------------------------------------

    async def _route(self, request: Recorded) -> Reply:
        self.requests.append(request)
        self._changed.set()
        is_chat = request.method == "POST" and request.path.endswith("/chat/completions")
        if is_chat and self._queue:
            return self._queue.popleft()
        if self.handler is not None:
            reply = self.handler(request)
            return await reply if asyncio.iscoroutine(reply) else reply  # type: ignore[return-value]
        if is_chat:
            return text_reply()
        if request.method == "GET" and request.path.endswith("/models"):
            data = [{"id": m, "object": "model", "owned_by": "test"} for m in self.models]
            return json_reply(200, {"object": "list", "data": data})
        return json_reply(404, {"error": {"message": f"no route for {request.path}"}})

    def _note_disconnect(self, record: Disconnect) -> None:
        self.disconnects.append(record)
        self._changed.set()


class _Connection(asyncio.Protocol):
    """One client connection: parses requests, writes scripted replies, notices hang-ups."""

    def __init__(self, server: SSEServer) -> None:
        self.server = server
        self.buffer = bytearray()
        self.pending: asyncio.Queue[tuple[Recorded, float]] = asyncio.Queue()
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.writable = asyncio.Event()
        self.writable.set()
        self.task: asyncio.Task[None] | None = None

    # protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.connections += 1
        self.server._connections.add(self)
        self.task = asyncio.get_running_loop().create_task(self._serve())

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            lines = bytes(self.buffer[:head_end]).decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            header_list = []
            for line in lines[1:]:
                name, _, value = line.partition(":")
                header_list.append((name.strip(), value.strip()))
            length = int({k.lower(): v for k, v in header_list}.get("content-length", "0"))
            if len(self.buffer) < head_end + 4 + length:
                return
            body = bytes(self.buffer[head_end + 4 : head_end + 4 + length])
            del self.buffer[: head_end + 4 + length]
            self.pending.put_nowait((Recorded(method, path, header_list, body), time.monotonic()))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        self.writable.set()
        self.server._connections.discard(self)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        if self.task is not None:
            self.task.cancel()

    # serving

    async def _until_closed(self, awaitable: Awaitable[Any]) -> bool:
        """Await ``awaitable`` unless the client hangs up first; True if still connected."""
        waiter = asyncio.ensure_future(awaitable)
        done, _ = await asyncio.wait({waiter, self.closed}, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            await asyncio.wait([waiter])  # leave no pending getter behind
            return False
        return True

    async def _serve(self) -> None:
        try:
            while True:
                getter = asyncio.ensure_future(self.pending.get())
                if not await self._until_closed(getter):
                    return
                request, arrived = getter.result()
                reply = await self.server._route(request)
                if not await self._send(request, reply, arrived):
                    return
        finally:
            if self.transport is not None and not self.transport.is_closing():
                self.transport.close()

    async def _write(self, data: bytes) -> bool:
        assert self.transport is not None
        if self.closed.done():
            return False
        self.transport.write(data)
        if not self.writable.is_set():
            await self._until_closed(self.writable.wait())
        return not self.closed.done()

    async def _send(self, request: Recorded, reply: Reply, arrived: float) -> bool:
        """Write one reply; False when the connection is over."""
        assert self.transport is not None
        sent_body = False

        def lost() -> bool:
            phase: Literal["before-first-byte", "mid-body"] = (
                "mid-body" if sent_body else "before-first-byte"
            )
            self.server._note_disconnect(
                Disconnect(request.path, phase, time.monotonic() - arrived)
            )
            return False

        if reply.delay and not await self._until_closed(asyncio.sleep(reply.delay)):
            return lost()
        reason = (
            HTTPStatus(reply.status).phrase
            if reply.status in HTTPStatus._value2member_map_
            else "X"
        )
        head = [f"HTTP/1.1 {reply.status} {reason}"]
        head += [f"{k}: {v}" for k, v in reply.headers]
        head.append("Cache-Control: no-cache")
        if reply.body is not None:
            head.append(f"Content-Length: {len(reply.body)}")
        else:
            head.append("Transfer-Encoding: chunked")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if not await self._write(data):
            return lost()
        if reply.body is not None:
            return await self._write(reply.body) or lost()
        if reply.raw is not None:
            sent_body = True
            return await self._write(reply.raw) or lost()
        for part in reply.parts:
            if isinstance(part, float | int):
                if not await self._until_closed(asyncio.sleep(part)):
                    return lost()
                continue
            if not await self._write(b"%x\r\n%s\r\n" % (len(part), part)):
                return lost()
            sent_body = True
        if reply.end == "drop":
            self.transport.abort()
            return False
        if reply.end == "hang":
            await self._until_closed(asyncio.Event().wait())
            return lost()
        return await self._write(b"0\r\n\r\n") or lost()
