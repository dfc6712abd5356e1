"""Which LLM the ``voicekit`` command uses, and why.

:func:`resolve_llm` walks a fixed order and stops at the first rung that gives an LLM:

1. an explicit choice (``--llm``): a preset name (``ollama``, ``openai``, ``lmstudio:qwen2.5``
   — ``NAME:MODEL`` picks the model), a base URL (``http://host:8000/v1``), ``local`` for the
   offline responder, or a model run in this process (``qwen-local``, ``smollm2-local``: see
   :func:`~voicekit.llm.local_model`; the ``brain`` extra);
2. the environment: ``VOICEKIT_LLM_BASE_URL`` (with ``VOICEKIT_LLM_MODEL`` and
   ``VOICEKIT_LLM_API_KEY``), else ``OPENAI_API_KEY`` (the ``openai`` preset);
3. a local gateway answering on its default port — Ollama (11434), LM Studio (1234), llama.cpp's
   server (8080), Hermes (8642) — probed with :func:`~voicekit.llm.warmup` concurrently, about
   one second at most in all;
4. :func:`~voicekit.llm.local.local_responder`, the offline rule-based responder.

It returns the LLM as a function of the shape of :func:`~voicekit.llm.chat` with the endpoint
bound (``llm(messages, tools=..., session=..., system=...)``; for an endpoint it is a
``functools.partial`` of ``chat``, its endpoint in ``.args[0]``) and a one-line description of
what was chosen and why, for the CLI to print. Descriptions never contain a key.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from returns.result import Success

from .._errors import ConfigError
from ._chat import chat
from ._llama import LOCAL_MODEL_NAMES, local_model, local_model_about, require_local_model
from ._warmup import warmup
from .endpoint import Endpoint
from .local import local_responder
from .presets import PRESETS, custom

__all__ = ["DEFAULT_GATEWAYS", "PROBE_TIMEOUT", "LLMFunction", "describe_url", "resolve_llm"]

LLMFunction = Callable[..., Any]
"""An async-generator function ``llm(messages, /, *, tools=None, session=None, system=None)``."""

DEFAULT_GATEWAYS: tuple[tuple[str, str], ...] = (
    ("ollama", "http://127.0.0.1:11434/v1"),
    ("lmstudio", "http://127.0.0.1:1234/v1"),
    ("llamacpp", "http://127.0.0.1:8080/v1"),
    ("hermes", "http://127.0.0.1:8642/v1"),
)
"""Local gateways probed, in order of preference: (preset name, base URL)."""

PROBE_TIMEOUT = 1.0
"""Seconds the gateway probes may take, all together."""

LOCAL_NAMES = frozenset({"local", "offline", "responder", "local_responder"})
"""``--llm`` values that choose the offline responder."""


def describe_url(url: str) -> str:
    """A URL fit to print: any user name or password in it is removed.

    >>> describe_url("https://user:secret@example.com/v1")
    'https://example.com/v1'
    """
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _about(endpoint: Endpoint) -> str:
    return f"{endpoint.name} at {describe_url(endpoint.base_url)}, model {endpoint.model!r}"


def _bind(endpoint: Endpoint) -> LLMFunction:
    return functools.partial(chat, endpoint)


def _key_env(name: str) -> str | None:
    """The environment variable a preset reads its key from."""
    parameter = inspect.signature(PRESETS[name]).parameters.get("api_key_env")
    default = parameter.default if parameter is not None else None
    return default if isinstance(default, str) else None


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


async def _first_model(endpoint: Endpoint) -> str | None:
    """The first model the service lists, if it answers in time."""
    result = await warmup(endpoint)
    if isinstance(result, Success) and result.unwrap():
        return str(result.unwrap()[0])
    return None


async def _from_url(
    url: str, *, model: str | None, api_key: str | None, probe: bool, where: str
) -> Endpoint:
    if not model and probe:
        result = await warmup(custom(base_url=url, model="-", api_key=api_key))
        if not isinstance(result, Success):  # not reachable: no setting would fix that
            raise ConfigError(
                f"{where}: the LLM server at {describe_url(url)} could not be asked which model "
                f"to use: {result.failure()}; is it running? (or set VOICEKIT_LLM_MODEL)"
            )
        model = str(result.unwrap()[0]) if result.unwrap() else None
    if not model:
        raise ConfigError(
            f"{where}: no model for {describe_url(url)}; set VOICEKIT_LLM_MODEL "
            "(the name the server serves)"
        )
    return custom(base_url=url, model=model, api_key=api_key)


async def _from_preset(choice: str, *, env: Mapping[str, str], probe: bool, where: str) -> Endpoint:
    name, _, model = choice.partition(":")
    name = name.strip().lower()
    if name not in PRESETS:
        raise ConfigError(
            f"{where}: unknown LLM {choice!r}; give a preset ({', '.join(PRESETS)}), "
            "a base URL such as http://127.0.0.1:8000/v1, or 'local'"
        )
    model = model.strip() or env.get("VOICEKIT_LLM_MODEL") or ""
    key_env = _key_env(name)
    options: dict[str, Any] = {}
    if key_env and env.get(key_env):
        options["api_key"] = env[key_env]
    if name == "custom":
        raise ConfigError(f"{where}: for a custom server give its base URL instead of 'custom'")
    if name == "openclaw":
        if not model:
            raise ConfigError(f"{where}: give the OpenClaw agent as openclaw:AGENT")
        return PRESETS[name](model, **options)
    try:
        return PRESETS[name](model or None, **options)
    except ConfigError:
        if model or not probe:
            raise
    # a preset without a default model (lmstudio, vllm): use what the server lists first
    listed = await _first_model(PRESETS[name]("-", **options))
    if listed is None:
        raise ConfigError(
            f"{where}: {name} needs a model ({name}:MODEL or VOICEKIT_LLM_MODEL), and the "
            "server did not list one"
        )
    return PRESETS[name](listed, **options)


async def _probe_one(name: str, base_url: str, env: Mapping[str, str]) -> Endpoint | None:
    """The gateway's endpoint if it answers ``GET /models`` with a model, else None."""
    key_env = _key_env(name)
    options: dict[str, Any] = {"base_url": base_url}
    if key_env and env.get(key_env):
        options["api_key"] = env[key_env]
    try:
        probe = PRESETS[name]("-", **options)
        result = await warmup(probe)
    except ConfigError:
        return None
    if not isinstance(result, Success):
        return None
    listed = [str(m) for m in result.unwrap()]
    if not listed:
        return None  # it runs, but serves no model (an Ollama with nothing pulled)
    try:
        default: str | None = PRESETS[name](None, **options).model
    except ConfigError:
        default = None  # lmstudio: no default model
    if name == "hermes":
        model = default or listed[0]  # an agent runtime: its own name, whatever it lists
    elif default is not None and default in listed:
        model = default
    elif default is not None and f"{default}:latest" in listed:
        model = f"{default}:latest"
    else:
        model = listed[0]
    return PRESETS[name](model, **options)


