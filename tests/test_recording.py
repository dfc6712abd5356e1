"""Call recording (issue 14 item 5): a stereo WAV per call, caller left and agent right on one
clock, with only what the caller heard, and a JSON transcript.

The recorder itself is checked on a hand-driven clock (sample-exact); then whole calls run
through ``voicekit.serve`` under uvicorn, called by streamdouble (real pacing, a playback model
of the carrier's buffer, mark echo), and the WAV is checked against what streamdouble says was
sent and played: a click in each channel lands within one 20 ms frame of where it belongs."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import socket
import subprocess
import sys
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from streamdouble import api, g711
from streamdouble.scenario import parse
from streamdouble.session import SessionConfig

import voicekit as vk
import voicekit.serve
from voicekit.events import (
    AudioChunk,
    CallEnded,
    CallStarted,
    Dtmf,
    Interrupted,
    Mark,
    Played,
    TurnEnded,
    TurnStarted,
)
from voicekit.stt import fake
from voicekit.transports import run_call
from voicekit.tts import tones
from voicekit.turns import speech_timeout, turns
from voicekit.vad import energy, vad

RATE = 8000
FRAME = 160  # 20 ms at 8 kHz
PHONE = "+15550001111"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def started(call_id: str = "CAtest", caller: str = PHONE) -> CallStarted:
    return CallStarted(call_id, carrier="twilio", acknowledges=True, caller=caller)


def click_frame(at: int, value: int = 20000, n: int = FRAME) -> np.ndarray:
    frame = np.zeros(n, np.int16)
    frame[at] = value
    return frame


def wav_channels(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    with wave.open(str(path), "rb") as f:
        assert f.getnchannels() == 2 and f.getsampwidth() == 2
        rate, data = f.getframerate(), f.readframes(f.getnframes())
    both = np.frombuffer(data, "<i2").reshape(-1, 2)
    return both[:, 0], both[:, 1], rate


def runs(channel: np.ndarray, level: int, rate: int = RATE) -> list[tuple[float, float]]:
    """The stretches (start s, end s) where ``|channel| > level``, gaps under 5 ms joined."""
    loud = np.flatnonzero(np.abs(channel.astype(np.int32)) > level)
    if not loud.size:
        return []
    out, start, last = [], loud[0], loud[0]
    for i in loud[1:]:
        if i - last > rate // 200:
            out.append((start / rate, (last + 1) / rate))
            start = i
        last = i
    out.append((start / rate, (last + 1) / rate))
    return out


# =============================================================================================
# the recorder on a hand-driven clock: exact to the sample


def test_both_channels_land_where_their_clocks_say_exactly(tmp_path):
    clock = Clock()
    rec = vk.recorder(tmp_path)(started(), RATE, clock)
    # the caller's frames arrive 50 ms after the call started, one every 20 ms, a few of them
    # late (jitter); a click in frame 50, sample 40: stream time 1.005 s. The agent's audio is
    # sent 0.2 s ahead of its play time: from 0.5 s on, a click 0.8 s into it (at 1.3 s)
    sent = 0
    for n in range(150):
        clock.now = 1000.05 + n * 0.02 + (0.015 if n % 7 == 3 else 0.0)
        samples = click_frame(40) if n == 50 else np.zeros(FRAME, np.int16)
        rec.inbound(AudioChunk(samples, RATE, n * 0.02))
        while sent < 60 and 1000.5 + sent * 0.02 <= clock.now + 0.2:
            samples = click_frame(0) if sent == 40 else np.zeros(FRAME, np.int16)
            rec.played(samples, 1000.5 + sent * 0.02)
            sent += 1
    assert sent == 60
    clock.now = 1003.5
    recording = rec.close(vk.Session(call_id="CAtest", caller=PHONE))
    caller, agent, rate = wav_channels(tmp_path / "CAtest.wav")
    assert rate == RATE
    assert int(np.argmax(caller)) == round((0.05 + 1.005) * RATE)  # late frames did not shift it
    assert int(np.argmax(agent)) == round(1.3 * RATE)
    assert np.count_nonzero(caller) == 1 and np.count_nonzero(agent) == 1
    assert recording is not None and recording.wav == tmp_path / "CAtest.wav"
    assert recording.info["agent_audio"] == [[0.5, 1.7]]


def test_a_clear_cuts_the_agent_channel_at_the_instant_of_the_clear(tmp_path):
    clock = Clock()
    rec = vk.recorder(tmp_path)(started(), RATE, clock)
    tone = np.full(FRAME, 3000, np.int16)
    # sentence 1: 0.0-1.0 s; sentence 2: 1.0-2.0 s, sent ahead of time; the clear at 1.4 s
    for n in range(50):
        rec.played(tone, 1000.0 + n * 0.02)
    rec.outbound(Mark("1-1", "One."), 1001.0)
    for n in range(50, 100):
        rec.played(tone, 1000.0 + n * 0.02)
    rec.outbound(Mark("1-2", "Two."), 1002.0)
    clock.now = 1000.9
    rec.inbound(Played("1-1"))  # the carrier played sentence 1
    clock.now = 1001.4
    rec.outbound(Interrupted("One.", 1.4), 1001.4)
    rec.inbound(Played("1-2"))  # Twilio echoes the marks pending at a clear: not heard
    for n in range(10):  # the next reply, right after the clear
        rec.played(np.full(FRAME, 9000, np.int16), 1001.4 + n * 0.02)
    clock.now = 1003.0
    recording = rec.close()
    _, agent, _ = wav_channels(tmp_path / "CAtest.wav")
    assert runs(agent, 1000) == [(0.0, 1.6)]
    assert np.all(agent[: round(1.4 * RATE)] == 3000)
    assert np.all(agent[round(1.4 * RATE) : round(1.6 * RATE)] == 9000)
    assert not np.any(agent[round(1.6 * RATE) :])
    assert recording is not None
    sentences = [e for e in recording.events if e["type"] == "agent"]
    assert sentences == [
        {"type": "agent", "text": "One.", "start": 0.0, "end": 1.0, "mark": "1-1", "t": 0.0,
         "played": 0.9},
        {"type": "agent", "text": "Two.", "start": 1.0, "end": 1.4, "mark": "1-2", "t": 1.0,
         "interrupted": True},
    ]
    (clear,) = [e for e in recording.events if e["type"] == "clear"]
    assert clear == {"t": 1.4, "type": "clear", "heard": "One."}


def test_what_was_still_queued_when_the_call_ended_is_not_in_it(tmp_path):
    clock = Clock()
    rec = vk.recorder(tmp_path)(started(), RATE, clock)
    for n in range(100):  # 2 s of reply, sent 1 s ahead
        rec.played(np.full(FRAME, 3000, np.int16), 1000.0 + n * 0.02)
    clock.now = 1000.5
    rec.outbound(Mark("1-1", "A long sentence."), 1002.0)  # it would play at 2.0 s
    clock.now = 1001.0
    rec.inbound(CallEnded("hangup"))
    clock.now = 1001.2
    recording = rec.close()
    _, agent, _ = wav_channels(tmp_path / "CAtest.wav")
    assert runs(agent, 1000) == [(0.0, 1.0)]
    assert recording is not None and recording.info["agent_audio"] == [[0.0, 1.0]]
    assert recording.events[-1] == {"t": 1.0, "type": "call_ended", "reason": "hangup"}
    # the mark never came to play (nor its sentence, whose first sample did play: interrupted)
    (mark,) = [e for e in recording.events if e["type"] == "mark"]
    assert mark == {"t": 0.5, "type": "mark", "name": "1-1", "sent": 0.5, "dropped": True}
    (sentence,) = [e for e in recording.events if e["type"] == "agent"]
    assert sentence["end"] == 1.0 and sentence["interrupted"] is True


def test_a_long_call_is_written_as_it_goes_and_stays_continuous(tmp_path):
    clock = Clock()
    rec = vk.recorder(tmp_path)(started(), RATE, clock)
    ramp = (np.arange(30 * RATE) % 20000).astype(np.int16)  # 30 s, every sample distinct-ish
    for n in range(30 * 50):
        clock.now = 1000.0 + n * 0.02
        rec.inbound(AudioChunk(ramp[n * FRAME : (n + 1) * FRAME], RATE, n * 0.02))
        rec.played(ramp[n * FRAME : (n + 1) * FRAME], 1000.1 + n * 0.02)
        if n == 20 * 50:
            assert rec._tape.base > 15 * RATE  # the older audio is already on disk, not in RAM
    clock.now = 1030.2
    rec.close()
    caller, agent, _ = wav_channels(tmp_path / "CAtest.wav")
    assert np.array_equal(caller[: 30 * RATE], ramp)
    assert np.array_equal(agent[round(0.1 * RATE) : round(0.1 * RATE) + 30 * RATE], ramp)


def test_the_transcript_has_turns_marks_keys_and_no_phone_number(tmp_path):
    clock = Clock()
    rec = vk.recorder(tmp_path)(started(), RATE, clock)
    for n in range(100):
        clock.now = 1000.1 + n * 0.02
        rec.inbound(AudioChunk(np.zeros(FRAME, np.int16), RATE, n * 0.02))
    rec.outbound(TurnStarted(0.3), 0.0)
    rec.outbound(TurnEnded("what is my balance", 1.5), 0.0)
    rec.inbound(Dtmf("4"))
    rec.outbound(vk.ToolCall("c1", "balance", '{"card": "4111"}'), 0.0)
    rec.outbound(vk.HangUp(), 1002.5)
    rec.outbound(vk.TransferCall("+15559998888"), 1002.5)
    clock.now = 1003.0
    recording = rec.close(vk.Session(call_id="CAtest", caller=PHONE))
    assert recording is not None
    text = (tmp_path / "CAtest.json").read_text()
    assert "5550001111" not in text and "9998888" not in text and "4111" not in text
    info = json.loads(text)
    assert info["caller_hash"] == vk.hash_caller(PHONE)
    assert info["call_id"] == "CAtest" and info["channels"] == ["caller", "agent"]
    kinds = [(e["type"], e["t"]) for e in info["events"]]
    assert kinds == [
        ("call_started", 0.0), ("user_started", 0.4), ("user", 1.6), ("dtmf", 2.08),
        ("tool_call", 2.08), ("hang_up", 2.5), ("transfer", 2.5), ("call_ended", 3.0),
    ]
    assert info["events"][2]["text"] == "what is my balance"
    assert "digit" not in info["events"][3]
    assert vk.read_recording(tmp_path / "CAtest").info == info


def test_file_names_carry_the_call_id_and_never_overwrite(tmp_path):
    rec = vk.recorder(tmp_path / "calls")
    first = rec(started("CA/1"), RATE, Clock()).close()
    second = rec(started("CA/1"), RATE, Clock()).close()
    assert first is not None and second is not None
    assert sorted(p.name for p in (tmp_path / "calls").iterdir()) == [
        "CA_1-2.json", "CA_1-2.wav", "CA_1.json", "CA_1.wav",
    ]
    with pytest.raises(vk.ConfigError, match="directory must be a path"):
        vk.recorder("")


def test_a_disk_error_stops_the_recording_not_the_call(tmp_path, caplog):
    import shutil

    clock = Clock()
    rec = vk.recorder(tmp_path / "gone")(started(), RATE, clock)
    shutil.rmtree(tmp_path / "gone")
    for n in range(300):  # 6 s: the first write out fails
        clock.now = 1000.0 + n * 0.02
        rec.inbound(AudioChunk(np.zeros(FRAME, np.int16), RATE, n * 0.02))
        rec.played(np.zeros(FRAME, np.int16), 1000.1 + n * 0.02)
    assert rec.close() is None
    assert [r.getMessage() for r in caplog.records if "recording" in r.getMessage()] and all(
        "5550001111" not in r.getMessage() for r in caplog.records)


def test_recording_is_never_on_by_default():
    assert inspect.signature(run_call).parameters["record"].default is None
    assert inspect.signature(vk.serve.app).parameters["record_dir"].default is None
    with pytest.raises(vk.ConfigError, match="not supported with carrier='audiohook'"):
        vk.serve.app(lambda call: None, carrier="audiohook", dev=True, record_dir="x")


def test_the_cli_refuses_record_with_audiohook(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "voicekit.cli", "serve", "--dev", "--carrier", "audiohook",
         "--record", str(tmp_path / "calls")],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 2
    assert "--record is not supported with --carrier audiohook" in out.stderr + out.stdout


# =============================================================================================
# whole calls: uvicorn + streamdouble


@contextlib.asynccontextmanager
async def serving(application: Any) -> AsyncIterator[str]:
    config = uvicorn.Config(
        application, host="127.0.0.1", port=0, log_level="warning", lifespan="off",
        ws="websockets-sansio",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for it
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def peer_playback(report: api.CallReport) -> list[tuple[float, int]]:
    """streamdouble's model of the carrier's buffer: when each agent frame started to play
    (its clock), with its byte offset in ``audio_received``. A clear empties the buffer."""
    result = report.result
    marks = [(e.at, "clear", 0) for e in result.events_of("clear_received")]
    media = [(e.at, "media", int(e.detail["bytes"])) for e in result.events_of("media_received")]
    plays, ends, offset = [], None, 0
    for at, kind, size in sorted(marks + media):
        if kind == "clear":
            ends = at
            continue
        start = max(at, ends or at)
        plays.append((start, offset))
        ends, offset = start + size / RATE, offset + size
    return plays


def played_at(plays: list[tuple[float, int]], byte: int) -> float:
    """When byte ``byte`` of the agent's audio played at the peer."""
    start, offset = max((p for p in plays if p[1] <= byte), key=lambda p: p[1])
    return start + (byte - offset) / RATE


