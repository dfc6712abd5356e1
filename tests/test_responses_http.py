"""The Responses API over HTTP, against a real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from returns.io import IOFailure, IOSuccess
from returns.unsafe import unsafe_perform_io
from servers.responses_server import Reply, ResponsesServer

from voicekit import (
    Finish,
    ProviderResponseError,
    ProviderStatusError,
    ProviderStreamError,
    Session,
    Token,
    ToolCall,
    Usage,
)
from voicekit.llm import respond, responses
from voicekit.llm.endpoint import Endpoint, RetryPolicy

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture
async def server() -> AsyncIterator[ResponsesServer]:
    async with ResponsesServer(api_key="sk-test") as srv:
        yield srv
        assert not srv.problems, srv.problems  # every body passed the openai types


def endpoint(server: ResponsesServer, **options: Any) -> Endpoint:
    return Endpoint(base_url=server.base_url, model="gpt-test", api_key="sk-test", **options)


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [event async for event in stream]


async def test_streams_tokens_usage_and_finish(server: ResponsesServer) -> None:
    events = await collect(responses(endpoint(server), [{"role": "user", "content": "hi"}]))
    text = "".join(e.text for e in events if isinstance(e, Token))
    assert text == "You said: hi. I know 1 items."
    assert isinstance(events[-2], Usage) and events[-2].prompt_tokens > 0
    assert events[-1] == Finish("stop", "resp_0001")


async def test_request_body_is_full_context_with_store_false(server: ResponsesServer) -> None:
    session = (
        Session(call_id="CA42")
        .add_user("weather in Rome?")
        .add_tool_call("call_1", "get_weather", {"city": "Rome"})
        .add_tool_result("call_1", {"temp": 21})
        .add({"role": "system", "content": "Use Celsius."})
        .add(
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "and this?"},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                ],
            }
        )
    )
    ep = endpoint(server, temperature=0.3, max_tokens=99, user_prefix="vk-")
    await collect(responses(ep, session, tools=[WEATHER], system="Be brief."))
    sent = server.requests[-1]
    body = sent.body
    assert sent.path == "/v1/responses"
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert body["stream"] is True and body["store"] is False
    assert "previous_response_id" not in body
    assert body["instructions"] == "Be brief."
    assert body["temperature"] == 0.3 and body["max_output_tokens"] == 99
    assert body["user"] == "vk-CA42"
    assert body["tools"] == [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather for a city.",
            "parameters": WEATHER["function"]["parameters"],
            "strict": False,
        }
    ]
    kinds = [(i.get("type"), i.get("role")) for i in body["input"]]
    assert kinds == [
        ("message", "user"),
        ("function_call", None),
        ("function_call_output", None),
        ("message", "developer"),
        ("message", "user"),
    ]
    assert body["input"][1]["call_id"] == body["input"][2]["call_id"] == "call_1"
    assert body["input"][4]["content"][1] == {
        "type": "input_image",
        "image_url": "https://x.test/a.png",
        "detail": "auto",
    }


async def test_tool_calls_arrive_complete_before_finish(server: ResponsesServer) -> None:
    server.enqueue(
        Reply(text="Let me check.", tool_calls=[("call_9", "get_weather", '{"city":"Rome"}')])
    )
    events = await collect(
        responses(endpoint(server), [{"role": "user", "content": "rome?"}], tools=[WEATHER])
    )
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert calls == [ToolCall("call_9", "get_weather", '{"city":"Rome"}')]
    assert events.index(calls[0]) < len(events) - 1
    assert events[-1].reason == "tool_calls"


@pytest.mark.parametrize(
    ("reply", "match", "code"),
    [
        (
            Reply(status="failed", message="Content filter triggered"),
            "Content filter",
            "server_error",
        ),
        (Reply(status="incomplete"), "max_output_tokens", "max_output_tokens"),
        (
            Reply(error=("server_error", "Internal server error")),
            "Internal server error",
            "server_error",
        ),
    ],
)
async def test_failed_incomplete_and_error_raise_with_the_server_message(
    server: ResponsesServer, reply: Reply, match: str, code: str
) -> None:
    server.enqueue(reply)
    with pytest.raises(ProviderResponseError, match=match) as info:
        await collect(responses(endpoint(server), [{"role": "user", "content": "x"}]))
    assert info.value.code == code


async def test_non_2xx_is_checked_before_reading_the_stream(server: ResponsesServer) -> None:
    bad = endpoint(server).replace(api_key="sk-wrong")
    with pytest.raises(ProviderStatusError, match="Incorrect API key provided") as info:
        await collect(responses(bad, [{"role": "user", "content": "x"}]))
    assert info.value.status_code == 401
    assert "sk-wrong" not in str(info.value)


async def test_listed_statuses_are_retried_when_the_endpoint_allows(
    server: ResponsesServer,
) -> None:
    server.enqueue(Reply(http_status=503, message="overloaded"))
    ep = endpoint(server, retry=RetryPolicy(status=1, backoff=0))
    events = await collect(responses(ep, [{"role": "user", "content": "x"}]))
    assert [r.answered for r in server.requests] == ["http 503", "completed"]
    assert events[-1].reason == "stop"
    server.enqueue(Reply(http_status=503, message="overloaded"))
    with pytest.raises(ProviderStatusError, match=r"503.*: overloaded"):
        await collect(responses(endpoint(server), [{"role": "user", "content": "x"}]))


async def test_previous_response_id_is_never_sent_over_http(server: ResponsesServer) -> None:
    """HTTP has no connection cache: a session's continuity state is ignored."""
    session = Session().add_user("x").with_continuity("responses", {"response_id": "resp_1"})
    await collect(responses(endpoint(server), session))
    assert "previous_response_id" not in server.requests[-1].body


