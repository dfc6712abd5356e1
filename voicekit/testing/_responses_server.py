"""A real OpenAI-compatible server on 127.0.0.1 — the Responses API over WebSocket and HTTP on
one port, and streaming Chat Completions — with faults.

It speaks the subset voicekit uses: ``response.create`` / ``response.cancel`` over a WebSocket
at ``/v1/responses``, ``POST /v1/responses`` (SSE or JSON), and, for side-by-side demos, a
streaming ``POST /v1/chat/completions``. Like the real service with ``store: false``, it keeps
completed responses only in memory, per connection, so ``previous_response_id`` works on the
connection that made the response and nowhere else.

Replies are deterministic: unless a :class:`Reply` is queued, the answer to a request is
``You said: <last user text>. I know <n> items.``, where ``n`` is the length of the full context
the server reconstructed (cached input + cached output + new input). A client that sends too
little or too much context therefore gets a visibly different reply.

Faults: ``close_after_connect`` (close the next N connections right after the handshake),
:meth:`forget` (drop cached responses, so the next ``previous_response_id`` is not found), and
per-reply ``drop_after`` (cut the connection after N deltas), ``connection_limit``,
``ignore_cancel``, ``reject_cancel``, ``cancel_delay`` (a slow drain), ``error``, ``status``.

    async with ResponsesServer() as server:
        endpoint = Endpoint(base_url=server.base_url, model="test")
        ...
        server.requests[-1].body["previous_response_id"]
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

__all__ = [
    "Check",
    "Connection",
    "Recorded",
    "Reply",
    "ResponsesServer",
    "comparable",
    "echo_text",
]

Send = Callable[[Mapping[str, Any]], Awaitable[None]]

Check = Callable[[Mapping[str, Any], bool], list[str]]
"""What is wrong with a client event (``websocket=False`` for an HTTP body): a list of problems.
voicekit's own tests pass one built on the ``openai`` package's types."""


@dataclass
class Reply:
    """One scripted answer (with its faults), used by the next request instead of the echo."""

    text: str | None = None  # None: the echo reply
    tool_calls: Sequence[tuple[str, str, str]] = ()  # (call_id, name, arguments JSON)
    chunk: int = 4  # characters per text delta
    delay: float = 0.0  # seconds before each delta
    usage: Mapping[str, Any] | None = None
    status: str = "completed"  # or "failed" / "incomplete"
    message: str = "something went wrong"  # the server's message for failed/incomplete
    error: tuple[str, str] | None = None  # (code, message): answer with an error event only
    drop_after: int | None = None  # abort the connection after this many deltas
    connection_limit: bool = False  # answer websocket_connection_limit_reached, then close
    ignore_cancel: bool = False  # keep streaming after response.cancel
    reject_cancel: bool = False  # answer response.cancel with an error event
    cancel_delay: float = 0.0  # after a cancel, wait this long before the terminal event
    start_delay: float = 0.0  # wait this long before response.created
    http_status: int = 200  # over HTTP: answer with this status (and a JSON error) instead
    retry_after: str | None = None  # with http_status: send this Retry-After header


@dataclass
class Recorded:
    """One request as received."""

    transport: str  # "ws" or "http"
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    size: int  # bytes of the raw message / body
    connection: int | None = None
    context: list[Any] | None = None  # the full context the server worked from
    answered: str = ""  # what the server did: "completed", "not_found", "dropped", …


@dataclass
class Connection:
    """One accepted WebSocket connection."""

    number: int
    headers: dict[str, str]
    messages: list[dict[str, Any]] = field(default_factory=list)
    cache: dict[str, tuple[list[Any], list[Any]]] = field(default_factory=dict)
    closed_by_server: str = ""


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p
        )
    return ""


def comparable(items: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """Items reduced to what must agree between client and server context."""
    out: list[tuple[Any, ...]] = []
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            out.append(("message", item.get("role"), _text_of(item.get("content"))))
        elif kind == "function_call":
            out.append(("function_call", item.get("call_id")))
        elif kind == "function_call_output":
            out.append(("function_call_output", item.get("call_id"), item.get("output")))
        else:
            out.append((kind,))
    return out


def echo_text(context: Sequence[Mapping[str, Any]]) -> str:
    """The default reply to a full context."""
    last = ""
    for item in context:
        if item.get("type", "message") == "message" and item.get("role") == "user":
            last = _text_of(item.get("content"))
    return f"You said: {last}. I know {len(context)} items."


class _Cancelled:
    def __init__(self) -> None:
        self.event = asyncio.Event()


class ResponsesServer:
    """See the module docstring. Use as ``async with ResponsesServer() as server``."""

    def __init__(
        self, *, api_key: str | None = None, delay: float = 0.0, check: Check | None = None
    ) -> None:
        self.api_key = api_key
        self.check = check
        self.delay = delay
        self.port = 0
        self.requests: list[Recorded] = []
        self.connections: list[Connection] = []
        self.replies: deque[Reply] = deque()
        self.close_after_connect = 0
        self.reject_all_cancels = False  # answer every response.cancel with an error
        self.problems: list[str] = []  # what ``check`` found wrong with client events
        self._server: asyncio.Server | None = None
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    def _check(self, message: Mapping[str, Any], *, websocket: bool) -> None:
        if self.check is not None:
            self.problems.extend(self.check(message, websocket))

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> ResponsesServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/responses"

    # -- control --------------------------------------------------------------------------------

    def enqueue(self, *replies: Reply) -> None:
        """Script the next replies (in order)."""
        self.replies.extend(replies)

    def forget(self) -> None:
        """Drop every cached response (the next ``previous_response_id`` is not found)."""
        for connection in self.connections:
            connection.cache.clear()

    def drop_all(self) -> None:
        """Abort every open connection now."""
        for writer in list(self._writers):
            writer.transport.abort()

    @property
    def creates(self) -> list[Recorded]:
        """The ``response.create`` requests received over WebSockets."""
        return [r for r in self.requests if r.transport == "ws"]

    def _next_reply(self) -> Reply:
        return self.replies.popleft() if self.replies else Reply(delay=self.delay)

    # -- HTTP -----------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    key, value = line.split(":", 1)
                    headers[key.strip().lower()] = value.strip()
            if method == "GET" and headers.get("upgrade", "").lower() == "websocket":
                await self._websocket(head, reader, writer, headers)
                return
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            await self._http(method, path, headers, body, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.transport.abort()

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        return self.api_key is None or headers.get("authorization") == f"Bearer {self.api_key}"

    @staticmethod
    async def _respond_json(
        writer: asyncio.StreamWriter, status: int, data: Any, extra: str = ""
    ) -> None:
        payload = json.dumps(data).encode()
        reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}
        writer.write(
            f"HTTP/1.1 {status} {reason.get(status, 'Error')}\r\nContent-Type: application/json"
            f"{extra}\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
            + payload
        )
        await writer.drain()

    async def _http(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        raw: bytes,
        writer: asyncio.StreamWriter,
    ) -> None:
        if not self._authorized(headers):
            error = {"message": "Incorrect API key provided", "code": "invalid_api_key"}
            await self._respond_json(writer, 401, {"error": error})
            return
        if method != "POST" or path not in ("/v1/responses", "/v1/chat/completions"):
            await self._respond_json(writer, 404, {"error": {"message": f"no route {path}"}})
            return
        body = json.loads(raw or b"{}")
        record = Recorded("http", path, headers, body, len(raw))
        self.requests.append(record)
        if path == "/v1/responses":
            event = {"type": "response.create", **body}
            self._check(event, websocket=False)
        if path == "/v1/chat/completions":
            await self._chat(body, record, writer)
            return
        if body.get("previous_response_id"):
            record.answered = "not_found"
            error = {
                "message": f"Previous response with id '{body['previous_response_id']}' not "
                "found (responses are not stored with store=false).",
                "type": "invalid_request_error",
                "param": "previous_response_id",
                "code": "previous_response_not_found",
            }
            await self._respond_json(writer, 400, {"error": error})
            return
        context = list(body.get("input") or [])
        record.context = context
        reply = self._next_reply()
        if reply.http_status != 200:
            record.answered = f"http {reply.http_status}"
            failure = {"message": reply.message, "type": "server_error", "code": None}
            extra = f"\r\nRetry-After: {reply.retry_after}" if reply.retry_after else ""
            await self._respond_json(writer, reply.http_status, {"error": failure}, extra)
            return
        if not body.get("stream"):
            events: list[Mapping[str, Any]] = []

            async def collect(event: Mapping[str, Any]) -> None:
                events.append(event)

            await self._stream(
                collect, body, context, dataclasses.replace(reply, delay=0.0), record
            )
            await self._respond_json(writer, 200, events[-1].get("response", events[-1]))
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
            b"Connection: close\r\n\r\n"
        )

        async def send(event: Mapping[str, Any]) -> None:
            writer.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
            await writer.drain()

        try:
            await self._stream(send, body, context, reply, record, abort=writer.transport.abort)
        except ConnectionError:
            record.answered = "client_gone"  # the client closed the response mid-stream

    async def _chat(
        self, body: dict[str, Any], record: Recorded, writer: asyncio.StreamWriter
    ) -> None:
        """A streaming /chat/completions answer with the same echo reply."""
        context = [m for m in body.get("messages") or [] if m.get("role") != "system"]
        record.context = context
        text = echo_text(context)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
        )
        chat_id = f"chatcmpl-{next(self._ids)}"
        for i in range(0, len(text), 4):
            delta = {"content": text[i : i + 4]}
            chunk = {
                "id": chat_id,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            }
            writer.write(f"data: {json.dumps(chunk)}\n\n".encode())
        usage = {
            "prompt_tokens": len(json.dumps(context)) // 4,
            "completion_tokens": len(text) // 4,
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        last = {
            "id": chat_id,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": usage,
        }
        writer.write(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())
        await writer.drain()

    # -- WebSocket ------------------------------------------------------------------------------

    async def _websocket(
        self,
        head: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        headers: dict[str, str],
    ) -> None:
        protocol = ServerProtocol(max_size=None)
        protocol.receive_data(head)
        request = next(e for e in protocol.events_received() if isinstance(e, Request))

        def flush() -> None:
            for data in protocol.data_to_send():
                if data:
                    writer.write(data)

        if not self._authorized(headers):
            protocol.send_response(protocol.reject(401, "Incorrect API key provided\n"))
            flush()
            await writer.drain()
            return
        if request.path != "/v1/responses":
            protocol.send_response(protocol.reject(404, "no such WebSocket route\n"))
            flush()
            await writer.drain()
            return
        protocol.send_response(protocol.accept(request))
        flush()
        connection = Connection(len(self.connections) + 1, headers)
        self.connections.append(connection)
        if self.close_after_connect > 0:
            self.close_after_connect -= 1
            connection.closed_by_server = "right after connect"
            protocol.send_close(1008, "session refused")
            flush()
            await writer.drain()
            return

        lock = asyncio.Lock()
        active: dict[str, tuple[Reply, _Cancelled]] = {}
        workers: list[asyncio.Task[Any]] = []

        async def send(event: Mapping[str, Any]) -> None:
            async with lock:
                protocol.send_text(json.dumps(event).encode())
                flush()
                await writer.drain()

        def abort(reason: str) -> None:
            connection.closed_by_server = reason
            writer.transport.abort()

        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def worker() -> None:  # answers response.create messages one after the other
            while True:
                message = await queue.get()
                await self._ws_create(message, connection, send, abort, active)

        workers.append(asyncio.create_task(worker()))
        fragments: list[bytes] = []
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                protocol.receive_data(data)
                for frame in protocol.events_received():
                    if not isinstance(frame, Frame):
                        continue
                    if frame.opcode in (Opcode.TEXT, Opcode.CONT):
                        fragments.append(bytes(frame.data))
                        if not frame.fin:
                            continue
                        raw = b"".join(fragments)
                        fragments.clear()
                        await self._ws_message(raw, connection, queue, send, active)
                    elif frame.opcode is Opcode.CLOSE:
                        flush()
                        return
                flush()
                await writer.drain()
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _ws_message(
        self,
        raw: bytes,
        connection: Connection,
        queue: asyncio.Queue[dict[str, Any]],
        send: Send,
        active: dict[str, tuple[Reply, _Cancelled]],
    ) -> None:
        message = json.loads(raw)
        self._check(message, websocket=True)
        connection.messages.append(dict(message))
        message["_size"] = len(raw)
        kind = message.get("type")
        if kind == "response.create":
            await queue.put(message)
        elif kind == "response.cancel":
            found = active.get(str(message.get("response_id")))
            if found is None and not self.reject_all_cancels:
                return  # already finished: nothing to cancel
            reply, cancelled = found or (Reply(reject_cancel=True), _Cancelled())
            if reply.reject_cancel or self.reject_all_cancels:
                error = {
                    "type": "invalid_request_error",
                    "code": "unknown_event_type",
                    "message": "Unsupported event type: 'response.cancel'",
                }
                await send({"type": "error", "status": 400, "error": error})
            elif not reply.ignore_cancel:
                cancelled.event.set()
        else:
            error = {
                "type": "invalid_request_error",
                "code": "unknown_event_type",
                "message": f"Unsupported event type: {kind!r}",
            }
            await send({"type": "error", "status": 400, "error": error})

    async def _ws_create(
        self,
        message: dict[str, Any],
        connection: Connection,
        send: Send,
        abort: Callable[[str], None],
        active: dict[str, tuple[Reply, _Cancelled]],
    ) -> None:
        size = message.pop("_size")
        body = {k: v for k, v in message.items() if k != "type"}
        record = Recorded("ws", "/v1/responses", connection.headers, body, size, connection.number)
        self.requests.append(record)
        reply = self._next_reply()
        if reply.connection_limit:
            record.answered = "connection_limit"
            error = {
                "type": "invalid_request_error",
                "code": "websocket_connection_limit_reached",
                "message": "This WebSocket connection has reached its 60-minute limit.",
            }
            await send({"type": "error", "status": 400, "error": error})
            abort("connection limit")
            return
        previous = body.get("previous_response_id")
        context = list(body.get("input") or [])
        if previous:
            cached = connection.cache.get(previous)
            if cached is None:
                record.answered = "not_found"
                error = {
                    "type": "invalid_request_error",
                    "code": "previous_response_not_found",
                    "message": f"Previous response with id '{previous}' not found.",
                    "param": "previous_response_id",
                }
                await send({"type": "error", "status": 400, "error": error})
                return
            context = cached[0] + cached[1] + context
        record.context = context
        output = await self._stream(send, body, context, reply, record, abort=abort, active=active)
        if output is not None:
            response_id, items = output
            connection.cache[response_id] = (context, items)

    # -- one response ---------------------------------------------------------------------------

    async def _stream(
        self,
        send: Send,
        body: Mapping[str, Any],
        context: list[Any],
        reply: Reply,
        record: Recorded,
        *,
        abort: Callable[..., None] | None = None,
        active: dict[str, tuple[Reply, _Cancelled]] | None = None,
    ) -> tuple[str, list[Any]] | None:
        """Send the events of one response; the (id, output) of a completed one."""
        if reply.error is not None:
            record.answered = "error"
            code, text = reply.error
            error = {"type": "server_error", "code": code, "message": text}
            await send({"type": "error", "status": 500, "error": error})
            return None
        response_id = f"resp_{next(self._ids):04d}"
        seq = itertools.count()
        model = body.get("model", "test-model")
        cancelled = _Cancelled()
        if active is not None:
            active[response_id] = (reply, cancelled)
        try:
            return await self._events(
                send, seq, response_id, model, context, reply, record, cancelled, abort
            )
        finally:
            if active is not None:
                active.pop(response_id, None)

    async def _events(
        self,
        send: Send,
        seq: itertools.count[int],
        response_id: str,
        model: str,
        context: list[Any],
        reply: Reply,
        record: Recorded,
        cancelled: _Cancelled,
        abort: Callable[..., None] | None,
    ) -> tuple[str, list[Any]] | None:
        def response(status: str, output: list[Any], **extra: Any) -> dict[str, Any]:
            return {
                "id": response_id,
                "object": "response",
                "created_at": 1700000000,
                "model": model,
                "status": status,
                "output": output,
                "parallel_tool_calls": True,
                "tool_choice": "auto",
                "tools": [],
                **extra,
            }

        async def emit(kind: str, **fields: Any) -> None:
            await send({"type": kind, "sequence_number": next(seq), **fields})

        if reply.start_delay:
            await asyncio.sleep(reply.start_delay)
        await emit("response.created", response=response("in_progress", []))
        await emit("response.in_progress", response=response("in_progress", []))
        text = echo_text(context) if reply.text is None and not reply.tool_calls else reply.text
        output: list[Any] = []
        deltas = 0
        if text:
            item_id = f"msg_{response_id}"
            item = {
                "id": item_id,
                "type": "message",
                "role": "assistant",
                "status": "in_progress",
                "content": [],
            }
            await emit("response.output_item.added", output_index=0, item=item)
            part = {"type": "output_text", "text": "", "annotations": []}
            await emit(
                "response.content_part.added",
                item_id=item_id,
                output_index=0,
                content_index=0,
                part=part,
            )
            for i in range(0, len(text), reply.chunk):
                if reply.delay:
                    await asyncio.sleep(reply.delay)
                if cancelled.event.is_set():
                    await self._cancelled(emit, response, reply, record, output)
                    return None
                if reply.drop_after is not None and deltas >= reply.drop_after and abort:
                    record.answered = "dropped"
                    abort("dropped mid-response")
                    return None
                await emit(
                    "response.output_text.delta",
                    item_id=item_id,
                    output_index=0,
                    content_index=0,
                    delta=text[i : i + reply.chunk],
                    logprobs=[],
                )
                deltas += 1
            done_part = {"type": "output_text", "text": text, "annotations": []}
            await emit(
                "response.output_text.done",
                item_id=item_id,
                output_index=0,
                content_index=0,
                text=text,
                logprobs=[],
            )
            await emit(
                "response.content_part.done",
                item_id=item_id,
                output_index=0,
                content_index=0,
                part=done_part,
            )
            final = {**item, "status": "completed", "content": [done_part]}
            await emit("response.output_item.done", output_index=0, item=final)
            output.append(final)
        for call_id, name, arguments in reply.tool_calls:
            index = len(output)
            fc_id = f"fc_{call_id}"
            item = {
                "id": fc_id,
                "type": "function_call",
                "call_id": call_id,
                "name": name,
                "arguments": "",
                "status": "in_progress",
            }
            await emit("response.output_item.added", output_index=index, item=item)
            for i in range(0, len(arguments), 5):
                await emit(
                    "response.function_call_arguments.delta",
                    item_id=fc_id,
                    output_index=index,
                    delta=arguments[i : i + 5],
                )
            await emit(
                "response.function_call_arguments.done",
                item_id=fc_id,
                output_index=index,
                arguments=arguments,
                name=name,
            )
            final = {**item, "arguments": arguments, "status": "completed"}
            await emit("response.output_item.done", output_index=index, item=final)
            output.append(final)
        if cancelled.event.is_set():
            await self._cancelled(emit, response, reply, record, output)
            return None
        if reply.status == "failed":
            record.answered = "failed"
            error = {"code": "server_error", "message": reply.message}
            await emit("response.failed", response=response("failed", output, error=error))
            return None
        if reply.status == "incomplete":
            record.answered = "incomplete"
            details = {"reason": "max_output_tokens"}
            await emit(
                "response.incomplete",
                response=response("incomplete", output, incomplete_details=details),
            )
            return None
        usage: dict[str, Any] = (
            dict(reply.usage)
            if reply.usage
            else {
                "input_tokens": len(json.dumps(context)) // 4,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": max(1, len(text or "") // 4),
                "output_tokens_details": {"reasoning_tokens": 0},
            }
        )
        usage.setdefault("total_tokens", usage["input_tokens"] + usage["output_tokens"])
        record.answered = "completed"
        await emit("response.completed", response=response("completed", output, usage=usage))
        return response_id, output

    async def _cancelled(
        self,
        emit: Callable[..., Awaitable[None]],
        response: Callable[..., dict[str, Any]],
        reply: Reply,
        record: Recorded,
        output: list[Any],
    ) -> None:
        record.answered = "cancelled"
        if reply.cancel_delay:
            await asyncio.sleep(reply.cancel_delay)
        await emit("response.incomplete", response=response("cancelled", output))