def ulaw_frames(samples: np.ndarray) -> list[bytes]:
    data = g711.encode(samples)
    return [data[i : i + FRAME] for i in range(0, len(data), FRAME)]


@pytest.fixture
def recordings(monkeypatch: pytest.MonkeyPatch) -> list[vk.CallRecording]:
    """The recordings the server starts (to read their clock's origin)."""
    made: list[vk.CallRecording] = []
    start = vk.Recorder.__call__

    def spy(self: vk.Recorder, started: CallStarted, rate: int, clock: Any = None) -> Any:
        made.append(start(self, started, rate, clock))
        return made[-1]

    monkeypatch.setattr(vk.Recorder, "__call__", spy)
    return made


def loudest(channel: np.ndarray) -> int:
    return int(np.argmax(np.abs(channel.astype(np.int32))))


async def test_a_click_in_each_channel_lands_within_one_frame_of_the_truth(tmp_path, recordings):
    """The caller clicks 1.005 s into its stream; the agent, once it has heard 0.5 s of the
    caller, plays 2 s of audio with a click 0.7 s in. streamdouble (in this process: its clock
    is the server's, CLOCK_MONOTONIC) knows when it sent its click and when, by its model of
    the carrier's buffer, it played the agent's. In the WAV each click is within 20 ms of that
    instant — the agent's once the one-way delay from the server to the simulated carrier is
    taken off, which no server can know (measured here from the first frame, and printed)."""
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
            reply = np.zeros(2 * RATE, np.int16)
            reply[agent_click] = 24000
            for i in range(0, reply.shape[0], FRAME):
                yield AudioChunk(reply[i : i + FRAME], RATE, i / RATE)

        await asyncio.gather(listen(), call.outbound(speak()))

    calls = tmp_path / "calls"
    application = vk.serve.app(on_call, dev=True, record_dir=calls)
    caller = np.zeros(3 * RATE, np.int16)
    caller_click = 50 * FRAME + 40  # frame 50, sample 40: 1.005 s
    caller[caller_click] = 24000
    config = SessionConfig(response_timeout_s=10, quiet_period_s=1.0, max_drain_s=10,
                           custom_parameters={"caller": PHONE})
    async with serving(application) as host:
        report = await api.call(f"ws://{host}/twilio/media", frames=ulaw_frames(caller),
                                config=config)
    sid = report.result.identity.call_sid
    assert sorted(p.name for p in calls.iterdir()) == [f"{sid}.json", f"{sid}.wav"]
    (rec,) = recordings
    left, right, rate = wav_channels(calls / f"{sid}.wav")
    info = json.loads((calls / f"{sid}.json").read_text())
    assert rate == RATE
    # the caller's click: where the caller spoke it (its presentation time)
    caller_truth = report.result.started_at + caller_click / RATE
    caller_error = rec.origin + loudest(left) / RATE - caller_truth
    # the agent's click: where the simulated carrier's buffer reached it
    received = g711.decode(report.audio_received)
    assert abs(loudest(received) - agent_click) <= 1
    agent_truth = played_at(peer_playback(report), loudest(received))
    first_sent = rec.origin + info["agent_audio"][0][0]  # the line was idle: it plays at once
    one_way = report.result.events_of("media_received")[0].at - first_sent
    agent_error = rec.origin + loudest(right) / RATE + one_way - agent_truth
    print(f"caller click {caller_error * 1000:+.2f} ms, agent click {agent_error * 1000:+.2f} ms "
          f"(one-way delay to the simulated carrier {one_way * 1000:.2f} ms)")
    assert -0.0005 < one_way < 1.0
    assert abs(caller_error) < 0.020 and abs(agent_error) < 0.020
    assert PHONE[1:] not in json.dumps(info) and info["caller_hash"] == vk.hash_caller(PHONE)
    assert info["events"][0]["type"] == "call_started"
    assert info["events"][-1]["type"] == "call_ended"


