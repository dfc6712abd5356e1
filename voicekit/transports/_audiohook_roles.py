"""What voicekit does with an AudioHook session: answer the caller (:func:`agent_call`, the
Audio Connector) or transcribe both channels and send the transcripts back
(:func:`transcriber`, AudioHook Monitor / Transcription Connector)."""

from __future__ import annotations

import asyncio
import collections
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..events import AudioChunk, CallEnded, Dtmf, SpeechStarted, SpeechStopped, Transcript
from ..ops import Flow, stage
from ..session import Session
from ._audiohook_connection import AudioHookCall
from ._resample import StreamResampler
from .audiohook import ChannelAudio, EventEntities, LanguageChanged, transcript_entity

__all__ = ["agent_call", "transcriber"]

_END = object()


def agent_call(
    agent: Callable[[Session], Any], *, transfer_digit: str | None = "0"
) -> Callable[[AudioHookCall], Any]:
    """An ``on_call`` for the Audio Connector: ``agent(session)`` (a stage, e.g.
    :func:`voicekit.voice_agent`) answers the caller; pressing ``transfer_digit`` ends the
    session with ``outputVariables: {"action": "transfer"}`` so the Architect flow can hand
    the call to a person. When the agent ends the call itself, the action is ``"finished"``."""

    async def on_call(call: AudioHookCall) -> None:
        @stage
        async def watch(source: Any, /) -> AsyncIterator[Any]:
            async for item in source:
                if isinstance(item, Dtmf) and item.digit == transfer_digit:
                    await call.disconnect(action="transfer", digit=item.digit)
                yield item

        await (call.inbound | watch() | agent(call.session) | call.outbound)

    return on_call


class _Queue:
    """One channel's audio as an async iterator (ends at ``_END``)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    def __aiter__(self) -> _Queue:
        return self

    async def __anext__(self) -> Any:
        item = await self.queue.get()
        if item is _END:
            self.queue.put_nowait(_END)
            raise StopAsyncIteration
        return item


class _Clock:
    """One channel's 8 kHz audio resampled to ``rate`` as one continuous stream (what the VAD
    and STT expect), with the gaps of the stream's position clock kept aside (audio the client
    discarded, e.g. while paused): :meth:`position` maps a time of the continuous stream back
    to the position clock."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.resampler = StreamResampler(8000, rate)
        self.start: float | None = None
        self.made = 0
        self.heard = 0.0  # seconds of audio received
        self.gaps: list[tuple[float, float]] = []  # (continuous time, seconds skipped)

    def push(self, chunk: AudioChunk) -> AudioChunk | None:
        if self.start is None:
            self.start = chunk.t
        skipped = chunk.t - (self.start + self.heard + sum(g for _, g in self.gaps))
        if skipped > 0.001:
            self.gaps.append((self.heard, skipped))
        self.heard += chunk.duration
        out = self.resampler.push(chunk.samples)
        if not out.shape[0]:
            return None
        t = self.made / self.rate
        self.made += out.shape[0]
        return AudioChunk(out, self.rate, t)

    def position(self, t: float) -> float:
        """The position-clock time of continuous time ``t``."""
        return (self.start or 0.0) + t + sum(g for at, g in self.gaps if at <= t + 1e-6)


def transcriber(
    stt: Callable[[], Any],
    *,
    vad: Callable[[], Any],
    language: str | None = None,
    rate: int = 16000,
) -> Callable[[AudioHookCall], Any]:
    """An ``on_call`` for AudioHook Monitor: each channel (``external``, the caller;
    ``internal``, the contact center's agent) goes through its own ``vad()`` and ``stt()``
    stages, and every final transcript is sent back as an ``event`` with a ``transcript``
    entity: the channel, ``offset``/``duration`` of the utterance on the stream's position
    clock (from the VAD's speech markers), ``confidence`` (1.0: the recognisers give none) and
    the language: ``language`` when given, else the session's selected language (``open``'s,
    then each ``update``'s; ``en-US`` when the client named none). The session's messages
    record who said what (``user`` external, ``assistant`` internal)."""

    async def on_call(call: AudioHookCall) -> Session:
        channels = {"external": _Queue(), "internal": _Queue()}
        clocks = {name: _Clock(rate) for name in channels}
        session = [call.session]
        current = [language or call.started.parameters.get("language") or "en-US"]

        async def split() -> None:
            try:
                async for item in call.inbound:
                    if isinstance(item, ChannelAudio) and item.channel in channels:
                        chunk = clocks[item.channel].push(item.chunk)
                        if chunk is not None:
                            channels[item.channel].queue.put_nowait(chunk)
                    elif isinstance(item, LanguageChanged) and language is None:
                        current[0] = item.language
                    elif isinstance(item, CallEnded):
                        break
            finally:
                for q in channels.values():
                    q.queue.put_nowait(_END)

        async def listen(name: str) -> None:
            spans: collections.deque[tuple[float, float]] = collections.deque()
            start = 0.0
            async for item in Flow(channels[name]) | vad() | stt():
                if isinstance(item, SpeechStarted):
                    start = item.t
                elif isinstance(item, SpeechStopped):
                    spans.append((start, item.t))
                elif isinstance(item, Transcript) and item.final and item.text:
                    begin, end = spans.popleft() if spans else (item.t, item.t)
                    offset = clocks[name].position(begin)
                    entity = transcript_entity(
                        item.text, channel=name, offset=offset,
                        duration=max(0.0, clocks[name].position(end) - offset),
                        language=current[0], id=str(uuid.uuid4()),
                    )
                    await call.send(EventEntities((entity,)))
                    if name == "external":
                        session[0] = session[0].add_user(item.text)
                    else:
                        session[0] = session[0].add_assistant(item.text)

        await asyncio.gather(split(), listen("external"), listen("internal"))
        return session[0]

    return on_call
