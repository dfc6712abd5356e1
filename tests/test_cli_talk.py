"""`voicekit talk`: the message without an audio device, and the microphone ↔ speaker plumbing
with a stand-in for the sounddevice module (real Silero VAD, fake STT and TTS)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np
import pytest

from voicekit import audio, stt, tts
from voicekit.cli._agent import Engines
from voicekit.cli._latency import LatencyProbe
from voicekit.cli.talk import (
    Microphone,
    NoAudioDevice,
    Speaker,
    check_devices,
    load_sounddevice,
    talk,
)
from voicekit.events import AudioChunk
from voicekit.llm.local import demo_tools, local_responder

# ---------------------------------------------------------------------------------------------
# A stand-in for the sounddevice module: streams driven by threads, like PortAudio's


class FakeInputStream:
    """Calls ``callback`` from a thread with int16 blocks of ``source``, then silence."""

    def __init__(self, sd: FakeSoundDevice, *, samplerate, blocksize, channels, dtype, device,
                 callback) -> None:  # fmt: skip
        assert (channels, dtype) == (1, "int16")
        self.sd, self.rate, self.block, self.callback = sd, samplerate, blocksize, callback
        self.running = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        sd.inputs.append(self)

    def _run(self) -> None:
        source = self.sd.source
        position = 0
        began = time.monotonic()
        count = 0
        while self.running.is_set():
            block = np.zeros((self.block, 1), np.int16)
            piece = source[position : position + self.block]
            block[: len(piece), 0] = piece
            position += self.block
            self.callback(block, self.block, None, None)
            count += 1
            delay = began + count * self.block / self.rate / self.sd.speed - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def start(self) -> None:
        self.running.set()
        self.thread.start()

    def stop(self) -> None:
        self.running.clear()
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join()

    def close(self) -> None:
        self.stop()


class FakeOutputStream:
    """Pulls blocks of 10 ms through ``callback`` from a thread, in real time; keeps them."""

    def __init__(self, sd: FakeSoundDevice, *, samplerate, channels, dtype, device,
                 callback) -> None:  # fmt: skip
        assert (channels, dtype) == (1, "int16")
        self.rate, self.callback = samplerate, callback
        self.played: list[np.ndarray] = []
        self.running = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        sd.outputs.append(self)

    def _run(self) -> None:
        frames = self.rate // 100
        while self.running.is_set():
            block = np.full((frames, 1), 12345, np.int16)
            self.callback(block, frames, None, None)
            self.played.append(block[:, 0].copy())
            time.sleep(0.01)

    def start(self) -> None:
        self.running.set()
        self.thread.start()

    def stop(self) -> None:
        self.running.clear()
        if self.thread.is_alive():
            self.thread.join()

    def close(self) -> None:
        self.stop()

    @property
    def audio(self) -> np.ndarray:
        return np.concatenate(self.played) if self.played else np.zeros(0, np.int16)


class FakeSoundDevice:
    """The parts of the sounddevice module that voicekit talk uses."""

    def __init__(self, source: np.ndarray | None = None, *, speed: float = 1.0,
                 devices: list[dict[str, Any]] | None = None) -> None:  # fmt: skip
        self.source = np.zeros(0, np.int16) if source is None else source
        self.speed = speed
        self.devices = devices if devices is not None else [
            {"name": "mic", "max_input_channels": 1, "max_output_channels": 0},
            {"name": "speaker", "max_input_channels": 0, "max_output_channels": 2},
        ]  # fmt: skip
        self.inputs: list[FakeInputStream] = []
        self.outputs: list[FakeOutputStream] = []

    def query_devices(self) -> list[dict[str, Any]]:
        return self.devices

    def check_input_settings(self, **settings: Any) -> None:
        if settings.get("device") == "broken":
            raise ValueError("Invalid sample rate")

    def check_output_settings(self, **settings: Any) -> None:
        pass

    def InputStream(self, **options: Any) -> FakeInputStream:
        return FakeInputStream(self, **options)

    def OutputStream(self, **options: Any) -> FakeOutputStream:
        return FakeOutputStream(self, **options)


# ---------------------------------------------------------------------------------------------
# Without an audio device


def test_talk_without_an_audio_device_says_so() -> None:
    try:
        check_devices(load_sounddevice())
    except NoAudioDevice:
        pass
    else:  # pragma: no cover - a machine with a microphone and a speaker
        pytest.skip("this machine has audio devices")
    result = subprocess.run(
        [sys.executable, "-m", "voicekit.cli", "talk"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"},
    )
    assert result.returncode == 1
    assert "voicekit talk: no audio device to talk through: " in result.stderr
    assert "try `voicekit demo`" in result.stderr
    assert "loading" not in result.stderr  # it says so before loading any model


def test_check_devices_names_what_is_missing() -> None:
    with pytest.raises(NoAudioDevice, match="no microphone"):
        check_devices(
            FakeSoundDevice(devices=[{"max_input_channels": 0, "max_output_channels": 2}])
        )
    with pytest.raises(NoAudioDevice, match="no speaker"):
        check_devices(
            FakeSoundDevice(devices=[{"max_input_channels": 1, "max_output_channels": 0}])
        )
    with pytest.raises(NoAudioDevice, match="cannot record 16 kHz mono: Invalid sample rate"):
        check_devices(FakeSoundDevice(), input_device="broken")
    check_devices(FakeSoundDevice())


# ---------------------------------------------------------------------------------------------
# The microphone and the speaker


async def test_microphone_blocks_become_timed_chunks() -> None:
    source = (np.arange(16000) % 200).astype(np.int16)
    sd = FakeSoundDevice(source, speed=10.0)
    microphone = Microphone(sd)
    probe = LatencyProbe()
    microphone.open()
    chunks: list[AudioChunk] = []
    async for chunk in microphone.chunks(probe):
        chunks.append(chunk)
        if len(chunks) == 50:
            microphone.close()
    assert len(chunks) == 50
    assert [c.t for c in chunks[:3]] == pytest.approx([0.0, 0.02, 0.04])
    assert all(c.rate == 16000 and c.frames == 320 for c in chunks)
    assert np.array_equal(np.concatenate([c.samples for c in chunks]), source)
    assert probe.origin is not None and probe.origin <= time.perf_counter()
    assert not sd.inputs[0].thread.is_alive()


async def test_speaker_paces_flushes_and_follows_the_rate() -> None:
    sd = FakeSoundDevice()
    speaker = Speaker(sd, ahead=0.1)
    chunk = AudioChunk(np.full(441, 1000, np.int16), 22050)  # 20 ms
    began = time.monotonic()
    for _ in range(25):  # 0.5 s of audio
        await speaker.play(chunk)
    waited = time.monotonic() - began
    assert 0.3 < waited < 1.5  # paced: about 0.5 s − 0.1 s ahead
    assert speaker.waiting <= 0.1 * 22050 + 441
    speaker.flush()  # a barge-in
    assert speaker.waiting == 0
    blocks = len(sd.outputs[0].played)
    for _ in range(200):  # two more blocks played after the flush
        if len(sd.outputs[0].played) >= blocks + 2:
            break
        await asyncio.sleep(0.01)
    played = sd.outputs[0].audio
    assert (played == 1000).sum() >= 441 * 15
    assert played[-220:].tolist() == [0] * 220  # silence once flushed
    await speaker.play(AudioChunk(np.full(160, 7, np.int16), 16000))
    assert len(sd.outputs) == 2 and sd.outputs[1].rate == 16000 and speaker.rate == 16000
    assert not sd.outputs[0].thread.is_alive()
    speaker.close()


# ---------------------------------------------------------------------------------------------
# A whole conversation through the stand-in devices


async def test_talk_greets_hears_and_answers_through_the_devices() -> None:
    question, _ = audio.load(audio.sample_path(), rate=16000)
    lead = np.zeros(16000 * 2, np.int16)  # the caller lets the greeting play first
    sd = FakeSoundDevice(np.concatenate([lead, question]), speed=2.0)
    engines = Engines(
        llm=local_responder,
        stt=stt.fake(transcripts=["What is the weather like in Rome today?"], pass_audio=True),
        tts=tts.tones(rate=16000),
        tools=demo_tools(),
    )
    lines: list[str] = []
    done = asyncio.Event()

    def say(line: str) -> None:
        lines.append(line)
        if "Rome" in line and line.startswith("agent"):
            done.set()

    await asyncio.wait_for(
        talk(engines, sd, first_message="Hello! I'm listening.", say=say, until=done), 30
    )
    assert lines[0] == "agent  Hello! I'm listening."
    assert "you    What is the weather like in Rome today?" in lines
    assert any(line.startswith("agent  Foggy in Rome.") for line in lines)
    assert any("end of your speech → first reply audio:" in line for line in lines)
    played = sd.outputs[0].audio
    greeting = tts.synthesize_tones("Hello! I'm listening.", rate=16000)[0]
    assert (played != 0).sum() >= 0.9 * (greeting != 0).sum()  # the greeting, then the reply
    assert not sd.inputs[0].thread.is_alive() and not sd.outputs[0].thread.is_alive()


async def test_talk_says_a_failed_reply_with_a_hint() -> None:
    """Issue 9 item 17: a reply that failed is said, with a hint, and counted."""
    from voicekit import ProviderConnectError
    from voicekit.events import ReplyFailed

    async def down(messages: Any, **context: Any) -> Any:
        raise ProviderConnectError("could not connect to ollama (http://127.0.0.1:11434/v1)")
        yield  # an async generator

    question, _ = audio.load(audio.sample_path(), rate=16000)
    sd = FakeSoundDevice(np.concatenate([np.zeros(8000, np.int16), question]), speed=2.0)
    engines = Engines(
        llm=down,
        stt=stt.fake(transcripts=["What is the weather like in Rome today?"], pass_audio=True),
        tts=tts.tones(rate=16000),
    )
    lines: list[str] = []
    failed: list[ReplyFailed] = []
    done = asyncio.Event()

    def say(line: str) -> None:
        lines.append(line)
        if line.startswith("hint"):
            done.set()

    def hint(source: str) -> str:
        return f"is {source} running?"

    conversation = talk(
        engines, sd, first_message=None, say=say, until=done, failed=failed, hint=hint
    )
    await asyncio.wait_for(conversation, 30)
    errors = [line for line in lines if line.startswith("error")]
    assert errors == ["error  the reply failed (llm): " + failed[0].error]
    assert "could not connect to ollama" in errors[0]
    assert "hint   is llm running?" in lines
    assert len(failed) == 1 and failed[0].source == "llm"