async def test_audio_a_clear_threw_away_is_not_in_the_recording(tmp_path, recordings):
    """2 s of a quiet tone sent 0.5 s ahead, then a clear, then 0.5 s of a loud one: the quiet
    tone is in the WAV as far as streamdouble played it before the clear (within 20 ms, the
    one-way delays of the first frame and of the clear taken off), the 0.5 s it threw away is
    not, and the loud one follows at once."""
    quiet, loud = 2000, 12000
    cleared = asyncio.Event()

    async def on_call(call: Any) -> None:
        async def listen() -> None:
            async for _ in call.inbound:
                pass

        async def speak() -> AsyncIterator[Any]:
            for i in range(100):
                yield AudioChunk(np.full(FRAME, quiet, np.int16), RATE, i * 0.02)
            yield Interrupted("", 0.0)
            cleared.set()
            for i in range(25):
                yield AudioChunk(np.full(FRAME, loud, np.int16), RATE, i * 0.02)

        await asyncio.gather(listen(), call.outbound(speak()))

    calls = tmp_path / "calls"
    application = vk.serve.app(on_call, dev=True, lead=0.5, record_dir=calls)
    config = SessionConfig(response_timeout_s=10, quiet_period_s=1.0, max_drain_s=10)
    async with serving(application) as host:
        report = await api.call(f"ws://{host}/twilio/media",
                                frames=ulaw_frames(np.zeros(4 * RATE, np.int16)), config=config)
    assert cleared.is_set() and report.result.clears_received == 1
    (rec,) = recordings
    recording = vk.read_recording(calls / f"{report.result.identity.call_sid}.wav")
    plays = peer_playback(report)
    (clear_at,) = [e.at for e in report.result.events_of("clear_received")]
    heard_quiet = clear_at - plays[0][0]  # the peer played the quiet tone from its first frame
    assert 2.0 - heard_quiet > 0.3  # most of the lead was thrown away
    (our_clear,) = [e["t"] for e in recording.events if e["type"] == "clear"]
    one_way_start = plays[0][0] - (rec.origin + recording.info["agent_audio"][0][0])
    one_way_clear = clear_at - (rec.origin + our_clear)
    _, right, _ = recording.samples()
    level = np.abs(right.astype(np.int32))
    quiet_runs = runs(np.where(level < 6000, right, 0), 1000)
    loud_runs = runs(right, 6000)
    assert len(quiet_runs) == 1 and len(loud_runs) == 1
    (q0, q1), (l0, l1) = quiet_runs[0], loud_runs[0]
    error = (q1 - q0) - (heard_quiet + one_way_start - one_way_clear)
    print(f"quiet tone: {q1 - q0:.4f} s in the WAV, {heard_quiet:.4f} s at the peer; error "
          f"{error * 1000:+.2f} ms after one-way delays of {one_way_start * 1000:.2f} ms (first "
          f"frame) and {one_way_clear * 1000:.2f} ms (clear)")
    assert abs(error) < 0.020
    assert abs(l0 - q1) < 0.020  # the next audio plays right after the clear
    assert abs((l1 - l0) - 0.5) < 0.005


