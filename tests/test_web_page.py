"""The browser page of ``voicekit serve``, in a real headless Chromium: the fake microphone
plays the bundled question, the page plays the reply and acknowledges its marks, a barge-in
flushes playback, closing the tab ends the call."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from web_browser import ServerThread, chromium, wait_for, write_wav

import voicekit as vk
import voicekit.serve
from voicekit.audio import load
from voicekit.events import Interrupted, Played
from voicekit.stt import fake
from voicekit.tts import tones
from voicekit.turns import speech_timeout, turns
from voicekit.vad import energy, vad
from voicekit.web import turn_meter

QUESTION = Path(vk.__file__).parent / "data" / "question.wav"
REPLY = ["It is ten past four in the afternoon here, on a grey and windy Monday. ",
         "The sun sets at six tonight, a little earlier than it did last week. ",
         "Tomorrow will be warmer than today, with some sun in the late morning. ",
         "On Wednesday the rain comes back, first in the west and then everywhere else. ",
         "The weekend looks dry, but take a coat in the evening because it gets cold. ",
         "Anything else I can tell you about the weather or the time?"]
# with tones TTS the reply lasts ~6 s: a caller who speaks 2 s in cuts it (the agent declares
# the barge-in once the caller's words are recognised, at the end of their speech)


def capture(tmp_path: Path, *parts: tuple[str, float]) -> Path:
    """The fake microphone: ("question", s) the bundled question then silence to ``s``,
    ("tone", s) a loud tone of ``s`` seconds, ("quiet", s) silence."""
    rate = 16000
    pieces = []
    for kind, seconds in parts:
        if kind == "question":
            samples, _ = load(QUESTION, rate=rate)
            pieces.append(samples)
        elif kind == "tone":
            n = int(rate * seconds)
            pieces.append((np.sin(2 * np.pi * 300 * np.arange(n) / rate) * 9000).astype(np.int16))
        else:
            pieces.append(np.zeros(int(rate * seconds), np.int16))
    return write_wav(tmp_path / "mic.wav", np.concatenate(pieces), rate)


class Calls:
    """The server side: each call runs the offline agent (energy VAD, scripted STT, tones TTS)
    and records what came in and the final Session."""

    def __init__(self) -> None:
        self.inbound: list[Any] = []
        self.outbound: list[Any] = []
        self.sessions: list[vk.Session] = []
        self.ended = threading.Event()
        self.heard = 0

    def transcript(self, samples: Any, rate: int) -> str:
        self.heard += 1
        return "what time is it" if self.heard == 1 else "wait a moment"

    async def on_call(self, call: Any) -> None:
        async def llm(messages: Any) -> AsyncIterator[str]:
            for part in REPLY:
                yield part

        bot = vk.voice_agent(
            llm=llm, tts=tones(), stt=fake(transcripts=self.transcript),
            vad=vad(detector=energy(), min_volume=0, stop_secs=0.4),
            turns=turns(stop=[speech_timeout(0.3)], pending=False), session=call.session,
        )
        await (call.inbound | vk.tap(self.inbound.append) | bot | turn_meter()
               | vk.tap(self.outbound.append) | call.outbound)

    def on_end(self, session: vk.Session) -> None:
        self.sessions.append(session)
        self.ended.set()


@pytest.fixture
def server() -> Iterator[tuple[ServerThread, Calls]]:
    calls = Calls()
    # a lead of 1 s: the page holds up to a second of the reply, so a clear has audio to drop
    # even on a loaded machine (the server's pacing never lets the page starve it)
    application = vk.serve.app(calls.on_call, carrier=None, dev=True, on_end=calls.on_end,
                               lead=1.0)
    running = ServerThread(application)
    try:
        yield running, calls
    finally:
        running.stop()


def screenshot(driver: Any, name: str) -> Path:
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"voicekit-{name}.png"
    driver.save_screenshot(str(path))
    return path


@pytest.mark.filterwarnings("ignore::voicekit.turns.StopSecsWarning")
def test_the_page_hears_the_question_and_plays_the_reply(server, tmp_path):
    srv, calls = server
    with chromium(capture(tmp_path, ("question", 0), ("quiet", 20))) as driver:
        driver.get(srv.url + "/")
        assert driver.title.startswith("voicekit")
        driver.find_element("id", "talk").click()
        wait_for(driver, "return window.voicekit.metrics.length > 0", 20)
        spoken = wait_for(driver, "return window.voicekit.spoken.length >= 2 && "
                          "window.voicekit.spoken", 20)
        assert spoken[:2] == [s.strip() for s in REPLY[:2]]
        shot = screenshot(driver, "page")
        assert shot.stat().st_size > 5000
        wait_for(driver, f"return window.voicekit.spoken.length == {len(REPLY)}", 20)
        page = driver.execute_script("return {played: window.voicekit.played, "
                                     "startMs: window.voicekit.call.report.startMs, "
                                     "playedAt: window.voicekit.call.report.playedAt, "
                                     "received: window.voicekit.call.report.received, "
                                     "metrics: window.voicekit.metrics}")
        text = driver.find_element("id", "conversation").text
        driver.find_element("id", "talk").click()  # hang up
        assert calls.ended.wait(10)
    # playback starts once the jitter buffer holds 60 ms (or a whole sentence), no later
    assert page["startMs"] and page["startMs"][0] < 300
    # the page played every sample it was sent, and acknowledged every mark in order
    assert page["playedAt"][-1] == page["received"]  # at the last mark: every sample sent
    marks = [m.name for m in calls.outbound if isinstance(m, vk.Mark)]
    assert page["played"] == marks and len(marks) == len(REPLY)
    assert [p.name for p in calls.inbound if isinstance(p, Played)] == marks
    assert "what time is it" in text and "It is ten past four" in text
    bars = {span[0] for span in page["metrics"][-1]["spans"]}
    assert {"user speech", "VAD stop", "STT", "reply audio"} <= bars
    assert page["metrics"][-1]["voice_to_voice"] > 0
    # the caller's audio reached the server at its real length (16 kHz, 20 ms frames)
    audio = [c for c in calls.inbound if isinstance(c, vk.AudioChunk)]
    assert audio and {c.rate for c in audio} == {16000}
    (session,) = calls.sessions
    assert session.messages_json() == [
        {"role": "user", "content": "what time is it"},
        {"role": "assistant", "content": "".join(REPLY).strip()},
    ]
    assert srv.voicekit_tasks() == []


@pytest.mark.filterwarnings("ignore::voicekit.turns.StopSecsWarning")
def test_a_barge_in_flushes_playback_at_once(server, tmp_path):
    srv, calls = server
    # the question, 1.5 s for the reply to begin, then the caller speaks over it
    mic = capture(tmp_path, ("question", 0), ("quiet", 1.5), ("tone", 0.6), ("quiet", 20))
    with chromium(mic) as driver:
        driver.get(srv.url + "/")
        driver.find_element("id", "talk").click()
        cleared = wait_for(driver, "return window.voicekit.cleared.length > 0 && "
                           "window.voicekit.cleared", 25)
        screenshot(driver, "page-barge-in")
        report = driver.execute_script("return window.voicekit.call.report")
        spoken = driver.execute_script("return window.voicekit.spoken")
        # the next reply's first sentence, played to its mark
        wait_for(driver, "return window.voicekit.played.includes('2-1')", 20)
        after = driver.execute_script("const r = window.voicekit.call.report; "
                                      "return r.playedAt[r.played.indexOf('2-1')]")
        driver.find_element("id", "talk").click()
        assert calls.ended.wait(10)
    assert cleared[0] > 0  # queued audio was thrown away
    assert report["flushMs"][0] < 150  # at once: one message to the worklet and back
    # nothing of the cut reply was played after the clear: from there to the next reply's
    # first mark the page played exactly that sentence's audio as the server sent it
    out = calls.outbound
    begin = [k for k, x in enumerate(out) if isinstance(x, vk.ReplyStarted)][1]
    end = next(k for k, x in enumerate(out) if isinstance(x, vk.Mark) and x.name == "2-1")
    sentence = sum(x.frames for x in out[begin:end] if isinstance(x, vk.AudioChunk))
    assert after - report["playedAtClear"][0] == sentence
    assert any(isinstance(i, Interrupted) for i in calls.outbound)
    assert len(spoken) < len(REPLY)
    (session,) = calls.sessions
    said = [m for m in session.messages if m["role"] == "assistant"]
    assert said and said[0].get("interrupted")
    assert said[0]["content"] == " ".join(spoken)
    assert srv.voicekit_tasks() == []


@pytest.mark.filterwarnings("ignore::voicekit.turns.StopSecsWarning")
def test_closing_the_tab_ends_the_call_with_nothing_left_running(server, tmp_path):
    srv, calls = server
    with chromium(capture(tmp_path, ("question", 0), ("quiet", 20))) as driver:
        first = driver.current_window_handle
        driver.switch_to.new_window("tab")
        driver.get(srv.url + "/")
        driver.find_element("id", "talk").click()
        wait_for(driver, "return window.voicekit.spoken.length >= 1", 20)  # mid-reply

        def websockets() -> list[str]:  # the page's keep-alive HTTP connections may stay
            names = [type(c).__name__ for c in srv.server.server_state.connections]
            return [n for n in names if "WebSocket" in n]

        assert len(srv.call(websockets)) == 1
        driver.close()  # the tab, not the browser
        driver.switch_to.window(first)
        assert calls.ended.wait(10)
        assert srv.voicekit_tasks() == []
        assert srv.call(websockets) == []
    (session,) = calls.sessions
    assert session.messages[0]["content"] == "what time is it"
    said = [m for m in session.messages if m["role"] == "assistant"]
    assert len(said) <= 1 and all(m["content"] for m in said)  # only what the page played


def test_the_page_and_its_files_are_served_and_nothing_else(server):
    import httpx

    srv, _ = server
    page = httpx.get(srv.url + "/")
    assert page.status_code == 200 and 'src="static/page.js"' in page.text
    for name, kind in (("page.js", "text/javascript"), ("capture-worklet.js", "text/javascript"),
                       ("page.css", "text/css")):
        reply = httpx.get(f"{srv.url}/static/{name}")
        assert reply.status_code == 200 and reply.headers["content-type"].startswith(kind)
    assert httpx.get(srv.url + "/static/_meter.py").status_code == 404
    assert httpx.get(srv.url + "/static/..%2F__init__.py").status_code == 404