async def test_a_stream_cut_off_is_an_error(server: ResponsesServer) -> None:
    server.enqueue(Reply(drop_after=2))
    with pytest.raises(ProviderStreamError, match="cut off"):
        await collect(responses(endpoint(server), [{"role": "user", "content": "x"}]))


async def test_a_json_answer_to_a_stream_request_is_a_stream_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"id": "resp_1", "output": []})

    ep = Endpoint(base_url="http://127.0.0.1:9/v1", model="m")
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(ProviderStreamError, match="event stream"):
            await collect(responses(ep, [{"role": "user", "content": "x"}], client=client))


async def _wait_for(predicate: Any, seconds: float = 2.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not true within {seconds} s")


async def test_breaking_out_closes_the_response_at_once(server: ResponsesServer) -> None:
    server.enqueue(Reply(text="x" * 400, delay=0.02))
    stream = responses(endpoint(server), [{"role": "user", "content": "long"}])
    async with contextlib.aclosing(stream) as events:
        async for event in events:
            if isinstance(event, Token):
                break
    await _wait_for(lambda: server.requests[-1].answered == "client_gone")


async def test_cancelling_the_task_closes_the_response(server: ResponsesServer) -> None:
    server.enqueue(Reply(text="x" * 400, delay=0.02))
    first = asyncio.Event()

    async def consume() -> None:
        async for event in responses(endpoint(server), [{"role": "user", "content": "long"}]):
            if isinstance(event, Token):
                first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _wait_for(lambda: server.requests[-1].answered == "client_gone")


async def test_respond_returns_the_text_as_a_future_result(server: ResponsesServer) -> None:
    pending = respond(endpoint(server), [{"role": "user", "content": "hi"}], system="Be brief.")
    await asyncio.sleep(0.05)
    assert server.requests == []  # lazy: nothing sent before it is awaited
    assert await pending == IOSuccess("You said: hi. I know 1 items.")
    body = server.requests[-1].body
    assert body["stream"] is False and body["store"] is False
    assert body["instructions"] == "Be brief."


async def test_respond_failures_are_values(server: ResponsesServer) -> None:
    bad = endpoint(server).replace(api_key="sk-wrong")
    result = await respond(bad, [{"role": "user", "content": "hi"}])
    assert isinstance(result, IOFailure)
    error = unsafe_perform_io(result.failure())
    assert isinstance(error, ProviderStatusError) and error.status_code == 401
    server.enqueue(Reply(status="failed", message="nope"))
    result = await respond(endpoint(server), [{"role": "user", "content": "x"}])
    failed = unsafe_perform_io(result.failure())
    assert isinstance(failed, ProviderResponseError) and "nope" in str(failed)


async def test_keyless_endpoints_send_no_authorization() -> None:
    async with ResponsesServer() as server:
        ep = Endpoint(base_url=server.base_url, model="m", api_key="EMPTY")
        await collect(responses(ep, [{"role": "user", "content": "hi"}]))
        assert "authorization" not in server.requests[-1].headers
        assert server.requests[-1].body["model"] == "m"