async def test_on_telnyx_too_clicks_and_a_clear_match_the_fake_carrier(tmp_path, recordings):
    """The same through ``carrier="telnyx"`` and the fake Telnyx peer (tests/servers), whose
    play-out clock keeps what the caller heard: the caller's click, the agent's click and the
    end of the agent's audio at the clear are each within 20 ms of the peer's instants (the
    agent's once the one-way delays are taken off)."""
    from servers.fake_telnyx import TelnyxCall

    from voicekit.audio import ulaw_encode

    quiet, loud, agent_click = 2000, 12000, round(0.7 * RATE) + 37

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
            reply = np.full(2 * RATE, quiet, np.int16)
            reply[agent_click] = 24000
            for i in range(0, reply.shape[0], FRAME):
                yield AudioChunk(reply[i : i + FRAME], RATE, i / RATE)
            yield Interrupted("", 0.0)
            for i in range(25):
                yield AudioChunk(np.full(FRAME, loud, np.int16), RATE, i * 0.02)

        await asyncio.gather(listen(), call.outbound(speak()))

    calls = tmp_path / "calls"
    application = vk.serve.app(on_call, carrier="telnyx", dev=True, lead=0.5, record_dir=calls)
    caller = np.zeros(4 * RATE, np.int16)
    caller[50 * FRAME + 40] = 24000  # 1.005 s
    async with serving(application) as host:
        peer = TelnyxCall(f"ws://{host}/telnyx/media")
        record = await peer.call(bytes(ulaw_encode(caller).tobytes()), hangup_at=4.0)
    assert record.violations == [] and len(record.clears) == 1
    (rec,) = recordings
    recording = vk.read_recording(calls / "v3_fake-call-1.wav")
    left, right, _ = recording.samples()
    t0 = peer._t0  # the peer's call start, on the same monotonic clock as the server's loop
    caller_error = rec.origin + loudest(left) / RATE - (t0 + 1.005)
    first_played = record.heard[0].start  # the peer's play-out of our first frame
    one_way = t0 + first_played - (rec.origin + recording.info["agent_audio"][0][0])
    heard = record.heard_audio()
    agent_truth = t0 + first_played + loudest(heard) / RATE
    agent_error = rec.origin + loudest(right) / RATE + one_way - agent_truth
    (our_clear,) = [e["t"] for e in recording.events if e["type"] == "clear"]
    clear_one_way = t0 + record.clears[0] - (rec.origin + our_clear)
    level = np.abs(right.astype(np.int32))
    (q0, q1), (l0, l1) = runs(np.where(level < 6000, right, 0), 1000)[0], runs(right, 6000)[-1]
    heard_quiet = record.clears[0] - first_played
    end_error = (q1 - q0) - (heard_quiet + one_way - clear_one_way)
    print(f"telnyx: caller click {caller_error * 1000:+.2f} ms, agent click "
          f"{agent_error * 1000:+.2f} ms, end at the clear {end_error * 1000:+.2f} ms (one-way "
          f"{one_way * 1000:.2f} / {clear_one_way * 1000:.2f} ms)")
    assert abs(caller_error) < 0.020 and abs(agent_error) < 0.020 and abs(end_error) < 0.020
    assert 2.0 - heard_quiet > 0.3  # the peer threw most of the lead away; the WAV too
    assert l1 - l0 == pytest.approx(0.5, abs=0.005) and abs(l0 - q1) < 0.020


