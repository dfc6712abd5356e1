"""``voicekit chat`` and ``voicekit doctor``: talk to an LLM endpoint from the terminal.

    voicekit chat --llm hermes --call-id CA1 "What's on my calendar?"
    voicekit chat --llm custom --base-url http://127.0.0.1:8000/v1 --model m \\
        --tool-schema tools.json "weather in rome?"
    voicekit doctor --llm ollama

``chat`` prints text as it arrives (stdout), each tool call as one JSON line (stdout), and usage
and the finish reason at the end (stderr). ``doctor`` runs the warm-up (``GET /models``) and exits
0 when the endpoint answers, 1 when it does not. Keys are read from the environment, never from
the command line, and never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from returns.result import Success

from .._errors import ConfigError, ProviderError
from ..events import Finish, Token, ToolCall, Usage
from ..llm import chat
from ..llm._warmup import warmup
from ..llm.endpoint import Endpoint
from ..llm.presets import PRESETS, custom, openclaw, preset
from ..session import Session, new_call_id

__all__ = ["add_parser", "endpoint_from_args"]


def _add_endpoint_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("endpoint")
    group.add_argument(
        "--llm",
        metavar="PRESET",
        help=f"a preset: {', '.join(PRESETS)} (default: custom when --base-url is given)",
    )
    group.add_argument("--base-url", metavar="URL", help="e.g. http://127.0.0.1:8000/v1")
    group.add_argument("--model", metavar="M", help="model name (the agent id for openclaw)")
    group.add_argument(
        "--api-key-env", metavar="VAR", help="environment variable holding the API key"
    )
    group.add_argument("--timeout", type=float, metavar="S", help="read timeout in seconds")


def add_parser(subparsers: Any) -> None:
    """Register ``chat`` and ``doctor``."""
    chat_parser = subparsers.add_parser(
        "chat",
        help="stream a reply from an LLM endpoint",
        description="Stream a reply from an OpenAI-compatible /chat/completions endpoint.",
    )
    _add_endpoint_options(chat_parser)
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
        help="check an LLM endpoint answers (GET /models)",
        description="Run the warm-up against an endpoint and report; exit 0 if it answers.",
    )
    _add_endpoint_options(doctor)
    doctor.set_defaults(func=run_doctor)


def endpoint_from_args(args: argparse.Namespace) -> Endpoint:
    """The Endpoint the command-line options describe (ConfigError if they do not add up)."""
    name = args.llm or ("custom" if args.base_url else None)
    if name is None:
        raise ConfigError(f"give --llm PRESET or --base-url URL; presets are: {', '.join(PRESETS)}")
    options: dict[str, Any] = {}
    if args.timeout is not None:
        options["timeout"] = args.timeout
    if args.api_key_env:
        options["api_key_env"] = args.api_key_env
    if name == "custom":
        if not args.base_url or not args.model:
            raise ConfigError("--llm custom needs --base-url and --model")
        return custom(base_url=args.base_url, model=args.model, **options)
    if args.base_url:
        options["base_url"] = args.base_url
    if name == "openclaw":
        if not args.model:
            raise ConfigError("--llm openclaw needs --model AGENT (the OpenClaw agent id)")
        return openclaw(args.model, **options)
    return preset(name, args.model, **options)


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
    endpoint: Endpoint,
    prompt: str,
    *,
    session: Session,
    system: str | None,
    tools: list[dict[str, Any]] | None,
    out: TextIO,
    err: TextIO,
) -> None:
    at_line_start = True
    messages = [{"role": "user", "content": prompt}]
    async for event in chat(endpoint, messages, tools=tools, session=session, system=system):
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
                f"usage: prompt={event.prompt_tokens} completion={event.completion_tokens} "
                f"cached={event.cached_tokens} reasoning={event.reasoning_tokens}\n"
            )
        elif isinstance(event, Finish):
            if not at_line_start:
                out.write("\n")
                at_line_start = True
            err.write(f"finish: {event.reason}\n")
    out.flush()


def run_chat(args: argparse.Namespace) -> int:
    """``voicekit chat``: exit 0 on a complete reply, 1 on a provider error, 2 on bad options."""
    try:
        endpoint = endpoint_from_args(args)
        tools = _load_tools(args.tool_schema)
        session = Session(call_id=args.call_id or new_call_id(), caller=args.caller or None)
    except (ConfigError, ValueError) as exc:
        print(f"voicekit chat: {exc}", file=sys.stderr)
        return 2
    print(f"# {endpoint}", file=sys.stderr)
    try:
        asyncio.run(
            _stream(
                endpoint,
                args.prompt,
                session=session,
                system=args.system,
                tools=tools,
                out=sys.stdout,
                err=sys.stderr,
            )
        )
    except ProviderError as exc:
        print(f"\nvoicekit chat: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"voicekit chat: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def run_doctor(args: argparse.Namespace) -> int:
    """``voicekit doctor``: warm the endpoint up and report; 0 if it answered, else 1."""
    try:
        endpoint = endpoint_from_args(args)
    except ConfigError as exc:
        print(f"voicekit doctor: {exc}", file=sys.stderr)
        return 2
    print(f"checking {endpoint}")
    result = asyncio.run(warmup(endpoint))
    if isinstance(result, Success):
        models = result.unwrap()
        listed = "listed" if endpoint.model in models else "not in the list"
        count = len(models)
        print(f"ok: {endpoint.models_url} lists {count} model(s); {endpoint.model!r} is {listed}")
        return 0
    print(f"fail: {result.failure()}")
    return 1
