"""Parsing and failure handling of chat(), against the scripted SSE server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx
import pytest
from returns.io import IOFailure, IOSuccess
from returns.unsafe import unsafe_perform_io
from servers.sse_server import (
    Reply,
    SSEServer,
    chunk,
    json_reply,
    sse,
    stream_reply,
    text_reply,
    tool_chunks,
)

from voicekit import (
    Finish,
    ProviderConnectError,
    ProviderNoResponse,
    ProviderResponseError,
    ProviderStatusError,
    ProviderStreamError,
    ProviderTimeout,
    Token,
    ToolCall,
    Usage,
)
from voicekit.llm import NO_RETRY, Endpoint, RetryPolicy, chat, complete, custom

HI = [{"role": "user", "content": "hi"}]


def endpoint(server: SSEServer, **options: Any) -> Endpoint:
    return custom(base_url=server.base_url, model="m", **options)


async def collect(ep: Endpoint, **kwargs: Any) -> list[Any]:
    return [event async for event in chat(ep, HI, **kwargs)]


# -- normal streams --------------------------------------------------------------------------------


async def test_text_usage_and_finish(sse_server: SSEServer) -> None:
    sse_server.enqueue(text_reply(["Hel", "lo", " world."]))
    events = await collect(endpoint(sse_server))
    assert events == [
        Token("Hel"),
        Token("lo"),
        Token(" world."),
        Usage(prompt_tokens=11, completion_tokens=3),
        Finish("stop", "chatcmpl-test"),
    ]


async def test_tool_deltas_accumulate_by_index(sse_server: SSEServer) -> None:
    """The captured Patter normalisation case: interleaved fragments of two tool calls."""
    sse_server.enqueue(
        stream_reply(
            [
                chunk(role="assistant"),
                chunk("Hello"),
                chunk(tool_calls=[{"index": 0, "id": "call_A", "type": "function",
                                   "function": {"name": "lookup", "arguments": ""}}]),
                chunk(tool_calls=[{"index": 0, "function": {"arguments": '{"q":'}}]),
                chunk(tool_calls=[{"index": 1, "id": "call_B", "type": "function",
                                   "function": {"name": "other", "arguments": "{}"}}]),
                chunk(tool_calls=[{"index": 0, "function": {"arguments": '"x"}'}}]),
                chunk(finish="tool_calls"),
                chunk(usage={"prompt_tokens": 50, "completion_tokens": 7,
                             "prompt_tokens_details": {"cached_tokens": 20}}, no_choices=True),
            ]
        )
    )  # fmt: skip
    events = await collect(endpoint(sse_server))
    assert events == [
        Token("Hello"),
        ToolCall("call_A", "lookup", '{"q":"x"}'),
        ToolCall("call_B", "other", "{}"),
        Usage(prompt_tokens=50, completion_tokens=7, cached_tokens=20),
        Finish("tool_calls", "chatcmpl-test"),
    ]


async def test_tool_calls_are_emitted_only_when_complete(sse_server: SSEServer) -> None:
    sse_server.enqueue(
        stream_reply(
            [
                *tool_chunks(0, "c1", "lookup", '{"a"', ":1}"),
                chunk("text after the tool deltas"),
                chunk(finish="tool_calls"),
            ],
            done=False,
            end="hang",  # the server keeps the stream open after finish_reason
        )
    )
    seen: list[Any] = []

    async def until_tool_call() -> None:
        async with contextlib.aclosing(chat(endpoint(sse_server), HI)) as events:
            async for event in events:
                seen.append(event)
                if isinstance(event, ToolCall):
                    return

    await asyncio.wait_for(until_tool_call(), 2)  # emitted at finish_reason, not at stream end
    assert seen == [Token("text after the tool deltas"), ToolCall("c1", "lookup", '{"a":1}')]


async def test_tool_calls_without_finish_reason_are_flushed_at_done(sse_server: SSEServer) -> None:
    delta = {"index": 0, "function": {"name": "ping"}}  # no id, no arguments
    sse_server.enqueue(stream_reply([chunk(tool_calls=[delta])]))
    events = await collect(endpoint(sse_server))
    assert events == [ToolCall("call_0", "ping", "{}"), Finish(None, "chatcmpl-test")]


async def test_a_tool_call_without_a_name_is_a_stream_error(sse_server: SSEServer) -> None:
    sse_server.enqueue(
        stream_reply([chunk(tool_calls=[{"index": 0, "id": "x"}]), chunk(finish="tool_calls")])
    )
    with pytest.raises(ProviderStreamError, match="without a function name"):
        await collect(endpoint(sse_server))


async def test_comments_keepalives_and_crlf_are_ignored(sse_server: SSEServer) -> None:
    sse_server.enqueue(
        stream_reply(
            [
                b": keep-alive\n\n",
                b"data:\n\n",
                b"event: ping\ndata: \n\n",
                chunk("a"),
                b": OPENROUTER PROCESSING\r\n\r\n",
                b'data: {"id":"x","choices":[{"index":0,"delta":{"content":"b"}}]}\r\n\r\n',
                chunk(finish="stop"),
            ]
        )
    )
    events = await collect(endpoint(sse_server))
    assert events == [Token("a"), Token("b"), Finish("stop", "chatcmpl-test")]


async def test_nothing_after_done_is_parsed(sse_server: SSEServer) -> None:
    sse_server.enqueue(
        stream_reply(
            [chunk("a"), b"data: [DONE]\n\n", chunk("after"), b"data: {broken\n\n"], done=False
        )
    )
    assert await collect(endpoint(sse_server)) == [Token("a"), Finish(None, "chatcmpl-test")]


async def test_finish_reason_without_done_is_a_complete_reply(sse_server: SSEServer) -> None:
    sse_server.enqueue(stream_reply([chunk("a"), chunk(finish="length")], done=False))
    assert await collect(endpoint(sse_server)) == [Token("a"), Finish("length", "chatcmpl-test")]


@pytest.mark.parametrize(
    ("chunk_extra", "usage"),
    [
        (
            {"usage": {"prompt_tokens": 9, "completion_tokens": 4,
                       "completion_tokens_details": {"reasoning_tokens": 3}}},
            Usage(9, 4, 0, 3),
        ),
        ({"x_groq": {"usage": {"prompt_tokens": 5, "completion_tokens": 2}}}, Usage(5, 2)),
        ({"usage": {"prompt_tokens": 8, "completion_tokens": 1, "prompt_cache_hit_tokens": 6}},
         Usage(8, 1, 6)),
    ],
)  # fmt: skip
async def test_usage_variants(
    sse_server: SSEServer, chunk_extra: dict[str, Any], usage: Usage
) -> None:
    last = {**chunk(finish="stop"), **chunk_extra}
    sse_server.enqueue(stream_reply([chunk("a"), last]))
    events = await collect(endpoint(sse_server))
    assert events[1] == usage


async def test_complete_collects_the_text(sse_server: SSEServer) -> None:
    sse_server.enqueue(text_reply(["Hel", "lo"]), json_reply(500, {"error": {"message": "boom"}}))
    assert await complete(endpoint(sse_server), HI) == IOSuccess("Hello")
    failed = await complete(endpoint(sse_server), HI)
    assert isinstance(failed, IOFailure)
    error = unsafe_perform_io(failed).failure()
    assert isinstance(error, ProviderStatusError) and error.status_code == 500


# -- errors ----------------------------------------------------------------------------------------


async def test_status_error_quotes_the_server_message(sse_server: SSEServer) -> None:
    sse_server.enqueue(json_reply(401, {"error": {"message": "bad key", "type": "auth"}}))
    with pytest.raises(ProviderStatusError) as caught:
        await collect(endpoint(sse_server, api_key="secret-key"))
    error = caught.value
    assert error.status_code == 401 and error.provider == "custom"
    assert "HTTP 401" in str(error) and "bad key" in str(error)
    assert '"type": "auth"' in error.body
    assert "secret-key" not in str(error) + error.body


async def test_status_error_body_is_truncated(sse_server: SSEServer) -> None:
    sse_server.enqueue(Reply(status=502, headers=[("Content-Type", "text/html")], body=b"x" * 5000))
    with pytest.raises(ProviderStatusError) as caught:
        await collect(endpoint(sse_server))
    assert caught.value.status_code == 502
    assert 400 < len(caught.value.body) <= 501 and caught.value.body.endswith("…")
    assert len(str(caught.value)) < 700


async def test_no_silent_retry_on_server_errors(sse_server: SSEServer) -> None:
    sse_server.enqueue(json_reply(503, {"error": "busy"}), text_reply())
    with pytest.raises(ProviderStatusError, match="503"):
        await collect(endpoint(sse_server))
    assert len(sse_server.requests) == 1


async def test_status_retry_is_opt_in(sse_server: SSEServer) -> None:
    sse_server.enqueue(json_reply(503, {"error": "busy"}), text_reply(["ok"]))
    retry = RetryPolicy(status=1, backoff=0)
    events = await collect(endpoint(sse_server, retry=retry))
    assert events[0] == Token("ok") and len(sse_server.requests) == 2


async def test_error_object_in_the_stream(sse_server: SSEServer) -> None:
    error = {"error": {"message": "model overloaded", "type": "server_error", "code": "overloaded"}}
    sse_server.enqueue(stream_reply([chunk("partial"), error], done=False))
    seen: list[Any] = []
    with pytest.raises(ProviderResponseError, match="model overloaded") as caught:
        async for event in chat(endpoint(sse_server), HI):
            seen.append(event)
    assert seen == [Token("partial")]
    assert caught.value.code == "overloaded"


async def test_error_event_type(sse_server: SSEServer) -> None:
    sse_server.enqueue(stream_reply([b'event: error\ndata: {"message": "quota exceeded"}\n\n']))
    with pytest.raises(ProviderResponseError, match="quota exceeded"):
        await collect(endpoint(sse_server))


async def test_malformed_json(sse_server: SSEServer) -> None:
    sse_server.enqueue(stream_reply([chunk("a"), b'data: {"choices": [\n\n']))
    with pytest.raises(ProviderStreamError, match=r"malformed JSON in stream event #2"):
        await collect(endpoint(sse_server))


async def test_non_object_chunk(sse_server: SSEServer) -> None:
    sse_server.enqueue(stream_reply([sse("[1, 2]")]))
    with pytest.raises(
        ProviderStreamError, match=r"sent a non-object in stream event #1: '\[1, 2\]'"
    ):
        await collect(endpoint(sse_server))


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
async def test_wrong_content_type(sse_server: SSEServer, content_type: str | None) -> None:
    headers = [("Content-Type", content_type)] if content_type else []
    sse_server.enqueue(Reply(headers=headers, body=b'{"choices": []}'))
    with pytest.raises(ProviderStreamError, match="not an event stream") as caught:
        await collect(endpoint(sse_server))
    assert repr(content_type or "none") in str(caught.value)


async def test_truncated_stream(sse_server: SSEServer) -> None:
    sse_server.enqueue(stream_reply([chunk("a"), chunk("b")], done=False))
    with pytest.raises(
        ProviderStreamError, match=r"ended after 2 events without \[DONE\] or a finish"
    ):
        await collect(endpoint(sse_server))


async def test_connection_dropped_mid_stream(sse_server: SSEServer) -> None:
    sse_server.enqueue(stream_reply([chunk("a")], done=False, end="drop"), text_reply())
    seen: list[Any] = []
    with pytest.raises(ProviderConnectError, match="dropped mid-stream after 1 events"):
        async for event in chat(endpoint(sse_server), HI):
            seen.append(event)
    assert seen == [Token("a")]
    assert len(sse_server.requests) == 1  # never retried once the response started


async def test_slow_first_byte_times_out(sse_server: SSEServer) -> None:
    sse_server.enqueue(text_reply(delay=3))
    started = time.monotonic()
    with pytest.raises(ProviderTimeout, match=r"no read progress within 0.3 s"):
        await collect(endpoint(sse_server, timeout=0.3))
    assert time.monotonic() - started < 1.5


async def test_stall_mid_stream_times_out(sse_server: SSEServer) -> None:
    sse_server.enqueue(stream_reply([chunk("a"), 3.0, chunk("b")]))
    with pytest.raises(ProviderTimeout, match="after 1 events"):
        await collect(endpoint(sse_server, timeout=0.3))


async def test_connection_refused() -> None:
    ep = custom(base_url="http://127.0.0.1:9/v1", model="m", retry=RetryPolicy(backoff=0))
    with pytest.raises(
        ProviderConnectError, match=r"could not connect to custom at http://127.0.0.1:9/v1"
    ):
        await collect(ep)


@pytest.mark.parametrize("retry", [RetryPolicy(backoff=0, connect=3), NO_RETRY])
async def test_a_server_that_hangs_up_before_answering_is_not_retried(retry: RetryPolicy) -> None:
    """It connected and took the request, so the model may have run: never a second POST, and
    the error says it connected (issue 9, item 12)."""
    accepted = 0

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        await reader.read(1)
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        ep = custom(base_url=f"http://127.0.0.1:{port}/v1", model="m", retry=retry)
        with pytest.raises(ProviderNoResponse, match="accepted the connection") as caught:
            await collect(ep)
        assert isinstance(caught.value, ProviderConnectError)
        assert "could not connect" not in str(caught.value)
    finally:
        server.close()
        await server.wait_closed()
    assert accepted == 1


# -- cancellation and clients ----------------------------------------------------------------------


@pytest.mark.parametrize("injected", [False, True])
async def test_cancel_while_waiting_for_the_first_byte(
    sse_server: SSEServer, injected: bool
) -> None:
    sse_server.enqueue(text_reply(delay=30))
    async with httpx.AsyncClient() as client:
        task = asyncio.create_task(
            collect(endpoint(sse_server), client=client if injected else None)
        )
        await sse_server.wait_requests(1)
        cancelled_at = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gone = await sse_server.wait_disconnect(within=2)
        assert gone.phase == "before-first-byte"
        assert time.monotonic() - cancelled_at < 0.5
        assert not client.is_closed


async def test_consumer_break_closes_the_response(sse_server: SSEServer) -> None:
    sse_server.enqueue(stream_reply([chunk("first")], done=False, end="hang"))
    async with contextlib.aclosing(chat(endpoint(sse_server), HI)) as events:
        async for event in events:
            assert event == Token("first")
            break
    gone = await sse_server.wait_disconnect(within=2)
    assert gone.phase == "mid-body"


async def test_cancel_mid_stream_closes_the_response(sse_server: SSEServer) -> None:
    sse_server.enqueue(stream_reply([chunk("first")], done=False, end="hang"))
    got_first = asyncio.Event()

    async def consume() -> None:
        async for _ in chat(endpoint(sse_server), HI):
            got_first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_first.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await sse_server.wait_disconnect(within=2)).phase == "mid-body"


async def test_injected_client_is_reused_and_left_open(sse_server: SSEServer) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(3):
            sse_server.enqueue(text_reply())
            assert (await collect(endpoint(sse_server), client=client))[-1] == Finish(
                "stop", "chatcmpl-test"
            )
        assert not client.is_closed
    assert sse_server.connections == 1  # one kept-alive connection for all three turns
