"""voicekit.serve against real peers on 127.0.0.1: the app run by uvicorn, called by streamdouble
(a Twilio Media Streams simulator with real pacing and mark echo) and by raw WebSocket clients."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import itertools
import json
import logging
import re
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
import websockets
from streamdouble import api
from streamdouble.protocol import StreamIdentity
from streamdouble.scenario import parse
from streamdouble.session import Session as SimCall
from streamdouble.session import SessionConfig

import voicekit as vk
import voicekit.serve
from voicekit.events import CallEnded, CallStarted, Dtmf, Mark, Played, SessionUpdated
from voicekit.stt import fake
from voicekit.transports import twilio
from voicekit.tts import tones
from voicekit.turns import speech_timeout, turns
from voicekit.vad import energy, vad


@contextlib.asynccontextmanager
async def serving(application: Any) -> AsyncIterator[str]:
    """Run ``application`` with a real uvicorn server on a free loopback port, in this loop."""
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


def write_wav(path: Path, seconds_on: float, seconds_off: float = 0.0, freq: float = 300) -> Path:
    """A caller "utterance": a loud tone (the energy VAD hears it as speech), then quiet."""
    rate = 8000
    on = (np.sin(2 * np.pi * freq * np.arange(int(rate * seconds_on)) / rate) * 8000)
    audio = np.concatenate((on, np.zeros(int(rate * seconds_off)))).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(audio.tobytes())
    return path


def agent_for(session: vk.Session, transcripts: list[str], reply: Any) -> Any:
    async def echo(messages: Any) -> AsyncIterator[str]:
        for part in reply(messages):
            yield part

    llm = reply if inspect.isasyncgenfunction(reply) else echo

    return vk.voice_agent(
        llm=llm,
        tts=tones(),
        stt=fake(transcripts=transcripts),
        vad=vad(detector=energy(), min_volume=0, stop_secs=0.2),
        turns=turns(stop=[speech_timeout(0.2)], pending=False),
        session=session,
    )


class Recorder:
    """An on_call that runs the agent and records what reached the pipeline, and on_end."""

    def __init__(self, transcripts: list[str], reply: Any) -> None:
        self.transcripts, self.reply = transcripts, reply
        self.inbound: list[Any] = []
        self.ended: list[vk.Session] = []
        self.done = asyncio.Event()

    async def on_call(self, call: Any) -> None:
        bot = agent_for(call.session, self.transcripts, self.reply)
        await (call.inbound | vk.tap(self.inbound.append) | bot | call.outbound)

    def on_end(self, session: vk.Session) -> None:
        self.ended.append(session)
        self.done.set()

    def of(self, kind: type) -> list[Any]:
        return [x for x in self.inbound if isinstance(x, kind)]


def echo_reply(messages: Any) -> list[str]:
    return [f"You said {messages[-1]['content']}. ", "Anything else?"]


async def voicekit_tasks() -> list[asyncio.Task[Any]]:
    """voicekit's own call tasks still running (give them 2 s to end)."""
    for _ in range(200):
        left = [
            t for t in asyncio.all_tasks() if t.get_name().startswith("voicekit") and not t.done()
        ]
        if not left:
            return []
        await asyncio.sleep(0.01)
    return left


AUDIO = {"event": "audio", "timeout": 60}  # the agent's first audio; the machine may be loaded
CONFIG = SessionConfig(response_timeout_s=10.0, quiet_period_s=1.5, max_drain_s=15.0)


async def test_the_agent_answers_a_simulated_twilio_call(tmp_path):
    rec = Recorder(["what time is it"], echo_reply)
    application = vk.serve.app(rec.on_call, dev=True, on_end=rec.on_end)
    clip = write_wav(tmp_path / "q.wav", 1.0, 0.3)
    config = SessionConfig(
        response_timeout_s=10.0, quiet_period_s=1.5, max_drain_s=15.0,
        custom_parameters={"caller": "+15550001111", "callee": "+15550002222"},
    )
    async with serving(application) as host:
        report = await api.call(f"ws://{host}/twilio/media", audio_path=clip, config=config)
        await asyncio.wait_for(rec.done.wait(), 10)
    assert report.violations == []
    assert report.spoke and report.time_to_first_audio_ms is not None
    # the agent marks each sentence; streamdouble echoes each mark once its audio has played,
    # and the echo comes back inbound as Played
    assert len(report.result.marks_received) == 2
    assert [p.name for p in rec.of(Played)] == report.result.marks_echoed
    (started,) = rec.of(CallStarted)
    assert started.call_id == report.result.identity.call_sid
    assert started.acknowledges and started.caller == "+15550001111"
    assert rec.of(CallEnded)[-1].reason == "hangup"  # streamdouble ends politely with 'stop'
    (session,) = rec.ended
    assert session.call_id == report.result.identity.call_sid
    assert session.caller == "+15550001111" and "+1555" not in repr(session)
    assert session.messages_json()[:2] == [
        {"role": "user", "content": "what time is it"},
        {"role": "assistant", "content": "You said what time is it. Anything else?"},
    ]
    # the reply the caller heard: 8 kHz μ-law at real-time pace, its length the TTS's
    reply_s = len(report.audio_received) / 8000
    assert 1.0 < reply_s < 10.0
    assert await voicekit_tasks() == []


