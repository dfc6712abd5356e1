"""Text to speech: Piper (the real joe voice, offline), the tones fake, chunking and ordering."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from voicekit import AudioChunk, ConfigError, Sentence, SpeechStopped, StageError, Token, tts
from voicekit import _compute as compute
from voicekit.audio import from_array
from voicekit.tts._tones import words
from voicekit.vad import energy, vad

SHORT = "Hello there."
LONG = "Please schedule a meeting with the design team for next Tuesday afternoon."


@pytest.fixture(scope="module")
def voice() -> Any:
    return tts.preload()  # loaded once per process; later loads hit the cache


def check_chunks(chunks: list[AudioChunk], rate: int, chunk_ms: float = 20) -> None:
    """Even chunks at ``rate`` whose times run on without gaps or overlaps."""
    size = round(rate * chunk_ms / 1000)
    assert chunks and all(c.rate == rate for c in chunks)
    assert all(c.frames <= size for c in chunks)
    assert chunks[0].t == 0.0
    for before, after in itertools.pairwise(chunks):
        assert after.t == pytest.approx(before.end, abs=1e-9)


# ---------------------------------------------------------------------------------------------
# Piper


def test_synthesize_gives_plausible_audio(voice: Any) -> None:
    short, rate = tts.synthesize(SHORT)
    long, _ = tts.synthesize(LONG)
    assert rate == 22050 and short.dtype == np.int16
    assert 0.4 < short.shape[0] / rate < 2.0
    assert 2.5 < long.shape[0] / rate < 7.0  # 12 words at a normal pace
    assert np.abs(long).max() <= 0.95 * 32767  # volume 0.9 leaves headroom
    assert np.sqrt(np.mean(long.astype(float) ** 2)) > 1000  # not silence


def test_synthesize_options(voice: Any) -> None:
    base, _ = tts.synthesize(LONG)
    fast, _ = tts.synthesize(LONG, length_scale=0.7)
    assert fast.shape[0] < 0.85 * base.shape[0]
    at16, rate = tts.synthesize(SHORT, rate=16000)
    assert rate == 16000 and 0.4 < at16.shape[0] / rate < 2.0  # Piper varies a little each time
    quiet, _ = tts.synthesize(SHORT, volume=0.3)
    assert np.abs(quiet).max() <= 0.31 * 32767
    empty, rate = tts.synthesize("  ")
    assert empty.shape[0] == 0 and rate == 22050


async def test_piper_stage_chunks_times_and_order(voice: Any) -> None:
    source = [Sentence(SHORT), Token("tok"), "How are you?", Sentence(""), SpeechStopped(9.0)]
    items = await (source | tts.piper()).list()
    chunks = [x for x in items if isinstance(x, AudioChunk)]
    check_chunks(chunks, 22050)
    token_at = next(i for i, x in enumerate(items) if isinstance(x, Token))
    before = sum(c.duration for c in items[:token_at] if isinstance(c, AudioChunk))
    after = sum(c.duration for c in items[token_at:] if isinstance(c, AudioChunk))
    assert 0.4 < before < 2.0 and 0.4 < after < 2.0  # "Hello there." then "How are you?"
    assert isinstance(items[-1], SpeechStopped)


async def test_piper_stage_at_another_rate_with_text_after_audio(voice: Any) -> None:
    items = await ([SHORT, Sentence(LONG)] | tts.piper(rate=16000, pass_text=True)).list()
    chunks = [x for x in items if isinstance(x, AudioChunk)]
    check_chunks(chunks, 16000)
    texts = [i for i, x in enumerate(items) if not isinstance(x, AudioChunk)]
    assert [items[i] for i in texts] == [SHORT, Sentence(LONG)]
    assert texts[1] == len(items) - 1 and isinstance(items[texts[0] - 1], AudioChunk)


async def test_piper_runs_on_the_inference_pool_first_audio_first(
    voice: Any, monkeypatch: Any
) -> None:
    calls: list[tuple[compute.Priority, str]] = []
    real = compute.run

    async def spy(fn: Any, *args: Any, priority: compute.Priority = compute.Priority.LATER) -> Any:
        def check(*a: Any) -> Any:
            calls.append((priority, threading.current_thread().name))
            return fn(*a)

        return await real(check, *args, priority=priority)

    monkeypatch.setattr(compute, "run", spy)
    await (["One.", "Two."] | tts.piper()).list()
    assert len(calls) >= 4  # a next() per sentence, plus the end of each
    assert all(name.startswith("voicekit-inference") for _, name in calls)
    priorities = [p for p, _ in calls]
    assert priorities[0] == compute.Priority.FIRST_AUDIO  # the reply's first audio goes first
    assert set(priorities[1:]) == {compute.Priority.LATER}


def test_bad_voices_are_config_errors(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="never downloads"):
        tts.synthesize("hi", voice=tmp_path / "nope.onnx")
    with pytest.raises(ConfigError):
        tts.synthesize("hi", voice=3)
    with pytest.raises(ConfigError):
        tts.synthesize("hi", length_scale=0)


# ---------------------------------------------------------------------------------------------
# Tones


def test_tones_are_deterministic_and_follow_the_text() -> None:
    a, rate = tts.synthesize_tones("Hello there, world.")
    b, _ = tts.synthesize_tones("Hello there, world.")
    assert rate == 16000 and np.array_equal(a, b)
    assert a.shape[0] == round(16000 * (3 * 0.1 + 0.01 * (5 + 5 + 5)))
    c, _ = tts.synthesize_tones("Hello where, world.")  # same lengths, another word's pitch
    assert c.shape == a.shape and not np.array_equal(a, c)
    assert tts.synthesize_tones("?!")[0].shape[0] == 0
    assert words("It's 3 o'clock, ok?") == ["It's", "3", "o'clock", "ok"]


async def test_tones_stage_mirrors_piper() -> None:
    source = ["Hi there.", Token("x"), Sentence("Bye now.")]
    items = await (source | tts.tones(rate=8000, pass_text=True)).list()
    chunks = [x for x in items if isinstance(x, AudioChunk)]
    check_chunks(chunks, 8000)
    others = [x for x in items if not isinstance(x, AudioChunk)]
    assert others == ["Hi there.", Token("x"), Sentence("Bye now.")]
    expected = tts.synthesize_tones("Hi there.", rate=8000)[0]
    heard = np.concatenate([c.samples for c in chunks])
    assert np.array_equal(heard[: expected.shape[0]], expected)


async def test_an_energy_vad_hears_one_utterance_per_sentence() -> None:
    first, _ = tts.synthesize_tones("The quick brown fox jumps over the lazy dog.")
    second, _ = tts.synthesize_tones("Second sentence here.")
    pause = np.zeros(8000, np.int16)
    audio = np.concatenate([pause, first, pause, second, pause])
    items = await (from_array(audio, 16000) | vad(detector=energy(), stop_secs=0.3)).list()
    marks = [(type(x).__name__, x.t) for x in items if not isinstance(x, AudioChunk)]
    assert [kind for kind, _ in marks] == ["SpeechStarted", "SpeechStopped"] * 2
    assert marks[0][1] == pytest.approx(0.5, abs=0.15)
    assert marks[2][1] == pytest.approx(1.0 + first.shape[0] / 16000, abs=0.15)


async def test_synthesis_runs_one_sentence_ahead_of_playback() -> None:
    began = time.monotonic()
    count = 0
    async with (["One.", "Two.", "Three."] | tts.tones(latency=0.15)).open() as items:
        async for _ in items:
            count += 1
            await asyncio.sleep(0.02)  # a consumer that plays the audio out in real time
    total = time.monotonic() - began
    # 7 + 7 + 8 chunks of 20 ms and 0.15 s of synthesis per sentence: one after the other that
    # is 0.89 s; with look-ahead sentence n+1 is synthesised while n plays: about 0.61 s.
    assert count == 22
    assert total < 0.78


async def test_errors_from_upstream_come_out_of_the_tts_stage() -> None:
    async def broken() -> AsyncIterator[str]:
        yield "Fine."
        raise RuntimeError("upstream broke")

    with pytest.raises(StageError, match="upstream broke"):
        await (broken() | tts.tones()).list()


async def test_closing_early_stops_synthesis() -> None:
    finished = threading.Event()

    async def source() -> AsyncIterator[str]:
        try:
            for i in range(100):
                yield f"Sentence number {i}."
        finally:
            finished.set()

    async with (source() | tts.tones(latency=0.01)).open() as items:
        async for item in items:
            assert isinstance(item, AudioChunk)
            break
    assert finished.is_set()


async def test_tones_validate_settings() -> None:
    with pytest.raises(ConfigError):
        await tts.tones(["x"], latency=-1).list()
    with pytest.raises(ConfigError):
        await tts.tones(["x"], chunk_ms=0).list()


def test_deterministic_piper_gives_the_same_samples_on_every_run(monkeypatch) -> None:
    from voicekit.tts import synthesize

    text = "It is foggy in Rome today."
    first, _ = synthesize(text, deterministic=True)
    second, _ = synthesize(text, deterministic=True)
    assert np.array_equal(first, second)
    monkeypatch.setenv("VOICEKIT_PIPER_DETERMINISTIC", "1")
    from_env, _ = synthesize(text)
    assert np.array_equal(first, from_env)
    monkeypatch.setenv("VOICEKIT_PIPER_DETERMINISTIC", "0")
    noisy = [synthesize(text)[0] for _ in range(3)]
    # With Piper's sampling noise on, runs differ (in length or samples).
    assert any(not np.array_equal(first, other) for other in noisy)


async def test_an_over_long_sentence_is_spoken_in_parts(voice: Any, monkeypatch: Any) -> None:
    # 400 words with no punctuation in one Sentence: Piper is asked for parts of at most
    # LONG_SENTENCE characters, and the first audio comes after the first part, not the whole.
    from voicekit.tts import _piper

    asked: list[str] = []
    first_chunk_after: list[int] = []
    real = _piper.PiperSettings.pieces

    def spy(self: Any, text: str) -> Any:
        asked.append(text)
        return real(self, text)

    monkeypatch.setattr(_piper.PiperSettings, "pieces", spy)
    words = ("the quick brown fox jumps over the lazy dog and " * 40).split()
    async for item in [Sentence(" ".join(words))] | tts.piper(deterministic=True):
        if isinstance(item, AudioChunk) and not first_chunk_after:
            first_chunk_after.append(len(asked))
    assert len(asked) >= 10 and all(len(part) <= _piper.LONG_SENTENCE for part in asked)
    assert " ".join(asked).split() == words  # nothing lost, nothing repeated
    assert first_chunk_after == [1]  # the first part was spoken before the second was asked for
