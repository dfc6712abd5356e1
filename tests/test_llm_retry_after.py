"""``Retry-After`` is honoured when status retries are on, and carried on the error (issue 9,
item 12), against the real local SSE server."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from servers.sse_server import Reply, SSEServer, text_reply

from voicekit import ProviderStatusError, Token
from voicekit.llm import RetryPolicy, chat, custom, responses

HI = [{"role": "user", "content": "hi"}]


def busy(retry_after: str, status: int = 429) -> Reply:
    body = json.dumps({"error": {"message": "slow down"}}).encode()
    return Reply(
        status=status,
        headers=[("Content-Type", "application/json"), ("Retry-After", retry_after)],
        body=body,
    )


async def collect(source: Any) -> list[Any]:
    return [event async for event in source]


async def test_the_wait_is_the_servers_retry_after_not_the_backoff(sse_server: SSEServer) -> None:
    sse_server.enqueue(busy("1"), text_reply(["ok"]))
    ep = custom(base_url=sse_server.base_url, model="m", retry=RetryPolicy(status=1, backoff=0))
    start = time.monotonic()
    events = await collect(chat(ep, HI))
    elapsed = time.monotonic() - start
    assert events[0] == Token("ok") and len(sse_server.requests) == 2
    assert elapsed >= 0.95, elapsed  # before the fix: retried after 0 s


async def test_a_retry_after_beyond_the_cap_is_raised_at_once(sse_server: SSEServer) -> None:
    sse_server.enqueue(busy("30"), text_reply(["never"]))
    ep = custom(base_url=sse_server.base_url, model="m", retry=RetryPolicy(status=2, backoff=0))
    start = time.monotonic()
    with pytest.raises(ProviderStatusError, match=r"429.*Retry-After: 30 s") as caught:
        await collect(chat(ep, HI))
    assert time.monotonic() - start < 5
    assert caught.value.retry_after == 30.0 and caught.value.status_code == 429
    assert len(sse_server.requests) == 1


async def test_the_error_carries_retry_after_without_retries(sse_server: SSEServer) -> None:
    sse_server.enqueue(busy("Wed, 21 Oct 2015 07:28:05 GMT", status=503))
    ep = custom(base_url=sse_server.base_url, model="m")
    with pytest.raises(ProviderStatusError) as caught:
        await collect(chat(ep, HI))
    assert caught.value.retry_after == 0.0  # a date in the past: no wait
    sse_server.enqueue(busy("2"))
    with pytest.raises(ProviderStatusError) as caught:
        await collect(chat(ep, HI))
    assert caught.value.retry_after == 2.0


async def test_the_responses_api_honours_it_too() -> None:
    from servers.responses_server import Reply as ResponsesReply
    from servers.responses_server import ResponsesServer

    async with ResponsesServer(api_key="sk-test") as server:
        server.enqueue(
            ResponsesReply(http_status=429, retry_after="0.6"),
            ResponsesReply(http_status=429, retry_after="0.6"),
        )
        ep = custom(
            base_url=server.base_url,
            model="m",
            api_key="sk-test",
            retry=RetryPolicy(status=1, backoff=0),
        )
        start = time.monotonic()
        with pytest.raises(ProviderStatusError) as caught:
            await collect(responses(ep, HI))
        assert time.monotonic() - start >= 0.55
        assert caught.value.retry_after == 0.6 and len(server.requests) == 2


def test_the_cap_is_checked() -> None:
    from voicekit import ConfigError

    with pytest.raises(ConfigError, match="max_retry_after"):
        RetryPolicy(max_retry_after=-1)