async def test_marks_go_out_after_their_audio_and_come_back_as_played(tmp_path):
    """A hand-written outbound stream (audio, mark, audio, mark): streamdouble echoes each mark
    when its audio has played, and the echo arrives on the inbound stream as Played."""
    played: list[tuple[str, float]] = []
    sent_at: dict[str, float] = {}
    loop = asyncio.get_running_loop()

    async def on_call(call: Any) -> None:
        async def speak() -> AsyncIterator[Any]:
            for name in ("one", "two"):
                for i in range(25):  # 0.5 s of audio at 16 kHz
                    yield vk.AudioChunk(np.full(320, 3000, np.int16), 16000, i * 0.02)
                sent_at[name] = loop.time()
                yield Mark(name)

        async def listen() -> None:
            async for item in call.inbound:
                if isinstance(item, Played):
                    played.append((item.name, loop.time()))
                    if len(played) == 2:
                        return

        await asyncio.gather(call.outbound(speak()), listen())

    application = vk.serve.app(on_call, dev=True, lead=0.2)
    async with serving(application) as host:
        report = await api.call(f"ws://{host}/twilio/media", frames=[b"\xff" * 160] * 10,
                                config=SessionConfig(response_timeout_s=5, quiet_period_s=0.5))
    assert report.result.marks_received == ["one", "two"]
    assert [name for name, _ in played] == ["one", "two"]
    # sent at most `lead` ahead of real time, so an echo comes back within about `lead`
    for name, at in played:
        assert 0.0 <= at - sent_at[name] < 0.2 + 0.3
    assert len(report.audio_received) == 8000  # 1 s of 8 kHz μ-law, nothing lost


async def test_a_barge_in_sends_clear_and_keeps_only_what_was_heard(tmp_path):
    long = ["This is the first sentence of a long answer. "] + [
        f"Here comes sentence number {i} of it, which goes on for a while. " for i in range(2, 9)
    ]
    rec = Recorder(["tell me everything", "stop"], lambda messages: long)
    application = vk.serve.app(rec.on_call, dev=True, on_end=rec.on_end)
    write_wav(tmp_path / "q.wav", 1.0, 0.2)
    write_wav(tmp_path / "stop.wav", 0.8, 0.0, freq=400)
    scenario = parse(
        {"name": "barge in", "steps": [
            {"say": "q.wav"}, {"wait_for": AUDIO}, {"wait": 2.0}, {"say": "stop.wav"},
            # the reply pauses at once; the clear comes when the words say "stop" (issue 12)
            {"wait": 1.0}, {"expect": "clear"}, {"wait": 1.5},
        ]},
        base_dir=tmp_path,
    )
    async with serving(application) as host:
        report = await api.run_scenario(f"ws://{host}/twilio/media", scenario, config=CONFIG)
        await asyncio.wait_for(rec.done.wait(), 10)
    assert report.result.failed_expectations == []
    assert report.result.clears_received >= 1
    messages = rec.ended[0].messages_json()
    assert messages[0] == {"role": "user", "content": "tell me everything"}
    heard = messages[1]
    assert heard["role"] == "assistant" and heard.get("interrupted") is True
    full = "".join(long).strip()
    assert heard["content"] and full.startswith(heard["content"].strip())
    assert len(heard["content"]) < len(full) / 2  # 2 s of a ~15 s reply was heard
    assert messages[2] == {"role": "user", "content": "stop"}
    assert await voicekit_tasks() == []


async def test_dtmf_digits_arrive_as_events(tmp_path):
    rec = Recorder([], echo_reply)
    application = vk.serve.app(rec.on_call, dev=True, on_end=rec.on_end)
    scenario = parse({"name": "keys", "steps": [{"wait": 0.3}, {"dtmf": "12#"}, {"wait": 0.3}]})
    async with serving(application) as host:
        await api.run_scenario(f"ws://{host}/twilio/media", scenario,
                               config=SessionConfig(response_timeout_s=1, quiet_period_s=0.2))
        await asyncio.wait_for(rec.done.wait(), 10)
    assert [d.digit for d in rec.of(Dtmf)] == ["1", "2", "#"]
    assert all(b.t >= a.t for a, b in zip(rec.of(Dtmf), rec.of(Dtmf)[1:], strict=False))


