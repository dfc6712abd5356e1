"""A phone agent for the carrier tests of :mod:`voicekit.phone`: the offline voice agent of
:mod:`servers.serving` (energy VAD, scripted STT, tones) with the keypad collector, call-control
tools and the idle policy, recording what reached it and what it yielded."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import voicekit as vk
from voicekit import phone
from voicekit.stt import fake
from voicekit.tts import tones
from voicekit.turns import speech_timeout, turns
from voicekit.vad import energy, vad

__all__ = ["PhoneAgent", "tone_wav"]


def tone_wav(path: Path, seconds_on: float, seconds_off: float = 0.0) -> Path:
    """A caller "utterance" at 8 kHz: a loud tone (the energy VAD hears speech), then quiet."""
    rate = 8000
    on = np.sin(2 * np.pi * 300 * np.arange(int(rate * seconds_on)) / rate) * 8000
    samples = np.concatenate((on, np.zeros(int(rate * seconds_off)))).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


class PhoneAgent:
    """An ``on_call`` running ``vad | stt | turns | [collect_digits] | agent`` with ``llm``
    (a scripted LLM), ``tools``, ``idle`` and ``digits`` (the collector's options, or None for
    no collector); ``inbound``/``outbound`` hold what went into and came out of the agent, and
    ``ended`` the final Sessions (``on_end``)."""

    def __init__(
        self,
        llm: Any,
        *,
        transcripts: Sequence[str] = (),
        tools: Sequence[Any] = (),
        idle: phone.Idle | None = None,
        digits: dict[str, Any] | None = None,
        first_message: str | None = None,
    ) -> None:
        self.llm, self.transcripts, self.tools = llm, list(transcripts), list(tools)
        self.idle, self.digits, self.first_message = idle, digits, first_message
        self.inbound: list[Any] = []
        self.outbound: list[Any] = []
        self.ended: list[vk.Session] = []
        self.done = asyncio.Event()

    async def on_call(self, call: Any) -> None:
        front = (
            vad(detector=energy(), min_volume=0, stop_secs=0.2)
            | fake(transcripts=self.transcripts, pass_audio=True)
            | turns(stop=[speech_timeout(0.2)], pending=False)
        )
        if self.digits is not None:
            front = front | phone.collect_digits(**self.digits)
        bot = front | vk.agent(
            llm=self.llm, tts=tones(), tools=self.tools, idle=self.idle,
            first_message=self.first_message, session=call.session,
        )
        await (
            call.inbound | vk.tap(self.inbound.append) | bot | vk.tap(self.outbound.append)
            | call.outbound
        )

    def on_end(self, session: vk.Session) -> None:
        self.ended.append(session)
        self.done.set()

    def came_in(self, kind: type) -> list[Any]:
        return [x for x in self.inbound if isinstance(x, kind)]

    def went_out(self, kind: type) -> list[Any]:
        return [x for x in self.outbound if isinstance(x, kind)]

    def kinds_out(self) -> list[str]:
        """The names of what the agent yielded, audio left out."""
        return [type(x).__name__ for x in self.outbound if not isinstance(x, vk.AudioChunk)]
