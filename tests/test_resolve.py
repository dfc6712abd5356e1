"""LLM resolution for the CLI: explicit > environment > a local gateway that answers > offline."""

from __future__ import annotations

import functools
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from servers.sse_server import SSEServer, json_reply

from voicekit import ConfigError, Token, llm
from voicekit.llm.local import local_responder
from voicekit.llm.resolve import DEFAULT_GATEWAYS, resolve_llm

NO_ENV: dict[str, str] = {}


def closed_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def endpoint_of(fn: Any) -> llm.Endpoint:
    assert isinstance(fn, functools.partial) and fn.func is llm.chat
    endpoint = fn.args[0]
    assert isinstance(endpoint, llm.Endpoint)
    return endpoint


@pytest.fixture
async def gateway() -> AsyncIterator[SSEServer]:
    """A stand-in local gateway (OpenAI-compatible, keyless) on a port bound here."""
    async with SSEServer() as server:
        server.models = ["qwen2.5:latest", "llama3.2:latest"]
        yield server


@pytest.fixture
async def hanging() -> AsyncIterator[SSEServer]:
    """A port that accepts connections and never answers."""
    async with SSEServer(handler=lambda r: json_reply(200, {"data": []}, delay=30.0)) as server:
        yield server


# ---------------------------------------------------------------------------------------------
# 1. explicit


async def test_explicit_preset_name() -> None:
    fn, description = await resolve_llm("ollama", env=NO_ENV, probe=False)
    ep = endpoint_of(fn)
    assert (ep.name, ep.base_url, ep.model) == ("ollama", "http://127.0.0.1:11434/v1", "llama3.2")
    assert description == (
        "LLM: ollama at http://127.0.0.1:11434/v1, model 'llama3.2' (chosen with --llm)"
    )


async def test_explicit_preset_with_model_and_key_from_env() -> None:
    env = {"GROQ_API_KEY": "gsk-secret"}
    fn, description = await resolve_llm("groq:llama-3.1-8b-instant", env=env, probe=False)
    ep = endpoint_of(fn)
    assert (ep.name, ep.model, ep.api_key) == ("groq", "llama-3.1-8b-instant", "gsk-secret")
    assert "gsk-secret" not in description and "groq" in description


async def test_explicit_preset_without_a_default_model_needs_one() -> None:
    # lmstudio has no default model: without probing (or a server to ask) that is an error
    with pytest.raises(ConfigError, match="model"):
        await resolve_llm("lmstudio", env={"VOICEKIT_LLM_MODEL": ""}, probe=False)
    fn, _ = await resolve_llm("lmstudio", env={"VOICEKIT_LLM_MODEL": "qwen"}, probe=False)
    assert endpoint_of(fn).model == "qwen"


async def test_explicit_url_with_model_and_key_from_env(gateway: SSEServer) -> None:
    env = {"VOICEKIT_LLM_MODEL": "my-model", "VOICEKIT_LLM_API_KEY": "sk-secret"}
    fn, description = await resolve_llm(gateway.base_url, env=env)
    ep = endpoint_of(fn)
    assert (ep.base_url, ep.model, ep.api_key) == (gateway.base_url, "my-model", "sk-secret")
    assert "sk-secret" not in description and "--llm" in description
    assert gateway.requests == []  # a named model needs no probe


async def test_explicit_url_without_model_uses_the_first_listed(gateway: SSEServer) -> None:
    fn, description = await resolve_llm(gateway.base_url, env=NO_ENV)
    assert endpoint_of(fn).model == "qwen2.5:latest"
    assert [(r.method, r.path) for r in gateway.requests] == [("GET", "/v1/models")]
    assert "qwen2.5:latest" in description


async def test_explicit_url_credentials_never_reach_the_description(gateway: SSEServer) -> None:
    url = gateway.base_url.replace("http://", "http://user:hunter2@")
    _, description = await resolve_llm(url, env={"VOICEKIT_LLM_MODEL": "m"})
    assert "hunter2" not in description and "user" not in description


async def test_explicit_local_and_explicit_values() -> None:
    fn, description = await resolve_llm("local", env={"OPENAI_API_KEY": "sk-x"})
    assert fn is local_responder and "offline responder" in description
    ep = llm.custom(base_url="http://127.0.0.1:9/v1", model="m", api_key="sk-secret")
    fn, description = await resolve_llm(ep, env=NO_ENV)
    assert endpoint_of(fn) is ep and "sk-secret" not in description

    async def mine(messages: Any) -> AsyncIterator[Token]:
        yield Token("hi")

    fn, description = await resolve_llm(mine, env=NO_ENV)
    assert fn is mine and "mine" in description


