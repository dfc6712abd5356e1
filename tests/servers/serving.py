"""Running :func:`voicekit.serve.app` for the carrier tests: a real uvicorn server on a free
loopback port (:func:`serving`), an offline agent that hears tones and answers with tones
(:func:`agent_for`), and an ``on_call`` that records what reached the pipeline
(:class:`Recorder`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import uvicorn

import voicekit as vk
from voicekit.stt import fake
from voicekit.tts import tones
from voicekit.turns import speech_timeout, turns
from voicekit.vad import energy, vad

__all__ = ["Recorder", "agent_for", "serving", "voicekit_tasks"]


@contextlib.asynccontextmanager
async def serving(application: Any) -> AsyncIterator[str]:
    """Serve ``application`` with uvicorn on 127.0.0.1 in this loop; yield ``"host:port"``."""
    config = uvicorn.Config(
        application, host="127.0.0.1", port=0, log_level="warning", lifespan="off",
        ws="websockets-sansio",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for it
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def agent_for(
    session: vk.Session, transcripts: list[str], reply: Callable[[Any], list[str]]
) -> Any:
    """The whole voice agent, offline and deterministic: energy VAD, scripted STT, ``reply``
    as the LLM, tones as the TTS."""

    async def llm(messages: Any) -> AsyncIterator[str]:
        for part in reply(messages):
            yield part

    return vk.voice_agent(
        llm=llm,
        tts=tones(),
        stt=fake(transcripts=transcripts),
        vad=vad(detector=energy(), min_volume=0, stop_secs=0.2),
        turns=turns(stop=[speech_timeout(0.2)], pending=False),
        session=session,
    )


class Recorder:
    """An ``on_call`` that runs :func:`agent_for` and records the inbound events; ``on_end``
    keeps the final Sessions."""

    def __init__(self, transcripts: list[str], reply: Callable[[Any], list[str]]) -> None:
        self.transcripts, self.reply = transcripts, reply
        self.inbound: list[Any] = []
        self.calls = 0
        self.ended: list[vk.Session] = []
        self.done = asyncio.Event()

    async def on_call(self, call: Any) -> None:
        self.calls += 1
        bot = agent_for(call.session, self.transcripts, self.reply)
        await (call.inbound | vk.tap(self.inbound.append) | bot | call.outbound)

    def on_end(self, session: vk.Session) -> None:
        self.ended.append(session)
        self.done.set()

    def of(self, kind: type) -> list[Any]:
        return [x for x in self.inbound if isinstance(x, kind)]


async def voicekit_tasks() -> list[asyncio.Task[Any]]:
    """voicekit's own call tasks still running (they get 2 s to end)."""
    left: list[asyncio.Task[Any]] = []
    for _ in range(200):
        left = [
            t for t in asyncio.all_tasks() if t.get_name().startswith("voicekit") and not t.done()
        ]
        if not left:
            return []
        await asyncio.sleep(0.01)
    return left