async def test_a_goodbye_and_hang_up_are_in_the_transcript(tmp_path):
    """The agent says goodbye (1 s, then its mark) and hangs up (Twilio REST, a fake): the
    transcript has the goodbye heard, acknowledged, then the hang-up, then the end."""
    from servers import fake_rest
    from servers.fake_rest import FakeRest
    from servers.fake_twilio import TwilioCall

    call_sid = "CAfake0000000000000000000000000077"

    async def on_call(call: Any) -> None:
        async def goodbye() -> AsyncIterator[Any]:
            for i in range(50):
                yield AudioChunk(np.full(FRAME, 3000, np.int16), RATE, i * 0.02)
            yield Mark("bye", "Goodbye!")
            yield vk.HangUp()

        await call.outbound(goodbye())

    fake = FakeRest().live(call_sid)
    calls = tmp_path / "calls"
    async with serving(fake.app()) as rest_host:
        api = vk.serve.CarrierApi("twilio", account=fake_rest.ACCOUNT, secret=fake_rest.TOKEN,
                                  base_url=f"http://{rest_host}")
        application = vk.serve.app(on_call, dev=True, api=api, record_dir=calls)
        try:
            async with serving(application) as host:
                peer = TwilioCall(f"ws://{host}/twilio/media", call_sid=call_sid)
                await peer.call(until=lambda r: fake.acted.is_set(), linger=0.1, max_seconds=15)
        finally:
            fake.release()
    recording = vk.read_recording(calls / call_sid)
    kinds = [e["type"] for e in recording.events]
    assert kinds.index("played") < kinds.index("hang_up") < kinds.index("call_ended")
    assert kinds[-1] == "call_ended"
    (sentence,) = [e for e in recording.events if e["type"] == "agent"]
    assert sentence["text"] == "Goodbye!" and "played" in sentence
    assert sentence["end"] - sentence["start"] == pytest.approx(1.0, abs=0.001)
    _, right, _ = recording.samples()
    ((start, end),) = runs(right, 1000)  # the transcript's times are rounded to 0.1 ms
    assert (start, end) == (pytest.approx(sentence["start"], abs=1e-4),
                            pytest.approx(sentence["end"], abs=1e-4))


