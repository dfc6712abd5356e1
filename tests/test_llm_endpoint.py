"""Endpoint values and presets: validation, defaults, key handling, reprs that hide secrets."""

from __future__ import annotations

import dataclasses

import pytest
from servers.llm_tables import KEY_VARS, PRESET_TABLE

from voicekit import ConfigError, Session
from voicekit.llm import (
    NO_RETRY,
    PRESETS,
    Endpoint,
    RetryPolicy,
    build_request,
    custom,
    hermes,
    openclaw,
    preset,
    request_headers,
    session_key_value,
)
from voicekit.llm.presets import openclaw_model


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KEY_VARS:
        monkeypatch.delenv(name, raising=False)


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "fragment"),
    [
        ("", "needs a base_url"),
        ("   ", "needs a base_url"),
        ("ftp://host/v1", "http:// or https://"),
        ("127.0.0.1:8000/v1", "http:// or https://"),
        ("http:///v1", "no host name"),
        ("http://h/v1?x=1", "query"),
        ("http://h/v1/chat/completions", "stop before /chat/completions"),
    ],
)
def test_bad_base_url_is_a_clear_config_error(base_url: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        Endpoint(base_url=base_url, model="m")


def test_empty_model_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="needs a model"):
        Endpoint(base_url="http://h/v1", model="")


def test_trailing_slash_is_dropped_and_urls_derived() -> None:
    ep = Endpoint(base_url="http://h:1/v1/", model="m")
    assert ep.base_url == "http://h:1/v1"
    assert ep.chat_url == "http://h:1/v1/chat/completions"
    assert ep.models_url == "http://h:1/v1/models"


def test_connect_timeout_defaults_to_min_of_timeout_and_ten() -> None:
    assert Endpoint(base_url="http://h", model="m").effective_connect_timeout == 10.0
    assert Endpoint(base_url="http://h", model="m", timeout=3).effective_connect_timeout == 3.0
    ep = Endpoint(base_url="http://h", model="m", timeout=120, connect_timeout=2)
    assert ep.effective_connect_timeout == 2.0
    with pytest.raises(ConfigError, match="timeout"):
        Endpoint(base_url="http://h", model="m", timeout=0)


def test_session_key_from_rejects_anything_but_caller_hash() -> None:
    with pytest.raises(
        ConfigError, match=r"session_key_from must be 'caller_hash' or None, got 'raw_number'"
    ):
        custom(
            base_url="http://h", model="m", session_key_header="X-K", session_key_from="raw_number"
        )
    with pytest.raises(ConfigError, match="'raw_number'"):
        hermes(session_key_from="raw_number")


def test_session_key_sources_are_exclusive_and_need_a_header() -> None:
    with pytest.raises(ConfigError, match="at most one"):
        hermes(session_key="s", session_key_from="caller_hash")
    with pytest.raises(ConfigError, match="needs session_key_header"):
        custom(base_url="http://h", model="m", session_key="static")
    hermes(session_key="")  # empty static key means unset: fine


def test_extra_body_may_not_override_the_protocol() -> None:
    with pytest.raises(ConfigError, match="stream"):
        custom(base_url="http://h", model="m", extra_body={"stream": False})


def test_retry_policy_is_bounded() -> None:
    assert RetryPolicy().connect == 1 and RetryPolicy().status == 0
    assert NO_RETRY.connect == 0
    with pytest.raises(ConfigError, match="0 to 5"):
        RetryPolicy(connect=10)


def test_bad_header_name_is_rejected() -> None:
    with pytest.raises(ConfigError, match="not a valid header name"):
        custom(base_url="http://h", model="m", headers={"Bad Header": "x"})


def test_unknown_option_lists_the_options() -> None:
    with pytest.raises(ConfigError, match=r"unknown option 'temprature'.*temperature"):
        custom(base_url="http://h", model="m", temprature=0.1)
    with pytest.raises(ConfigError, match="no option 'nope'"):
        Endpoint(base_url="http://h", model="m").replace(nope=1)


def test_endpoint_is_frozen_and_replace_revalidates() -> None:
    ep = custom(base_url="http://h", model="m")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ep.model = "x"  # type: ignore[misc]
    with pytest.raises(ConfigError):
        ep.replace(base_url="nope")


# -- keys and secrets -----------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "", "EMPTY", "  "])
def test_keyless_values_send_no_authorization(key: str | None) -> None:
    ep = custom(base_url="http://h", model="m", api_key=key)
    assert not ep.has_key
    assert "Authorization" not in request_headers(ep)


