"""The endpoint's key never shows: not in a repr, an error, ReplyFailed, a log record or the
CLI's output (issue 9, item 10) — with DEBUG logging on, against real local servers."""

from __future__ import annotations

import json
import logging

import pytest
from servers.responses_server import ResponsesServer
from servers.sse_server import Reply, SSEServer

from voicekit import ProviderStatusError, ReplyFailed, Session, agent, collect
from voicekit.llm import Endpoint, ResponsesSocket, chat, custom, warmup

KEY = "sk-live-THISISASECRET-42"
PASSWORD = "hunter2-PASSWORD-9"


def echoing(status: int = 401) -> Reply:
    """An error body that quotes the key back, as some gateways do."""
    body = json.dumps({"error": {"message": f"invalid api key {KEY} for this project"}})
    return Reply(
        status=status, headers=[("Content-Type", "application/json")], body=body.encode()
    )


def assert_clean(text: str) -> None:
    assert KEY not in text and PASSWORD not in text, text


@pytest.fixture(autouse=True)
def debug_logging(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    logging.basicConfig(level=logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    return caplog


async def test_an_echoed_key_is_redacted_from_the_error(
    sse_server: SSEServer, debug_logging: pytest.LogCaptureFixture
) -> None:
    sse_server.enqueue(echoing())
    ep = custom(base_url=sse_server.base_url, model="m", api_key=KEY)
    with pytest.raises(ProviderStatusError) as caught:
        async for _ in chat(ep, [{"role": "user", "content": "hi"}]):
            pass
    assert "invalid api key *** for this project" in str(caught.value)
    assert_clean(str(caught.value))
    assert_clean(caught.value.body)
    assert_clean(debug_logging.text)


async def test_reply_failed_and_the_agents_log_line_are_clean(
    sse_server: SSEServer, debug_logging: pytest.LogCaptureFixture
) -> None:
    sse_server.enqueue(echoing(500))
    ep = custom(base_url=sse_server.base_url, model="m", api_key=KEY)
    from voicekit import TurnEnded, tts

    bot = agent(llm=ep, tts=tts.tones(), session=Session(), llm_error_message="Sorry.")
    out = await collect([TurnEnded("hi")] | bot)
    failed = [item for item in out if isinstance(item, ReplyFailed)]
    assert failed and "***" in failed[0].error
    assert_clean(failed[0].error)
    assert_clean(debug_logging.text)


async def test_warmup_failures_are_clean(sse_server: SSEServer) -> None:
    body = json.dumps({"error": f"key {KEY} revoked"}).encode()
    for _ in range(2):
        sse_server.enqueue(Reply(status=403, headers=[("Content-Type", "text/plain")], body=body))
    ep = custom(base_url=sse_server.base_url, model="m", api_key=KEY)
    result = await warmup(ep)
    assert_clean(str(result))


def test_userinfo_in_the_url_is_not_shown(sse_server: SSEServer) -> None:
    url = sse_server.base_url.replace("http://", f"http://alice:{PASSWORD}@")
    ep = Endpoint(base_url=url, model="m", api_key=KEY)
    assert_clean(repr(ep))
    assert "***@" in repr(ep) and "<set>" in repr(ep)


async def test_userinfo_in_the_url_is_not_in_errors() -> None:
    ep = Endpoint(base_url=f"http://alice:{PASSWORD}@127.0.0.1:9/v1", model="m")
    with pytest.raises(Exception) as caught:
        async for _ in chat(ep, [{"role": "user", "content": "hi"}]):
            pass
    assert_clean(str(caught.value))
    assert "alice" not in str(caught.value)


async def test_the_websocket_handshake_log_is_redacted(
    debug_logging: pytest.LogCaptureFixture,
) -> None:
    async with ResponsesServer(api_key=KEY) as server:
        ep = Endpoint(base_url=server.base_url, model="gpt-test", api_key=KEY)
        async with ResponsesSocket(ep):
            pass
    # The test server (websockets.server) logs what it received: it is not voicekit.
    handshake = [r for r in debug_logging.records if r.name == "voicekit.llm.responses.handshake"]
    assert any("Authorization" in r.getMessage() for r in handshake), "no handshake log seen"
    assert_clean("\n".join(r.getMessage() for r in handshake))
    ours = [r for r in debug_logging.records if not r.name.startswith("websockets.server")]
    assert_clean("\n".join(r.getMessage() for r in ours))
