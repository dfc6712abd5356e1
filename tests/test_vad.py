"""Voice activity detection: the state machine, marker placement and timing, each detector."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from voicekit import AudioChunk, AudioError, ConfigError, Sentence, SpeechStarted, SpeechStopped
from voicekit.audio import from_array, load, sample_path
from voicekit.vad import Detector, VADState, energy, silero, vad, webrtc
from voicekit.vad import _Machine as Machine

RATE = 16000
ONSET, OFFSET = 0.34, 2.10  # where speech begins and ends in the bundled question.wav


def tone_bursts(*segments: tuple[float, bool], rate: int = RATE) -> np.ndarray:
    """Concatenated segments of (seconds, loud?): a 440 Hz tone at -13 dBFS or digital silence."""
    parts = []
    for seconds, loud in segments:
        n = round(seconds * rate)
        wave = 0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / rate) if loud else np.zeros(n)
        parts.append(np.rint(wave * 32767).astype(np.int16))
    return np.concatenate(parts)


def loud_detector(threaded: bool = False, sizes: list[int] | None = None) -> Detector:
    """Confidence 1 for frames whose peak exceeds 1000, else 0; records batch sizes."""

    def open_(rate: int) -> Any:
        def score(frames: np.ndarray) -> list[float]:
            if sizes is not None:
                sizes.append(frames.shape[0])
            return [float(np.abs(f).max() > 1000) for f in frames]

        return score

    return Detector("loud", open_, frame_ms=20.0, threaded=threaded)


def markers(items: list[Any]) -> list[tuple[str, float]]:
    marks = [m for m in items if isinstance(m, SpeechStarted | SpeechStopped)]
    return [(type(m).__name__, round(m.t, 3)) for m in marks]


async def run(samples: np.ndarray, rate: int = RATE, chunk_ms: float = 20, **kw: Any) -> list[Any]:
    return await (from_array(samples, rate, chunk_ms=chunk_ms) | vad(**kw)).list()


@pytest.fixture(scope="module")
def question() -> np.ndarray:
    samples, rate = load(sample_path())
    assert rate == RATE
    return samples


# ---------------------------------------------------------------------------------------------
# The state machine


def machine(start: int = 3, stop: int = 3) -> Machine:
    return Machine(confidence=0.7, min_volume=0.6, start_frames=start, stop_frames=stop, params={})


def feed(m: Machine, pattern: str, t0: float = 0.0) -> list[tuple[int, Any, VADState]]:
    """Feed frames ('S' speech, '.' quiet; volume 1) and record (index, marker, state)."""
    out = []
    for i, ch in enumerate(pattern):
        marker = m.step(1.0 if ch == "S" else 0.0, 1.0, t0 + i)
        out.append((i, marker, m.state))
    return out


def test_machine_walks_quiet_starting_speaking_stopping_quiet() -> None:
    m = machine()
    m.smoothed = 1.0  # volume already settled
    steps = feed(m, "..SSS..S...")
    states = [s.value for _, _, s in steps]
    assert states == [
        "quiet", "quiet", "starting", "starting", "speaking",
        "stopping", "stopping", "speaking", "stopping", "stopping", "quiet",
    ]  # fmt: skip
    emitted = [(i, type(mk).__name__, mk.t) for i, mk, _ in steps if mk is not None]
    assert emitted == [(4, "SpeechStarted", 2.0), (10, "SpeechStopped", 8.0)]


def test_machine_drops_a_blip_shorter_than_start_frames() -> None:
    m = machine(start=3)
    m.smoothed = 1.0
    steps = feed(m, "SS.SS.SS..")
    assert all(mk is None for _, mk, _ in steps)
    assert [s for _, _, s in steps][2] is VADState.QUIET


def test_machine_volume_gate_and_smoothing() -> None:
    m = machine(start=1)
    assert m.step(1.0, 0.0, 0.0) is None  # confident but silent: not speech
    marks = [m.step(1.0, 1.0, float(t)) for t in range(1, 8)]
    # smoothed volume from 0: 0.2, 0.36, 0.49, 0.59, 0.67 -> first passes 0.6 on the 5th frame
    first = next(i for i, mk in enumerate(marks) if mk is not None)
    assert first == 4 and marks[first].t == 5.0


def test_machine_close_balances_an_open_segment() -> None:
    m = machine()
    m.smoothed = 1.0
    feed(m, "SSSS")
    closing = m.close(9.5)
    assert isinstance(closing, SpeechStopped) and closing.t == 9.5
    m2 = machine()
    m2.smoothed = 1.0
    feed(m2, "SSSS..")  # stopping since frame 4
    assert m2.close(9.5).t == 4.0
    assert machine().close(1.0) is None


# ---------------------------------------------------------------------------------------------
# The stage: placement, times, pass-through


@pytest.mark.parametrize("threaded", [False, True])
async def test_markers_fall_right_after_the_deciding_chunk(threaded: bool) -> None:
    audio = tone_bursts((0.5, False), (1.0, True), (0.5, False))
    items = await run(audio, detector=loud_detector(threaded), min_volume=0.0)
    assert markers(items) == [("SpeechStarted", 0.5), ("SpeechStopped", 1.5)]
    kinds = ["m" if not isinstance(x, AudioChunk) else "a" for x in items]
    # 20 ms chunks = frames; start confirmed by frame 34 (0.5 s + 10 frames), stop by frame 84
    assert kinds.index("m") == 35
    assert len(kinds) - 1 - kinds[::-1].index("m") == 35 + 1 + 50


@pytest.mark.parametrize("chunk_ms", [7, 45, 330])
async def test_marker_placement_with_uneven_chunks(chunk_ms: float) -> None:
    audio = tone_bursts((0.5, False), (1.0, True), (0.5, False))
    items = await run(audio, chunk_ms=chunk_ms, detector=loud_detector(True), min_volume=0.0)
    assert markers(items) == [("SpeechStarted", 0.5), ("SpeechStopped", 1.5)]
    for i, item in enumerate(items):
        if isinstance(item, AudioChunk):
            continue
        decided = item.t + 0.2  # the run that confirmed it ended here
        before = items[i - 1]
        assert isinstance(before, AudioChunk)
        assert before.t < decided <= before.end + 1e-9


async def test_audio_and_other_items_pass_through_unchanged_in_order() -> None:
    chunks = [c async for c in from_array(tone_bursts((0.3, False), (0.6, True)), RATE)]
    source = [chunks[0], Sentence("x"), *chunks[1:], "end"]
    items = await (source | vad(detector=loud_detector(True), min_volume=0.0)).list()
    rest = [x for x in items if not isinstance(x, SpeechStarted | SpeechStopped)]
    assert len(rest) == len(source)
    assert all(a is b for a, b in zip(rest, source, strict=True))
    assert markers(items) == [("SpeechStarted", 0.3), ("SpeechStopped", 0.9)]  # closed at end


async def test_batches_several_frames_per_thread_hop_for_fast_input() -> None:
    sizes: list[int] = []
    audio = tone_bursts((1.0, False), (2.0, True), (1.0, False))
    items = await run(audio, detector=loud_detector(True, sizes), min_volume=0.0)
    assert sum(sizes) == 200  # every 20 ms frame scored once
    assert max(sizes) > 1 and len(sizes) < 200
    assert markers(items) == [("SpeechStarted", 1.0), ("SpeechStopped", 3.0)]


async def test_live_paced_input_gives_the_same_markers() -> None:
    audio = tone_bursts((0.2, False), (0.4, True), (0.4, False))

    async def live() -> AsyncIterator[AudioChunk]:
        async for chunk in from_array(audio, RATE):
            await asyncio.sleep(0.002)
            yield chunk

    items = await (live() | vad(detector=loud_detector(True), min_volume=0.0)).list()
    assert markers(items) == [("SpeechStarted", 0.2), ("SpeechStopped", 0.6)]


async def test_params_are_carried_and_start_stop_secs_change_timing() -> None:
    audio = tone_bursts((0.5, False), (0.24, True), (0.16, False), (0.5, True), (1.0, False))
    det = loud_detector()
    items = await run(audio, detector=det, min_volume=0.0)
    assert markers(items) == [("SpeechStarted", 0.5), ("SpeechStopped", 1.4)]  # pause bridged
    first = next(x for x in items if isinstance(x, SpeechStarted))
    assert first.params == {
        "detector": "loud()",
        "confidence": 0.7,
        "start_secs": 0.2,
        "stop_secs": 0.2,
        "min_volume": 0.0,
    }
    short = await run(audio, detector=det, min_volume=0.0, stop_secs=0.1)
    assert markers(short) == [
        ("SpeechStarted", 0.5), ("SpeechStopped", 0.74), ("SpeechStarted", 0.9),
        ("SpeechStopped", 1.4),
    ]  # fmt: skip
    slow_start = await run(audio, detector=det, min_volume=0.0, start_secs=0.3)
    assert markers(slow_start) == [("SpeechStarted", 0.9), ("SpeechStopped", 1.4)]


async def test_each_stream_opens_its_own_detector_state() -> None:
    opened: list[int] = []
    lock = threading.Lock()

    def open_(rate: int) -> Any:
        state = {"frames": 0}
        with lock:
            opened.append(rate)

        def score(frames: np.ndarray) -> list[float]:
            out = []
            for _ in frames:
                state["frames"] += 1  # speech after 25 frames *of this stream*
                out.append(float(state["frames"] > 25))
            return out

        return score

    det = Detector("counting", open_, threaded=True)
    silent = np.zeros(RATE, np.int16)
    flow = from_array(silent, RATE) | vad(detector=det, min_volume=0.0)
    a, b = await asyncio.gather(flow.list(), flow.list())
    assert opened == [RATE, RATE]
    assert markers(a) == markers(b) == [("SpeechStarted", 0.5), ("SpeechStopped", 1.0)]


async def test_closing_early_settles_the_worker() -> None:
    closed = asyncio.Event()

    async def source() -> AsyncIterator[AudioChunk]:
        try:
            async for chunk in from_array(tone_bursts((0.3, False), (3.0, True)), RATE):
                yield chunk
        finally:
            closed.set()

    flow = source() | vad(detector=loud_detector(True), min_volume=0.0)
    async with flow.open() as items:
        async for item in items:
            if isinstance(item, SpeechStarted):
                break
    assert closed.is_set()


async def test_rejects_bad_settings() -> None:
    audio = np.zeros(1600, np.int16)
    for bad in ({"confidence": 1.5}, {"min_volume": -0.1}, {"stop_secs": "0.2"}, {"detector": 3}):
        with pytest.raises(ConfigError):
            await run(audio, **bad)
    with pytest.raises(ConfigError):
        webrtc(mode=4)
    with pytest.raises(ConfigError):
        webrtc(frame_ms=25)


async def test_rate_change_that_changes_the_analysis_rate_is_an_error() -> None:
    a = AudioChunk(np.zeros(320, np.int16), 16000, 0.0)
    b = AudioChunk(np.zeros(160, np.int16), 8000, 0.02)
    with pytest.raises(AudioError, match="resample"):
        await ([a, b] | vad(detector=energy())).list()
    items = await ([a, b] | vad(detector=silero())).list()  # silero always works at 16 kHz
    assert items == [a, b]


# ---------------------------------------------------------------------------------------------
# Real detectors on real speech, silence and noise


@pytest.mark.parametrize("detector", [silero(), webrtc(), energy()], ids=str)
async def test_detectors_find_the_question(question: np.ndarray, detector: Detector) -> None:
    found = markers(await run(question, detector=detector))
    assert [kind for kind, _ in found] == ["SpeechStarted", "SpeechStopped"]
    (_, start), (_, stop) = found
    assert abs(start - ONSET) <= 0.3
    assert abs(stop - OFFSET) <= 0.3


@pytest.mark.parametrize("rate", [8000, 22050, 48000])
async def test_silero_resamples_other_rates(question: np.ndarray, rate: int) -> None:
    samples, _ = load(sample_path(), rate=rate)
    found = markers(await run(samples, rate=rate))
    assert [kind for kind, _ in found] == ["SpeechStarted", "SpeechStopped"]
    assert abs(found[0][1] - ONSET) <= 0.3 and abs(found[1][1] - OFFSET) <= 0.3


async def test_webrtc_works_natively_at_8k() -> None:
    samples, _ = load(sample_path(), rate=8000)
    found = markers(await run(samples, rate=8000, detector=webrtc(mode=2, frame_ms=20)))
    assert [kind for kind, _ in found] == ["SpeechStarted", "SpeechStopped"]
    assert abs(found[0][1] - ONSET) <= 0.3


@pytest.mark.parametrize("detector", [silero(), webrtc(), energy()], ids=str)
async def test_silence_gives_no_markers(detector: Detector) -> None:
    items = await run(np.zeros(3 * RATE, np.int16), detector=detector)
    assert markers(items) == []
    assert len(items) == 150


async def test_silero_ignores_white_noise() -> None:
    noise = np.random.default_rng(7).standard_normal(4 * RATE) * 32768 * 10 ** (-35 / 20)
    items = await run(np.rint(noise).astype(np.int16))
    assert markers(items) == []


async def test_silero_finds_speech_in_noise(question: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    noisy = question.astype(np.float64) + rng.standard_normal(question.shape[0]) * 300  # ~20 dB
    found = markers(await run(np.clip(noisy, -32768, 32767).astype(np.int16)))
    assert [kind for kind, _ in found] == ["SpeechStarted", "SpeechStopped"]
    assert abs(found[0][1] - ONSET) <= 0.3


async def test_min_volume_rejects_faint_speech(question: np.ndarray) -> None:
    faint = (question / 300).astype(np.int16)  # about -70 dBFS: volume ~0.4
    quiet = energy(threshold_db=-90)
    assert markers(await run(faint, detector=quiet)) == []
    assert len(markers(await run(faint, detector=quiet, min_volume=0.2))) == 2


async def test_silero_cpu_cost_is_small(question: np.ndarray) -> None:
    import time

    audio = np.tile(question, 4)  # about 11.6 s
    began = time.process_time()
    await run(audio)
    cpu = time.process_time() - began
    assert cpu < 0.25 * audio.shape[0] / RATE  # well under a quarter of a core
