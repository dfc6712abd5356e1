"""The LLM options every subcommand takes, and the one resolver that reads them.

``demo``, ``run``, ``talk``, ``chat`` and ``doctor`` all take the same group of options and give
them the same meaning:

* ``--llm``: a preset (``ollama``, ``openai``, ``lmstudio:qwen2.5`` — ``NAME:MODEL`` picks the
  model), the base URL of any OpenAI-compatible server, ``local`` (the offline responder), or
  ``qwen-local`` / ``smollm2-local`` (a small real model in this process, the ``brain`` extra);
* ``--model``: the model (the agent id for ``openclaw``) — the same as ``NAME:MODEL``;
* ``--base-url``: the preset's server at another address (alone: a custom server there);
* ``--api-key-env``: the environment variable that holds the key;
* ``--timeout``: the read timeout in seconds.

Without ``--llm`` or ``--base-url`` the order of :mod:`voicekit.llm.resolve` applies
(``VOICEKIT_LLM_BASE_URL``, ``OPENAI_API_KEY``, a local gateway that answers, the offline
responder). A model that is not named (``--model``, ``NAME:MODEL``, ``VOICEKIT_LLM_MODEL``, the
preset's default) is the first one the server lists; a server that cannot be asked is a
:class:`~voicekit.ProviderError` saying so, not a request for a setting.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
from collections.abc import Mapping
from typing import Any

from returns.result import Success

from .._errors import ConfigError, ProviderError
from ..llm import chat
from ..llm._llama import LOCAL_MODEL_NAMES, local_model, local_model_about, require_local_model
from ..llm._warmup import warmup
from ..llm.endpoint import Endpoint
from ..llm.local import local_responder
from ..llm.presets import PRESETS, custom
from ..llm.resolve import LOCAL_NAMES, LLMFunction, describe_url, resolve_llm

__all__ = [
    "NeedsModel",
    "Resolved",
    "add_llm_options",
    "doctor_command",
    "explicit_endpoint",
    "failure_hint",
    "listed_model",
    "resolve_cli_llm",
]

_RUNTIME_NAMES = {
    "ollama": "Ollama",
    "lmstudio": "LM Studio",
    "vllm": "vLLM",
    "llamacpp": "llama.cpp",
    "hermes": "Hermes",
    "openclaw": "OpenClaw",
}


def add_llm_options(parser: argparse.ArgumentParser) -> None:
    """Add the LLM option group (``--llm --model --base-url --api-key-env --timeout``)."""
    group = parser.add_argument_group("LLM")
    group.add_argument(
        "--llm",
        metavar="LLM",
        help=f"a preset ({', '.join(PRESETS)}; NAME:MODEL picks the model), the base URL of an "
        "OpenAI-compatible server, 'local' for the rule-based offline responder, or "
        f"{' / '.join(sorted(LOCAL_MODEL_NAMES))} for a small real model run in this process "
        "(pip install 'voicekit[brain]') (default: "
        "$VOICEKIT_LLM_BASE_URL, else $OPENAI_API_KEY, else a local gateway that answers, "
        "else the offline responder)",
    )
    group.add_argument(
        "--model",
        metavar="MODEL",
        help="the model (the agent id for openclaw) (default: $VOICEKIT_LLM_MODEL, else the "
        "preset's default, else the first model the server lists)",
    )
    group.add_argument(
        "--base-url",
        metavar="URL",
        help="where the preset's server is, e.g. http://127.0.0.1:8000/v1 (alone: any "
        "OpenAI-compatible server there) (default: the preset's)",
    )
    group.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="the environment variable that holds the API key (default: the preset's own, "
        "VOICEKIT_LLM_API_KEY for a URL); keys are never taken on the command line",
    )
    group.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="read timeout in seconds (default: the preset's, 60 for most)",
    )


@dataclasses.dataclass(frozen=True)
class Resolved:
    """The LLM a command uses: the function, a line about it, its endpoint (None offline)."""

    llm: LLMFunction
    about: str
    endpoint: Endpoint | None = None


@dataclasses.dataclass(frozen=True)
class NeedsModel:
    """An endpoint whose model was not named: it is the first one the server lists."""

    endpoint: Endpoint  # with the placeholder model "-"


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _options(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    var = getattr(args, "api_key_env", None)
    if var:
        if not env.get(var):
            raise ConfigError(f"--api-key-env {var}: the environment variable {var} is not set")
        options["api_key"] = env[var]
    timeout = getattr(args, "timeout", None)
    if timeout is not None:
        if not timeout > 0:
            raise ConfigError(f"--timeout must be a positive number of seconds, got {timeout}")
        options["timeout"] = timeout
    return options


def explicit_endpoint(
    args: argparse.Namespace, env: Mapping[str, str] = os.environ
) -> Endpoint | NeedsModel | str | None:
    """What ``--llm``/``--model``/``--base-url`` name, without asking any server.

    An :class:`Endpoint`; :class:`NeedsModel` when the model must be listed by the server;
    ``"local"`` for the offline responder; a name of :data:`LOCAL_MODEL_NAMES` for a model run
    in this process; None when no LLM was named (the model, key and
    timeout options then apply to whatever the resolution order finds). Bad options are a
    :class:`~voicekit.ConfigError`.
    """
    choice = (getattr(args, "llm", None) or "").strip()
    base_url = (getattr(args, "base_url", None) or "").strip() or None
    model = (getattr(args, "model", None) or "").strip() or None
    if choice.lower() in LOCAL_NAMES:
        if base_url or model:
            raise ConfigError(
                f"--llm {choice} is the offline responder: it takes no --model or --base-url"
            )
        return "local"
    if choice.lower() in LOCAL_MODEL_NAMES:
        if base_url or model:
            raise ConfigError(
                f"--llm {choice} runs a model in this process: it takes no --model or --base-url"
            )
        return choice.lower()
    if _is_url(choice):
        if base_url:
            raise ConfigError("give the server's URL once: --llm URL or --base-url URL")
        name, base_url = "custom", choice
    elif choice:
        name, _, named = choice.partition(":")
        name, named = name.strip().lower(), named.strip()
        if name not in PRESETS:
            raise ConfigError(
                f"--llm: unknown LLM {choice!r}; give a preset ({', '.join(PRESETS)}), a base "
                "URL such as http://127.0.0.1:8000/v1, 'local', or "
                f"{' / '.join(sorted(LOCAL_MODEL_NAMES))}"
            )
        if named and model and named != model:
            raise ConfigError(f"--llm {choice} and --model {model} name two models: give one")
        model = model or named or None
        if name == "custom" and not base_url:
            raise ConfigError("--llm custom needs the server's URL: give --llm URL instead")
    elif base_url:
        name = "custom"
    else:
        return None
    options = _options(args, env)
    model = model or env.get("VOICEKIT_LLM_MODEL") or None
    if name == "custom":
        assert base_url is not None
        if "api_key" not in options and env.get("VOICEKIT_LLM_API_KEY"):
            options["api_key"] = env["VOICEKIT_LLM_API_KEY"]
        if model is None:
            return NeedsModel(custom(base_url=base_url, model="-", **options))
        return custom(base_url=base_url, model=model, **options)
    if base_url:
        options["base_url"] = base_url
    if name == "openclaw" and model is None:
        raise ConfigError("--llm openclaw needs the agent: --llm openclaw:AGENT or --model AGENT")
    try:
        return PRESETS[name](model, **options)
    except ConfigError:
        if model is not None:
            raise
    return NeedsModel(PRESETS[name]("-", **options))  # a preset without a default model


def doctor_command(args: argparse.Namespace) -> str:
    """``voicekit doctor`` with the LLM options of ``args`` (keys never appear in it).

    >>> doctor_command(argparse.Namespace(llm="lmstudio", model="qwen", base_url=None))
    'voicekit doctor --llm lmstudio --model qwen'
    """
    words = ["voicekit", "doctor"]
    for flag, name in (("--llm", "llm"), ("--model", "model"), ("--base-url", "base_url")):
        value = getattr(args, name, None)
        if value:
            value = describe_url(value) if _is_url(value) else value
            words += [flag, value if value.split() == [value] else repr(value)]
    return " ".join(words)


def failure_hint(args: argparse.Namespace, source: str) -> str:
    """One line telling the user what to check after a reply failed in ``source``.

    >>> failure_hint(argparse.Namespace(llm="ollama"), "llm")
    'is Ollama running? try `voicekit doctor --llm ollama`'
    """
    if source != "llm":
        return f"the {source.upper()} failed; run with --{source} local to use the offline default"
    llm = (getattr(args, "llm", None) or "").strip()
    base_url = getattr(args, "base_url", None)
    if not llm and not base_url:
        return (
            "check the LLM settings (VOICEKIT_LLM_BASE_URL, OPENAI_API_KEY) or pass --llm; "
            "try `voicekit doctor`"
        )
    preset = llm.split(":", 1)[0].lower()
    where = base_url or llm
    what = _RUNTIME_NAMES.get(preset, f"the LLM at {describe_url(where)}")
    return f"is {what} running? try `{doctor_command(args)}`"


async def listed_model(needs: NeedsModel) -> Endpoint:
    """The endpoint with the first model its server lists (ProviderError if it cannot say)."""
    endpoint = needs.endpoint
    where = describe_url(endpoint.base_url)
    result = await warmup(endpoint)
    if not isinstance(result, Success):
        raise ProviderError(
            f"no model was named, and the LLM server at {where} could not be asked for its "
            f"models: {result.failure()}. Is it running? Or name the model with --model"
        )
    models = result.unwrap()
    if not models:
        raise ProviderError(f"the LLM server at {where} lists no model: name one with --model")
    return dataclasses.replace(endpoint, model=str(models[0]))


def _about(endpoint: Endpoint, why: str) -> str:
    return (
        f"LLM: {endpoint.name} at {describe_url(endpoint.base_url)}, model {endpoint.model!r} "
        f"({why})"
    )


async def resolve_cli_llm(
    args: argparse.Namespace, *, env: Mapping[str, str] = os.environ, probe: bool = True
) -> Resolved:
    """The LLM the options choose, in the documented order (see the module documentation)."""
    chosen = explicit_endpoint(args, env)
    if chosen == "local":
        return Resolved(
            local_responder,
            "LLM: voicekit's offline responder (chosen with --llm local): rule-based, it knows "
            "a few intents only",
        )
    if isinstance(chosen, str) and chosen in LOCAL_MODEL_NAMES:
        spec = require_local_model(chosen)
        about = local_model_about(spec, f"chosen with --llm {chosen}")
        return Resolved(local_model(spec.name), about)
    if isinstance(chosen, NeedsModel):
        chosen = await listed_model(chosen)
        why = "chosen with --llm; the first model the server lists"
        return Resolved(functools.partial(chat, chosen), _about(chosen, why), chosen)
    if isinstance(chosen, Endpoint):
        why = "chosen with --llm"
        return Resolved(functools.partial(chat, chosen), _about(chosen, why), chosen)
    model = (getattr(args, "model", None) or "").strip()
    options = _options(args, env)
    lookup = {**env, "VOICEKIT_LLM_MODEL": model} if model else env
    llm, about = await resolve_llm(None, env=lookup, probe=probe)
    endpoint = llm.args[0] if isinstance(llm, functools.partial) else None
    if not isinstance(endpoint, Endpoint):
        if model or options:
            given = "--api-key-env" if "api_key" in options else "--timeout"
            given = "--model" if model else given
            raise ConfigError(
                f"{given} applies to an LLM server, and none was given or found: name one with "
                "--llm (a preset or a URL)"
            )
        return Resolved(llm, about)
    if (model and endpoint.model != model) or options:
        before = f"model {endpoint.model!r}"
        changes: dict[str, Any] = {**options, **({"model": model} if model else {})}
        endpoint = dataclasses.replace(endpoint, **changes)
        llm = functools.partial(chat, endpoint)
        about = about.replace(before, f"model {endpoint.model!r}", 1)
    return Resolved(llm, about, endpoint)