@pytest.mark.parametrize("bad", ["nonsense", "custom", "openclaw", "ftp://host/v1"])
async def test_bad_explicit_choices_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError):
        await resolve_llm(bad, env=NO_ENV, probe=False)


async def test_explicit_beats_the_environment() -> None:
    env = {"OPENAI_API_KEY": "sk-x", "VOICEKIT_LLM_BASE_URL": "http://127.0.0.1:9/v1"}
    fn, _ = await resolve_llm("hermes", env=env, probe=False)
    assert endpoint_of(fn).name == "hermes"


# ---------------------------------------------------------------------------------------------
# 2. environment


async def test_voicekit_llm_base_url_wins_over_openai_key() -> None:
    env = {
        "VOICEKIT_LLM_BASE_URL": "http://127.0.0.1:9999/v1",
        "VOICEKIT_LLM_MODEL": "m1",
        "VOICEKIT_LLM_API_KEY": "sk-mine",
        "OPENAI_API_KEY": "sk-openai",
    }
    fn, description = await resolve_llm(env=env, probe=False)
    ep = endpoint_of(fn)
    assert (ep.name, ep.base_url, ep.model, ep.api_key) == (
        "custom",
        "http://127.0.0.1:9999/v1",
        "m1",
        "sk-mine",
    )
    assert "VOICEKIT_LLM_BASE_URL" in description
    assert "sk-mine" not in description and "sk-openai" not in description


async def test_voicekit_llm_base_url_without_a_model_asks_the_server(gateway: SSEServer) -> None:
    fn, _ = await resolve_llm(env={"VOICEKIT_LLM_BASE_URL": gateway.base_url})
    assert endpoint_of(fn).model == "qwen2.5:latest"
    with pytest.raises(ConfigError, match="VOICEKIT_LLM_MODEL"):
        await resolve_llm(env={"VOICEKIT_LLM_BASE_URL": closed_url()})


async def test_openai_key_chooses_openai() -> None:
    fn, description = await resolve_llm(env={"OPENAI_API_KEY": "sk-openai"}, probe=False)
    ep = endpoint_of(fn)
    assert (ep.name, ep.base_url, ep.model, ep.api_key) == (
        "openai",
        "https://api.openai.com/v1",
        "gpt-4o-mini",
        "sk-openai",
    )
    assert description == (
        "LLM: openai at https://api.openai.com/v1, model 'gpt-4o-mini' (OPENAI_API_KEY is set)"
    )
    fn, _ = await resolve_llm(
        env={"OPENAI_API_KEY": "sk-openai", "VOICEKIT_LLM_MODEL": "gpt-4.1-mini"}, probe=False
    )
    assert endpoint_of(fn).model == "gpt-4.1-mini"


async def test_the_environment_beats_a_gateway(gateway: SSEServer) -> None:
    gateways = [("ollama", gateway.base_url)]
    fn, _ = await resolve_llm(env={"OPENAI_API_KEY": "sk-openai"}, gateways=gateways)
    assert endpoint_of(fn).name == "openai"
    assert gateway.requests == []  # not even probed


# ---------------------------------------------------------------------------------------------
# 3. a local gateway


async def test_a_gateway_that_answers_is_used(gateway: SSEServer) -> None:
    gateways = [("ollama", closed_url()), ("lmstudio", gateway.base_url)]
    fn, description = await resolve_llm(env=NO_ENV, gateways=gateways)
    ep = endpoint_of(fn)
    assert (ep.name, ep.base_url, ep.model) == ("lmstudio", gateway.base_url, "qwen2.5:latest")
    assert "local gateway answered" in description and gateway.base_url in description
    (probe,) = gateway.requests
    assert (probe.method, probe.path) == ("GET", "/v1/models")
    assert "authorization" not in probe.headers


async def test_ollama_prefers_its_default_model_when_pulled(gateway: SSEServer) -> None:
    fn, _ = await resolve_llm(env=NO_ENV, gateways=[("ollama", gateway.base_url)])
    assert endpoint_of(fn).model == "llama3.2:latest"
    gateway.models = ["qwen2.5", "llama3.2"]
    fn, _ = await resolve_llm(env=NO_ENV, gateways=[("ollama", gateway.base_url)])
    assert endpoint_of(fn).model == "llama3.2"
    gateway.models = ["qwen2.5"]
    fn, _ = await resolve_llm(env=NO_ENV, gateways=[("ollama", gateway.base_url)])
    assert endpoint_of(fn).model == "qwen2.5"


