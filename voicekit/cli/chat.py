"""``voicekit chat`` and ``voicekit doctor``: talk to an LLM from the terminal, check one.

    voicekit chat --llm hermes --call-id CA1 "What's on my calendar?"
    voicekit chat --llm http://127.0.0.1:8000/v1 --tool-schema tools.json "weather in rome?"
    voicekit doctor --llm ollama

Both take the LLM options every subcommand takes, with the same meaning (see
:mod:`voicekit.cli._llm`): with none, ``chat`` talks to the LLM ``voicekit demo`` would use.
``chat`` prints text as it arrives (stdout), each tool call as one JSON line (stdout), and the
token counts and the finish reason at the end (stderr). ``doctor`` asks the server for its
models (``GET /models``) and checks the model is among them: exit 0 when it is, 1 when the
server does not answer or does not have it. Keys are read from the environment, never from the
command line, and never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from returns.result import Success

from .._errors import ConfigError, VoicekitError
from ..events import Finish, Token, ToolCall, Usage
from ..llm._warmup import warmup
from ..llm.endpoint import Endpoint
from ..llm.resolve import describe_url
from ..session import Session, new_call_id
from ._llm import (
    _RUNTIME_NAMES,
    NeedsModel,
    add_llm_options,
    explicit_endpoint,
    resolve_cli_llm,
)

__all__ = ["add_parser", "run_chat", "run_doctor"]


def add_parser(subparsers: Any) -> None:
    """Register ``chat`` and ``doctor``."""
    chat_parser = subparsers.add_parser(
        "chat",
        help="stream a reply from an LLM",
        description="Stream a reply from an LLM (an OpenAI-compatible /chat/completions "
        "endpoint, or the offline responder) to the terminal.",
    )
    add_llm_options(chat_parser)
    session = chat_parser.add_argument_group("conversation")
    session.add_argument("--call-id", metavar="ID", help="call id for the session signals")
    session.add_argument(
        "--caller", metavar="NUM", help="caller number (only its hash is ever sent)"
    )
    session.add_argument("--system", metavar="TEXT", help="system instruction")
    session.add_argument(
        "--tool-schema",
        metavar="FILE",
        type=Path,
        help="JSON file with one tool schema or a list of them",
    )
    chat_parser.add_argument("prompt", help="what the user says")
    chat_parser.set_defaults(func=run_chat)

    doctor = subparsers.add_parser(
        "doctor",
        help="check the LLM answers and has the model (GET /models)",
        description="Ask the LLM server for its models and check the model is among them; "
        "exit 0 if it is, 1 if the server does not answer or does not have it. With no "
        "options, checks the LLM the voice commands would use.",
    )
    add_llm_options(doctor)
    doctor.set_defaults(func=run_doctor)


def _load_tools(path: Path | None) -> list[dict[str, Any]] | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read --tool-schema {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"--tool-schema {path} is not valid JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("tools"), list):
        data = data["tools"]
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(t, dict) for t in data):
        raise ConfigError(f"--tool-schema {path} must hold a tool schema or a list of them")
    return data


async def _stream(
    args: argparse.Namespace,
    *,
    session: Session,
    tools: list[dict[str, Any]] | None,
    out: TextIO,
    err: TextIO,
) -> None:
    resolved = await resolve_cli_llm(args)
    err.write(f"# {resolved.about}\n")
    at_line_start = True
    messages = [{"role": "user", "content": args.prompt}]
    stream = resolved.llm(messages, tools=tools, session=session, system=args.system)
    async for event in stream:
        if isinstance(event, str):
            event = Token(event)
        if isinstance(event, Token):
            out.write(event.text)
            out.flush()
            at_line_start = event.text.endswith("\n")
        elif isinstance(event, ToolCall):
            if not at_line_start:
                out.write("\n")
            call = {"id": event.id, "name": event.name, "arguments": event.arguments}
            out.write(json.dumps({"tool_call": call}, ensure_ascii=False) + "\n")
            out.flush()
            at_line_start = True
        elif isinstance(event, Usage):
            err.write(
                f"tokens: prompt={event.prompt_tokens} completion={event.completion_tokens} "
                f"cached={event.cached_tokens} reasoning={event.reasoning_tokens}\n"
            )
        elif isinstance(event, Finish):
            if not at_line_start:
                out.write("\n")
                at_line_start = True
            err.write(f"finish: {event.reason}\n")
    if not at_line_start:
        out.write("\n")
    out.flush()


def run_chat(args: argparse.Namespace) -> int:
    """``voicekit chat``: exit 0 on a complete reply, 1 on a provider error, 2 on bad options."""
    try:
        explicit_endpoint(args)  # bad options fail before anything is sent
        tools = _load_tools(args.tool_schema)
        session = Session(call_id=args.call_id or new_call_id(), caller=args.caller or None)
    except (ConfigError, ValueError) as exc:
        print(f"voicekit chat: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_stream(args, session=session, tools=tools, out=sys.stdout, err=sys.stderr))
    except ConfigError as exc:
        print(f"voicekit chat: {exc}", file=sys.stderr)
        return 2
    except VoicekitError as exc:
        print(f"\nvoicekit chat: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def run_doctor(args: argparse.Namespace) -> int:
    """``voicekit doctor``: 0 if the LLM answers and has the model, 1 if not, 2 for bad options."""
    try:
        return asyncio.run(_doctor(args))
    except ConfigError as exc:
        print(f"voicekit doctor: {exc}", file=sys.stderr)
        return 2
    except VoicekitError as exc:
        print(f"fail: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130


def _listed(model: str, models: list[str]) -> bool:
    return model in models or f"{model}:latest" in models


def _show(models: list[str], most: int = 8) -> str:
    shown = ", ".join(repr(m) for m in models[:most])
    return shown + (f" and {len(models) - most} more" if len(models) > most else "")


async def _doctor(args: argparse.Namespace) -> int:
    chosen = explicit_endpoint(args)
    if chosen == "local":
        print("ok: the offline responder (--llm local) runs in this process: no server to check")
        return 0
    endpoint: Endpoint
    model: str | None
    if isinstance(chosen, NeedsModel):
        endpoint, model = chosen.endpoint, None
    elif isinstance(chosen, Endpoint):
        endpoint, model = chosen, chosen.model
    else:
        resolved = await resolve_cli_llm(args)
        print(resolved.about)
        if resolved.endpoint is None:
            print("ok: no LLM server was given or found; the voice commands use the offline "
                  "responder (point --llm at a server to check it)")  # fmt: skip
            return 0
        endpoint, model = resolved.endpoint, resolved.endpoint.model
    where = describe_url(endpoint.base_url)
    print(f"checking {endpoint.name} at {where}" + (f", model {model!r}" if model else ""))
    result = await warmup(endpoint)
    if not isinstance(result, Success):
        print(f"fail: {result.failure()}")
        what = _RUNTIME_NAMES.get(endpoint.name, "the server")
        print(f"hint: is {what} running at {where}? (and is the URL right: it ends in /v1)")
        return 1
    models = [str(m) for m in result.unwrap()]
    print(f"ok: {endpoint.models_url} answers; it lists {len(models)} model(s)"
          + (f": {_show(models)}" if models else ""))  # fmt: skip
    if model is None:
        if not models:
            print("fail: the server lists no model; name one with --model")
            return 1
        print(f"ok: no model was named: the commands would use the first listed, {models[0]!r}")
        return 0
    if _listed(model, models):
        print(f"ok: {model!r} is listed")
        return 0
    if endpoint.name in ("hermes", "openclaw"):
        print(f"ok: {model!r} is not in the list; {_RUNTIME_NAMES[endpoint.name]} is an agent "
              "runtime, the model names the agent, not checked")  # fmt: skip
        return 0
    print(f"fail: the server does not have model {model!r}; name one it lists with --model")
    return 1
