"""``voicekit serve --workers 2`` as a user runs it: a real process tree on 127.0.0.1 (uvicorn's
supervisor and two worker processes sharing one listening socket). WebSocket calls on ``/ws``
land on both workers (which process holds each call's socket is read from ``/proc``); SIGTERM to
the supervisor drains every worker: ``/readyz`` turns 503, new calls are refused, the running
calls go on until they end, then all the processes exit. Linux only (``/proc``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")

STARTED = re.compile(r"Started server process \[(\d+)\]")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dead_url() -> str:
    """An OpenAI-compatible address nobody listens on: the calls here send no audio, so the
    STT and TTS are never asked, and no model is loaded at start."""
    return f"http://127.0.0.1:{free_port()}/v1"


@dataclass
class Server:
    process: asyncio.subprocess.Process
    port: int
    lines: list[str] = field(default_factory=list)

    def matching(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]

    async def wait_for(self, text: str, count: int = 1, timeout: float = 90) -> list[str]:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while len(self.matching(text)) < count:  # noqa: ASYNC110 - lines of a pipe
                await asyncio.sleep(0.05)
        return self.matching(text)


@contextlib.asynccontextmanager
async def serve_workers(workers: int) -> AsyncIterator[Server]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicekit.cli", "serve", "--carrier", "none", "--dev",
        "--workers", str(workers), "--port", str(port), "--drain-timeout", "60",
        "--stt", dead_url(), "--tts", dead_url(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    server = Server(process, port)

    async def read() -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            server.lines.append(line.decode(errors="replace"))

    reader = asyncio.create_task(read())
    try:
        await server.wait_for("Application startup complete", count=workers, timeout=180)
        yield server
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # the supervisor and its workers
        await process.wait()
        await reader


def owner(pids: list[int], server_port: int, client_port: int) -> int | None:
    """The process among ``pids`` holding the server side of the TCP connection from
    ``client_port`` to ``server_port`` (from /proc/net/tcp and each process's open files)."""
    inode = ""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == server_port and \
                int(remote.split(":")[1], 16) == client_port:
            inode = fields[9]
    if not inode:
        return None
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                        return pid
    return None


async def place_call(port: int, call_id: str) -> ClientConnection:
    ws = await connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10)
    await ws.send(json.dumps({"type": "start", "call_id": call_id}))
    return ws


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and \
        "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


async def test_two_workers_take_calls_and_sigterm_drains_both():
    async with serve_workers(2) as server:
        pids = [int(m) for line in server.matching("Started server process")
                for m in STARTED.findall(line)]
        assert len(set(pids)) == 2 and server.process.pid not in pids
        calls: dict[str, ClientConnection] = {}
        held: dict[int, list[str]] = {pid: [] for pid in pids}
        for i in range(40):  # the kernel hands each connection to whichever worker accepts
            call_id = f"call-{i}"
            ws = await place_call(server.port, call_id)
            calls[call_id] = ws
            pid = owner(pids, server.port, ws.transport.get_extra_info("sockname")[1])
            assert pid is not None, "no worker holds the call's socket"
            held[pid].append(call_id)
            if len(calls) >= 4 and all(held.values()):
                break
        assert all(held.values()), f"one worker took every call: {held}"
        async with httpx.AsyncClient() as http:
            ready = await http.get(f"http://127.0.0.1:{server.port}/readyz")
            assert ready.status_code == 200

            server.process.send_signal(signal.SIGTERM)  # to the supervisor, as Kubernetes does
            draining = await server.wait_for("draining:", count=2, timeout=30)
            counts = sorted(int(re.findall(r"draining: (\d+) call", line)[0])
                            for line in draining)
            assert counts == sorted(len(v) for v in held.values())  # each worker its own calls
            ready = await http.get(f"http://127.0.0.1:{server.port}/readyz")
            assert ready.status_code == 503 and ready.text == "draining"
        late = await connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=10)
        with pytest.raises(websockets.ConnectionClosed) as refused:
            await asyncio.wait_for(late.recv(), 10)
        assert refused.value.rcvd is not None and refused.value.rcvd.code == 1013
        # the running calls were not cut: each is still open and ends when its caller hangs up
        assert all(pid in pids and alive(pid) for pid in pids)
        for ws in calls.values():
            await ws.send(json.dumps({"type": "stop"}))
            await ws.close()
        code = await asyncio.wait_for(server.process.wait(), 60)
        for call_id in calls:
            await server.wait_for(f"call {call_id} ended", timeout=10)
        assert code in (0, -signal.SIGTERM)
        assert len(server.matching("Finished server process")) == 2
        assert not any(alive(pid) for pid in pids)
