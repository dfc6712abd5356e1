"""``voicekit.notebook.talk``: the widget's front end (voicekit/web/widget.js) in headless
Chromium on a test page with a fake widget model, whose comm is a WebSocket to the real kernel
side (``talk`` with a widget stand-in) — a spoken exchange and a barge-in."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from web_browser import ServerThread, chromium, wait_for

import voicekit as vk
from voicekit.web import source

# the page stands in for Jupyter: a model with get/send/on/off; its comm is a WebSocket
PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>widget test</title></head>
<body><div id="cell"></div><script type="module">
const traits = await (await fetch("/traits")).json();
const ws = new WebSocket(`ws://${location.host}/comm`);
ws.binaryType = "arraybuffer";
await new Promise((resolve) => { ws.onopen = resolve; });
const handlers = new Set();
const model = {
  get: (name) => traits[name],
  send(content, callbacks, buffers) {
    if (buffers && buffers.length) ws.send(buffers[0]); else ws.send(JSON.stringify(content));
  },
  on(name, fn) { if (name === "msg:custom") handlers.add(fn); },
  off(name, fn) { handlers.delete(fn); },
};
ws.onmessage = (event) => {
  const binary = event.data instanceof ArrayBuffer;
  const msg = binary ? { audio: true } : JSON.parse(event.data);
  const buffers = binary ? [new DataView(event.data)] : [];
  for (const fn of handlers) fn(msg, buffers);
};
const url = URL.createObjectURL(new Blob([traits._esm], { type: "text/javascript" }));
const widget = (await import(url)).default;
const el = document.getElementById("cell");
window.cleanup = await widget.render({ model, el });
window.cell = el;
</script></body></html>"""


class FakeWidget:
    """The kernel side's widget, with the comm replaced by the test page's WebSocket."""

    def __init__(self) -> None:
        self.handler: Any = None
        self.outbox: asyncio.Queue[Any] = asyncio.Queue()

    def on_msg(self, handler: Any) -> None:
        self.handler = handler

    def send(self, content: Any, buffers: Any = None) -> None:
        self.outbox.put_nowait(bytes(buffers[0]) if buffers else json.dumps(content))


class Kernel:
    def __init__(self, bot: Any) -> None:
        self.bot = bot
        self.talks: list[vk.notebook.Talk] = []

    async def comm(self, ws: WebSocket) -> None:
        await ws.accept()
        widget = FakeWidget()
        self.talks.append(vk.notebook.talk(self.bot(), widget=widget, lead=1.0))

        async def write() -> None:
            while True:
                message = await widget.outbox.get()
                if isinstance(message, bytes):
                    await ws.send_bytes(message)
                else:
                    await ws.send_text(message)

        writer = asyncio.create_task(write())
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("bytes") is not None:
                    widget.handler(widget, {"audio": True}, [message["bytes"]])
                else:
                    widget.handler(widget, json.loads(message["text"]), [])
        except WebSocketDisconnect:
            pass
        finally:
            widget.handler(widget, {"hangup": True}, [])
            writer.cancel()


def test_app(kernel: Kernel) -> Starlette:
    traits = {"_esm": source("widget.js"), "_audio_js": source("audio.js"),
              "_capture_js": source("capture-worklet.js"),
              "_playback_js": source("playback-worklet.js")}

    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE)

    async def traits_(request: Request) -> Response:
        return Response(json.dumps(traits), media_type="application/json")

    return Starlette(routes=[Route("/", page), Route("/traits", traits_),
                             WebSocketRoute("/comm", kernel.comm)])


test_app.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture
def kernel() -> Iterator[tuple[ServerThread, Kernel]]:
    from test_web_page import Calls

    calls = Calls()

    def bot() -> Any:
        from test_web_page import REPLY

        from voicekit.stt import fake
        from voicekit.tts import tones
        from voicekit.turns import speech_timeout, turns
        from voicekit.vad import energy, vad

        async def llm(messages: Any) -> Any:
            for part in REPLY:
                yield part

        return vk.voice_agent(
            llm=llm, tts=tones(), stt=fake(transcripts=calls.transcript),
            vad=vad(detector=energy(), min_volume=0, stop_secs=0.4),
            turns=turns(stop=[speech_timeout(0.3)], pending=False),
        )

    k = Kernel(bot)
    server = ServerThread(test_app(k))
    try:
        yield server, k
    finally:
        server.stop()


