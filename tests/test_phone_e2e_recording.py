"""Call recording on Plivo (issue 14 item 5): the same stereo WAV and transcript as on Twilio
and Telnyx (``tests/test_recording.py``), through ``carrier="plivo"``, the fake Plivo peer (its
play-out clock and ``playedStream`` acknowledgements) and the fake REST API: a click in each
channel lands within one 20 ms frame of where the peer says it was spoken and heard, and the
goodbye, its acknowledgement and the REST hang-up are in the transcript in that order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from servers.fake_plivo import PlivoCall
from servers.phone_rest import carrier_api, rest_api
from servers.serving import serving, voicekit_tasks
from test_recording import RATE, loudest, runs

import voicekit as vk
import voicekit.serve
from voicekit.audio import ulaw_encode
from voicekit.events import AudioChunk, CallStarted, HangUp, Mark

FRAME = 160
CALL = "fake-call-uuid-1"


@pytest.fixture
def started_recordings(monkeypatch: pytest.MonkeyPatch) -> list[vk.CallRecording]:
    """The recordings the server starts (to read the origin of their clock)."""
    made: list[vk.CallRecording] = []
    start = vk.Recorder.__call__

    def spy(self: vk.Recorder, started: CallStarted, rate: int, clock: Any = None) -> Any:
        made.append(start(self, started, rate, clock))
        return made[-1]

    monkeypatch.setattr(vk.Recorder, "__call__", spy)
    return made


async def test_a_plivo_call_is_recorded_aligned_and_its_hang_up_noted(tmp_path, started_recordings):
    agent_click = round(0.7 * RATE) + 37

    async def on_call(call: Any) -> None:
        heard = asyncio.Event()

        async def listen() -> None:
            got = 0
            async for item in call.inbound:
                if isinstance(item, AudioChunk):
                    got += item.frames
                    if got >= item.rate // 2:
                        heard.set()

        async def speak() -> AsyncIterator[Any]:
            await heard.wait()
            reply = np.full(2 * RATE, 2000, np.int16)
            reply[agent_click] = 24000
            for i in range(0, reply.shape[0], FRAME):
                yield AudioChunk(reply[i : i + FRAME], RATE, i / RATE)
            yield Mark("bye", "Goodbye.")
            yield HangUp()

        await asyncio.gather(listen(), call.outbound(speak()))

    caller = np.zeros(5 * RATE, np.int16)
    caller[50 * FRAME + 40] = 24000  # 1.005 s into the call
    calls = tmp_path / "calls"
    async with rest_api() as (fake_api, base):
        fake_api.live(CALL)
        application = vk.serve.app(on_call, carrier="plivo", dev=True, record_dir=calls,
                                   api=carrier_api("plivo", base))
        async with serving(application) as host:
            peer = PlivoCall(f"ws://{host}/plivo/media")
            record = await peer.call(bytes(ulaw_encode(caller).tobytes()),
                                     until=lambda r: fake_api.acted.is_set(), linger=0.1,
                                     max_seconds=20)
            assert await voicekit_tasks() == []
    assert record.violations == []
    (rec,) = started_recordings
    recording = vk.read_recording(calls / CALL)
    left, right, rate = recording.samples()
    assert rate == RATE
    t0 = peer._t0  # the peer's call start, on the server loop's monotonic clock
    caller_error = rec.origin + loudest(left) / RATE - (t0 + 1.005)
    first_played = record.heard[0].start
    one_way = t0 + first_played - (rec.origin + recording.info["agent_audio"][0][0])
    agent_truth = t0 + first_played + loudest(record.heard_audio()) / RATE
    agent_error = rec.origin + loudest(right) / RATE + one_way - agent_truth
    print(f"plivo: caller click {caller_error * 1000:+.2f} ms, agent click "
          f"{agent_error * 1000:+.2f} ms (one-way {one_way * 1000:.2f} ms)")
    assert -0.0005 < one_way < 1.0
    assert abs(caller_error) < 0.020 and abs(agent_error) < 0.020
    # the whole reply is in the agent channel, once, where the transcript puts its sentence
    ((start, end),) = runs(right, 1000)
    (sentence,) = [e for e in recording.events if e["type"] == "agent"]
    assert sentence["text"] == "Goodbye." and "played" in sentence
    assert abs(start - sentence["start"]) < 1e-3 and abs(end - sentence["end"]) < 1e-3
    assert abs((end - start) - 2.0) < 0.005
    kinds = [e["type"] for e in recording.events]
    assert kinds.index("played") < kinds.index("hang_up") < kinds.index("call_ended")
    (hangup,) = fake_api.of("hangup")
    echoed = next(at for at, name in record.echoed if name == "bye")
    assert hangup.t >= t0 + echoed and hangup.method == "DELETE"
