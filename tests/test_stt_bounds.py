"""What an STT stage keeps is bounded: a short pre-roll outside speech, at most ``max_utterance``
seconds of one utterance, and nothing at all of audio the VAD never called speech."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import pytest
from servers.audio_server import AudioServer

from voicekit import AudioChunk, ConfigError, SpeechStarted, SpeechStopped, Transcript, stt
from voicekit.stt import _utterances
from voicekit.stt._utterances import Utterances, recognize_utterances
from voicekit.vad import SpeechPaused, vad

RATE = 16000
LEAD = 3.0  # what a stage keeps before a speech start beyond its pre-roll (marker lateness)


def noise(seconds: float, seed: int = 3, level: int = 3000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-level, level, round(seconds * RATE)).astype(np.int16)


def bursts(seconds: float) -> np.ndarray:
    """"Speech" that never pauses long: 0.9 s of tone, 0.1 s of quiet, over and over."""
    second = np.zeros(RATE, np.int16)
    second[: RATE * 9 // 10] = (np.sin(np.arange(RATE * 9 // 10) / 5) * 8000).astype(np.int16)
    return np.tile(second, round(seconds))


def chunked(samples: np.ndarray, t0: float = 0.0, ms: int = 100) -> Iterator[AudioChunk]:
    size = RATE * ms // 1000
    for start in range(0, samples.shape[0], size):
        yield AudioChunk(samples[start : start + size], RATE, t0 + start / RATE)


def silent_chunks(seconds: float, ms: int = 100) -> Iterator[AudioChunk]:
    """``seconds`` of digital silence in ``ms`` chunks, made lazily (an hour costs nothing)."""
    size = RATE * ms // 1000
    zeros = np.zeros(size, np.int16)
    for i in range(round(seconds * 1000 / ms)):
        yield AudioChunk(zeros, RATE, i * size / RATE)


def kept(cutter: Utterances) -> int:
    """The samples an utterance cutter holds right now."""
    return sum(c.frames for c in cutter.chunks)


class Spy(Utterances):
    """Utterances that remember the most samples they ever kept."""

    most = 0

    def audio(self, chunk: AudioChunk) -> list[Any]:
        pieces = super().audio(chunk)
        Spy.most = max(Spy.most, kept(self))
        return pieces


@pytest.fixture
def spy(monkeypatch: Any) -> type[Spy]:
    Spy.most = 0
    monkeypatch.setattr(_utterances, "Utterances", Spy)
    return Spy


class Heard:
    """A recogniser that records the length (in samples) of every utterance it is given."""

    def __init__(self) -> None:
        self.lengths: list[int] = []

    def __call__(self, samples: np.ndarray, rate: int) -> str:
        self.lengths.append(samples.shape[0])
        return f"utterance {len(self.lengths)}"


class FakeWhisperModel:
    """Stands in for a loaded ``faster_whisper.WhisperModel``: records what it is asked to do."""

    class Segment:
        def __init__(self, text: str) -> None:
            self.text = text

    def __init__(self) -> None:
        self.lengths: list[int] = []

    def transcribe(self, audio: np.ndarray, **options: Any) -> tuple[list[Any], None]:
        self.lengths.append(audio.shape[0])
        return [self.Segment(f"utterance {len(self.lengths)}")], None


@pytest.fixture
async def server() -> AsyncIterator[AudioServer]:
    async with AudioServer() as running:
        yield running


# ---------------------------------------------------------------------------------------------
# Before the first marker


def test_an_hour_of_silence_before_any_marker_keeps_a_few_seconds() -> None:
    cutter = Utterances(pre_roll=0.3)
    most = 0
    for chunk in silent_chunks(3600):
        cutter.audio(chunk)
        most = max(most, kept(cutter))
    assert most <= (0.3 + LEAD + 0.1) * RATE  # not 3600 s × 16000 samples
    assert cutter.finish() is None  # and none of it is an utterance


def test_one_huge_chunk_is_sliced_to_the_pre_roll() -> None:
    cutter = Utterances(pre_roll=0.3)
    cutter.audio(AudioChunk(np.zeros(600 * RATE, np.int16), RATE, 0.0))  # 10 minutes at once
    assert kept(cutter) <= (0.3 + LEAD) * RATE
    cutter.started(SpeechStarted(599.9))
    onset, samples, _ = cutter.stopped(SpeechStopped(600.0))
    assert onset == 599.9 and samples.shape[0] == round(0.4 * RATE)


async def test_each_stage_keeps_little_and_transcribes_nothing_over_silence(
    spy: type[Spy], server: AudioServer
) -> None:
    heard = Heard()
    assert await (silent_chunks(600) | stt.fake(transcripts=heard, pre_roll=0.3)).list() == []
    assert heard.lengths == [] and spy.most <= (0.3 + LEAD + 0.1) * RATE

    spy.most = 0
    model = FakeWhisperModel()
    assert await (silent_chunks(600) | stt.whisper(model=model)).list() == []
    assert model.lengths == [] and spy.most <= (0.5 + LEAD + 0.1) * RATE

    spy.most = 0
    flow = silent_chunks(600) | stt.openai_stt(endpoint=server.base_url)
    assert await flow.list() == []
    assert server.requests == [] and spy.most <= (0.5 + LEAD + 0.1) * RATE


async def test_noise_the_vad_never_called_speech_is_never_transcribed(server: AudioServer) -> None:
    line_noise = noise(120, level=2000)  # two minutes of hiss, no markers
    heard = Heard()
    assert await (chunked(line_noise) | stt.fake(transcripts=heard)).list() == []
    assert heard.lengths == []

    model = FakeWhisperModel()
    assert await (chunked(line_noise) | stt.whisper(model=model)).list() == []
    assert model.lengths == []

    assert await (chunked(line_noise) | stt.openai_stt(endpoint=server.base_url)).list() == []
    assert server.requests == []


async def test_noise_through_the_real_vad_reaches_no_recogniser() -> None:
    heard = Heard()
    hiss = chunked(noise(8, level=1500), ms=20)
    items = await (hiss | vad() | stt.fake(transcripts=heard)).list()
    assert items == [] and heard.lengths == []  # Silero heard no speech, so nothing is sent


# ---------------------------------------------------------------------------------------------
# Over-long utterances


def seventy_seconds() -> tuple[list[Any], np.ndarray]:
    audio = np.concatenate([np.zeros(RATE // 2, np.int16), bursts(70), np.zeros(RATE, np.int16)])
    items: list[Any] = []
    for chunk in chunked(audio):
        items.append(chunk)
        if chunk.t == 0.7:
            items.append(SpeechStarted(0.5))  # late, as VAD markers are
        if chunk.t == 70.7:
            items.append(SpeechStopped(70.5))
    return items, audio


def check_pieces(lengths: list[int], audio: np.ndarray, max_secs: float) -> None:
    assert len(lengths) == 3, lengths
    assert all(n <= max_secs * RATE for n in lengths)
    assert sum(lengths) == round(70.8 * RATE)  # 0.0 (0.5 s pre-roll) … 70.8: no gap, no overlap
    for end in np.cumsum(lengths)[:-1]:  # each cut falls in a pause of the "speech"
        assert not audio[end - 160 : end + 160].any(), end / RATE
        assert end >= (max_secs - 5.5) * RATE


async def test_a_70_s_utterance_is_cut_into_bounded_pieces_by_every_stage(
    spy: type[Spy], server: AudioServer
) -> None:
    items, audio = seventy_seconds()
    heard = Heard()
    out = await (items | stt.fake(transcripts=heard, max_utterance=30)).list()
    check_pieces(heard.lengths, audio, 30)
    transcripts = [x for x in out if isinstance(x, Transcript)]
    assert [x.text for x in transcripts] == ["utterance 1", "utterance 2", "utterance 3"]
    onsets = [x.t for x in transcripts]
    assert onsets[0] == 0.5 and onsets == sorted(onsets)
    assert np.allclose(onsets[1:], np.cumsum(heard.lengths)[:-1] / RATE)
    assert spy.most <= (30 + 0.2) * RATE  # the whole utterance was never held at once

    model = FakeWhisperModel()
    await (items | stt.whisper(model=model, max_utterance=30)).list()
    check_pieces(model.lengths, audio, 30)

    server.transcripts.extend(["one", "two", "three"])
    await (items | stt.openai_stt(endpoint=server.base_url)).list()
    uploaded = [u.wav.samples.shape[0] for u in server.uploads if u.wav]
    # requests may overlap, so the server may see them in another order: the same pieces
    assert sorted(uploaded) == sorted(heard.lengths)


async def test_the_limit_is_configurable() -> None:
    items, _ = seventy_seconds()
    heard = Heard()
    await (items | stt.fake(transcripts=heard, max_utterance=12.5)).list()
    assert len(heard.lengths) == 6 and max(heard.lengths) <= 12.5 * RATE
    assert sum(heard.lengths) == round(70.8 * RATE)
    for bad in (0, 0.5, -3, 1e6, True, "30"):
        with pytest.raises(ConfigError, match="max_utterance"):
            await ([] | stt.fake(transcripts=[], max_utterance=bad)).list()


async def test_one_huge_chunk_of_speech_is_cut_too() -> None:
    speech = bursts(100)
    items = [SpeechStarted(0.0), AudioChunk(speech, RATE, 0.0), SpeechStopped(100.0)]
    heard = Heard()
    await (items | stt.fake(transcripts=heard, pre_roll=0)).list()
    assert len(heard.lengths) == 4 and max(heard.lengths) <= 30 * RATE
    assert sum(heard.lengths) == speech.shape[0]


async def test_a_guess_is_dropped_when_the_limit_cuts_the_utterance() -> None:
    recognised: list[int] = []

    async def recognize(pcm: np.ndarray, source_rate: int) -> str:
        recognised.append(pcm.shape[0])
        await asyncio.sleep(0)
        return f"{pcm.shape[0]}"

    items: list[Any] = [SpeechStarted(0.0), *chunked(bursts(3), 0.0)]
    items += [SpeechPaused(3.0), *chunked(bursts(3), 3.0), SpeechStopped(3.0)]  # speech went on
    async def source() -> AsyncIterator[Any]:
        for item in items:
            yield item

    flow = recognize_utterances(
        source(), recognize, pre_roll=0, pass_audio=False, speculate=True, max_utterance=4
    )
    out = [x async for x in flow]
    texts = [x.text for x in out if isinstance(x, Transcript)]
    assert recognised[0] == 3 * RATE  # the guess at the hint …
    assert sum(int(t) for t in texts) == 6 * RATE  # … was not used: every sample heard once