async def test_the_first_gateway_in_order_wins(gateway: SSEServer) -> None:
    async with SSEServer() as second:
        gateways = [("llamacpp", second.base_url), ("ollama", gateway.base_url)]
        fn, _ = await resolve_llm(env=NO_ENV, gateways=gateways)
        ep = endpoint_of(fn)
        assert (ep.name, ep.model) == ("llamacpp", "test-model")


async def test_hermes_keeps_its_agent_model_and_sends_its_key(gateway: SSEServer) -> None:
    env = {"API_SERVER_KEY": "hermes-secret"}
    fn, description = await resolve_llm(env=env, gateways=[("hermes", gateway.base_url)])
    ep = endpoint_of(fn)
    assert (ep.name, ep.model, ep.api_key) == ("hermes", "hermes-agent", "hermes-secret")
    assert gateway.requests[0].headers["authorization"] == "Bearer hermes-secret"
    assert "hermes-secret" not in description


async def test_a_gateway_serving_no_model_is_skipped(gateway: SSEServer) -> None:
    gateway.models = []
    fn, _ = await resolve_llm(env=NO_ENV, gateways=[("ollama", gateway.base_url)])
    assert fn is local_responder


async def test_a_gateway_answering_something_else_is_skipped() -> None:
    async with SSEServer(handler=lambda r: json_reply(404, {"error": "nope"})) as other:
        fn, _ = await resolve_llm(env=NO_ENV, gateways=[("llamacpp", other.base_url)])
    assert fn is local_responder


async def test_probing_takes_about_a_second_at_most(hanging: SSEServer, gateway: SSEServer) -> None:
    # the preferred gateway hangs: the budget runs out, then one that already answered is used
    gateways = [("ollama", hanging.base_url), ("lmstudio", gateway.base_url)]
    started = time.monotonic()
    fn, _ = await resolve_llm(env=NO_ENV, gateways=gateways, probe_timeout=0.3)
    assert 0.25 < time.monotonic() - started < 0.8
    assert endpoint_of(fn).name == "lmstudio"
    await hanging.wait_disconnect(within=1.0)  # the hanging probe was cancelled, not left behind

    started = time.monotonic()
    fn, _ = await resolve_llm(env=NO_ENV, gateways=[("ollama", hanging.base_url)])
    assert 0.9 < time.monotonic() - started < 1.5  # the default budget: one second
    assert fn is local_responder


async def test_the_default_gateways_are_the_default_ports() -> None:
    assert DEFAULT_GATEWAYS == (
        ("ollama", "http://127.0.0.1:11434/v1"),
        ("lmstudio", "http://127.0.0.1:1234/v1"),
        ("llamacpp", "http://127.0.0.1:8080/v1"),
        ("hermes", "http://127.0.0.1:8642/v1"),
    )


# ---------------------------------------------------------------------------------------------
# 4. the offline responder


async def test_nothing_configured_gives_the_offline_responder() -> None:
    gateways = [("ollama", closed_url()), ("hermes", closed_url())]
    started = time.monotonic()
    fn, description = await resolve_llm(env=NO_ENV, gateways=gateways)
    assert time.monotonic() - started < 0.5  # refused connections answer at once
    assert fn is local_responder
    assert description.startswith("LLM: voicekit's offline responder")
    assert "no local gateway answered (ollama :" in description and "--llm" in description


async def test_probe_false_sends_nothing(gateway: SSEServer) -> None:
    fn, description = await resolve_llm(
        env=NO_ENV, probe=False, gateways=[("ollama", gateway.base_url)]
    )
    assert fn is local_responder and "not probed" in description
    assert gateway.requests == []


async def test_the_resolved_function_streams_a_reply(gateway: SSEServer) -> None:
    fn, _ = await resolve_llm(env=NO_ENV, gateways=[("ollama", gateway.base_url)])
    tokens = [e.text async for e in fn([{"role": "user", "content": "hi"}]) if type(e) is Token]
    assert "".join(tokens) == "Hello world"  # the stand-in's default reply
    assert gateway.requests[-1].json()["model"] == "llama3.2:latest"