@pytest.mark.parametrize("when", ["before start", "mid reply"])
async def test_a_hang_up_leaves_nothing_running(tmp_path, when):
    long = [f"Sentence {i} of a reply the caller never hears to its end. " for i in range(20)]
    rec = Recorder(["go on"], lambda messages: long)
    application = vk.serve.app(rec.on_call, dev=True, on_end=rec.on_end, grace=0.3)
    write_wav(tmp_path / "q.wav", 1.0, 0.2)
    async with serving(application) as host:
        url = f"ws://{host}/twilio/media"
        if when == "before start":
            async with websockets.connect(url) as ws:
                await ws.send(json.dumps({"event": "connected", "protocol": "Call"}))
            await asyncio.sleep(0.2)
        else:
            steps = [{"say": "q.wav"}, {"wait_for": AUDIO}, {"wait": 0.5}, "hangup"]
            scenario = parse({"name": "hang up", "steps": steps}, base_dir=tmp_path)
            report = await api.run_scenario(url, scenario, config=CONFIG)
            assert report.spoke
            await asyncio.wait_for(rec.done.wait(), 5)  # on_end within the grace, not 20 s
            assert rec.of(CallEnded)[-1].reason == "dropped"
        assert await voicekit_tasks() == []
        state = application.state.voicekit
        assert state.calls == 0


async def test_a_hang_up_mid_llm_request_closes_the_request(tmp_path):
    asked, closed = asyncio.Event(), asyncio.Event()

    async def llm(messages: Any) -> AsyncIterator[str]:
        asked.set()
        try:
            await asyncio.Event().wait()  # an LLM that never answers
            yield "never"
        finally:
            closed.set()

    rec = Recorder(["are you there"], llm)
    application = vk.serve.app(rec.on_call, dev=True, on_end=rec.on_end, grace=0.3)
    write_wav(tmp_path / "q.wav", 1.0, 0.2)
    steps = [{"say": "q.wav"}, {"wait": 1.5}, "hangup"]
    scenario = parse({"name": "hang up mid-LLM", "steps": steps}, base_dir=tmp_path)
    async with serving(application) as host:
        await api.run_scenario(f"ws://{host}/twilio/media", scenario, config=CONFIG)
        assert asked.is_set(), "the turn ended and the LLM was asked before the hang-up"
        await asyncio.wait_for(closed.wait(), 5)  # the request is closed, not left hanging
        await asyncio.wait_for(rec.done.wait(), 5)
        assert await voicekit_tasks() == []
    (session,) = rec.ended
    assert session.call_id == rec.of(CallStarted)[0].call_id
    assert rec.of(CallEnded)[-1].reason == "dropped"


async def test_the_send_receive_race_with_a_real_socket(caplog):
    """The peer vanishes while the server is sending flat out: the receive side ends the call,
    the failed send is logged once, and later sends are skipped."""
    sending = asyncio.Event()

    async def on_call(call: Any) -> None:
        async def flood() -> AsyncIterator[Any]:
            async for item in call.inbound:
                if isinstance(item, CallStarted):
                    for i in range(100_000):
                        yield vk.AudioChunk(np.full(160, 1000, np.int16), 8000, i * 0.02)
                        if i == 50:
                            sending.set()
                if isinstance(item, CallEnded):
                    return

        await call.outbound(flood())

    ended: list[vk.Session] = []
    application = vk.serve.app(on_call, dev=True, lead=1000.0, on_end=ended.append, grace=2.0)
    caplog.set_level(logging.INFO, logger="voicekit.transports")
    async with serving(application) as host:
        ws = await websockets.connect(f"ws://{host}/twilio/media")
        await ws.send(start_message("CArace"))
        await asyncio.wait_for(sending.wait(), 5)
        ws.transport.abort()  # the TCP connection drops mid-send: no close handshake
        for _ in range(500):
            if ended:
                break
            await asyncio.sleep(0.01)
        assert [s.call_id for s in ended] == ["CArace"]
        assert await voicekit_tasks() == []
    failures = [r for r in caplog.records if "send failed" in r.getMessage()]
    assert len(failures) <= 1


