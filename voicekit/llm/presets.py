"""Presets: plain functions that return an :class:`~voicekit.llm.Endpoint`.

Each preset knows a service's default base URL, the environment variable holding its key (read
when the preset function is called), whether it accepts the ``developer`` role and how it names
``max_tokens``. Every keyword an :class:`Endpoint` accepts can be passed as an option, and wins
over the preset's default. An endpoint without a key sends no ``Authorization`` header.

* :func:`custom` — any ``/chat/completions`` service ("bring your own LLM");
* agent runtimes: :func:`hermes`, :func:`openclaw` (wire-compatible with gateways configured for
  Patter: same session headers, same ``patter-call-``/``patter-caller-`` prefixes);
* local gateways: :func:`ollama`, :func:`vllm`, :func:`lmstudio`, :func:`llamacpp`;
* cloud APIs: :func:`openai`, :func:`groq`, :func:`cerebras`, :func:`perplexity`, :func:`xai`,
  :func:`deepseek`, :func:`mistral`, :func:`together`.

>>> ep = custom(base_url="http://127.0.0.1:9000/v1", model="my-model", temperature=0.2)
>>> ep.name, ep.has_key, ep.temperature
('custom', False, 0.2)
>>> openclaw("receptionist").model
'openclaw/receptionist'
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from .._errors import ConfigError
from .endpoint import Endpoint, endpoint_options

__all__ = [
    "PRESETS",
    "cerebras",
    "custom",
    "deepseek",
    "groq",
    "hermes",
    "llamacpp",
    "lmstudio",
    "mistral",
    "ollama",
    "openai",
    "openclaw",
    "perplexity",
    "preset",
    "together",
    "vllm",
    "xai",
]

HERMES_BASE_URL = "http://127.0.0.1:8642/v1"
OPENCLAW_BASE_URL = "http://127.0.0.1:18789/v1"
PATTER_CALL_PREFIX = "patter-call-"
_OPENCLAW_AGENT = re.compile(r"^[A-Za-z0-9._:/-]+$")


def _key(api_key: str | None, env: str | None) -> str | None:
    """The explicit key, else the value of ``env`` (read now), else None."""
    if api_key:
        return api_key
    return (os.environ.get(env) or None) if env else None


def _build(
    name: str,
    *,
    base_url: str,
    model: str | None,
    api_key: str | None,
    api_key_env: str | None,
    defaults: dict[str, Any],
    options: dict[str, Any],
) -> Endpoint:
    allowed = set(endpoint_options()) - {"base_url", "model", "api_key"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(
            f"{name}(): unknown option {', '.join(map(repr, unknown))}; "
            f"options are: {', '.join(sorted(allowed))}"
        )
    if not model:
        raise ConfigError(f"{name}() needs a model: pass model='...' (the name the server serves)")
    fields = {"name": name, **defaults, **options}
    return Endpoint(base_url=base_url, model=model, api_key=_key(api_key, api_key_env), **fields)


def custom(
    *,
    base_url: str,
    model: str,
    api_key: str | None = None,
    api_key_env: str | None = None,
    **options: Any,
) -> Endpoint:
    """Any OpenAI-compatible ``/chat/completions`` service.

    The key is ``api_key``, else the environment variable named by ``api_key_env``; without one
    no ``Authorization`` header is sent. Defaults: 60 s timeout, ``developer`` messages sent as
    ``user``, ``max_tokens`` sent as ``max_completion_tokens``, no session signals.

    >>> ep = custom(base_url="http://127.0.0.1:8000/v1", model="m",
    ...             session_key_header="X-Memory", session_key_from="caller_hash")
    >>> ep.session_key_from
    'caller_hash'
    """
    return _build(
        options.pop("name", "custom"),
        base_url=base_url,
        model=model,
        api_key=api_key,
        api_key_env=api_key_env,
        defaults={},
        options=options,
    )


def hermes(
    model: str | None = None,
    *,
    api_key: str | None = None,
    base_url: str = HERMES_BASE_URL,
    api_key_env: str = "API_SERVER_KEY",
    **options: Any,
) -> Endpoint:
    """The Hermes agent runtime's API server.

    Model: ``model``, else ``$API_SERVER_MODEL_NAME``, else ``"hermes-agent"``. Key:
    ``$API_SERVER_KEY``. 120 s timeout. Sends ``X-Hermes-Session-Id: patter-call-<call_id>``
    (its conversation key) and ``user: patter-call-<call_id>``; with ``session_key="scope"``,
    ``session_key_from="caller_hash"`` or ``session_key_factory=fn`` also
    ``X-Hermes-Session-Key`` (per-caller memory).

    >>> hermes().model, hermes().timeout
    ('hermes-agent', 120.0)
    """
    chosen = model or os.environ.get("API_SERVER_MODEL_NAME") or "hermes-agent"
    defaults = {
        "timeout": 120.0,
        "user_prefix": PATTER_CALL_PREFIX,
        "session_id_header": "X-Hermes-Session-Id",
        "session_id_prefix": PATTER_CALL_PREFIX,
        "session_key_header": "X-Hermes-Session-Key",
    }
    return _build(
        "hermes",
        base_url=base_url,
        model=chosen,
        api_key=api_key,
        api_key_env=api_key_env,
        defaults=defaults,
        options=options,
    )


def openclaw_model(agent: str) -> str:
    """The model name for an OpenClaw agent id: ``openclaw/<agent>`` unless already qualified.

    >>> openclaw_model("receptionist"), openclaw_model("openclaw:custom"), openclaw_model("a/b")
    ('openclaw/receptionist', 'openclaw:custom', 'a/b')
    """
    if not isinstance(agent, str) or not _OPENCLAW_AGENT.fullmatch(agent):
        raise ConfigError(
            "OpenClaw agent must be a non-empty id of letters, digits, and ._:/- only, "
            f"got {agent!r}"
        )
    return agent if (":" in agent or "/" in agent) else f"openclaw/{agent}"


def openclaw(
    agent: str,
    *,
    api_key: str | None = None,
    base_url: str = OPENCLAW_BASE_URL,
    api_key_env: str = "OPENCLAW_API_KEY",
    **options: Any,
) -> Endpoint:
    """An OpenClaw gateway agent.

    Model ``openclaw/<agent>`` (unless ``agent`` contains ``:`` or ``/``). Key:
    ``$OPENCLAW_API_KEY``. 120 s timeout. Sends ``user: patter-call-<call_id>`` and
    ``x-openclaw-session-key: <call_id>``.

    >>> openclaw("x.y-z_1").model
    'openclaw/x.y-z_1'
    """
    defaults = {
        "timeout": 120.0,
        "user_prefix": PATTER_CALL_PREFIX,
        "session_id_header": "x-openclaw-session-key",
        "session_id_prefix": "",
    }
    return _build(
        "openclaw",
        base_url=base_url,
        model=openclaw_model(agent),
        api_key=api_key,
        api_key_env=api_key_env,
        defaults=defaults,
        options=options,
    )


def _service(
    name: str,
    base_url: str,
    key_env: str | None,
    *,
    default_model: str | None,
    developer_role: bool,
    max_tokens_param: str = "max_tokens",
    doc: str,
) -> Callable[..., Endpoint]:
    """Make a preset function for a plain OpenAI-compatible service."""

    def make(
        model: str | None = None,
        *,
        api_key: str | None = None,
        base_url: str = base_url,
        api_key_env: str | None = key_env,
        **options: Any,
    ) -> Endpoint:
        defaults = {"developer_role": developer_role, "max_tokens_param": max_tokens_param}
        return _build(
            name,
            base_url=base_url,
            model=model or default_model,
            api_key=api_key,
            api_key_env=api_key_env,
            defaults=defaults,
            options=options,
        )

    make.__name__ = make.__qualname__ = name
    key_text = f"``${key_env}``" if key_env else "none"
    model_text = f"``{default_model}``" if default_model else "required"
    role_text = "accepted" if developer_role else "sent as ``user``"
    make.__doc__ = (
        f"{doc}\n\n    Base URL ``{base_url}``; key {key_text}; model {model_text}; "
        f"``developer`` role {role_text}; ``max_tokens`` sent as ``{max_tokens_param}``.\n"
    )
    return make


ollama = _service(
    "ollama", "http://127.0.0.1:11434/v1", None, default_model="llama3.2",
    developer_role=False, doc="A local Ollama server.",
)  # fmt: skip
vllm = _service(
    "vllm", "http://127.0.0.1:8000/v1", "VLLM_API_KEY", default_model=None,
    developer_role=False, doc="A vLLM OpenAI-compatible server (model: the served model name).",
)  # fmt: skip
lmstudio = _service(
    "lmstudio", "http://127.0.0.1:1234/v1", None, default_model=None,
    developer_role=False, doc="LM Studio's local server (model: the loaded model's id).",
)  # fmt: skip
llamacpp = _service(
    "llamacpp", "http://127.0.0.1:8080/v1", "LLAMA_API_KEY", default_model="default",
    developer_role=False, doc="llama.cpp's llama-server (it serves one model, whatever the name).",
)  # fmt: skip
openai = _service(
    "openai", "https://api.openai.com/v1", "OPENAI_API_KEY", default_model="gpt-4o-mini",
    developer_role=True, max_tokens_param="max_completion_tokens", doc="OpenAI's API.",
)  # fmt: skip
groq = _service(
    "groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY",
    default_model="llama-3.3-70b-versatile", developer_role=True,
    max_tokens_param="max_completion_tokens", doc="Groq's API.",
)  # fmt: skip
cerebras = _service(
    "cerebras", "https://api.cerebras.ai/v1", "CEREBRAS_API_KEY", default_model="llama3.1-8b",
    developer_role=False, max_tokens_param="max_completion_tokens", doc="Cerebras' API.",
)  # fmt: skip
perplexity = _service(
    "perplexity", "https://api.perplexity.ai", "PERPLEXITY_API_KEY", default_model="sonar",
    developer_role=False, doc="Perplexity's API (its path has no /v1).",
)  # fmt: skip
xai = _service(
    "xai", "https://api.x.ai/v1", "XAI_API_KEY", default_model="grok-3-mini",
    developer_role=True, doc="xAI's Grok API.",
)  # fmt: skip
deepseek = _service(
    "deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY", default_model="deepseek-chat",
    developer_role=False, doc="DeepSeek's API.",
)  # fmt: skip
mistral = _service(
    "mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY",
    default_model="mistral-small-latest", developer_role=False, doc="Mistral's API.",
)  # fmt: skip
together = _service(
    "together", "https://api.together.xyz/v1", "TOGETHER_API_KEY",
    default_model="meta-llama/Llama-3.3-70B-Instruct-Turbo", developer_role=False,
    doc="Together AI's API.",
)  # fmt: skip


PRESETS: dict[str, Callable[..., Endpoint]] = {
    "custom": custom,
    "hermes": hermes,
    "openclaw": openclaw,
    "ollama": ollama,
    "vllm": vllm,
    "lmstudio": lmstudio,
    "llamacpp": llamacpp,
    "openai": openai,
    "groq": groq,
    "cerebras": cerebras,
    "perplexity": perplexity,
    "xai": xai,
    "deepseek": deepseek,
    "mistral": mistral,
    "together": together,
}
"""Every preset function by name (what ``voicekit chat --llm NAME`` accepts)."""


def preset(name: str, /, *args: Any, **kwargs: Any) -> Endpoint:
    """Call the preset called ``name``; an unknown name is a ConfigError listing them all.

    >>> preset("ollama").base_url
    'http://127.0.0.1:11434/v1'
    """
    try:
        make = PRESETS[name.lower()]
    except (KeyError, AttributeError):
        raise ConfigError(
            f"unknown LLM preset {name!r}; presets are: {', '.join(PRESETS)}"
        ) from None
    return make(*args, **kwargs)
