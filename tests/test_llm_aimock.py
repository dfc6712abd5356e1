"""chat(), warmup() and the CLI against ``@copilotkit/aimock``, a real OpenAI-compatible mock.

aimock is an independent implementation of the streaming protocol (Node, its own SSE framing,
role/usage chunks, ``[DONE]``), so these tests check voicekit against a peer it was not written
alongside. Its request journal shows what voicekit sent, validated with the openai types.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import AimockPeer
from returns.result import Success
from servers.openai_wire import validate_chat_request

from voicekit import Finish, ProviderStatusError, Session, Token, ToolCall, Usage
from voicekit.llm import chat, custom, hermes, warmup

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    },
}


async def journal_entry(peer: AimockPeer, request_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.get(
            peer.url + "/__aimock/journal", params={"requestId": request_id}
        )
    entries = response.json()
    assert len(entries) == 1, entries
    entry: dict[str, Any] = entries[0]
    return entry


async def test_tool_call_usage_and_done(aimock: AimockPeer) -> None:
    request_id = f"vk-{uuid.uuid4().hex}"
    ep = custom(base_url=aimock.base_url, model="m", headers={"X-Request-Id": request_id})
    messages = [{"role": "user", "content": "weather in rome?"}]
    events = [e async for e in chat(ep, messages, tools=[WEATHER_TOOL], system="Be brief.")]
    assert events[:3] == [
        Token("Let me check."),
        ToolCall("call_weather_1", "get_weather", '{"city":"Rome","unit":"celsius"}'),
        Usage(prompt_tokens=42, completion_tokens=17),
    ]
    assert len(events) == 4 and isinstance(events[3], Finish)
    assert events[3].reason == "tool_calls"
    assert (events[3].response_id or "").startswith("chatcmpl-")

    entry = await journal_entry(aimock, request_id)
    body = {k: v for k, v in entry["body"].items() if not k.startswith("_")}
    validate_chat_request(body)
    assert body["tools"] == [WEATHER_TOOL]
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, *messages]
    assert "authorization" not in entry["headers"]


async def test_text_reply_with_session_headers(aimock: AimockPeer) -> None:
    request_id = f"vk-{uuid.uuid4().hex}"
    ep = hermes(base_url=aimock.base_url, api_key="k1", session_key_from="caller_hash")
    ep = ep.replace(headers={"X-Request-Id": request_id})
    session = Session(call_id="CA123", caller="+15551110000").add_user("hi")
    events = [e async for e in chat(ep, session)]
    assert "".join(e.text for e in events if isinstance(e, Token)) == (
        "Hello from aimock, nice to meet you!"
    )
    assert events[-2:] == [Usage(9, 8), Finish("stop", events[-1].response_id)]

    entry = await journal_entry(aimock, request_id)
    headers = entry["headers"]
    assert "authorization" in headers  # aimock redacts its value in the journal
    assert headers["x-hermes-session-id"] == "patter-call-CA123"
    assert headers["x-hermes-session-key"] == "patter-caller-03de84388b1fa58e"
    assert entry["body"]["user"] == "patter-call-CA123"
    assert "15551110000" not in json.dumps(entry)


async def test_unmatched_request_is_a_status_error(aimock: AimockPeer) -> None:
    ep = custom(base_url=aimock.base_url, model="m")
    with pytest.raises(ProviderStatusError, match="No fixture matched") as caught:
        _ = [e async for e in chat(ep, [{"role": "user", "content": "no such fixture"}])]
    assert caught.value.status_code == 404


async def test_warmup_lists_models(aimock: AimockPeer) -> None:
    result = await warmup(custom(base_url=aimock.base_url, model="gpt-4o"))
    assert isinstance(result, Success) and "gpt-4o" in result.unwrap()


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "voicekit.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_chat_streams_a_tool_call(aimock: AimockPeer, tmp_path: Path) -> None:
    schema = tmp_path / "tools.json"
    schema.write_text(json.dumps([WEATHER_TOOL]))
    code, out, err = await run_cli(
        "chat", "--llm", "custom", "--base-url", aimock.base_url, "--model", "m",
        "--tool-schema", str(schema), "--call-id", "CA1", "weather in rome?",
    )  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "Let me check."
    assert json.loads(lines[1]) == {
        "tool_call": {
            "id": "call_weather_1",
            "name": "get_weather",
            "arguments": '{"city":"Rome","unit":"celsius"}',
        }
    }
    assert "tokens: prompt=42 completion=17" in err and "finish: tool_calls" in err


async def test_cli_doctor(aimock: AimockPeer) -> None:
    code, out, _ = await run_cli("doctor", "--base-url", aimock.base_url, "--model", "gpt-4o")
    assert code == 0 and "ok:" in out and "'gpt-4o' is listed" in out
    code, out, _ = await run_cli("doctor", "--base-url", "http://127.0.0.1:9/v1", "--model", "m")
    assert code == 1 and "fail: could not connect" in out