def start_message(call_sid: str, **params: str) -> str:
    return json.dumps({
        "event": "start", "sequenceNumber": "1", "streamSid": "MZ" + call_sid,
        "start": {"streamSid": "MZ" + call_sid, "callSid": call_sid, "customParameters": params},
    })


async def test_a_protocol_error_ends_only_that_call():
    started: list[str] = []

    async def on_call(call: Any) -> None:
        started.append(call.session.call_id)
        async for _ in call.inbound:
            pass

    application = vk.serve.app(on_call, dev=True)
    async with serving(application) as host:
        url = f"ws://{host}/twilio/media"
        async with websockets.connect(url) as good, websockets.connect(url) as bad:
            await good.send(start_message("CAgood"))
            await bad.send(json.dumps({"event": "media", "media": {"payload": "//8="}}))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(bad.recv(), 5)
            assert closed.value.rcvd.code == 1008
            await good.send(json.dumps({"event": "dtmf", "streamSid": "MZCAgood",
                                        "dtmf": {"digit": "5"}}))
            await asyncio.sleep(0.2)
            assert started == ["CAgood"]  # the bad one never reached on_call
            assert good.state.name == "OPEN"


async def test_signature_and_token_checks(monkeypatch):
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "test-auth-token-123")
    rec = Recorder([], echo_reply)
    public = "https://voice.example.test"
    application = vk.serve.app(rec.on_call, public_url=public, on_end=rec.on_end)
    form = {"CallSid": "CAsig1", "From": "+15550001111", "To": "+15550002222"}
    good = twilio.signature("test-auth-token-123", public + "/twilio/voice", form)
    async with serving(application) as host, httpx.AsyncClient(base_url=f"http://{host}") as http:
        bad = await http.post("/twilio/voice", data=form, headers={"X-Twilio-Signature": "nope"})
        assert bad.status_code == 403
        answer = await http.post("/twilio/voice", data=form, headers={"X-Twilio-Signature": good})
        assert answer.status_code == 200
        xml = answer.text
        assert '<Stream url="wss://voice.example.test/twilio/media">' in xml
        params = dict(re.findall(r'<Parameter name="([^"]+)" value="([^"]*)"/>', xml))
        assert params["caller"] == "+15550001111" and params["callee"] == "+15550002222"
        token = params["token"]
        url = f"ws://{host}/twilio/media"
        # no token, a token for another call: refused before any audio, on_call never runs
        for identity, custom in [
            (StreamIdentity(call_sid="CAsig1"), {}),
            (StreamIdentity(call_sid="CAother"), {"token": token}),
        ]:
            result = await SimCall(url, [b"\xff" * 160] * 5, identity=identity,
                                   config=SessionConfig(response_timeout_s=1,
                                                        custom_parameters=custom)).run()
            assert not result.audio_received
        assert rec.ended == []
        # the right token works once
        ok = SessionConfig(response_timeout_s=1, quiet_period_s=0.2,
                           custom_parameters={**params})
        await SimCall(url, [b"\xff" * 160] * 5, identity=StreamIdentity(call_sid="CAsig1"),
                      config=ok).run()
        await asyncio.wait_for(rec.done.wait(), 5)
        assert [s.call_id for s in rec.ended] == ["CAsig1"]
        assert all(x.parameters.get("token") is None for x in rec.of(CallStarted))
        again = await SimCall(url, [b"\xff" * 160] * 5, identity=StreamIdentity(call_sid="CAsig1"),
                              config=ok).run()
        assert not again.audio_received and len(rec.ended) == 1


def test_the_app_refuses_to_start_without_credentials(monkeypatch):
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    with pytest.raises(vk.ConfigError, match="TWILIO_AUTH_TOKEN is not set"):
        vk.serve.app(lambda call: None)
    with pytest.raises(vk.ConfigError, match="loopback"):
        vk.serve.app(lambda call: None, dev=True, host="0.0.0.0")


async def test_readyz_is_503_at_max_calls_and_while_draining():
    release = asyncio.Event()

    async def on_call(call: Any) -> None:
        await release.wait()

    application = vk.serve.app(on_call, dev=True, max_calls=1)
    async with serving(application) as host, httpx.AsyncClient(base_url=f"http://{host}") as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).status_code == 200
        async with websockets.connect(f"ws://{host}/twilio/media") as ws:
            await ws.send(start_message("CAone"))
            for _ in range(100):
                if application.state.voicekit.calls:
                    break
                await asyncio.sleep(0.01)
            assert (await http.get("/readyz")).status_code == 503
            async with websockets.connect(f"ws://{host}/twilio/media") as second:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(second.recv(), 5)
                assert closed.value.rcvd.code == 1013
            release.set()
        for _ in range(100):
            if not application.state.voicekit.calls:
                break
            await asyncio.sleep(0.01)
        assert (await http.get("/readyz")).status_code == 200
        application.state.voicekit.draining = True
        assert (await http.get("/readyz")).status_code == 503


