"""The browser page over WebRTC, in headless Chromium against the uvicorn-served app on this
machine (host ICE candidates): how long a call takes to set up, and how far the page's
playback runs behind the server's track.

Per call (``--calls``; the fake microphone says the bundled question, the agent of
``tests/test_web_page.py`` answers with a ~12 s tones reply):

* setup: from the click on *Talk* to the call running (GET /webrtc, getUserMedia, the offer
  with every host candidate, POST /webrtc, ICE, DTLS, SCTP, the data channel open);
* behind: while the reply plays, every 0.3 s, the agent's audio the server's track has sent
  minus what the page has heard (16 kHz samples above silence, in ms) — the network, the
  browser's jitter buffer and the page's measuring frame. The page is read first, the server
  right after, so each figure is a few ms too high (the time between the two reads).

    python bench/webrtc_page.py --calls 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_web_page import REPLY, Calls, capture
from web_browser import ServerThread, chromium, wait_for

import voicekit as vk
import voicekit.serve

TOKEN = "bench"


def p90(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.9 * len(values)) - 1)]


def one_call(mic: Path) -> tuple[float, list[float]]:
    """One call: its setup time (s) and the readings of how far playback ran behind (ms)."""
    calls = Calls()
    application = vk.serve.app(calls.on_call, carrier=None, ws_token=TOKEN, on_end=calls.on_end)
    srv = ServerThread(application)
    peers = application.state.webrtc
    behind: list[float] = []
    try:
        with chromium(mic) as driver:
            driver.get(f"{srv.url}/#token={TOKEN}&transport=webrtc")
            start = time.monotonic()
            driver.find_element("id", "talk").click()
            wait_for(driver, "return window.voicekit.call", 20)
            setup = time.monotonic() - start
            wait_for(driver, "return window.voicekit.spoken.length >= 1", 30)
            while driver.execute_script("return window.voicekit.spoken.length") < len(REPLY) - 1:
                heard = driver.execute_script("return window.voicekit.call.report.heard")
                sent = srv.call(lambda: sum(p.speaker.sent for p in peers.live))
                behind.append((sent - heard) / 16)
                time.sleep(0.3)
            driver.find_element("id", "talk").click()
            calls.ended.wait(10)
    finally:
        srv.stop()
    return setup, behind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()
    setups: list[float] = []
    behind: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        mic = capture(Path(tmp), ("question", 0), ("quiet", 30))
        for _ in range(args.calls):
            setup, readings = one_call(mic)
            setups.append(setup)
            behind += readings
    print(f"calls {args.calls}: setup (click → call running) median "
          f"{statistics.median(setups) * 1000:.0f} ms, p90 {p90(setups) * 1000:.0f} ms")
    print(f"playback behind the server's track ({len(behind)} readings mid-reply): median "
          f"{statistics.median(behind):.0f} ms, p90 {p90(behind):.0f} ms")


if __name__ == "__main__":
    main()
