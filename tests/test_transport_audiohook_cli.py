"""``voicekit serve --carrier audiohook`` as a user runs it: a real process on 127.0.0.1 with the
offline models (Silero, Whisper tiny.en, Piper, the offline responder), its API key and client
secret from the environment, called by the independent Genesys-like client."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import sys
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
from servers.audiohook_client import AudioHookClient

from voicekit.transports import StreamResampler

DATA = Path(__file__).parent.parent / "voicekit" / "data"
SECRET = b"cli-test-client-secret-32-bytes!"
RATE = 8000


def question() -> np.ndarray:
    """The bundled question (16 kHz) at 8 kHz."""
    with wave.open(str(DATA / "question.wav")) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    resampler = StreamResampler(16000, RATE)
    return np.concatenate([resampler.push(pcm), resampler.flush()]).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serve(*options: str) -> AsyncIterator[tuple[str, list[str]]]:
    port = free_port()
    env = {**os.environ,
           "VOICEKIT_AUDIOHOOK_KEYS": f"genesys-key:{base64.b64encode(SECRET).decode()}"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicekit.cli", "serve", "--carrier", "audiohook", "--port",
        str(port), *options, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    lines: list[str] = []

    async def read() -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            lines.append(line.decode(errors="replace"))

    reader = asyncio.create_task(read())
    try:
        async with asyncio.timeout(120):
            while not any("Application startup complete" in x for x in lines):
                if process.returncode is not None:
                    raise AssertionError("".join(lines))
                await asyncio.sleep(0.05)
        yield f"ws://127.0.0.1:{port}/audiohook", lines
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        await reader


async def wait_for(predicate: object, seconds: float) -> None:
    async with asyncio.timeout(seconds):
        while not predicate():  # type: ignore[operator]  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_a_stereo_audio_connector_session_with_the_offline_agent():
    q = question()
    async with serve() as (url, lines):
        client = AudioHookClient(url, api_key="genesys-key", secret=SECRET)
        async with client:
            opened = await client.open()
            assert opened["parameters"]["media"][0]["channels"] == ["external", "internal"]
            await client.stream(q, silence(q.shape[0] / RATE))
            quiet = asyncio.create_task(client.stream(silence(60), silence(60)))
            await wait_for(lambda: len(client.record.audio) >= 5, 60)  # the agent speaks
            quiet.cancel()
            await asyncio.gather(quiet, return_exceptions=True)
            barge = client.expect("event")
            await client.stream(q, silence(q.shape[0] / RATE))  # the caller talks over it
            try:
                event = await asyncio.wait_for(barge, 30)
            except TimeoutError:
                raise AssertionError(f"{len(client.record.audio)} packets, "
                                     f"{client.record.messages}, {''.join(lines)}") from None
            disconnected = client.expect("disconnect")
            await client.send("dtmf", {"digit": "0"})
            message = await asyncio.wait_for(disconnected, 30)
            record = await client.ended(30)
        await wait_for(lambda: any("ended:" in x for x in lines), 15)
    assert event["parameters"]["entities"] == [{"type": "barge_in", "data": {}}]
    assert message["parameters"]["outputVariables"]["action"] == "transfer"
    assert record.violations == [] and record.of("closed")
    assert {len(a) for a in record.audio} == {1600}
    assert len(record.audio) * 0.2 > 1.0  # a spoken sentence, not a click


async def test_a_transcription_session_with_whisper():
    q = question()
    external = np.concatenate([q, silence(1.0), silence(q.shape[0] / RATE), silence(1.0)])
    internal = np.concatenate([silence(q.shape[0] / RATE + 1.0), q, silence(1.0)])
    async with serve("--audiohook-mode", "monitor") as (url, _):
        client = AudioHookClient(url, api_key="genesys-key", secret=SECRET)
        async with client:
            await client.open()
            await client.stream(external, internal)
            await wait_for(lambda: len(client.record.of("event")) >= 2, 60)
            await client.close()
            record = await client.ended(30)
    assert record.violations == [] and record.audio == []
    data = [e["data"] for m in record.of("event") for e in m["parameters"]["entities"]]
    assert {d["channel"] for d in data} == {"external", "internal"}
    for d in data:
        text = d["alternatives"][0]["interpretations"][0]["transcript"].lower()
        assert "weather" in text or "time" in text or len(text.split()) >= 3, text
    inner = next(d for d in data if d["channel"] == "internal")
    assert float(inner["offset"][2:-1]) > 2.5  # on the position clock: after the first turn


async def test_without_keys_it_does_not_start_and_names_the_variable():
    env = {k: v for k, v in os.environ.items() if k != "VOICEKIT_AUDIOHOOK_KEYS"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicekit.cli", "serve", "--carrier", "audiohook", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    assert process.returncode == 2
    assert b"VOICEKIT_AUDIOHOOK_KEYS" in err
