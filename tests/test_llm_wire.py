"""What voicekit puts on the wire, per preset, captured by a real server on 127.0.0.1.

The Hermes / OpenClaw / custom cases are the captured Patter requests (wire-compatible apart from
``User-Agent`` and from sending no ``Authorization`` at all when keyless). Every body is also
validated against the ``openai`` package's request types.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from returns.result import Failure, Success
from servers.llm_tables import KEY_VARS, PRESET_TABLE
from servers.openai_wire import validate_chat_request
from servers.sse_server import SSEServer, json_reply

from voicekit import Session
from voicekit.llm import (
    DEFAULT_USER_AGENT,
    Endpoint,
    chat,
    custom,
    hermes,
    openclaw,
    preset,
    warmup,
)

HI = [{"role": "user", "content": "hi"}]
LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look something up.",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
    },
}
CALLER = "+15551110000"
CALLER_KEY = "patter-caller-03de84388b1fa58e"
TRANSPORT = {"host", "content-length", "accept-encoding", "connection"}
BASE_HEADERS = {
    "user-agent": DEFAULT_USER_AGENT,
    "content-type": "application/json",
    "accept": "text/event-stream",
    "cache-control": "no-store",
}
STREAM = {"stream": True, "stream_options": {"include_usage": True}}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KEY_VARS:
        monkeypatch.delenv(name, raising=False)


async def send(
    server: SSEServer,
    endpoint: Endpoint,
    messages: Any = HI,
    **kwargs: Any,
) -> tuple[dict[str, str], dict[str, Any], bytes]:
    """Run one chat against ``server``; return (headers minus transport ones, body, raw bytes)."""
    events = [e async for e in chat(endpoint, messages, **kwargs)]
    assert events, "the stream yielded nothing"
    recorded = server.requests[-1]
    assert (recorded.method, recorded.path) == ("POST", "/v1/chat/completions")
    headers = {k: v for k, v in recorded.headers.items() if k not in TRANSPORT}
    body = recorded.json()
    validate_chat_request(body)
    raw = "\r\n".join(f"{k}: {v}" for k, v in recorded.header_list).encode() + recorded.body
    return headers, body, raw


# -- the captured Patter cases (reference A.9) -------------------------------------------------


async def test_hermes_keyless_with_a_tool(sse_server: SSEServer) -> None:
    ep = hermes(base_url=sse_server.base_url)
    headers, body, raw = await send(
        sse_server, ep, tools=[LOOKUP], session=Session(call_id="CA123")
    )
    assert headers == {**BASE_HEADERS, "x-hermes-session-id": "patter-call-CA123"}
    assert body == {
        "model": "hermes-agent",
        "messages": HI,
        **STREAM,
        "tools": [LOOKUP],
        "user": "patter-call-CA123",
    }
    assert list(body) == ["model", "messages", "stream", "stream_options", "tools", "user"]
    assert b"EMPTY" not in raw and b"authorization" not in raw.lower()


async def test_hermes_keyed_caller_hash_sampling(sse_server: SSEServer) -> None:
    ep = hermes(
        "hermes-x",
        api_key="k1",
        base_url=sse_server.base_url,
        session_key_from="caller_hash",
        temperature=0.3,
        max_tokens=100,
    )
    headers, body, raw = await send(sse_server, ep, session=Session(call_id="CA123", caller=CALLER))
    assert headers == {
        **BASE_HEADERS,
        "authorization": "Bearer k1",
        "x-hermes-session-id": "patter-call-CA123",
        "x-hermes-session-key": CALLER_KEY,
    }
    assert body == {
        "model": "hermes-x",
        "messages": HI,
        **STREAM,
        "temperature": 0.3,
        "max_completion_tokens": 100,
        "user": "patter-call-CA123",
    }
    assert b"15551110000" not in raw  # the raw caller never leaves the process


async def test_hermes_empty_session_key_sends_no_header(sse_server: SSEServer) -> None:
    ep = hermes(base_url=sse_server.base_url, session_key="")
    headers, _, _ = await send(sse_server, ep, session=Session(call_id="CA123"))
    assert "x-hermes-session-key" not in headers


async def test_hermes_static_session_key_and_extra_header(sse_server: SSEServer) -> None:
    ep = hermes(base_url=sse_server.base_url, session_key="static-scope", headers={"X-Foo": "1"})
    headers, _, _ = await send(sse_server, ep, session=Session(call_id="CA123"))
    assert headers == {
        **BASE_HEADERS,
        "x-foo": "1",
        "x-hermes-session-id": "patter-call-CA123",
        "x-hermes-session-key": "static-scope",
    }


async def test_openclaw_key_from_env(
    sse_server: SSEServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENCLAW_API_KEY", "oc-token")
    ep = openclaw("receptionist", base_url=sse_server.base_url)
    headers, body, _ = await send(sse_server, ep, session=Session(call_id="CA77"))
    assert headers == {
        **BASE_HEADERS,
        "authorization": "Bearer oc-token",
        "x-openclaw-session-key": "CA77",
    }
    assert body == {
        "model": "openclaw/receptionist",
        "messages": HI,
        **STREAM,
        "user": "patter-call-CA77",
    }


def _custom_memory(base_url: str) -> Endpoint:
    return custom(
        base_url=base_url,
        model="m",
        session_id_header="X-My-Session-Id",
        session_id_prefix="patter-call-",
        session_key_header="X-My-Memory-Key",
        session_key_from="caller_hash",
    )


async def test_custom_session_headers_without_user(sse_server: SSEServer) -> None:
    ep = _custom_memory(sse_server.base_url)
    assert ep.timeout == 60.0
    headers, body, raw = await send(sse_server, ep, session=Session(call_id="CA55", caller=CALLER))
    assert headers == {
        **BASE_HEADERS,
        "x-my-session-id": "patter-call-CA55",
        "x-my-memory-key": CALLER_KEY,
    }
    assert body == {"model": "m", "messages": HI, **STREAM}
    assert b"15551110000" not in raw


async def test_custom_without_caller_omits_the_memory_header(sse_server: SSEServer) -> None:
    headers, _, _ = await send(
        sse_server, _custom_memory(sse_server.base_url), session=Session(call_id="CA55")
    )
    assert headers == {**BASE_HEADERS, "x-my-session-id": "patter-call-CA55"}


# -- every preset ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRESET_TABLE))
async def test_service_preset_wire(
    name: str, sse_server: SSEServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, key_env, developer_role, max_param = PRESET_TABLE[name]
    if key_env:
        monkeypatch.setenv(key_env, f"key-{name}")
    ep = preset(name, "model-x", base_url=sse_server.base_url, max_tokens=50, seed=7)
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]
    headers, body, _ = await send(
        sse_server, ep, messages, session=Session(call_id="CA1", caller=CALLER), system="Sys."
    )
    expected_headers = dict(BASE_HEADERS)
    if key_env:
        expected_headers["authorization"] = f"Bearer key-{name}"
    assert headers == expected_headers  # no session signals unless configured
    assert body == {
        "model": "model-x",
        "messages": [
            {"role": "system", "content": "Sys."},
            {"role": "developer" if developer_role else "user", "content": "Be brief."},
            {"role": "user", "content": "hi"},
        ],
        **STREAM,
        "seed": 7,
        max_param: 50,
    }


async def test_hermes_and_openclaw_without_a_session_send_no_session_signals(
    sse_server: SSEServer,
) -> None:
    for ep in (hermes(base_url=sse_server.base_url), openclaw("a", base_url=sse_server.base_url)):
        headers, body, _ = await send(sse_server, ep)
        assert headers == BASE_HEADERS
        assert "user" not in body


# -- each signal on its own -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "header", "user"),
    [
        ({"user_prefix": "u-"}, None, "u-CA9"),
        ({"user_prefix": ""}, None, "CA9"),
        ({"session_id_header": "X-Call"}, ("x-call", "CA9"), None),
        ({"session_id_header": "X-Call", "session_id_prefix": "p-"}, ("x-call", "p-CA9"), None),
        ({"session_key_header": "X-Mem", "session_key": "tenant"}, ("x-mem", "tenant"), None),
        (
            {"session_key_header": "X-Mem", "session_key_factory": lambda s: f"f-{s.call_id}"},
            ("x-mem", "f-CA9"),
            None,
        ),
        ({"session_key_header": "X-Mem"}, None, None),
    ],
)
async def test_session_signals_are_independent(
    sse_server: SSEServer,
    options: dict[str, Any],
    header: tuple[str, str] | None,
    user: str | None,
) -> None:
    ep = custom(base_url=sse_server.base_url, model="m", **options)
    headers, body, _ = await send(sse_server, ep, session=Session(call_id="CA9", caller=CALLER))
    expected = dict(BASE_HEADERS)
    if header:
        expected[header[0]] = header[1]
    assert headers == expected
    assert body.get("user") == user


async def test_session_as_messages_and_voicekit_only_keys_dropped(sse_server: SSEServer) -> None:
    session = (
        Session(call_id="CA3")
        .add_user("What's the weather?")
        .add_assistant("It is", interrupted=True)
        .add_user("go on")
    )
    ep = hermes(base_url=sse_server.base_url)
    headers, body, _ = await send(sse_server, ep, session)
    assert headers["x-hermes-session-id"] == "patter-call-CA3"
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert all("interrupted" not in m for m in body["messages"])


async def test_bare_function_schemas_are_wrapped(sse_server: SSEServer) -> None:
    ep = custom(base_url=sse_server.base_url, model="m", tool_choice="auto")
    _, body, _ = await send(sse_server, ep, tools=[LOOKUP["function"]])
    assert body["tools"] == [LOOKUP]
    assert body["tool_choice"] == "auto"


async def test_extra_body_and_sampling(sse_server: SSEServer) -> None:
    ep = custom(
        base_url=sse_server.base_url,
        model="m",
        stop=["\n\n"],
        top_p=0.5,
        response_format={"type": "text"},
        parallel_tool_calls=False,
        extra_body={"metadata": {"k": "v"}},
    )
    _, body, _ = await send(sse_server, ep)
    assert body["stop"] == ["\n\n"] and body["top_p"] == 0.5
    assert body["response_format"] == {"type": "text"}
    assert body["parallel_tool_calls"] is False
    assert body["metadata"] == {"k": "v"}


async def test_the_request_type_check_catches_a_bad_body() -> None:
    """The validator used above really rejects what the openai types reject."""
    with pytest.raises(AssertionError, match="interrupted"):
        validate_chat_request({"model": "m", "stream": True, "messages": [
            {"role": "assistant", "content": "x", "interrupted": True}
        ]})  # fmt: skip
    with pytest.raises(AssertionError, match="max_tokenz"):
        validate_chat_request({"model": "m", "stream": True, "messages": HI, "max_tokenz": 1})


# -- warm-up --------------------------------------------------------------------------------------


async def test_warmup_keyless_sends_no_authorization(sse_server: SSEServer) -> None:
    ep = hermes(base_url=sse_server.base_url)
    assert await warmup(ep) == Success(["test-model", "other-model"])
    recorded = sse_server.requests[-1]
    assert (recorded.method, recorded.path) == ("GET", "/v1/models")
    headers = {k: v for k, v in recorded.headers.items() if k not in TRANSPORT}
    assert headers == {"user-agent": DEFAULT_USER_AGENT, "accept": "*/*"}


async def test_warmup_keyed_with_extra_headers(sse_server: SSEServer) -> None:
    ep = custom(base_url=sse_server.base_url, model="m", api_key="k1", headers={"X-Foo": "1"})
    assert isinstance(await warmup(ep), Success)
    headers = sse_server.requests[-1].headers
    assert headers["authorization"] == "Bearer k1" and headers["x-foo"] == "1"


async def test_warmup_failures_are_values(sse_server: SSEServer) -> None:
    ep = custom(base_url=sse_server.base_url, model="m")
    sse_server.handler = lambda request: json_reply(401, {"error": {"message": "bad key"}})
    result = await warmup(ep)
    assert isinstance(result, Failure)
    assert "HTTP 401" in result.failure() and "bad key" in result.failure()
    dead = custom(base_url="http://127.0.0.1:9/v1", model="m")
    result = await warmup(dead)
    assert isinstance(result, Failure) and "could not connect" in result.failure()


async def test_warmup_times_out_in_five_seconds_budget(
    sse_server: SSEServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    warmup_module = importlib.import_module("voicekit.llm._warmup")
    assert warmup_module.WARMUP_TIMEOUT == 5.0
    monkeypatch.setattr(warmup_module, "WARMUP_TIMEOUT", 0.2)
    sse_server.handler = lambda request: json_reply(200, {"data": []}, delay=2)
    result = await warmup(custom(base_url=sse_server.base_url, model="m"))
    assert isinstance(result, Failure) and "did not answer within 0.2 s" in result.failure()
