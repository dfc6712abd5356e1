"""Speech to text: Whisper (the real tiny.en model, offline), the scripted fake, utterances."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from voicekit import (
    AudioChunk,
    AudioError,
    ConfigError,
    SpeechStarted,
    SpeechStopped,
    Transcript,
    stt,
)
from voicekit import _compute as compute
from voicekit.audio import from_array, load, sample_path
from voicekit.stt._utterances import Utterances
from voicekit.vad import vad

QUESTION = "what is the weather like in rome today"


def words(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def kinds(items: list[Any]) -> list[str]:
    return [type(x).__name__ for x in items if not isinstance(x, AudioChunk)]


@pytest.fixture(scope="module")
def model() -> Any:
    return stt.preload()  # loaded once per process; later loads hit the cache


@pytest.fixture(scope="module")
def question() -> np.ndarray:
    return load(sample_path())[0]


# ---------------------------------------------------------------------------------------------
# Whisper


def test_transcribe_a_file_array_and_pair(model: Any, question: np.ndarray) -> None:
    assert words(stt.transcribe(sample_path())) == QUESTION
    assert words(stt.transcribe(question, 16000)) == QUESTION
    at_48k = load(sample_path(), rate=48000)
    assert words(stt.transcribe(at_48k)) == QUESTION  # a (samples, rate) pair, resampled
    assert words(stt.transcribe(AudioChunk(question, 16000))) == QUESTION


def test_transcribe_needs_the_rate_of_an_array(question: np.ndarray) -> None:
    with pytest.raises(AudioError, match="rate"):
        stt.transcribe(question)


async def test_model_loads_once_and_bad_models_are_config_errors(model: Any, tmp_path: Any) -> None:
    assert stt.preload() is model
    with pytest.raises(ConfigError, match=r"model\.bin"):
        stt.transcribe(np.zeros(1600, np.int16), 16000, model=tmp_path)
    with pytest.raises(ConfigError, match="never downloads"):
        await stt.whisper([], model="large-v3").list()
    with pytest.raises(ConfigError):
        await stt.whisper([], model=42).list()


async def test_whisper_stage_after_vad(model: Any) -> None:
    items = await (from_array(load(sample_path())[0], 16000) | vad() | stt.whisper()).list()
    assert kinds(items) == ["SpeechStarted", "SpeechStopped", "Transcript"]
    assert not any(isinstance(x, AudioChunk) for x in items)  # audio is consumed by default
    started, transcript = items[0], items[2]
    assert isinstance(transcript, Transcript) and transcript.final
    assert words(transcript.text) == QUESTION
    assert transcript.t == started.t  # the onset of the utterance


async def test_pass_audio_keeps_every_chunk_in_order(model: Any, question: np.ndarray) -> None:
    chunks = await from_array(question, 16000).list()
    items = await (chunks | vad() | stt.whisper(pass_audio=True)).list()
    audio = [x for x in items if isinstance(x, AudioChunk)]
    assert len(audio) == len(chunks) and all(a is b for a, b in zip(audio, chunks, strict=True))
    assert kinds(items) == ["SpeechStarted", "SpeechStopped", "Transcript"]


async def test_a_stream_without_markers_is_never_transcribed(
    model: Any, question: np.ndarray, caplog: Any
) -> None:
    items = await (from_array(question, 16000) | stt.whisper()).list()
    assert items == []  # no VAD said "speech": nothing to transcribe
    assert "no speech markers" in caplog.text and "vad()" in caplog.text


async def test_two_utterances_two_transcripts_in_order(model: Any, question: np.ndarray) -> None:
    other, rate = load(sample_path(), rate=22050)  # the same question, at another rate
    gap = np.zeros(16000, np.int16)
    first = from_array(np.concatenate([question, gap]), 16000)
    second_t0 = (question.shape[0] + gap.shape[0]) / 16000

    async def source() -> AsyncIterator[AudioChunk]:
        async for chunk in first:
            yield chunk
        async for chunk in from_array(other, rate):
            yield AudioChunk(chunk.samples, rate, second_t0 + chunk.t)

    items = await (source() | vad() | stt.whisper()).list()
    transcripts = [x for x in items if isinstance(x, Transcript)]
    assert [words(t.text) for t in transcripts] == [QUESTION, QUESTION]
    assert transcripts[0].t < second_t0 < transcripts[1].t


async def test_silence_between_markers_yields_no_transcript(model: Any) -> None:
    silence = await from_array(np.zeros(32000, np.int16), 16000).list()
    items = await ([SpeechStarted(0.2), *silence, SpeechStopped(1.8)] | stt.whisper()).list()
    assert kinds(items) == ["SpeechStarted", "SpeechStopped", "NoWords"]  # answered: no words
    assert items[-1].t == 0.2


async def test_whisper_runs_on_the_pool_with_the_transcript_priority(
    model: Any, monkeypatch: Any
) -> None:
    calls: list[Any] = []
    real = compute.run

    async def spy(fn: Any, *args: Any, priority: Any = compute.Priority.LATER) -> Any:
        if getattr(fn, "__name__", "") == "transcribe":  # not the VAD's hops
            calls.append(priority)
        return await real(fn, *args, priority=priority)

    monkeypatch.setattr(compute, "run", spy)
    items = await (from_array(load(sample_path())[0], 16000) | vad() | stt.whisper()).list()
    assert calls == [compute.Priority.TRANSCRIPT] and kinds(items)[-1] == "Transcript"
    calls.clear()
    audio = from_array(load(sample_path())[0], 16000)
    items = await (audio | vad(hint_secs=0.0) | stt.whisper(speculate=True)).list()
    assert calls and set(calls) == {compute.Priority.TRANSCRIPT}  # a guess is nearly always kept
    assert kinds(items)[-1] == "Transcript"


# ---------------------------------------------------------------------------------------------
# Utterance cutting


def chunk(t: float, seconds: float = 0.1, value: int = 1, rate: int = 16000) -> AudioChunk:
    return AudioChunk(np.full(round(seconds * rate), value, np.int16), rate, t)


def test_utterances_cut_from_pre_roll_before_onset() -> None:
    cutter = Utterances(pre_roll=0.2)
    for i in range(20):
        cutter.audio(chunk(i / 10, value=i))
    cutter.started(SpeechStarted(1.0))  # arrives late, as VAD markers do
    cutter.audio(chunk(2.0, value=20))
    onset, samples, _ = cutter.stopped(SpeechStopped(2.05))
    assert onset == 1.0
    assert samples.shape[0] == round(1.3 * 16000)  # 0.8 s .. 2.1 s
    assert samples[0] == 8 and samples[-1] == 20


def test_pre_roll_never_reaches_into_the_previous_utterance() -> None:
    cutter = Utterances(pre_roll=0.5)
    cutter.started(SpeechStarted(0.0))
    for i in range(10):
        cutter.audio(chunk(i / 10, value=i))
    cutter.stopped(SpeechStopped(0.6))
    cutter.started(SpeechStarted(0.8))
    onset, samples, _ = cutter.stopped(SpeechStopped(0.95))
    assert onset == 0.8 and samples[0] == 6 and samples.shape[0] == round(0.4 * 16000)


def test_old_audio_is_dropped_between_utterances() -> None:
    cutter = Utterances(pre_roll=0.5)
    cutter.stopped(SpeechStopped(0.0))  # markers seen: keep only recent history
    for i in range(600):
        cutter.audio(chunk(i / 10))
    assert sum(c.duration for c in cutter.chunks) <= 3.6
    assert cutter.finish() is None


def test_utterances_resample_to_16k() -> None:
    cutter = Utterances(pre_roll=0.0)
    cutter.started(SpeechStarted(0.0))
    cutter.audio(chunk(0.0, seconds=0.5, value=1000, rate=8000))
    onset, samples, rate = cutter.finish()
    assert onset == 0.0 and samples.shape[0] == 8000 and rate == 8000  # 8 kHz audio, told so


# ---------------------------------------------------------------------------------------------
# The fake


def marked(*spans: tuple[float, float]) -> list[Any]:
    out: list[Any] = []
    for start, stop in spans:
        out += [SpeechStarted(start), chunk(start), SpeechStopped(stop)]
    return out


async def test_fake_answers_each_utterance_with_the_next_line() -> None:
    items = await (marked((0, 1), (2, 3), (4, 5)) | stt.fake(transcripts=["one", "two"])).list()
    texts = [(x.text, x.t) for x in items if isinstance(x, Transcript)]
    assert texts == [("one", 0), ("two", 2)]  # the script is used up: the third yields nothing
    assert kinds(items).count("SpeechStopped") == 3


async def test_fake_with_a_function_of_the_audio() -> None:
    def heard(samples: np.ndarray, rate: int) -> str:
        return f"{samples.shape[0] / rate:.2f}s"

    items = await (marked((0, 1)) | stt.fake(transcripts=heard, pre_roll=0)).list()
    assert [x.text for x in items if isinstance(x, Transcript)] == ["0.10s"]


async def test_markers_are_not_held_up_by_a_slow_recogniser() -> None:
    async def live() -> AsyncIterator[Any]:
        for item in marked((0, 1)):
            yield item
        await asyncio.sleep(0.05)
        yield SpeechStarted(2.0)  # the user speaks again while "recognition" runs
        await asyncio.sleep(0.3)

    items = await (live() | stt.fake(transcripts=["first"], latency=0.2)).list()
    # the second utterance, cut at the end of the stream, held no words
    assert kinds(items) == [
        "SpeechStarted", "SpeechStopped", "SpeechStarted", "Transcript", "NoWords"
    ]


async def test_fake_rejects_a_single_string() -> None:
    with pytest.raises(ConfigError):
        await stt.fake([], transcripts="hello").list()
