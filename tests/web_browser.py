"""Helpers for the real-browser tests: headless Chromium (Debian's chromium + chromedriver,
driven by Selenium) with a WAV file as its microphone, and a uvicorn server in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import threading
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def need_chromium() -> None:
    """Fail (never skip) when the browser is missing: .ci/run installs it."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("the browser tests need Debian's chromium and chromium-driver: "
                    "apt-get install -y chromium chromium-driver", pytrace=False)


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    """16-bit mono PCM, what Chromium's fake capture reads."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.asarray(samples, "<i2").tobytes())
    return path


@contextlib.contextmanager
def chromium(capture_wav: Path) -> Iterator[Any]:
    """A headless Chromium whose microphone plays ``capture_wav`` (looped) and whose media
    permission prompts are accepted."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    need_chromium()
    profile = tempfile.mkdtemp(prefix="voicekit-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1100,700",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={capture_wav}",
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver: Any, script: str, timeout: float = 20.0) -> Any:
    """Poll ``return …`` in the page until it is truthy; its value."""
    until = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script)
        if value:
            return value
        if time.monotonic() > until:
            raise AssertionError(f"timed out waiting for: {script}")
        time.sleep(0.05)


class ServerThread:
    """An ASGI app served by uvicorn on 127.0.0.1 in a thread with its own event loop."""

    def __init__(self, application: Any) -> None:
        self.loop = asyncio.new_event_loop()
        config = uvicorn.Config(application, host="127.0.0.1", port=0, log_level="warning",
                                lifespan="off", ws="websockets-sansio")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        until = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > until:
                raise AssertionError("uvicorn did not start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        self.loop.run_until_complete(self.server.serve())

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn()`` (sync or a coroutine function) on the server's loop; its result."""
        async def run() -> Any:
            value = fn()
            return await value if asyncio.iscoroutine(value) else value
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(15)

    def voicekit_tasks(self) -> list[str]:
        """voicekit's call tasks still running on the server (given 3 s to end)."""
        async def left() -> list[str]:
            for _ in range(300):
                names = [t.get_name() for t in asyncio.all_tasks()
                         if t.get_name().startswith("voicekit") and not t.done()]
                if not names:
                    return []
                await asyncio.sleep(0.01)
            return names
        return self.call(left)  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
