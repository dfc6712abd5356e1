"""``voicekit.notebook.talk``: talk to an agent from a notebook cell, through the browser that
runs Jupyter. The widget (an anywidget, front end ``voicekit/web/widget.js``) captures the
microphone and plays the reply; the audio travels over the widget's comm, in the messages of
the ``/ws`` protocol, and the kernel runs each call with :func:`voicekit.transports.run_call`,
exactly as the server runs a browser's or a phone's call."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterable, Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from ._errors import ConfigError
from .audio import load
from .events import AudioChunk
from .session import Session
from .transports import run_call, websocket
from .web import source, turn_meter

__all__ = ["Talk", "talk"]

_FOREVER = 7 * 24 * 3600.0  # a call starts when the user presses the button


class CommSocket:
    """One call's side of the widget's comm, shaped like the WebSocket :func:`run_call` reads:
    ``receive()`` gives ASGI-style messages, ``send_text``/``send_bytes`` go to the browser."""

    def __init__(self, send: Callable[..., Any]) -> None:
        self._send = send
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.application_state = SimpleNamespace(name="CONNECTED")
        self.last_audio = 0.0  # the event loop's time of the latest audio sent to the browser

    def put(self, content: Any, buffers: Sequence[Any]) -> None:
        """A message from the browser (the comm's handler calls this)."""
        if not isinstance(content, dict):
            return
        if content.get("audio") and buffers:
            self.queue.put_nowait({"type": "websocket.receive", "bytes": bytes(buffers[0])})
        elif isinstance(content.get("text"), str):
            self.queue.put_nowait({"type": "websocket.receive", "text": content["text"]})
        elif content.get("hangup"):
            self.queue.put_nowait({"type": "websocket.disconnect", "code": 1001})

    async def receive(self) -> dict[str, Any]:
        return await self.queue.get()

    async def send_text(self, text: str) -> None:
        self._send({"text": text})

    async def send_bytes(self, data: bytes) -> None:
        self.last_audio = asyncio.get_running_loop().time()
        self._send({"audio": True}, [data])

    async def close(self, code: int = 1000) -> None:
        self.application_state.name = "DISCONNECTED"
        self._send({"closed": code})


@dataclass(eq=False)
class Talk:
    """A talk widget and its calls, made by :func:`talk`. Display it (a cell's last value);
    ``sessions`` holds each finished call's final Session; ``await talk.wait()`` waits for the
    calls to end (a scripted one ends by itself) and gives the sessions — stopping that cell
    stops the call; ``stop()`` ends it from anywhere."""

    widget: Any
    sessions: list[Session] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def stop(self) -> None:
        """End the call in progress and take no more (the pipeline closes like any Flow)."""
        if self.task is not None:
            self.task.cancel()

    async def wait(self) -> list[Session]:
        """Wait until the calls end; the final sessions. Cancelled (the cell stopped), it stops
        the call too."""
        if self.task is not None:
            try:
                await asyncio.shield(self.task)
            except asyncio.CancelledError:
                me = asyncio.current_task()
                if self.task.cancelled() and (me is None or not me.cancelling()):
                    return self.sessions  # stop() was called elsewhere
                self.stop()  # the cell was stopped: so is the call
                with contextlib.suppress(asyncio.CancelledError):
                    await self.task
                raise
        return self.sessions

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def _widget_class() -> Any:
    try:
        import anywidget
        import traitlets
    except ImportError as exc:
        raise ConfigError("voicekit.notebook.talk needs anywidget: "
                          "pip install 'voicekit[notebook]'") from exc

    class TalkWidget(anywidget.AnyWidget):
        _esm = traitlets.Unicode(source("widget.js")).tag(sync=True)
        _audio_js = traitlets.Unicode(source("audio.js")).tag(sync=True)
        _capture_js = traitlets.Unicode(source("capture-worklet.js")).tag(sync=True)
        _playback_js = traitlets.Unicode(source("playback-worklet.js")).tag(sync=True)

    return TalkWidget


_QUIET = 3.0  # the scripted caller hangs up once the agent has been quiet this long
_LONGEST = 60.0  # …or this long after its audio ended


def _scripted(audio: Any) -> Any:
    """A scripted caller in place of the microphone: ``audio`` (a file, ``(samples, rate)`` or
    a flow of chunks) as 20 ms frames in real time, then silence until the agent has answered
    and said nothing for ``_QUIET`` seconds (at most ``_LONGEST``), then ``stop``."""

    async def frames(sock: CommSocket) -> None:
        sock.put({"text": json.dumps({"type": "start", "events": True})}, [])
        if isinstance(audio, AsyncIterable):
            parts = [c.samples for c in [c async for c in audio] if isinstance(c, AudioChunk)]
            samples = np.concatenate(parts) if parts else np.zeros(0, np.int16)
        elif isinstance(audio, tuple):
            samples, rate = audio
            if rate != websocket.RATE:
                raise ConfigError(f"talk: scripted audio must be {websocket.RATE} Hz, got {rate}")
        else:
            samples, _ = load(audio, rate=websocket.RATE)
        samples = np.asarray(samples, np.int16)
        loop = asyncio.get_running_loop()
        start = loop.time()
        frames = [samples[i : i + 320] for i in range(0, samples.shape[0], 320)]
        silence = np.zeros(320, "<i2").tobytes()
        k = 0
        while True:
            await asyncio.sleep(max(0.0, start + k * 0.02 - loop.time()))
            if k < len(frames):
                sock.put({"audio": True}, [frames[k].astype("<i2").tobytes()])
            else:
                now, ended = loop.time(), start + len(frames) * 0.02
                answered = sock.last_audio > ended
                if (answered and now - sock.last_audio > _QUIET) or now - ended > _LONGEST:
                    break
                sock.put({"audio": True}, [silence])
            k += 1
        sock.put({"text": json.dumps({"type": "stop"})}, [])

    return frames


def talk(
    bot: Any,
    *,
    audio: Any = None,
    lead: float = 0.2,
    widget: Any = None,
) -> Talk:
    """A widget to talk to ``bot`` (a stage from audio to the agent's output, e.g.
    :func:`voicekit.voice_agent`) from this notebook: press the microphone button, speak, hear
    the reply; the widget shows the level, what you said and what the agent said as it is
    played. The browser running Jupyter captures and plays the audio (echo cancellation and
    noise suppression on) and acknowledges each sentence played, so each Session's history
    holds what you heard. Calls run in the kernel's event loop, one at a time, until
    :meth:`Talk.stop`. ``audio`` (a file, ``(samples, 16000)`` or a flow of chunks) is played
    as a scripted caller in place of the microphone, in real time; it hangs up once the agent
    has answered and been quiet for 3 s (or after a minute): a notebook runs that way offline
    and unattended. ``lead``: how far the reply runs ahead of real time. ``widget``: anything
    with ``send(content, buffers)`` and ``on_msg(handler)`` in place of the anywidget (tests
    drive the front end through it).
    """
    if widget is None:
        widget = _widget_class()()
    result = Talk(widget)
    current: list[CommSocket] = []

    def on_msg(_widget: Any, content: Any, buffers: Sequence[Any]) -> None:
        if current:
            current[-1].put(content, buffers)

    widget.on_msg(on_msg)

    async def on_call(call: Any) -> None:
        await (call.inbound | bot | turn_meter() | call.outbound)

    async def calls() -> None:
        while True:
            sock = CommSocket(lambda content, buffers=None: widget.send(content, buffers))
            current.append(sock)
            feeder = None
            if audio is not None:
                feeder = asyncio.create_task(_scripted(audio)(sock), name="voicekit talk caller")
            try:
                session = await run_call(sock, websocket.codec, on_call, lead=lead,
                                         start_timeout=_FOREVER)
            finally:
                if feeder is not None:
                    feeder.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await feeder
            if session is not None:
                result.sessions.append(session)
            if audio is not None:
                return

    result.task = asyncio.get_running_loop().create_task(calls(), name="voicekit talk")
    return result
