"""AudioHook against real peers on 127.0.0.1: ``voicekit.serve.app(carrier="audiohook")`` run by
uvicorn, driven by an independent Genesys-like client (tests/servers/audiohook_client.py) that
signs its handshake, streams paced stereo PCMU and holds every server message to the rules."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import numpy as np
import pytest
from servers.audiohook_client import DROP, AudioHookClient, Refused, sign_headers, unmulaw
from servers.serving import agent_for, serving, voicekit_tasks

import voicekit as vk
import voicekit.serve
from voicekit.events import AudioChunk, CallEnded, CallStarted, Dtmf, Played
from voicekit.stt import fake
from voicekit.transports import agent_call, audiohook, transcriber
from voicekit.vad import energy, vad

SECRET = b"a-client-secret-of-32-bytes-long"
KEYS = f"test-key:{base64.b64encode(SECRET).decode()},open-key:"
RATE = 8000


def tone(seconds: float, freq: float = 300.0, amp: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


class Bot:
    """The offline agent behind the Audio Connector, recording what reached it."""

    def __init__(self, transcripts: list[str], reply: Any) -> None:
        self.inbound: list[Any] = []
        self.ended: list[vk.Session] = []
        self.done = asyncio.Event()
        self.calls = 0

        def agent(session: vk.Session) -> Any:
            return vk.tap(self.inbound.append) | agent_for(session, transcripts, reply)

        inner = agent_call(agent)

        async def on_call(call: Any) -> None:
            self.calls += 1
            await inner(call)

        self.on_call = on_call

    def on_end(self, session: vk.Session) -> None:
        self.ended.append(session)
        self.done.set()

    def of(self, kind: type) -> list[Any]:
        return [x for x in self.inbound if isinstance(x, kind)]


def signed(host: str) -> AudioHookClient:
    return AudioHookClient(f"ws://{host}/audiohook", secret=SECRET)


def unsigned(host: str) -> AudioHookClient:
    return AudioHookClient(f"ws://{host}/audiohook", api_key="open-key")


def echo(messages: Any) -> list[str]:
    return [f"You said {messages[-1]['content']}. ", "Anything else?"]


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("VOICEKIT_AUDIOHOOK_KEYS", KEYS)


async def test_a_stereo_audio_connector_call_with_barge_in_dtmf_and_transfer(keys):
    long = ["This is the first sentence of a long answer. "] + [
        f"Here comes sentence number {i} of it, which goes on for a while. " for i in range(2, 9)
    ]
    bot = Bot(["tell me everything", "stop"], lambda messages: long)
    application = vk.serve.app(bot.on_call, carrier="audiohook", on_end=bot.on_end)
    async with serving(application) as host:
        client = AudioHookClient(f"ws://{host}/audiohook", secret=SECRET)
        async with client:
            opened = await client.open()
            assert opened["parameters"]["media"] == [
                {"type": "audio", "format": "PCMU", "channels": ["external", "internal"],
                 "rate": 8000}
            ]
            # the caller asks (the contact center's side stays silent), then waits for audio
            await client.stream(tone(1.0), silence(1.0))
            quiet = asyncio.create_task(client.stream(silence(30.0), silence(30.0)))
            for _ in range(200):
                if len(client.record.audio) >= 5:
                    break
                await asyncio.sleep(0.05)
            quiet.cancel()
            await asyncio.gather(quiet, return_exceptions=True)
            assert len(client.record.audio) >= 5, "the agent never answered"
            barge = client.expect("event")
            # the caller talks over it, then is quiet (the line carries audio on, as Genesys's
            # does): the pause after the words ends the speech, and its words ("stop") cut it
            await client.stream(np.concatenate([tone(0.8, 400), silence(0.8)]), silence(1.6))
            try:
                event = await asyncio.wait_for(barge, 10)
            except TimeoutError:
                heard = [type(x).__name__ for x in bot.of(object) if type(x).__name__ == "Played"]
                raise AssertionError(f"no barge-in after {len(client.record.audio)} packets, "
                                     f"{len(heard)} marks played") from None
            assert event["parameters"]["entities"] == [{"type": "barge_in", "data": {}}]
            await client.send("dtmf", {"digit": "1"})
            disconnected = client.expect("disconnect")
            await client.send("dtmf", {"digit": "0"})  # the transfer digit
            message = await asyncio.wait_for(disconnected, 10)
            record = await client.ended()
        await asyncio.wait_for(bot.done.wait(), 10)
    assert message["parameters"]["reason"] == "completed"
    assert message["parameters"]["outputVariables"] == {"action": "transfer", "digit": "0"}
    assert record.violations == []
    assert record.of("closed") and not record.closed_by_server  # we answered its close
    # the agent's speech: fixed 1,600-byte PCMU packets (a sentence's tail padded)
    assert {len(a) for a in record.audio} == {1600}
    assert np.abs(unmulaw(b"".join(record.audio))).max() > 1000
    assert [d.digit for d in bot.of(Dtmf)] == ["1", "0"]
    (started,) = bot.of(CallStarted)
    assert started.carrier == "audiohook" and started.stream_id == client.session_id
    (session,) = bot.ended
    assert session.caller == "+13175550000" and "+1317" not in repr(session)
    messages = session.messages_json()
    assert messages[0] == {"role": "user", "content": "tell me everything"}
    assert messages[1].get("interrupted") is True  # heard only as far as the send clock played
    assert 0 < len(messages[1]["content"]) < len("".join(long).strip()) / 2
    assert await voicekit_tasks() == []


async def test_the_agent_finishing_sends_disconnect_with_action_finished(keys):
    async def on_call(call: Any) -> None:
        async for item in call.inbound:
            if isinstance(item, AudioChunk):
                break  # hear the caller, then be done

    application = vk.serve.app(on_call, carrier="audiohook")
    async with serving(application) as host, signed(host) as client:
        await client.open()
        disconnected = client.expect("disconnect")
        streaming = asyncio.create_task(client.stream(tone(2.0), silence(2.0)))
        message = await asyncio.wait_for(disconnected, 10)
        record = await client.ended()
        streaming.cancel()
        await asyncio.gather(streaming, return_exceptions=True)
    assert message["parameters"] == {"reason": "completed",
                                     "outputVariables": {"action": "finished"}}
    assert record.violations == [] and record.of("closed")
    assert await voicekit_tasks() == []


async def test_ping_update_discarded_playback_and_error_messages_mid_call(keys):
    bot = Bot([], echo)
    application = vk.serve.app(bot.on_call, carrier="audiohook", on_end=bot.on_end)
    async with serving(application) as host:
        async with signed(host) as client:
            await client.open(supportedLanguages=True)
            pong = client.expect("pong")
            await client.send("ping", {"rtt": "PT0.021S"})
            assert (await asyncio.wait_for(pong, 5))["parameters"] == {}
            await client.send("update", {"language": "fr-FR"})
            await client.send("discarded", {"start": "PT0S", "discarded": "PT0.2S"})
            await client.send("playback_started")
            await client.send("playback_completed")
            await client.send("error", {"code": 500, "message": "a client-side hiccup"})
            await client.stream(silence(0.2), silence(0.2))
            closed = await client.close()
            record = await client.ended()
        await asyncio.wait_for(bot.done.wait(), 10)
    assert record.violations == []
    assert record.of("opened")[0]["parameters"]["supportedLanguages"] == ["en-US"]
    assert closed["parameters"] == {}
    assert [p.name for p in bot.of(Played)] == ["playback_started", "playback_completed"]
    assert bot.of(CallEnded)[-1].reason == "hangup"
    assert await voicekit_tasks() == []


async def test_pause_and_resume_are_asked_by_the_server_and_audio_while_paused_is_dropped(keys):
    heard: list[float] = []
    asked: list[bool] = []

    async def on_call(call: Any) -> None:
        async for item in call.inbound:
            if isinstance(item, AudioChunk):
                heard.append(item.duration)
                if sum(heard) >= 0.3 and not asked:
                    await call.send(audiohook.Pause())
                    asked.append(True)
            elif isinstance(item, CallEnded):
                break

    application = vk.serve.app(on_call, carrier="audiohook")
    async with serving(application) as host, signed(host) as client:
        await client.open()
        paused = client.expect("pause")
        streaming = asyncio.create_task(client.stream(tone(1.0), silence(1.0)))
        await asyncio.wait_for(paused, 5)
        await streaming
        closed = await client.close()
        record = await client.ended()
    types = [m["type"] for m in record.messages]
    assert types == ["opened", "pause", "closed"]
    assert record.violations == [] and closed["clientseq"] == client.seq
    got = sum(heard)
    assert client.paused_at is not None and client.paused_at < 0.95
    # everything sent before `paused` was heard (less the resampler's few ms), nothing after
    assert client.paused_at - 0.03 <= got <= client.paused_at + 0.001
    assert await voicekit_tasks() == []


async def test_a_transcription_session_sends_transcripts_of_both_channels(keys):
    texts = {"external": ["hello i need help"], "internal": ["sure how can i help"]}

    def stt_for(channel: str) -> Any:
        return lambda: fake(transcripts=list(texts[channel]))

    made: list[str] = []

    def stt() -> Any:
        channel = "external" if not made else "internal"
        made.append(channel)
        return stt_for(channel)()

    ended: list[vk.Session] = []
    on_call = transcriber(
        stt, vad=lambda: vad(detector=energy(), min_volume=0, stop_secs=0.2)
    )
    application = vk.serve.app(on_call, carrier="audiohook", mode="monitor",
                               on_end=ended.append)
    external = np.concatenate([tone(1.0), silence(2.5)])
    internal = np.concatenate([silence(1.7), tone(1.0, 500), silence(0.8)])
    async with serving(application) as host, signed(host) as client:
        await client.open()
        await client.stream(external, internal)
        for _ in range(100):
            if len(client.record.of("event")) >= 2:
                break
            await asyncio.sleep(0.05)
        closed = await client.close()
        record = await client.ended()
    assert record.violations == [] and closed["parameters"] == {}
    assert record.audio == []  # the monitor never talks
    entities = [e for m in record.of("event") for e in m["parameters"]["entities"]]
    by_channel = {e["data"]["channel"]: e["data"] for e in entities}
    assert set(by_channel) == {"external", "internal"}
    ext, inn = by_channel["external"], by_channel["internal"]
    assert ext["alternatives"][0]["interpretations"][0]["transcript"] == "hello i need help"
    assert inn["alternatives"][0]["interpretations"][0]["transcript"] == "sure how can i help"
    assert ext["alternatives"][0]["languages"] == ["en-US"] and ext["isFinal"] is True
    offset = audiohook.parse_duration(ext["offset"])
    duration = audiohook.parse_duration(ext["duration"])
    assert offset < 0.3 and 0.8 < duration < 1.6  # the first tone, on the position clock
    assert 1.5 < audiohook.parse_duration(inn["offset"]) < 2.0
    (session,) = ended
    assert [m["role"] for m in session.messages_json()] == ["user", "assistant"]
    assert await voicekit_tasks() == []


async def test_transcript_offsets_follow_the_position_over_discarded_audio(keys):
    on_call = transcriber(
        lambda: fake(transcripts=["first", "second"]),
        vad=lambda: vad(detector=energy(), min_volume=0, stop_secs=0.2),
    )
    application = vk.serve.app(on_call, carrier="audiohook", mode="monitor")
    speech = np.concatenate([tone(1.0), silence(0.6)])
    async with serving(application) as host, signed(host) as client:
        await client.open(media=[{"type": "audio", "format": "PCMU", "channels": ["external"],
                                  "rate": 8000}])
        await client.stream(speech)
        await client.send("discarded", {"start": f"PT{client.position:.3f}S",
                                        "discarded": "PT5S"})
        client.position += 5.0
        await client.stream(speech)
        for _ in range(100):
            if len(client.record.of("event")) >= 2:
                break
            await asyncio.sleep(0.05)
        await client.close()
        record = await client.ended()
    assert record.violations == []
    data = [e["data"] for m in record.of("event") for e in m["parameters"]["entities"]]
    offsets = [audiohook.parse_duration(d["offset"]) for d in data]
    assert len(offsets) == 2 and offsets[0] < 0.3
    assert 6.4 < offsets[1] < 6.9  # 1.6 s of audio, 5 s discarded, then the second tone


async def test_a_connection_probe_is_answered_and_starts_nothing(keys):
    bot = Bot([], echo)
    application = vk.serve.app(bot.on_call, carrier="audiohook")
    zero = audiohook.NULL_UUID
    async with serving(application) as host, signed(host) as client:
        opened = await client.open(conversation_id=zero, participant_id=zero)
        closed = await client.close()
        record = await client.ended()
    assert opened["parameters"]["media"] and closed["type"] == "closed"
    assert record.violations == [] and bot.calls == 0
    assert await voicekit_tasks() == []


RULES = [
    ("wrong seq", lambda c: c.send("ping", seq=c.seq + 5), "seq"),
    ("serverseq too high", lambda c: c.send("ping", serverseq=c.serverseq + 3), "serverseq"),
    ("wrong id", lambda c: c.send("ping", id="11111111-2222-3333-4444-555555555555"), "id"),
    ("missing parameters", lambda c: c.send("ping", DROP), "parameters"),
    ("oversize text", lambda c: c.send("update", {"language": "x" * 70000}), "64 KiB"),
    ("not json", lambda c: c.send_raw("{not json"), "JSON"),
    ("unknown type", lambda c: c.send("pause"), "'pause' is not a client message type"),
]


@pytest.mark.parametrize(("name", "breach", "info"), RULES, ids=[r[0] for r in RULES])
async def test_a_broken_rule_gets_disconnect_error_and_the_call_ends_cleanly(
    keys, name, breach, info
):
    bot = Bot([], echo)
    application = vk.serve.app(bot.on_call, carrier="audiohook", on_end=bot.on_end)
    async with serving(application) as host:
        async with signed(host) as client:
            await client.open()
            await client.stream(silence(0.1), silence(0.1))
            disconnected = client.expect("disconnect")
            await breach(client)
            message = await asyncio.wait_for(disconnected, 5)
            record = await client.ended()
        await asyncio.wait_for(bot.done.wait(), 10)
    assert message["parameters"]["reason"] == "error"
    assert info in message["parameters"]["info"]
    (closed,) = record.of("closed")  # our close after the disconnect was answered,
    assert closed["clientseq"] == client.seq  # and counted as the last message processed
    assert record.violations == []
    assert bot.of(CallEnded)[-1].reason == "error"
    assert await voicekit_tasks() == []


async def test_audio_before_opened_is_dropped(keys):
    bot = Bot([], echo)
    application = vk.serve.app(bot.on_call, carrier="audiohook", on_end=bot.on_end)
    async with serving(application) as host:
        async with signed(host) as client:
            await client.stream(tone(0.5), tone(0.5), speed=10)  # before open
            await client.open()
            client.position = 0.0
            await client.stream(silence(0.4), silence(0.4))
            await client.close()
            record = await client.ended()
        await asyncio.wait_for(bot.done.wait(), 10)
    assert record.violations == []
    got = sum(c.duration for c in bot.of(AudioChunk))
    assert got < 0.45  # only the 0.4 s after opened (less the resampler's delay)
    assert all(np.abs(c.samples).max() < 100 for c in bot.of(AudioChunk))
    assert await voicekit_tasks() == []


@pytest.mark.parametrize("step", ["before open", "after open", "mid stream", "mid reply"])
async def test_a_remote_drop_at_each_step_leaves_nothing_running(keys, step):
    long = [f"Sentence {i} of a reply nobody hears to its end. " for i in range(20)]
    bot = Bot(["go on"], lambda messages: long)
    application = vk.serve.app(bot.on_call, carrier="audiohook", on_end=bot.on_end, grace=0.3)
    async with serving(application) as host:
        client = AudioHookClient(f"ws://{host}/audiohook", secret=SECRET)
        async with client:
            if step != "before open":
                await client.open()
            if step == "mid stream":
                await client.stream(tone(0.3), silence(0.3))
            if step == "mid reply":
                await client.stream(tone(1.0), silence(1.0))
                quiet = asyncio.create_task(client.stream(silence(20), silence(20)))
                for _ in range(200):
                    if client.record.audio:
                        break
                    await asyncio.sleep(0.05)
                quiet.cancel()
                await asyncio.gather(quiet, return_exceptions=True)
                assert client.record.audio
            assert client.ws is not None
            client.ws.transport.abort()  # no close frame: the socket just goes
        if step != "before open":
            await asyncio.wait_for(bot.done.wait(), 5)
            assert bot.of(CallEnded)[-1].reason == "dropped"
        assert await voicekit_tasks() == []
    assert await voicekit_tasks() == []


def expired(url: str, headers: dict[str, str]) -> dict[str, str]:
    now = int(time.time())
    return sign_headers(url, headers, SECRET, created=now - 400, expires=now - 100)


@pytest.mark.parametrize("case", ["bad signature", "expired", "unknown key", "unsigned",
                                  "replayed nonce"])
async def test_a_bad_handshake_is_refused_after_a_fixed_delay(keys, case, caplog):
    bot = Bot([], echo)
    application = vk.serve.app(bot.on_call, carrier="audiohook")
    async with serving(application) as host:
        url = f"ws://{host}/audiohook"
        kwargs: dict[str, Any] = {"secret": SECRET}
        if case == "bad signature":
            kwargs = {"secret": b"not the secret"}
        elif case == "unknown key":
            kwargs = {"secret": SECRET, "api_key": "nobody"}
        elif case == "unsigned":
            kwargs = {}
        elif case == "expired":
            probe = AudioHookClient(url, secret=SECRET)
            base = {k: v for k, v in probe.headers.items() if not k.startswith("Signature")}
            kwargs = {"session_id": probe.session_id, "signature": expired(url, base),
                      "extra_headers": {k: base[k] for k in base if k != "Audiohook-Session-Id"}}
        else:  # the same signed request twice: the second is a replay
            first = AudioHookClient(url, secret=SECRET)
            async with first:
                await first.open()
                await first.close()
                await first.ended()
            kwargs = {"session_id": first.session_id,
                      "signature": {k: first.headers[k] for k in ("Signature-Input",
                                                                 "Signature")},
                      "extra_headers": {k: first.headers[k] for k in
                                        ("Audiohook-Correlation-Id",)}}
        began = time.monotonic()
        with pytest.raises(Refused) as refused:
            async with AudioHookClient(url, **kwargs):
                pass
        took = time.monotonic() - began
    assert refused.value.status == 401
    assert took >= 0.45  # the fixed delay: no timing oracle
    assert bot.calls == (1 if case == "replayed nonce" else 0)  # only the first, genuine one
    assert "a-client-secret" not in caplog.text and "test-key" not in caplog.text
    assert await voicekit_tasks() == []


async def test_a_key_without_secret_accepts_unsigned_and_no_keys_refuses_to_start(monkeypatch):
    monkeypatch.setenv("VOICEKIT_AUDIOHOOK_KEYS", "open-key:")
    bot = Bot([], echo)
    application = vk.serve.app(bot.on_call, carrier="audiohook")
    async with serving(application) as host, unsigned(host) as client:
        await client.open()
        await client.close()
        record = await client.ended()
    assert record.violations == []
    monkeypatch.delenv("VOICEKIT_AUDIOHOOK_KEYS")
    with pytest.raises(vk.ConfigError, match="VOICEKIT_AUDIOHOOK_KEYS"):
        vk.serve.app(bot.on_call, carrier="audiohook")
    assert vk.serve.app(bot.on_call, carrier="audiohook", dev=True)


async def test_a_429_from_the_client_holds_our_audio_back(keys):
    async def on_call(call: Any) -> None:
        async def speak() -> Any:
            for _ in range(15):  # 3 s of tone in 200 ms pieces
                yield AudioChunk(tone(0.2, 440), RATE)

        await speak_into(call, speak())

    async def speak_into(call: Any, items: Any) -> None:
        await call.outbound(items)
        async for item in call.inbound:
            if isinstance(item, CallEnded):
                break

    application = vk.serve.app(on_call, carrier="audiohook")
    async with serving(application) as host, signed(host) as client:
        await client.open()
        loop = asyncio.get_running_loop()
        while len(client.record.audio) < 4:  # noqa: ASYNC110 - frames, not an event
            await asyncio.sleep(0.01)
        await client.send("error", {"code": 429, "message": "Too many requests",
                                    "retryAfter": "PT1.5S"})
        sent_at = loop.time()
        while len(client.record.audio) < 15 and loop.time() - sent_at < 10:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await client.close()
        record = await client.ended()
    after = [t for t in record.audio_at if t > sent_at]
    gaps = np.diff([sent_at, *after])
    # at most one frame already on its way, then nothing for the 1.5 s asked (minus jitter)
    assert len(record.audio) == 15 and gaps.max() >= 1.3
    assert await voicekit_tasks() == []


def test_the_route_is_ws_audiohook(keys):
    application = vk.serve.app(lambda call: None, carrier="audiohook")  # type: ignore[arg-type]
    assert sorted(r.path for r in application.routes) == ["/audiohook", "/healthz", "/readyz"]
