"""One meaning of the LLM options in every subcommand: the shared group, the one resolver,
``doctor``, ``--version``, ``--help`` defaults and ``--out`` (issue 9 item 18)."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest
from servers.llm_tables import KEY_VARS
from servers.sse_server import SSEServer, text_reply

import voicekit
from voicekit import ConfigError, ProviderError
from voicekit.cli import build_parser, main
from voicekit.cli._llm import NeedsModel, explicit_endpoint, failure_hint, resolve_cli_llm
from voicekit.llm.local import local_responder

LLM_FLAGS = {"--llm", "--model", "--base-url", "--api-key-env", "--timeout"}
NO_AGENT = {"call"}  # places a call through the carrier: the agent runs in `voicekit serve`
_LLM_ENV = ("VOICEKIT_LLM_BASE_URL", "VOICEKIT_LLM_MODEL", "VOICEKIT_LLM_API_KEY")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*KEY_VARS, *_LLM_ENV):
        monkeypatch.delenv(name, raising=False)


def closed_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def options(*argv: str) -> argparse.Namespace:
    """The parsed options of ``voicekit chat ARGV hi``."""
    return build_parser().parse_args(["chat", *argv, "hi"])


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """The real command in a subprocess (the test's loop keeps serving meanwhile)."""
    clean = {k: v for k, v in os.environ.items() if k not in (*KEY_VARS, *_LLM_ENV)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicekit.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**clean, **(env or {})},
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


# ---------------------------------------------------------------------------------------------
# the same flags everywhere


def test_every_subcommand_takes_the_same_llm_options() -> None:
    commands = _subcommands()
    assert set(commands) >= {"demo", "run", "talk", "chat", "doctor"}
    for name, parser in commands.items():
        if name in NO_AGENT:
            continue
        flags = {s for a in parser._actions for s in a.option_strings}
        assert flags >= LLM_FLAGS, (name, LLM_FLAGS - flags)
        group = next(g for g in parser._action_groups if g.title == "LLM")
        assert {s for a in group._group_actions for s in a.option_strings} == LLM_FLAGS


def test_help_shows_every_default() -> None:
    for name, parser in _subcommands().items():
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            if action.default in (None, argparse.SUPPRESS) or action.nargs == 0:
                continue  # no default, or a flag (--help, --dev)
            shown = (f"(default: {action.default})", f"default {action.default!r}")
            assert any(form in text for form in shown), (name, action.dest, text)
        for action in parser._actions:  # options without a value default say what happens
            if action.option_strings and action.dest in {"llm", "model", "base_url", "timeout"}:
                assert "default:" in (action.help or ""), (name, action.dest)
    assert "(default: voicekit-run-out)" in " ".join(_subcommands()["run"].format_help().split())


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.strip() == f"voicekit {voicekit.__version__}"


@pytest.mark.parametrize("command", ["demo", "run"])
def test_out_naming_a_file_is_a_clear_error(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "reply.wav"
    a_file.write_bytes(b"")
    argv = [command, "--out", str(a_file)] + (["x.wav"] if command == "run" else [])
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --out: {a_file} is a file; --out names a directory" in err


# ---------------------------------------------------------------------------------------------
# the resolver


def test_explicit_choices_without_the_network() -> None:
    env = {"VOICEKIT_LLM_API_KEY": "sk-url", "MY_KEY": "sk-mine"}
    url = "http://127.0.0.1:9/v1"
    ep = explicit_endpoint(options("--llm", url, "--model", "m"), env)
    assert not isinstance(ep, NeedsModel | str | None)
    assert (ep.name, ep.base_url, ep.model, ep.api_key) == ("custom", url, "m", "sk-url")
    same = explicit_endpoint(options("--base-url", url, "--model", "m"), env)
    assert same == ep  # --base-url alone is --llm URL
    ep = explicit_endpoint(options("--llm", "ollama:qwen", "--base-url", url), env)
    assert not isinstance(ep, NeedsModel | str | None)
    assert (ep.name, ep.base_url, ep.model) == ("ollama", url, "qwen")
    ep = explicit_endpoint(
        options("--llm", "ollama", "--model", "qwen", "--api-key-env", "MY_KEY", "--timeout", "7"),
        env,
    )
    assert not isinstance(ep, NeedsModel | str | None)
    assert (ep.model, ep.api_key, ep.timeout) == ("qwen", "sk-mine", 7.0)
    assert isinstance(explicit_endpoint(options("--llm", url), env), NeedsModel)
    assert isinstance(explicit_endpoint(options("--llm", "lmstudio"), env), NeedsModel)
    assert explicit_endpoint(options("--llm", "local"), env) == "local"
    assert explicit_endpoint(options(), env) is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--llm", "nope"], "unknown LLM 'nope'"),
        (["--llm", "ollama:a", "--model", "b"], "name two models"),
        (["--llm", "http://h:9/v1", "--base-url", "http://x/v1"], "give the server's URL once"),
        (["--llm", "custom"], "--llm custom needs the server's URL"),
        (["--llm", "openclaw"], "--llm openclaw needs the agent"),
        (["--llm", "local", "--model", "m"], "takes no --model"),
        (["--llm", "ollama", "--api-key-env", "UNSET_VAR"], "UNSET_VAR is not set"),
        (["--llm", "ftp://x/v1"], "unknown LLM"),
    ],
)  # fmt: skip
def test_bad_llm_options_are_config_errors(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        explicit_endpoint(options(*argv), {})


async def test_a_url_without_a_model_uses_the_first_listed(sse_server: SSEServer) -> None:
    sse_server.models = ["first", "second"]
    resolved = await resolve_cli_llm(options("--llm", sse_server.base_url), env={})
    assert resolved.endpoint is not None and resolved.endpoint.model == "first"
    assert "the first model the server lists" in resolved.about


async def test_an_unreachable_url_is_not_answered_with_a_setting() -> None:
    url = closed_url()
    with pytest.raises(ProviderError) as caught:
        await resolve_cli_llm(options("--llm", url), env={})
    message = str(caught.value)
    assert "could not be asked for its models" in message and "could not connect" in message
    assert "Is it running?" in message and "VOICEKIT_LLM_MODEL" not in message


async def test_model_applies_to_what_the_order_finds(sse_server: SSEServer) -> None:
    env = {"VOICEKIT_LLM_BASE_URL": sse_server.base_url}
    resolved = await resolve_cli_llm(options("--model", "other-model", "--timeout", "5"), env=env)
    assert resolved.endpoint is not None
    assert (resolved.endpoint.model, resolved.endpoint.timeout) == ("other-model", 5.0)
    assert "model 'other-model'" in resolved.about and "VOICEKIT_LLM_BASE_URL" in resolved.about
    local = await resolve_cli_llm(options("--llm", "local"), env=env)
    assert local.llm is local_responder and local.endpoint is None


async def test_model_without_any_server_is_an_error() -> None:
    with pytest.raises(ConfigError, match="--model applies to an LLM server"):
        await resolve_cli_llm(options("--model", "m"), env={}, probe=False)


def test_failure_hint_repeats_the_llm_options() -> None:
    args = options("--llm", "lmstudio", "--model", "qwen", "--base-url", "http://u:p@h:1/v1")
    assert failure_hint(args, "llm") == (
        "is LM Studio running? try `voicekit doctor --llm lmstudio --model qwen "
        "--base-url http://h:1/v1`"
    )


# ---------------------------------------------------------------------------------------------
# chat and doctor, as a user runs them


async def test_chat_takes_a_url_like_the_voice_commands(sse_server: SSEServer) -> None:
    sse_server.enqueue(text_reply(["Hello", " there."]))
    code, out, err = await run_cli("chat", "--llm", sse_server.base_url, "hi")
    assert code == 0, err
    assert out == "Hello there.\n"
    assert f"custom at {sse_server.base_url}, model 'test-model'" in err
    assert sse_server.requests[-1].json()["model"] == "test-model"
    assert not any(line.startswith("usage:") for line in err.splitlines())  # not argparse's


async def test_chat_with_the_offline_responder() -> None:
    code, out, err = await run_cli("chat", "--llm", "local", "What time is it?")
    assert code == 0, err
    assert out.startswith("It's ") and "offline responder" in err


async def test_doctor_lists_the_models_without_a_model(sse_server: SSEServer) -> None:
    code, out, _ = await run_cli("doctor", "--llm", sse_server.base_url)
    assert code == 0, out
    assert "lists 2 model(s): 'test-model', 'other-model'" in out
    assert "would use the first listed, 'test-model'" in out


async def test_doctor_fails_for_a_model_the_server_does_not_have(sse_server: SSEServer) -> None:
    code, out, _ = await run_cli("doctor", "--llm", sse_server.base_url, "--model", "nope")
    assert code == 1, out
    assert "fail: the server does not have model 'nope'" in out
    code, out, _ = await run_cli("doctor", "--llm", "vllm:test-model", "--base-url",
                                 sse_server.base_url)  # fmt: skip
    assert code == 0 and "'test-model' is listed" in out


async def test_doctor_on_an_unreachable_url() -> None:
    url = closed_url()
    code, out, _ = await run_cli("doctor", "--llm", url)
    assert code == 1
    assert "fail: could not connect" in out and f"is the server running at {url}?" in out
    assert "VOICEKIT_LLM_MODEL" not in out


async def test_demo_on_an_unreachable_url_without_a_model_says_so(tmp_path: Path) -> None:
    url = closed_url()
    code, out, err = await run_cli("demo", "--out", str(tmp_path), "--llm", url)
    assert code == 1, out + err
    assert "could not be asked for its models" in err and "VOICEKIT_LLM_MODEL" not in err
    assert f"try `voicekit doctor --llm {url}`" in err
    assert "loading" not in out  # it failed before any model loaded