async def _probe(
    gateways: Sequence[tuple[str, str]], env: Mapping[str, str], budget: float
) -> Endpoint | None:
    """The first gateway (in list order) that answers; all probed at once within ``budget`` s."""
    tasks = [asyncio.ensure_future(_probe_one(name, url, env)) for name, url in gateways]
    if not tasks:
        return None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    try:
        for task in tasks:  # in order of preference; past the deadline, only finished ones
            remaining = max(0.0, deadline - loop.time())
            done, _ = await asyncio.wait([task], timeout=remaining)
            if task in done and not task.cancelled() and task.exception() is None:
                found = task.result()
                if found is not None:
                    return found
        return None
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


def _ports(gateways: Sequence[tuple[str, str]]) -> str:
    parts = []
    for name, url in gateways:
        port = urlsplit(url).port
        parts.append(f"{name} :{port}" if port else name)
    return ", ".join(parts)


async def resolve_llm(
    explicit: str | Endpoint | LLMFunction | None = None,
    *,
    env: Mapping[str, str] = os.environ,
    probe: bool = True,
    gateways: Sequence[tuple[str, str]] = DEFAULT_GATEWAYS,
    probe_timeout: float = PROBE_TIMEOUT,
) -> tuple[LLMFunction, str]:
    """The LLM to use and a sentence saying which one and why (see the module docs).

    ``explicit``: the ``--llm`` value (preset name, ``NAME:MODEL``, base URL or ``local``), an
    :class:`~voicekit.llm.Endpoint`, or an LLM function (used as is). ``env``: where the
    environment is read. ``probe``: look for local gateways (and ask a server for its model when
    none is named). ``gateways``: ``(preset name, base URL)`` pairs to probe, in order of
    preference. A bad explicit choice or environment is a :class:`~voicekit.ConfigError`.
    """
    if explicit is not None and not (isinstance(explicit, str) and not explicit.strip()):
        if isinstance(explicit, Endpoint):
            return _bind(explicit), f"LLM: {_about(explicit)} (given explicitly)"
        if callable(explicit):
            label = getattr(explicit, "__name__", type(explicit).__name__)
            return explicit, f"LLM: the function {label} (given explicitly)"
        if not isinstance(explicit, str):
            raise ConfigError(f"--llm must be a preset name or a URL, got {explicit!r}")
        choice = explicit.strip()
        if choice.lower() in LOCAL_NAMES:
            return local_responder, (
                "LLM: voicekit's offline responder (chosen with --llm local): rule-based, "
                "it knows a few intents only"
            )
        if choice.lower() in LOCAL_MODEL_NAMES:
            spec = require_local_model(choice)
            return local_model(spec.name), local_model_about(
                spec, f"chosen with --llm {spec.name}"
            )
        if _is_url(choice):
            endpoint = await _from_url(
                choice,
                model=env.get("VOICEKIT_LLM_MODEL") or None,
                api_key=env.get("VOICEKIT_LLM_API_KEY") or None,
                probe=probe,
                where="--llm",
            )
        else:
            endpoint = await _from_preset(choice, env=env, probe=probe, where="--llm")
        return _bind(endpoint), f"LLM: {_about(endpoint)} (chosen with --llm)"

    base_url = (env.get("VOICEKIT_LLM_BASE_URL") or "").strip()
    if base_url:
        endpoint = await _from_url(
            base_url,
            model=env.get("VOICEKIT_LLM_MODEL") or None,
            api_key=env.get("VOICEKIT_LLM_API_KEY") or None,
            probe=probe,
            where="VOICEKIT_LLM_BASE_URL",
        )
        return _bind(endpoint), f"LLM: {_about(endpoint)} (from VOICEKIT_LLM_BASE_URL)"
    if (env.get("OPENAI_API_KEY") or "").strip():
        endpoint = PRESETS["openai"](
            env.get("VOICEKIT_LLM_MODEL") or None, api_key=env["OPENAI_API_KEY"]
        )
        return _bind(endpoint), f"LLM: {_about(endpoint)} (OPENAI_API_KEY is set)"

    if probe and gateways:
        found = await _probe(gateways, env, probe_timeout)
        if found is not None:
            return _bind(found), (
                f"LLM: {_about(found)} (a local gateway answered; no --llm or LLM environment "
                "variables given)"
            )
    searched = (
        f"no local gateway answered ({_ports(gateways)})"
        if probe and gateways
        else "local gateways not probed"
    )
    return local_responder, (
        "LLM: voicekit's offline responder — rule-based, it knows a few intents only (no --llm, "
        f"no VOICEKIT_LLM_BASE_URL or OPENAI_API_KEY, {searched}); point --llm at a real model "
        "for real answers"
    )
