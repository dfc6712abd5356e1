"""Round trip through the offline stack: Piper speaks, the VAD cuts, Whisper transcribes back."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pytest

from voicekit import AudioChunk, Sentence, Transcript, stt, tts
from voicekit import _compute as compute
from voicekit.audio import from_array
from voicekit.stt import word_error_rate
from voicekit.vad import vad

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please schedule a meeting with the design team for next Tuesday afternoon.",
    "The weather today is sunny with a high of seventy two degrees.",
    "Can you tell me how to get to the nearest train station?",
    "Voice assistants convert speech to text and then back to speech.",
]

wer = word_error_rate


@pytest.fixture(scope="module")
def models() -> None:
    stt.preload()
    tts.preload()


async def spoken(sentences: list[str]) -> list[np.ndarray]:
    """Each sentence as Piper speaks it through the stage, at 16 kHz."""
    parts: list[np.ndarray] = []
    current: list[np.ndarray] = []
    source = [Sentence(s) for s in sentences]
    async for item in source | tts.piper(rate=16000, pass_text=True):
        if isinstance(item, AudioChunk):
            current.append(item.samples)
        else:
            parts.append(np.concatenate(current))
            current = []
    return parts


async def test_piper_to_vad_to_whisper_round_trip(models: None) -> None:
    audio = await spoken(SENTENCES)
    pause = np.zeros(12800, np.int16)  # 0.8 s between sentences
    joined = np.concatenate([part for a in audio for part in (pause, a)] + [pause])
    items = await (from_array(joined, 16000) | vad() | stt.whisper()).list()
    heard = [x.text for x in items if isinstance(x, Transcript)]
    assert len(heard) == len(SENTENCES), heard
    assert wer(" ".join(SENTENCES), " ".join(heard)) <= 0.10, heard
    starts = [x.t for x in items if isinstance(x, Transcript)]
    expected = np.cumsum([0.8 + a.shape[0] / 16000 for a in [np.zeros(0), *audio[:-1]]])
    assert np.all(np.abs(np.array(starts) - expected) < 0.35)  # each onset found


async def test_stt_and_tts_share_the_pool_never_more_at_once_than_its_size(
    models: None, monkeypatch: Any
) -> None:
    spans: list[tuple[str, float, float]] = []
    lock = threading.Lock()
    real = compute.run

    async def timed(fn: Any, *args: Any, priority: Any = compute.Priority.LATER) -> Any:
        def inner(*a: Any) -> Any:
            began = time.perf_counter()
            try:
                return fn(*a)
            finally:
                with lock:
                    spans.append((threading.current_thread().name, began, time.perf_counter()))

        return await real(inner, *args, priority=priority)

    monkeypatch.setattr(compute, "run", timed)  # Whisper's and Piper's calls, not the VAD's
    (question,) = await spoken(["What is the weather like in Rome today?"])
    spans.clear()
    listen = (from_array(question, 16000) | vad() | stt.whisper()).list()
    speak = (SENTENCES[:3] | tts.piper()).list()
    heard, said = await asyncio.gather(listen, speak)
    (text,) = [x.text for x in heard if isinstance(x, Transcript)]
    assert wer("what is the weather like in rome today", text) <= 0.15
    assert sum(isinstance(x, AudioChunk) for x in said) > 100
    assert len(spans) >= 4
    assert all(name.startswith("voicekit-inference-") for name, _, _ in spans)
    edges = sorted([(start, 1) for _, start, _ in spans] + [(end, -1) for _, _, end in spans])
    running = [sum(step for _, step in edges[: i + 1]) for i in range(len(edges))]
    assert max(running) <= compute.workers()  # the CPU is never oversubscribed by models


async def test_a_cancelled_inference_that_has_not_started_never_runs() -> None:
    ran: list[str] = []

    def slow(name: str) -> str:
        time.sleep(0.2)
        ran.append(name)
        return name

    busy = [asyncio.ensure_future(compute.run(slow, "first")) for _ in range(compute.workers())]
    second = asyncio.ensure_future(compute.run(slow, "second"))
    await asyncio.sleep(0.05)  # every worker runs a "first", "second" waits its turn
    second.cancel()
    assert await asyncio.gather(*busy) == ["first"] * compute.workers()
    await asyncio.sleep(0.3)
    assert ran == ["first"] * compute.workers()


async def test_queued_inference_does_not_stall_voice_activity_detection() -> None:
    def slow() -> None:
        time.sleep(0.1)

    queued = [  # 1.2 s of "models" on every worker
        asyncio.ensure_future(compute.run(slow)) for _ in range(12 * compute.workers())
    ]
    try:
        began = time.perf_counter()
        audio = np.tile(tts.synthesize_tones("one two three")[0], 10)
        items = await (from_array(audio, 16000) | vad()).list()  # Silero: the express lane
        assert len(items) > 100
        assert time.perf_counter() - began < 0.8
        assert not all(job.done() for job in queued)
    finally:
        for job in queued:
            job.cancel()
        await asyncio.gather(*queued, return_exceptions=True)