async def test_the_generic_ws_route_speaks_pcm_and_json():
    async def on_call(call: Any) -> None:
        async def answer() -> AsyncIterator[Any]:
            async for item in call.inbound:
                if isinstance(item, vk.AudioChunk):
                    yield vk.AudioChunk(np.full(item.frames, 500, np.int16), 16000, item.t)
                elif isinstance(item, Dtmf):
                    yield Mark(f"after-{item.digit}")
                elif isinstance(item, Played):
                    yield vk.Interrupted()
                elif isinstance(item, CallEnded):
                    break
            yield SessionUpdated(call.session.add_user("done"))

        await call.outbound(answer())

    ended: list[vk.Session] = []
    application = vk.serve.app(on_call, dev=True, on_end=ended.append)
    async with serving(application) as host, websockets.connect(f"ws://{host}/ws") as ws:
        await ws.send(json.dumps({"type": "start", "call_id": "web-1", "acks": True}))
        await ws.send(np.full(320, 100, "<i2").tobytes())  # 20 ms at 16 kHz
        audio = b""
        while len(audio) < 600:
            frame = await asyncio.wait_for(ws.recv(), 5)
            assert isinstance(frame, bytes)
            audio += frame
        assert set(np.frombuffer(audio, "<i2").tolist()) == {500}
        await ws.send(json.dumps({"type": "dtmf", "digit": "7"}))
        mark = await asyncio.wait_for(ws.recv(), 5)
        while isinstance(mark, bytes):
            mark = await asyncio.wait_for(ws.recv(), 5)
        assert json.loads(mark) == {"type": "mark", "name": "after-7"}
        await ws.send(json.dumps({"type": "played", "name": "after-7"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "clear"}
        await ws.send(json.dumps({"type": "stop"}))
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
    assert [s.messages_json() for s in ended] == [[{"role": "user", "content": "done"}]]


async def test_the_ws_route_wants_its_token(monkeypatch):
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "test-auth-token-123")
    calls: list[str] = []

    async def on_call(call: Any) -> None:
        calls.append(call.session.call_id)

    application = vk.serve.app(on_call, ws_token="ws-secret-456")
    async with serving(application) as host:
        async with websockets.connect(f"ws://{host}/ws") as ws:
            await ws.send(json.dumps({"type": "start", "call_id": "x", "token": "wrong"}))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd.code == 1008
        async with websockets.connect(f"ws://{host}/ws") as ws:
            await ws.send(json.dumps({"type": "start", "call_id": "y", "token": "ws-secret-456"}))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd.code == 1000  # on_call returned: we closed
    assert calls == ["y"]


async def test_inbound_ms_gathers_the_callers_audio_in_longer_chunks_keeping_order():
    seen: list[Any] = []

    async def on_call(call: Any) -> None:
        async for item in call.inbound:
            seen.append(item)

    application = vk.serve.app(on_call, dev=True, inbound_ms=60, on_end=lambda s: None)
    payload = base64.b64encode(b"\xff" * 160).decode()
    frame = json.dumps({"event": "media", "streamSid": "MZCAin", "media": {
        "track": "inbound", "chunk": "1", "timestamp": "0", "payload": payload}})
    async with serving(application) as host:
        ws = await websockets.connect(f"ws://{host}/twilio/media")
        await ws.send(start_message("CAin"))
        for _ in range(10):
            await ws.send(frame)
        await ws.send(json.dumps({"event": "dtmf", "streamSid": "MZCAin",
                                  "dtmf": {"digit": "9"}}))
        for _ in range(4):
            await ws.send(frame)
        await ws.send(json.dumps({"event": "stop", "streamSid": "MZCAin", "stop": {}}))
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
    kinds = [type(x).__name__ for x in seen]
    assert kinds[0] == "CallStarted" and kinds[-1] == "CallEnded"
    audio = [x for x in seen if isinstance(x, vk.AudioChunk)]
    before = [x for x in seen[: kinds.index("Dtmf")] if isinstance(x, vk.AudioChunk)]
    assert all(c.rate == 16000 for c in audio)
    assert all(c.frames >= 960 for c in before[:-1])  # 60 ms at 16 kHz, the rest before the key
    assert sum(c.frames for c in before) > 9 * 320  # the audio sent before the key came first
    for a, b in itertools.pairwise(audio):
        assert b.t == pytest.approx(a.end)  # one continuous stream