def agent_for(session: vk.Session, transcripts: list[str], reply: list[str]) -> Any:
    async def llm(messages: Any) -> AsyncIterator[str]:
        for part in reply:
            yield part

    return vk.voice_agent(
        llm=llm, tts=tones(), stt=fake(transcripts=transcripts),
        vad=vad(detector=energy(), min_volume=0, stop_secs=0.2),
        turns=turns(stop=[speech_timeout(0.2)], pending=False), session=session,
    )


def write_tone(path: Path, seconds_on: float, seconds_off: float, freq: float) -> Path:
    on = np.sin(2 * np.pi * freq * np.arange(int(RATE * seconds_on)) / RATE) * 8000
    audio = np.concatenate((on, np.zeros(int(RATE * seconds_off)))).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(audio.tobytes())
    return path


async def test_a_barge_in_call_recorded_with_its_transcript(tmp_path):
    """The voice agent answers, the caller speaks over it: the transcript has the turns, the
    sentences heard (acknowledged by the carrier), the clear with the words heard so far, and
    the WAV's agent channel stops at the clear."""
    long = ["This is the first sentence of a long answer. "] + [
        f"Here comes sentence number {i} of it, which goes on for a while. " for i in range(2, 9)
    ]
    ended: list[vk.Session] = []

    async def on_call(call: Any) -> None:
        bot = agent_for(call.session, ["tell me everything", "stop"], long)
        await (call.inbound | bot | call.outbound)

    calls = tmp_path / "calls"
    application = vk.serve.app(on_call, dev=True, on_end=ended.append, record_dir=calls)
    write_tone(tmp_path / "q.wav", 1.0, 0.2, 300)
    write_tone(tmp_path / "stop.wav", 0.8, 0.0, 400)
    scenario = parse(
        {"name": "barge in", "steps": [
            {"say": "q.wav"}, {"wait_for": {"event": "audio", "timeout": 60}}, {"wait": 4.0},
            {"say": "stop.wav"}, {"wait": 1.0}, {"expect": "clear"}, {"wait": 1.0},
        ]},
        base_dir=tmp_path,
    )
    config = SessionConfig(response_timeout_s=10.0, quiet_period_s=0.5, max_drain_s=2.0,
                           custom_parameters={"caller": PHONE})
    async with serving(application) as host:
        report = await api.run_scenario(f"ws://{host}/twilio/media", scenario, config=config)
    assert report.result.failed_expectations == []
    sid = report.result.identity.call_sid
    recording = vk.read_recording(calls / f"{sid}.json")
    events = recording.events
    kinds = [e["type"] for e in events]
    assert kinds[0] == "call_started" and kinds[-1] == "call_ended"
    users = [e["text"] for e in events if e["type"] == "user"]
    assert users[:2] == ["tell me everything", "stop"]
    (first_clear, *_) = [e for e in events if e["type"] == "clear"]
    sentences = [e for e in events if e["type"] == "agent" and e["t"] < first_clear["t"]]
    assert sentences[0]["text"] == long[0].strip()
    assert sentences[0]["played"] >= sentences[0]["end"] - 0.05  # acknowledged once played
    heard = [s for s in sentences if "played" in s]
    assert heard, "at least the first sentence was acknowledged before the barge-in"
    # what the Session kept as heard is what the carrier acknowledged before the clear (a
    # sentence that ended right at the clear may be acknowledged just after it: ours counts it)
    said = ended[0].messages_json()[1]
    assert said["role"] == "assistant" and said.get("interrupted") is True
    texts = [s["text"] for s in heard]
    assert said["content"].strip() in {" ".join(texts), " ".join(texts[:-1])}
    assert "heard" in first_clear
    # the agent channel: all of the audio before the clear ends by the clear, and each heard
    # sentence has its audio in the WAV where the transcript puts it
    _, right, rate = recording.samples()
    spans = recording.info["agent_audio"]
    before = [span for span in spans if span[0] < first_clear["t"]]
    assert before and all(end <= first_clear["t"] + 0.001 for _, end in before)
    for sentence in heard:
        assert np.any(right[round(sentence["start"] * rate) : round(sentence["end"] * rate)])
    # the user turn sits after the caller's speech in the WAV (its end on the caller's clock)
    left, _, _ = recording.samples()
    speech = runs(left, 2000)
    assert speech and speech[0][0] < events[kinds.index("user")]["t"]


