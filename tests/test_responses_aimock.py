"""The Responses API variants against ``@copilotkit/aimock``, a third-party server: over SSE and
over its Responses WebSocket (an npm peer: ``npm ci --prefix tests/peers``).

aimock matches fixtures on the last user message (or a tool call id), ignores
``previous_response_id`` and answers ``response.cancel`` with an ``error`` once the response
it is streaming has finished — so a barge-in here exercises the "cancel rejected after the end"
path for real.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from returns.io import IOSuccess

from voicekit import Session, Token, ToolCall, Usage
from voicekit.llm import (
    ReconnectPolicy,
    ResponsesSocket,
    ResponsesState,
    reply_text,
    respond,
    responses,
    responses_ws,
    update_session,
)
from voicekit.llm.endpoint import Endpoint

CLI = (
    Path(__file__).parent / "peers" / "node_modules" / "@copilotkit" / "aimock" / "dist" / "cli.js"
)
STORY = "Long ago, in a quiet harbour town, a lighthouse keeper kept a secret. " * 2
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
FIXTURES = {
    "fixtures": [
        {"match": {"toolCallId": "call_paris"}, "response": {"content": "It is 18 C in Paris."}},
        {
            "match": {"userMessage": "weather in paris?"},
            "response": {
                "toolCalls": [
                    {"id": "call_paris", "name": "get_weather", "arguments": {"city": "Paris"}}
                ]
            },
        },
        {
            "match": {"userMessage": "hello there"},
            "response": {"content": "Hi! How can I help?"},
            "chunkSize": 5,
        },
        {
            "match": {"userMessage": "tell me a long story"},
            "response": {"content": STORY},
            "latency": 10,
            "chunkSize": 4,
        },
        {"match": {"userMessage": "thanks"}, "response": {"content": "You're welcome."}},
    ]
}


@pytest.fixture(scope="module")
def aimock_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """aimock on 127.0.0.1 with this module's fixtures; fails (never skips) if not installed."""
    node = shutil.which("node")
    if node is None or not CLI.exists():
        pytest.fail("aimock is not installed: run `npm ci --prefix tests/peers`", pytrace=False)
    fixtures = tmp_path_factory.mktemp("aimock") / "responses.json"
    fixtures.write_text(json.dumps(FIXTURES))
    proc = subprocess.Popen(
        [node, str(CLI), "-p", "0", "-h", "127.0.0.1", "-f", str(fixtures)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert proc.stdout is not None
    url, seen, deadline = None, [], time.monotonic() + 20
    while url is None and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        url = found.group(1) if found else None
    if url is None:
        proc.kill()
        proc.wait()
        pytest.fail("aimock did not start:\n" + "".join(seen), pytrace=False)
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep its pipe drained
    try:
        yield url + "/v1"
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def endpoint(base_url: str) -> Endpoint:
    return Endpoint(base_url=base_url, model="gpt-4.1", api_key="sk-aimock-test")


async def test_sse_text_stream(aimock_url: str) -> None:
    events = [e async for e in responses(endpoint(aimock_url), Session().add_user("hello there"))]
    assert reply_text(events) == "Hi! How can I help?"
    assert len([e for e in events if isinstance(e, Token)]) > 1
    assert isinstance(events[-2], Usage)
    assert events[-1].reason == "stop" and events[-1].response_id.startswith("resp")


async def test_sse_tool_call(aimock_url: str) -> None:
    session = Session().add_user("weather in paris?")
    events = [e async for e in responses(endpoint(aimock_url), session, tools=[WEATHER])]
    (call,) = [e for e in events if isinstance(e, ToolCall)]
    assert (call.id, call.name, json.loads(call.arguments)) == (
        "call_paris",
        "get_weather",
        {"city": "Paris"},
    )
    assert events[-1].reason == "tool_calls"


async def test_one_shot_respond(aimock_url: str) -> None:
    result = await respond(endpoint(aimock_url), Session().add_user("hello there"))
    assert result == IOSuccess("Hi! How can I help?")


async def test_websocket_conversation_with_tools_and_a_barge_in(aimock_url: str) -> None:
    ep = endpoint(aimock_url)
    fast = ReconnectPolicy(min_wait=0.01, max_wait=0.05, multiplier=0.01)

    async def turn(session: Session, sock: ResponsesSocket) -> tuple[list[Any], Session]:
        events = [e async for e in responses_ws(ep, session, socket=sock, tools=[WEATHER])]
        return events, update_session(session, events)

    async with ResponsesSocket(ep, reconnect=fast) as sock:
        events, session = await turn(Session().add_user("hello there"), sock)
        assert reply_text(events) == "Hi! How can I help?"
        session = session.add_assistant(reply_text(events)).add_user("weather in paris?")

        events, session = await turn(session, sock)
        state = next(e for e in events if isinstance(e, ResponsesState))
        assert state.incremental and state.sent_items == 1
        (call,) = [e for e in events if isinstance(e, ToolCall)]
        session = session.add_tool_call(call.id, call.name, call.arguments)
        session = session.add_tool_result(call.id, {"temp_c": 18})

        events, session = await turn(session, sock)
        state = next(e for e in events if isinstance(e, ResponsesState))
        assert state.incremental and state.sent_items == 1  # just the function_call_output
        assert reply_text(events) == "It is 18 C in Paris."
        session = session.add_assistant(reply_text(events)).add_user("tell me a long story")

        heard = ""
        stream = responses_ws(ep, session, socket=sock, tools=[WEATHER])
        async with contextlib.aclosing(stream) as live:
            async for event in live:
                if isinstance(event, Token):
                    heard += event.text
                    if len(heard) >= 8:
                        break  # barge-in
        assert sock.stats.cancels == 1
        session = session.add_assistant(heard, interrupted=True).add_user("thanks")

        events, session = await turn(session, sock)
        assert reply_text(events) == "You're welcome."
        assert "lighthouse" not in reply_text(events) and heard not in reply_text(events)
        # aimock rejects response.cancel: a fresh connection and one full-context retry
        state = next(e for e in events if isinstance(e, ResponsesState))
        assert state.attempts == 2 and not state.incremental
        assert sock.stats.connects == 2
