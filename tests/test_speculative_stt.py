"""VAD pause hints and speculative recognition: transcribing from the VAD's first quiet frame
instead of waiting out ``stop_secs``, keeping the result only when the stop confirms it."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from voicekit import ConfigError, stt
from voicekit.audio import from_array, load, sample_path
from voicekit.events import AudioChunk, SpeechStarted, SpeechStopped, Transcript
from voicekit.stt._utterances import recognize_utterances
from voicekit.vad import SpeechPaused, energy, vad

RATE = 16000


def tone(seconds: float) -> np.ndarray:
    return (np.sin(np.arange(int(RATE * seconds)) / 5) * 8000).astype(np.int16)


def quiet(seconds: float) -> np.ndarray:
    return np.zeros(int(RATE * seconds), np.int16)


def markers(items: list) -> list[tuple[str, float]]:
    return [(type(i).__name__, round(i.t, 3)) for i in items if not isinstance(i, AudioChunk)]


async def test_vad_hints_at_the_first_quiet_frame_with_the_stops_time() -> None:
    audio = np.concatenate([quiet(0.5), tone(0.5), quiet(0.1), tone(0.5), quiet(0.5)])
    flow = from_array(audio, RATE) | vad(detector=energy(), min_volume=0, hint_secs=0)
    assert markers(await flow.list()) == [
        ("SpeechStarted", 0.5),
        ("SpeechPaused", 1.0),  # a pause shorter than stop_secs: the speech goes on
        ("SpeechPaused", 1.6),
        ("SpeechStopped", 1.6),  # confirms the hint with the same t
    ]


async def test_vad_hint_after_some_quiet_and_none_by_default() -> None:
    audio = np.concatenate([quiet(0.5), tone(0.5), quiet(0.1), tone(0.5), quiet(0.5)])
    later = from_array(audio, RATE) | vad(detector=energy(), min_volume=0, hint_secs=0.12)
    assert markers(await later.list()) == [
        ("SpeechStarted", 0.5),
        ("SpeechPaused", 1.6),  # the 0.1 s pause was too short for a hint
        ("SpeechStopped", 1.6),
    ]
    plain = from_array(audio, RATE) | vad(detector=energy(), min_volume=0)
    assert "SpeechPaused" not in [name for name, _ in markers(await plain.list())]
    with pytest.raises(ConfigError, match="hint_secs"):
        await (from_array(audio, RATE) | vad(stop_secs=0.2, hint_secs=0.3)).list()


def chunks(start: float, seconds: float, value: int = 1000) -> list[AudioChunk]:
    count = round(seconds / 0.02)
    return [AudioChunk(np.full(320, value, np.int16), RATE, start + i * 0.02) for i in range(count)]


class Recognizer:
    """Records each utterance it is asked for; answers with its length in milliseconds."""

    def __init__(self, delay: float = 0.0) -> None:
        self.heard: list[int] = []
        self.finished: list[int] = []
        self.delay = delay

    async def __call__(self, pcm: np.ndarray, source_rate: int) -> str:
        self.heard.append(pcm.shape[0] * 1000 // RATE)
        await asyncio.sleep(self.delay)
        self.finished.append(pcm.shape[0] * 1000 // RATE)
        return f"{pcm.shape[0] * 1000 // RATE} ms"


async def run(items: list, recognize: Recognizer, *, speculate: bool) -> list:
    async def source():
        for item in items:
            yield item
            await asyncio.sleep(0)

    flow = recognize_utterances(source(), recognize, pre_roll=0.0, pass_audio=False,
                                speculate=speculate)  # fmt: skip
    return [item async for item in flow]


async def test_a_confirmed_hint_is_adopted_and_a_superseded_one_dropped() -> None:
    items = [
        SpeechStarted(0.0),
        *chunks(0.0, 0.5),
        SpeechPaused(0.5),  # the user only paused…
        *chunks(0.5, 0.5),
        SpeechPaused(1.0),  # …and stopped here
        *chunks(1.0, 0.2, value=0),
        SpeechStopped(1.0),
        *chunks(1.2, 0.2, value=0),
    ]
    recognize = Recognizer()
    out = await run(items, recognize, speculate=True)
    assert recognize.heard == [500, 1000]  # one guess per hint, nothing more at the stop
    assert [type(i).__name__ for i in out] == ["SpeechStarted", "SpeechStopped", "Transcript"]
    assert out[-1] == Transcript("1000 ms", final=True, t=0.0)


async def test_a_stop_at_another_time_recognises_afresh() -> None:
    items = [
        SpeechStarted(0.0),
        *chunks(0.0, 0.5),
        SpeechPaused(0.5),
        *chunks(0.5, 0.5),
        SpeechStopped(1.0),  # no hint for this stop (the VAD's hint came too late, say)
        *chunks(1.0, 0.2, value=0),
    ]
    recognize = Recognizer(delay=0.05)
    out = await run(items, recognize, speculate=True)
    assert recognize.heard == [500, 1000]
    assert [i for i in out if isinstance(i, Transcript)] == [Transcript("1000 ms", t=0.0)]


async def test_a_guess_ready_early_still_comes_out_after_the_stop() -> None:
    items = [SpeechStarted(0.0), *chunks(0.0, 0.5), SpeechPaused(0.5), *chunks(0.5, 0.3, 0)]
    items += [SpeechStopped(0.5)]
    recognize = Recognizer()
    out = await run(items, recognize, speculate=True)
    assert recognize.finished == [500]  # done while the VAD still waited
    assert [type(i).__name__ for i in out][-2:] == ["SpeechStopped", "Transcript"]


async def test_without_speculation_hints_are_consumed_and_ignored() -> None:
    items = [SpeechStarted(0.0), *chunks(0.0, 0.5), SpeechPaused(0.5), *chunks(0.5, 0.2, 0)]
    items += [SpeechStopped(0.5)]
    recognize = Recognizer()
    out = await run(items, recognize, speculate=False)
    assert recognize.heard == [700]
    assert not any(isinstance(i, SpeechPaused) for i in out)


async def test_whisper_transcribes_the_same_with_pause_hints() -> None:
    question, _ = load(sample_path(), rate=RATE)
    audio = np.concatenate([question, quiet(0.5)])
    texts = []
    for hint in (None, 0.0):
        flow = from_array(audio, RATE) | vad(hint_secs=hint) | stt.whisper()
        texts.append([i.text for i in await flow.list() if isinstance(i, Transcript)])
    assert texts[0] == texts[1] == ["What is the weather like in Rome today?"]