# =============================================================================================
# voicekit serve --record, as a user runs it: a real process, the offline models


async def test_voicekit_serve_record_writes_each_call(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    calls = tmp_path / "calls"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicekit.cli", "serve", "--dev", "--port", str(port),
        "--record", str(calls),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    lines: list[str] = []

    async def read() -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            lines.append(line.decode(errors="replace"))

    async def line_with(text: str, timeout: float) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while not any(text in line for line in lines):  # noqa: ASYNC110
                await asyncio.sleep(0.05)

    reader = asyncio.create_task(read())
    question = parse({"name": "question", "steps": [
        {"say": str(vk.audio.sample_path())}, {"wait_for": {"event": "audio", "timeout": 60}},
        {"wait": 3},
    ]})
    config = SessionConfig(response_timeout_s=30, quiet_period_s=1.0, max_drain_s=10,
                           custom_parameters={"caller": PHONE})
    try:
        await line_with("Application startup complete", 120)
        report = await api.run_scenario(f"ws://127.0.0.1:{port}/twilio/media", question,
                                        config=config)
        await line_with("ended: 1 turn(s)", 10)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        await reader
    assert report.spoke
    sid = report.result.identity.call_sid
    assert sorted(p.name for p in calls.iterdir()) == [f"{sid}.json", f"{sid}.wav"]
    recording = vk.read_recording(calls / sid)
    users = [e["text"] for e in recording.events if e["type"] == "user"]
    assert users and "rome" in users[0].lower()
    assert [e for e in recording.events if e["type"] == "agent" and "played" in e]
    caller, agent, rate = recording.samples()
    assert rate == RATE and np.any(caller) and np.any(agent)
    assert "5550001111" not in recording.transcript.read_text()


# =============================================================================================
# without a carrier: a local run, on stream time


def test_a_local_run_is_recorded_on_stream_time(tmp_path):
    """``source | rec.caller | agent | rec.agent``: the caller at 16 kHz, the agent at 22.05
    kHz, both resampled to 16 kHz and placed by their stamps; a barge-in cuts the agent."""
    rec = vk.recorder(tmp_path).local("demo-1")

    async def caller() -> AsyncIterator[Any]:
        for n in range(150):  # 3 s at 16 kHz, a click at 1.0025 s
            samples = np.zeros(320, np.int16)
            if n == 50:
                samples[40] = 20000
            yield AudioChunk(samples, 16000, n * 0.02)

    async def agent(source: Any) -> AsyncIterator[Any]:
        async for item in source:
            if isinstance(item, AudioChunk) and item.t == 1.2:
                yield TurnEnded("hello", 1.2)
                reply = np.full(22050, 3000, np.int16)  # 1 s from 1.3 s, a click at 1.5 s
                reply[round(0.2 * 22050)] = 24000
                for i in range(0, 22050, 441):
                    yield AudioChunk(reply[i : i + 441], 22050, 1.3 + i / 22050)
                yield Mark("1-1", "Hello.")
                yield TurnStarted(1.8)
                yield Interrupted("", 1.8)
            if not isinstance(item, AudioChunk):  # like voice_agent: not the caller's audio
                yield item

    items = asyncio.run(vk.collect(caller() | rec.caller | vk.Stage.of(agent) | rec.agent))
    assert sum(isinstance(i, AudioChunk) for i in items) == 50  # everything passes on
    assert rec.result is not None and rec.result.wav == tmp_path / "demo-1.wav"
    left, right, rate = rec.result.samples()
    assert rate == 16000
    assert abs(loudest(left) - round(1.0025 * 16000)) <= 2
    assert abs(loudest(right) - round(1.5 * 16000)) <= 32  # the resampler's filter delay: ~1 ms
    assert runs(right, 1000, 16000) == [(pytest.approx(1.3, abs=0.002), 1.8)]
    kinds = [(e["type"], e["t"]) for e in rec.result.events]
    assert ("user", 1.2) in kinds and ("clear", 1.8) in kinds and ("user_started", 1.8) in kinds
    (sentence,) = [e for e in rec.result.events if e["type"] == "agent"]
    assert sentence["text"] == "Hello." and sentence["end"] == 1.8 and sentence["interrupted"]


def test_a_local_voice_agent_run_is_recorded(tmp_path):
    """The bundled question read from its file through a voice agent, recorded locally."""
    rec = vk.recorder(tmp_path).local("local-1")
    bot = agent_for(vk.Session(call_id="local-1"), ["what is the weather"],
                    ["It is foggy. ", "Anything else?"])
    flow = vk.audio.read(vk.audio.sample_path(), rate=16000) | rec.caller | bot | rec.agent
    asyncio.run(vk.collect(flow))
    assert rec.result is not None
    events = rec.result.events
    (user,) = [e for e in events if e["type"] == "user"]
    assert user["text"] == "what is the weather"
    sentences = [e for e in events if e["type"] == "agent"]
    assert [s["text"] for s in sentences] == ["It is foggy.", "Anything else?"]
    assert user["t"] <= sentences[0]["start"] < sentences[0]["end"] <= sentences[1]["start"]
    left, right, rate = rec.result.samples()
    speech, reply = runs(left, 2000, rate), runs(right, 1000, rate)
    assert speech[0][0] < user["t"] and speech[-1][1] <= user["t"]  # the turn ends after it
    assert reply[0][0] == pytest.approx(sentences[0]["start"], abs=0.005)
    assert reply[-1][1] <= sentences[1]["end"] + 0.005
