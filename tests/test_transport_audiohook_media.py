"""AudioHook media details settled against Genesys' reference implementation: L16 is
little-endian (the reference reads the frame's bytes as a host-order ``Int16Array``), ``opened``'s
``discardTo`` and the position clock over ``discarded``/``resumed`` gaps (``start`` is where the
gap begins on the client's clock, the next audio is at ``start + discarded``). Pure rules, then
an L16 stereo call and a ``discardTo`` session against a real uvicorn server and the independent
client."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from typing import Any

import numpy as np
import pytest
from servers.audiohook_client import AudioHookClient
from servers.serving import serving, voicekit_tasks
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from voicekit._errors import ConfigError, ProtocolError
from voicekit.events import AudioChunk, CallEnded
from voicekit.transports import audiohook as ah
from voicekit.transports._audiohook_connection import run_session

SID = "e160e428-53e2-487c-977d-96989bf5c99d"
L16_STEREO = {"type": "audio", "format": "L16", "channels": ["external", "internal"],
              "rate": 8000}
L16_MONO = {"type": "audio", "format": "L16", "channels": ["external"], "rate": 8000}
SECRET = b"a-client-secret-of-32-bytes-long"
KEYS = f"test-key:{base64.b64encode(SECRET).decode()}"


def opened(media: list[dict[str, Any]] | None = None, discard_to: float = 0.0, **extra: Any):
    state = ah.initial_state(SID, "monitor", ("en-US",), discard_to)
    return ah.decode(state, json.dumps(ah.open_message(SID, 1, media=media, **extra)))


def send(state: ah.AudioHookState, type_: str, params: Any = None):
    return ah.decode(state, json.dumps(ah.client_message(state, type_, state.clientseq + 1,
                                                         params)))


# --- L16 byte order ----------------------------------------------------------------------------


def test_l16_frames_are_read_little_endian_and_deinterleaved():
    state, _ = opened(media=[L16_STEREO])
    frame = struct.pack("<4h", 1000, -2, -32768, 258)  # external, internal, external, internal
    assert frame[:2] == b"\xe8\x03"  # 1000 = 0x03e8, low byte first
    state, events = ah.decode(state, frame)
    external, internal = (e.chunk.samples.tolist() for e in events)
    assert external == [1000, -32768] and internal == [-2, 258]


def test_l16_out_is_little_endian_too():
    state = ah.initial_state(SID, "bot")
    state, _ = ah.decode(state, json.dumps(ah.open_message(SID, 1, media=[L16_MONO])))
    samples = np.array([1000, -2], dtype=np.int16)
    state, (packet,) = ah.encode(state, AudioChunk(samples, 8000))
    assert packet[:4] == b"\xe8\x03\xfe\xff"
    assert len(packet) == ah.PACKET_BYTES * 2  # 200 ms of 16-bit samples, padded with silence


def test_an_l16_frame_of_half_a_sample_is_a_violation():
    state, _ = opened(media=[L16_STEREO])
    with pytest.raises(ProtocolError, match="not whole L16 2-channel samples"):
        ah.decode(state, b"\x00\x01\x02")


# --- discardTo and the position clock ---------------------------------------------------------


def test_opened_carries_discard_to_only_when_asked():
    _, events = opened()
    assert "discardTo" not in json.loads(events[0].message)["parameters"]
    _, events = opened(discard_to=2.5)
    assert json.loads(events[0].message)["parameters"]["discardTo"] == "PT2.5S"
    with pytest.raises(ConfigError, match="discard_to"):
        ah.initial_state(SID, "bot", (), -1.0)


def test_the_clients_discarded_up_to_discard_to_moves_the_clock_there():
    state, _ = opened(media=[L16_MONO], discard_to=2.5)
    state, events = send(state, "discarded", {"start": "PT0S", "discarded": "PT2.5S"})
    assert events == [] and state.samples == 20000
    state, (chunk,) = ah.decode(state, b"\x00\x00" * 160)
    assert chunk.chunk.t == 2.5


def test_a_gap_starts_where_the_client_says_and_audio_we_dropped_counts_on_its_clock():
    state, _ = opened(media=[L16_MONO])
    state, _ = ah.decode(state, b"\x00\x00" * 800)  # 0.1 s heard
    state, _ = send(state, "paused")
    state, _ = ah.decode(state, b"\x00\x00" * 800)  # 0.1 s sent while paused: dropped
    assert state.dropped == 1 and state.samples == 800
    # the client resumes: its clock says the gap began at 0.2 s and lasted 1 s
    state, _ = send(state, "resumed", {"start": "PT0.2S", "discarded": "PT1S"})
    state, (chunk,) = ah.decode(state, b"\x00\x00" * 160)
    assert chunk.chunk.t == pytest.approx(1.2)
    # a start behind our clock never moves it back
    state, _ = send(state, "discarded", {"start": "PT0S", "discarded": "PT0.5S"})
    state, (chunk,) = ah.decode(state, b"\x00\x00" * 160)
    assert chunk.chunk.t == pytest.approx(1.22 + 0.5)


# --- against a real server -------------------------------------------------------------------


def application(on_call: Any, mode: str, discard_to: float = 0.0) -> Starlette:
    async def endpoint(ws: Any) -> None:
        session_id = ws.headers["audiohook-session-id"]
        await ws.accept()
        await run_session(ws, ah.codec(session_id, mode, ("en-US",), discard_to), on_call)

    return Starlette(routes=[WebSocketRoute("/audiohook", endpoint)])


class L16Client(AudioHookClient):
    """The independent client sending L16 stereo, little-endian, interleaved like Genesys."""

    async def stream_l16(self, external: np.ndarray, internal: np.ndarray) -> None:
        both = np.empty(external.shape[0] * 2, dtype="<i2")
        both[0::2], both[1::2] = external, internal
        data = both.tobytes()
        assert self.ws is not None
        for i in range(0, len(data), 640):  # 20 ms frames
            await self.ws.send(data[i : i + 640])
            self.position += 0.02
            await asyncio.sleep(0.005)


async def test_an_l16_stereo_session_reaches_the_pipeline_sample_exact():
    heard: dict[str, list[np.ndarray]] = {"external": [], "internal": []}

    async def on_call(call: Any) -> None:
        async for item in call.inbound:
            if isinstance(item, ah.ChannelAudio):
                heard[item.channel].append(item.chunk.samples)
            elif isinstance(item, CallEnded):
                break

    rng = np.random.default_rng(7)
    external = rng.integers(-32768, 32767, 1600, dtype=np.int16)
    internal = rng.integers(-32768, 32767, 1600, dtype=np.int16)
    async with serving(application(on_call, "monitor")) as host:
        client = L16Client(f"ws://{host}/audiohook", api_key="k")
        async with client:
            reply = await client.open(media=[L16_STEREO])
            assert reply is not None and reply["parameters"]["media"] == [L16_STEREO]
            await client.stream_l16(external, internal)
            await client.close()
            record = await client.ended()
    assert record.violations == []
    assert np.array_equal(np.concatenate(heard["external"]), external)
    assert np.array_equal(np.concatenate(heard["internal"]), internal)
    assert await voicekit_tasks() == []


async def test_discard_to_in_opened_and_the_clients_discarded_put_audio_at_that_position():
    starts: list[float] = []

    async def on_call(call: Any) -> None:
        async for item in call.inbound:
            if isinstance(item, ah.ChannelAudio) and not starts:
                starts.append(item.chunk.t)
            elif isinstance(item, CallEnded):
                break

    async with serving(application(on_call, "monitor", discard_to=3.0)) as host:
        client = AudioHookClient(f"ws://{host}/audiohook", api_key="k")
        async with client:
            reply = await client.open(media=[{"type": "audio", "format": "PCMU",
                                              "channels": ["internal"], "rate": 8000}])
            assert reply is not None and reply["parameters"]["discardTo"] == "PT3S"
            # the client skips its first 3 s as asked and says so
            await client.send("discarded", {"start": "PT0S", "discarded": "PT3S"})
            client.position = 3.0
            await client.stream(np.zeros(800, dtype=np.int16))
            await client.close()
            record = await client.ended()
    assert record.violations == [] and starts == [3.0]
    assert await voicekit_tasks() == []
