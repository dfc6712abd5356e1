"""``voicekit serve`` as a user runs it: a real process on 127.0.0.1, called by streamdouble with
the bundled question (offline models: Silero, Whisper tiny.en, Piper)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from servers.sse_server import text_reply
from streamdouble import api
from streamdouble.scenario import parse
from streamdouble.session import SessionConfig

AUDIO = {"event": "audio", "timeout": 60}  # the agent's first audio; the machine may be loaded
DATA = Path(__file__).parent.parent / "voicekit" / "data"
QUESTION = parse(
    {"name": "question", "steps": [
        {"say": "question.wav"}, {"wait_for": AUDIO}, {"wait": 4},
    ]},
    base_dir=DATA,
)
CONFIG = SessionConfig(response_timeout_s=30, quiet_period_s=1.5, max_drain_s=20)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    process: asyncio.subprocess.Process
    port: int
    lines: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/twilio/media"

    async def wait_for_line(self, text: str, timeout: float = 60) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while not any(text in line for line in self.lines):  # noqa: ASYNC110
                await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def voicekit_serve(*options: str) -> AsyncIterator[Server]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicekit.cli", "serve", "--dev", "--port", str(port), *options,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    server = Server(process, port)

    async def read() -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            server.lines.append(line.decode(errors="replace"))

    reader = asyncio.create_task(read())
    try:
        await server.wait_for_line("Application startup complete", timeout=120)
        yield server
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        await reader


async def test_voicekit_serve_answers_a_call_offline():
    async with voicekit_serve() as server:
        report = await api.run_scenario(server.url, QUESTION, config=CONFIG)
        async with httpx.AsyncClient() as http:
            health = await http.get(f"http://127.0.0.1:{server.port}/healthz")
        await server.wait_for_line("ended: 1 turn(s)", timeout=10)
    assert health.status_code == 200
    assert report.violations == [] and report.spoke
    assert len(report.audio_received) / 8000 > 1.0  # a spoken sentence, not a click
    out = "".join(server.lines)
    assert "DEV MODE" in out and "offline responder" in out


async def test_voicekit_serve_with_an_llm_server(sse_server):
    sse_server.enqueue(text_reply(["It is ", "foggy in Rome."]))
    async with voicekit_serve("--llm", sse_server.base_url, "--model", "test-model") as server:
        report = await api.run_scenario(server.url, QUESTION, config=CONFIG)
        await server.wait_for_line("ended: 1 turn(s)", timeout=10)
    assert report.spoke
    (request,) = sse_server.requests
    messages = request.json()["messages"]
    assert messages[-1]["role"] == "user" and "rome" in messages[-1]["content"].lower()


async def test_sigterm_drains_running_calls():
    async with voicekit_serve("--drain-timeout", "30") as server:
        call = asyncio.create_task(api.run_scenario(server.url, QUESTION, config=CONFIG))
        await server.wait_for_line("connection open")
        server.process.send_signal(signal.SIGTERM)
        await server.wait_for_line("draining: 1 call(s) running")
        async with httpx.AsyncClient() as http:
            ready = await http.get(f"http://127.0.0.1:{server.port}/readyz")
        assert ready.status_code == 503
        report = await call
        assert report.spoke  # the running call was answered in full
        # uvicorn re-raises the SIGTERM once it has shut down cleanly: the process ends by it
        assert await asyncio.wait_for(server.process.wait(), 30) in (0, -signal.SIGTERM)
        await server.wait_for_line("Finished server process", timeout=5)


async def test_dev_needs_a_loopback_host():
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicekit.cli", "serve", "--dev", "--host", "0.0.0.0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    assert process.returncode == 2
    assert b"loopback" in err


async def test_a_carrier_without_its_credentials_does_not_start():
    env = {k: v for k, v in os.environ.items() if k != "TWILIO_AUTH_TOKEN"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicekit.cli", "serve", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    assert process.returncode == 2
    assert b"TWILIO_AUTH_TOKEN is not set" in err