@pytest.mark.filterwarnings("ignore::voicekit.turns.StopSecsWarning")
def test_the_widget_holds_a_spoken_exchange_with_a_barge_in(kernel, tmp_path):
    from test_web_page import REPLY, capture

    server, k = kernel
    mic = capture(tmp_path, ("question", 0), ("quiet", 1.5), ("tone", 0.6), ("quiet", 25))
    with chromium(mic) as driver:
        driver.get(server.url + "/")
        wait_for(driver, "return document.querySelector('.voicekit-talk')", 20)
        driver.find_element("css selector", ".voicekit-talk").click()
        cleared = wait_for(driver, "return window.cell.voicekit.cleared.length > 0 && "
                           "window.cell.voicekit.cleared", 25)
        cut = driver.execute_script("return window.cell.voicekit.spoken.length")
        # the reply to the second turn is played to its end
        wait_for(driver, f"return window.cell.voicekit.spoken.length >= {cut + len(REPLY)}", 30)
        path = Path(os.environ.get("TMPDIR", "/tmp")) / "voicekit-widget.png"
        driver.save_screenshot(str(path))
        shown = driver.find_element("css selector", ".voicekit-agent").text
        you = driver.find_element("css selector", ".voicekit-you").text
        seen = driver.execute_script("return {played: window.cell.voicekit.played, "
                                     "spoken: window.cell.voicekit.spoken}")
        driver.find_element("css selector", ".voicekit-talk").click()  # hang up
        (talk,) = k.talks
        wait_for(driver, "return true")
        for _ in range(200):
            if talk.sessions:
                break
            server.call(lambda: asyncio.sleep(0.05))
    assert cleared[0] > 0 and 0 < cut < len(REPLY)
    assert you == "you: wait a moment" and shown.startswith("agent: It is ten past four")
    (session,) = talk.sessions
    said = [m for m in session.messages if m["role"] == "assistant"]
    assert [m["role"] for m in session.messages] == ["user", "assistant", "user", "assistant"]
    assert said[0].get("interrupted") and said[0]["content"] == " ".join(seen["spoken"][:cut])
    assert said[1]["content"] == "".join(REPLY).strip()
    server.call(lambda: talk.stop())
    assert server.voicekit_tasks() == []


async def test_a_cancelled_wait_stops_the_call_like_any_flow():
    """A cell awaiting ``talk.wait()`` that is stopped cancels it: the call ends, no task left."""
    import numpy as np

    from voicekit.tts import tones
    from voicekit.vad import energy, vad

    async def llm(messages: Any) -> Any:
        yield "Hello."

    bot = vk.voice_agent(llm=llm, tts=tones(), stt=vk.stt.fake(transcripts=["hi"]),
                         vad=vad(detector=energy(), min_volume=0))
    tone = (np.sin(np.arange(16000) * 0.1) * 9000).astype(np.int16)
    audio = np.concatenate((tone, np.zeros(16000 * 60, np.int16)))  # a minute-long caller
    talk = vk.notebook.talk(bot, audio=(audio, 16000), widget=FakeWidget())
    waiting = asyncio.create_task(talk.wait())
    await asyncio.sleep(2.0)
    assert not waiting.done()
    waiting.cancel()  # what stopping the cell does to its coroutine
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert talk.task is not None and talk.task.done()
    left = [t for t in asyncio.all_tasks() if t.get_name().startswith("voicekit") and not t.done()]
    assert left == []
    # stop() from elsewhere ends a wait() with the sessions so far
    talk = vk.notebook.talk(bot, audio=(audio, 16000), widget=FakeWidget())
    waiting = asyncio.create_task(talk.wait())
    await asyncio.sleep(0.1)
    talk.stop()
    assert await waiting == []
