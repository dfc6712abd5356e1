"""``voicekit serve --carrier none`` as a user runs it — a real process with the offline models
(Whisper, the offline responder, Piper) — and its page in headless Chromium hearing the
bundled question."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from web_browser import chromium, wait_for, write_wav

import voicekit as vk
from voicekit.audio import load

QUESTION = Path(vk.__file__).parent / "data" / "question.wav"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def serve_page():
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "VOICEKIT_WS_TOKEN"}
    process = subprocess.Popen(
        [sys.executable, "-m", "voicekit.cli", "serve", "--carrier", "none", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "Application startup complete" in line:
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(120), "".join(lines)
        yield port, lines
    finally:
        process.terminate()
        process.wait(30)
        reader.join(5)


def test_voicekit_serve_without_a_carrier_talks_in_the_browser(serve_page, tmp_path):
    port, lines = serve_page
    out = "".join(lines)
    match = re.search(r"talk to the agent at (http://127\.0\.0\.1:\d+/#token=\S+)", out)
    assert match, out
    url = match.group(1)
    assert httpx.get(f"http://127.0.0.1:{port}/twilio/voice").status_code == 404  # no carrier
    question, rate = load(QUESTION, rate=16000)
    mic = write_wav(tmp_path / "mic.wav", np.concatenate((question, np.zeros(rate * 25,
                                                                               np.int16))), rate)
    with chromium(mic) as driver:
        driver.get(url.split("#")[0])  # without the token the call is refused
        driver.find_element("id", "talk").click()
        wait_for(driver, "return window.voicekit.status.startsWith('call refused')", 15)
        driver.get(url)
        driver.find_element("id", "talk").click()
        heard = wait_for(driver, "return window.voicekit.events.filter(e => e.type == "
                         "'transcript' && e.final).map(e => e.text)[0]", 60)
        spoken = wait_for(driver, "return window.voicekit.spoken.length > 0 && "
                          "window.voicekit.spoken", 60)
        metrics = wait_for(driver, "return window.voicekit.metrics[0]", 10)
        driver.save_screenshot(str(Path(os.environ.get("TMPDIR", "/tmp")) / "voicekit-serve.png"))
        driver.find_element("id", "talk").click()
    assert "weather" in heard.lower() and "rome" in heard.lower()
    assert spoken[0].strip()
    assert 0 < metrics["voice_to_voice"] < 10
    until = time.monotonic() + 10
    while not any("ended: 1 turn(s)" in line for line in lines) and time.monotonic() < until:
        time.sleep(0.05)
    assert any("ended: 1 turn(s)" in line for line in lines), "".join(lines)