def test_key_is_read_from_the_environment_when_the_preset_is_called(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert not hermes().has_key
    monkeypatch.setenv("API_SERVER_KEY", "from-env")
    ep = hermes()
    assert request_headers(ep)["Authorization"] == "Bearer from-env"
    monkeypatch.setenv("API_SERVER_KEY", "changed")
    assert request_headers(ep)["Authorization"] == "Bearer from-env"  # a value, not a lookup
    assert request_headers(hermes(api_key="explicit"))["Authorization"] == "Bearer explicit"
    monkeypatch.setenv("MY_KEY", "mine")
    assert custom(base_url="http://h", model="m", api_key_env="MY_KEY").api_key == "mine"


def test_reprs_never_show_keys_or_session_values() -> None:
    ep = hermes(api_key="sk-very-secret", session_key="scope-secret", headers={"X-T": "tok-secret"})
    session = Session(call_id="CA1", caller="+15551110000")
    request = build_request(ep, [{"role": "user", "content": "hi"}], session=session)
    for text in (repr(ep), str(ep), repr(request)):
        for secret in ("sk-very-secret", "scope-secret", "tok-secret", "+15551110000", "CA1"):
            assert secret not in text, (secret, text)
    assert "key=<set>" in repr(ep) and "X-Hermes-Session-Key(static)" in repr(ep)


# -- presets ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRESET_TABLE))
def test_service_presets(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    base_url, key_env, developer_role, max_param = PRESET_TABLE[name]
    ep = preset(name, "some-model")
    assert (ep.name, ep.base_url, ep.model) == (name, base_url, "some-model")
    assert ep.developer_role is developer_role
    assert ep.max_tokens_param == max_param
    assert ep.timeout == 60.0 and not ep.has_key
    assert ep.user_prefix is None and ep.session_id_header is None
    if key_env:
        monkeypatch.setenv(key_env, f"key-for-{name}")
        assert preset(name, "m").api_key == f"key-for-{name}"


def test_every_preset_is_listed() -> None:
    assert set(PRESETS) == {*PRESET_TABLE, "custom", "hermes", "openclaw"}


def test_models_are_required_where_there_is_no_sensible_default() -> None:
    with pytest.raises(ConfigError, match="needs a model"):
        preset("vllm")
    assert preset("ollama").model == "llama3.2"


def test_unknown_preset_lists_them_all() -> None:
    with pytest.raises(ConfigError, match="unknown LLM preset 'nope'; presets are: custom, hermes"):
        preset("nope")


def test_hermes_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = hermes()
    assert (ep.base_url, ep.model, ep.timeout) == (
        "http://127.0.0.1:8642/v1",
        "hermes-agent",
        120.0,
    )
    assert ep.effective_connect_timeout == 10.0
    assert (ep.user_prefix, ep.session_id_header, ep.session_id_prefix) == (
        "patter-call-",
        "X-Hermes-Session-Id",
        "patter-call-",
    )
    monkeypatch.setenv("API_SERVER_MODEL_NAME", "from-env")
    assert hermes().model == "from-env"
    assert hermes("").model == "from-env"
    assert hermes("explicit").model == "explicit"


@pytest.mark.parametrize(
    ("agent", "model"),
    [
        ("receptionist", "openclaw/receptionist"),
        ("x.y-z_1", "openclaw/x.y-z_1"),
        ("openclaw/custom", "openclaw/custom"),
        ("openclaw:custom", "openclaw:custom"),
        ("agent:x", "agent:x"),
        ("foo/bar", "foo/bar"),
        ("..", "openclaw/.."),
    ],
)
def test_openclaw_model_mapping(agent: str, model: str) -> None:
    assert openclaw(agent).model == model


@pytest.mark.parametrize("agent", ["", "bad agent", "café", "a;b", "a\nb"])
def test_openclaw_agent_validation(agent: str) -> None:
    with pytest.raises(ConfigError, match=r"letters, digits, and \._:/- only"):
        openclaw_model(agent)


def test_openclaw_defaults() -> None:
    ep = openclaw("receptionist")
    assert (ep.base_url, ep.timeout, ep.user_prefix) == (
        "http://127.0.0.1:18789/v1",
        120.0,
        "patter-call-",
    )
    assert (ep.session_id_header, ep.session_id_prefix, ep.session_key_header) == (
        "x-openclaw-session-key",
        "",
        None,
    )


# -- session signals (pure) ---------------------------------------------------------------------


def test_session_key_precedence_and_empty_values() -> None:
    caller = Session(call_id="CA1", caller="+15551110000")
    assert session_key_value(hermes(), caller) is None
    assert session_key_value(hermes(session_key="scope"), caller) == "scope"
    assert session_key_value(hermes(session_key="scope"), None) == "scope"
    assert session_key_value(hermes(session_key_from="caller_hash"), caller) == (
        "patter-caller-03de84388b1fa58e"
    )
    assert session_key_value(hermes(session_key_from="caller_hash"), Session(call_id="x")) is None
    assert session_key_value(hermes(session_key_from="caller_hash"), None) is None
    prefixed = hermes(session_key_from="caller_hash", session_key_prefix="vk-")
    assert session_key_value(prefixed, caller) == "vk-03de84388b1fa58e"
    factory = hermes(session_key_factory=lambda s: f"tenant-{s.call_id}")
    assert session_key_value(factory, caller) == "tenant-CA1"
    assert session_key_value(hermes(session_key_factory=lambda s: ""), caller) is None
    with pytest.raises(ConfigError, match="must return a string"):
        session_key_value(hermes(session_key_factory=lambda s: 42), caller)  # type: ignore[arg-type,return-value]
