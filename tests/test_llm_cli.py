"""``voicekit chat`` / ``voicekit doctor``: options, output and exit codes."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from servers.llm_tables import KEY_VARS
from servers.sse_server import SSEServer, chunk, json_reply, stream_reply, tool_chunks

from voicekit.cli import main


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KEY_VARS:
        monkeypatch.delenv(name, raising=False)


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the real command in a subprocess (the test's loop keeps serving meanwhile)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicekit.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_chat_hermes_preset_with_session_and_key_from_env(sse_server: SSEServer) -> None:
    sse_server.enqueue(
        stream_reply(
            [
                chunk("Sure, "),
                chunk("checking."),
                *tool_chunks(0, "c1", "calendar", '{"day":', '"mon"}'),
                chunk(finish="tool_calls"),
                chunk(usage={"prompt_tokens": 5, "completion_tokens": 2}, no_choices=True),
            ]
        )
    )
    code, out, err = await run_cli(
        "chat", "--llm", "hermes", "--base-url", sse_server.base_url, "--call-id", "CA1",
        "--caller", "+15551110000", "--system", "Be brief.", "--api-key-env", "MY_HERMES_KEY",
        "what's on monday?",
        env={"MY_HERMES_KEY": "sk-cli-secret", "API_SERVER_KEY": ""},
    )  # fmt: skip
    assert code == 0, err
    assert out == (
        "Sure, checking.\n"
        '{"tool_call": {"id": "c1", "name": "calendar", "arguments": "{\\"day\\":\\"mon\\"}"}}\n'
    )
    assert "tokens: prompt=5 completion=2 cached=0" in err and "finish: tool_calls" in err
    assert "sk-cli-secret" not in out + err and "15551110000" not in out + err
    recorded = sse_server.requests[-1]
    assert recorded.headers["authorization"] == "Bearer sk-cli-secret"
    assert recorded.headers["x-hermes-session-id"] == "patter-call-CA1"
    assert recorded.json()["messages"][0] == {"role": "system", "content": "Be brief."}
    assert b"15551110000" not in recorded.body


async def test_chat_reports_provider_errors_with_exit_1(sse_server: SSEServer) -> None:
    sse_server.enqueue(json_reply(500, {"error": {"message": "upstream exploded"}}))
    code, out, err = await run_cli("chat", "--base-url", sse_server.base_url, "--model", "m", "hi")
    assert code == 1 and out == ""
    assert "ProviderStatusError" in err and "upstream exploded" in err


async def test_doctor_reports_a_failing_endpoint(sse_server: SSEServer) -> None:
    sse_server.handler = lambda request: json_reply(401, {"error": {"message": "bad key"}})
    code, out, _ = await run_cli("doctor", "--llm", "vllm", "--model", "m",
                                 "--base-url", sse_server.base_url)  # fmt: skip
    assert code == 1 and "fail:" in out and "HTTP 401" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["chat", "--llm", "nope", "hi"], "unknown LLM 'nope'; give a preset (custom, hermes"),
        (["chat", "--llm", "custom", "--model", "m", "hi"], "--llm custom needs the server's URL"),
        (["chat", "--llm", "openclaw", "hi"], "needs the agent: --llm openclaw:AGENT or --model"),
        (["chat", "--llm", "openclaw", "--model", "bad agent", "hi"], "letters, digits"),
        (["chat", "--base-url", "ftp://x", "--model", "m", "hi"], "http:// or https://"),
        (["doctor", "--llm", "nope"], "unknown LLM 'nope'"),
    ],
)
def test_bad_options_exit_2_with_a_clear_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_bad_tool_schema_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "tools.json"
    bad.write_text("{not json")
    argv = ["chat", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"]
    assert main([*argv, "--tool-schema", str(bad), "hi"]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    assert main([*argv, "--tool-schema", str(tmp_path / "missing.json"), "hi"]) == 2
    assert "cannot read --tool-schema" in capsys.readouterr().err
