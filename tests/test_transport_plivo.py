"""Plivo Audio Streams: every protocol rule of the codec, the answer XML, and a call placed by a
fake Plivo peer (tests/servers/fake_plivo.py) against a real WebSocket server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl
from xml.etree import ElementTree

import numpy as np
import pytest
from servers import fake_plivo
from servers.codec_server import CodecServer
from servers.fake_carrier import caller_audio
from servers.fake_plivo import PlivoCall
from servers.serving import Recorder, serving, voicekit_tasks

import voicekit as vk
import voicekit.serve
from voicekit import ConfigError, ProtocolError
from voicekit.audio import ulaw_decode_bytes
from voicekit.events import (
    AudioChunk,
    CallEnded,
    CallStarted,
    Dtmf,
    Interrupted,
    Mark,
    Played,
    Sentence,
)
from voicekit.transports import plivo
from voicekit.transports.plivo import PlivoState

CODEC = plivo.codec()
ULAW = bytes(range(0, 256, 16))
HEADERS = plivo.extra_headers({"caller": "+15550001111", "callee": "+15550002222", "token": "t.k"})


def msg(event: str, **fields: Any) -> str:
    return json.dumps({"event": event, **fields})


def start_msg(extra: Any = HEADERS, **start: Any) -> str:
    body: dict[str, Any] = {
        "callId": "call-1",
        "streamId": "stream-1",
        "accountId": "MA1",
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
    }
    body.update(start)
    return msg("start", sequenceNumber=1, start=body, extra_headers=extra)


def media_msg(raw: bytes = ULAW, track: str = "inbound", stream: str = "stream-1") -> str:
    payload = base64.b64encode(raw).decode()
    media = {"track": track, "timestamp": "1705312200000", "chunk": 1, "payload": payload}
    return msg("media", sequenceNumber=2, streamId=stream, media=media)


def run(*messages: str, state: Any = None) -> tuple[PlivoState, list[Any]]:
    state = CODEC.initial() if state is None else state
    events: list[Any] = []
    for m in messages:
        state, out = CODEC.decode(state, m)
        events += out
    return state, events


def started() -> PlivoState:
    return run(start_msg())[0]


def test_codec_value() -> None:
    assert (CODEC.name, CODEC.rate, CODEC.frame_ms) == ("plivo", 8000, 20)
    assert CODEC.acknowledges is True
    with pytest.raises(ConfigError, match="max_message"):
        plivo.codec(max_message=-1)


def test_start_gives_call_started_with_parties_from_extra_headers() -> None:
    state, (call,) = run(start_msg())
    assert isinstance(call, CallStarted)
    assert (call.call_id, call.stream_id, call.carrier, call.acknowledges) == (
        "call-1",
        "stream-1",
        "plivo",
        True,
    )
    assert (call.caller, call.callee) == ("+15550001111", "+15550002222")
    assert dict(call.parameters) == {"token": "t.k"}
    assert state.phase == "started" and state.stream_id == "stream-1"


@pytest.mark.parametrize(
    "extra",
    [
        "X-PH-vkcaller=2b31;lang=en",
        "vkcaller=2b31,lang=en",
        json.dumps({"vkcaller": "2b31", "lang": "en"}),
        {"vkcaller": "2b31", "lang": "en"},
    ],
)
def test_extra_headers_forms(extra: Any) -> None:
    _, (call,) = run(start_msg(extra))
    assert call.caller == "+1" and dict(call.parameters) == {"lang": "en"}


def test_start_without_extra_headers() -> None:
    _, (call,) = run(start_msg(None))
    assert (call.caller, call.callee, dict(call.parameters)) == ("", "", {})


def test_media_decodes_at_stream_time() -> None:
    state, events = run(media_msg(), media_msg(), state=started())
    assert events[0] == ulaw_decode_bytes(ULAW, t=0.0)
    assert events[1].t == pytest.approx(16 / 8000)
    assert state.samples == 32


def test_media_outbound_and_empty_are_skipped() -> None:
    state, events = run(media_msg(track="outbound"), media_msg(b""), state=started())
    assert events == [] and state.samples == 0


def test_dtmf_forms() -> None:
    _, events = run(
        msg("dtmf", streamId="stream-1", dtmf={"digit": "#"}),
        msg("dtmf", digit="7"),
        state=started(),
    )
    assert events == [Dtmf("#"), Dtmf("7")]


def test_checkpoint_and_played_stream() -> None:
    state = run(media_msg(), state=started())[0]
    state, out = CODEC.encode(state, Mark("s1"))
    assert json.loads(out[0]) == {"event": "checkpoint", "streamId": "stream-1", "name": "s1"}
    state, events = run(msg("playedStream", streamId="stream-1", name="s1"), state=state)
    assert events == [Played("s1", t=16 / 8000)] and state.pending == ()


def test_played_alias_without_stream_id() -> None:
    state, _ = CODEC.encode(started(), Mark("s1"))
    assert run(msg("played", name="s1"), state=state)[1] == [Played("s1")]


def test_clear_audio_and_cleared_audio() -> None:
    state = started()
    state, _ = CODEC.encode(state, Mark("a"))
    state, out = CODEC.encode(state, Interrupted())
    assert json.loads(out[0]) == {"event": "clearAudio", "streamId": "stream-1"}
    assert state.pending == () and state.cleared == ("a",)
    state, events = run(msg("clearedAudio", streamId="stream-1"), state=state)
    assert events == [] and state.cleared == ()


def test_an_answer_for_a_cleared_checkpoint_is_not_heard() -> None:
    state = started()
    state, _ = CODEC.encode(state, Mark("a"))
    state, _ = CODEC.encode(state, Interrupted())
    assert run(msg("playedStream", name="a"), state=state)[1] == []


def test_stop_play_failed_and_error_end_the_call() -> None:
    state, events = run(msg("stop"), state=started())
    assert events == [CallEnded("hangup")] and state.phase == "stopped"
    _, (ended,) = run(msg("playFailed", reason="codec mismatch"), state=started())
    assert ended.reason == "error" and "could not play our audio: codec mismatch" in ended.detail
    _, (ended,) = run(msg("error", error="boom"), state=started())
    assert ended.reason == "error" and "boom" in ended.detail


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ([media_msg()], "'media' before 'start'"),
        ([msg("dtmf", dtmf={"digit": "1"})], "'dtmf' before 'start'"),
        ([msg("playedStream", name="x")], "'playedStream' before 'start'"),
        ([msg("clearedAudio")], "'clearedAudio' before 'start'"),
        ([start_msg(), start_msg()], "second 'start'"),
        ([start_msg(), msg("stop"), media_msg()], "after the stream stopped"),
        ([msg("hello")], "unknown event 'hello'"),
        (["nope"], "not valid JSON"),
        ([msg("start", start={"streamId": "s"})], "callId"),
        ([msg("start", start={"callId": "c"})], "streamId"),
        ([start_msg(mediaFormat={"encoding": "audio/x-l16", "sampleRate": 16000})], "x-mulaw"),
        ([start_msg("vkcaller=zz")], "not hex-encoded"),
        ([start_msg("{bad json")], "extra_headers is not valid JSON"),
        ([start_msg(5)], "extra_headers must be a string"),
        ([start_msg(), media_msg(stream="other")], "another stream"),
        ([start_msg(), msg("media", media={"payload": "a=b"})], "not valid base64"),
        ([start_msg(), media_msg(track="mixed")], "unknown track"),
        ([start_msg(), msg("dtmf", dtmf={"digit": "12"})], "keypad"),
        ([start_msg(), msg("playedStream", name="ghost")], "never sent"),
        ([start_msg(), msg("playedStream")], "no name"),
    ],
)
def test_protocol_errors(messages: list[str], match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        run(*messages)


def test_binary_and_oversize_messages_are_rejected() -> None:
    with pytest.raises(ProtocolError, match="binary frame"):
        CODEC.decode(CODEC.initial(), b"\x00\x01")
    small = plivo.codec(max_message=64)
    with pytest.raises(ProtocolError, match="over the cap of 64"):
        small.decode(small.initial(), media_msg(bytes(100)))


def test_encode_play_audio() -> None:
    samples = np.linspace(-4000, 4000, 160).astype(np.int16)
    _, (frame,) = CODEC.encode(started(), AudioChunk(samples, rate=8000))
    sent = json.loads(frame)
    assert sent["event"] == "playAudio"
    assert sent["media"]["contentType"] == "audio/x-mulaw" and sent["media"]["sampleRate"] == 8000
    raw = base64.b64decode(sent["media"]["payload"])
    assert np.max(np.abs(ulaw_decode_bytes(raw).samples.astype(int) - samples)) < 200


def test_encode_rules() -> None:
    state = started()
    assert CODEC.encode(state, Sentence("hi")) == (state, [])
    assert CODEC.encode(state, Dtmf("5")) == (state, [])  # a caller's key is never echoed
    with pytest.raises(ValueError, match="8000"):
        CODEC.encode(state, AudioChunk(np.zeros(320, np.int16), rate=16000))
    with pytest.raises(ProtocolError, match="before 'start'"):
        CODEC.encode(CODEC.initial(), Interrupted())
    stopped = run(msg("stop"), state=state)[0]
    assert CODEC.encode(stopped, Mark("n")) == (stopped, [])


def test_dtmf_message() -> None:
    assert json.loads(plivo.dtmf_message("1*9")) == {"event": "sendDTMF", "dtmf": "1*9"}
    with pytest.raises(ConfigError, match="keypad"):
        plivo.dtmf_message("1x")


def test_answer_xml() -> None:
    xml = plivo.answer_xml(
        "wss://h.test/plivo/media?x=1&y=2", caller="+15550001111", callee="+1555", token="a.b-c_"
    )
    stream = ElementTree.fromstring(xml).find("Stream")
    assert stream is not None and stream.text == "wss://h.test/plivo/media?x=1&y=2"
    assert stream.get("bidirectional") == "true" and stream.get("keepCallAlive") == "true"
    assert stream.get("contentType") == "audio/x-mulaw;rate=8000"
    assert stream.get("audioTrack") == "inbound"
    headers = stream.get("extraHeaders") or ""
    assert all(c.isalnum() or c in "=," for c in headers)  # Plivo's rule for extraHeaders
    assert "+1555" not in xml
    assert plivo.parse_extra_headers(headers) == {
        "caller": "+15550001111",
        "callee": "+1555",
        "token": "a.b-c_",
    }


def test_answer_xml_limits() -> None:
    with pytest.raises(ConfigError, match="wss://"):
        plivo.answer_xml("http://h.test/x")
    with pytest.raises(ConfigError, match="letters and digits"):
        plivo.answer_xml("wss://h.test/x", parameters={"a-b": "1"})
    with pytest.raises(ConfigError, match="over Plivo's 512"):
        plivo.answer_xml("wss://h.test/x", token="t" * 300)
    assert "extraHeaders" not in plivo.answer_xml("wss://h.test/x")


def test_webhook_call() -> None:
    assert plivo.webhook_call({"CallUUID": "c", "From": "+1", "To": "+2"}) == ("c", "+1", "+2")
    with pytest.raises(ProtocolError, match="CallUUID"):
        plivo.webhook_call({})


# ---------------------------------------------------------------------------------------------
# The codec against the fake Plivo peer, over a real WebSocket on 127.0.0.1
# ---------------------------------------------------------------------------------------------

Send = Callable[[Any], Awaitable[None]]


def frames(seconds: float) -> list[AudioChunk]:
    """``seconds`` of a 440 Hz tone at 8 kHz as 20 ms chunks."""
    t = np.arange(int(seconds * 8000)) / 8000
    tone = (6000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    return [AudioChunk(tone[i : i + 160], rate=8000) for i in range(0, tone.shape[0], 160)]


async def test_a_call_through_the_codec_with_checkpoints_and_dtmf() -> None:
    async def script(event: Any, send: Send) -> None:
        if isinstance(event, CallStarted):
            for chunk in frames(0.6):
                await send(chunk)
            await send(Mark("s1"))
            for chunk in frames(0.4):
                await send(chunk)
            await send(Mark("s2"))

    headers = plivo.extra_headers({"caller": "+15550001111", "token": "tok-1", "lang": "en"})
    async with CodecServer(plivo.codec(), script) as server:
        peer = PlivoCall(server.url, extra_headers=headers)
        record = await peer.call(
            caller_audio(seconds=0.5),
            digits=[(0.2, "9")],
            until=lambda r: len(r.echoed) == 2,
            linger=0.1,
        )
        await asyncio.wait_for(server.ended.wait(), 5)

    assert record.violations == [] and server.errors == []
    call = server.events[0]
    assert isinstance(call, CallStarted) and call.call_id == "fake-call-uuid-1"
    assert (call.caller, call.callee, call.stream_id) == ("+15550001111", "", "fake-stream-1")
    assert dict(call.parameters) == {"lang": "en", "token": "tok-1"}
    assert [e for e in server.events if isinstance(e, Dtmf)] == [Dtmf("9", t=0.2)]
    assert [e.name for e in server.events if isinstance(e, Played)] == ["s1", "s2"]
    assert isinstance(server.events[-1], CallEnded) and server.events[-1].reason == "hangup"
    chunks = [e for e in server.events if isinstance(e, AudioChunk)]
    assert len(chunks) == sum(1 for _, event in record.sent if event == "media")
    first_audio = record.events("playAudio")[0].t
    (t1, n1), (t2, n2) = record.echoed
    assert (n1, n2) == ("s1", "s2")
    assert 0.55 <= t1 - first_audio <= 0.6 + 1.0
    assert 0.95 <= t2 - first_audio <= 1.0 + 1.0
    assert record.heard_seconds == pytest.approx(1.0)


async def test_barge_in_clears_and_the_dropped_checkpoint_is_not_heard() -> None:
    async def script(event: Any, send: Send) -> None:
        if isinstance(event, CallStarted):
            for chunk in frames(3.0):
                await send(chunk)
            await send(Mark("long"))
        elif isinstance(event, Dtmf):
            await send(Interrupted())

    async with CodecServer(plivo.codec(), script) as server:
        record = await PlivoCall(server.url).call(digits=[(0.4, "5")], hangup_at=1.0)
        await asyncio.wait_for(server.ended.wait(), 5)

    assert record.violations == [] and server.errors == []
    assert len(record.events("clearAudio")) == 1
    assert record.dropped == ["long"] and record.echoed == []  # Plivo drops the checkpoint
    assert not any(isinstance(e, Played) for e in server.events)
    assert 0.3 <= record.heard_seconds <= 1.0


async def test_a_foreign_stream_id_ends_the_call_with_a_protocol_error() -> None:
    class Confused(PlivoCall):
        def media(self, chunk: int, payload: str) -> dict[str, Any]:
            return {**super().media(chunk, payload), "streamId": "someone-else"}

    async def script(event: Any, send: Send) -> None:
        return None

    async with CodecServer(plivo.codec(), script) as server:
        record = await Confused(server.url).call(hangup_at=2.0)
    assert [str(e) for e in server.errors] == [
        "plivo: 'media' names another stream than this call's"
    ]
    assert record.closed_by_server and record.close_code == 1008


def test_signature_v3_signs_url_sorted_params_and_nonce() -> None:
    import hashlib
    import hmac

    def expected(message: str) -> str:
        digest = hmac.new(b"tok", message.encode(), hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    form = {"To": "+2", "CallUUID": "c-1", "From": "+1"}
    url = "https://h.test/plivo/voice"
    assert plivo.signature_v3("tok", url, form, "n1") == expected(
        "https://h.test/plivo/voice?CallUUIDc-1From+1To+2.n1"
    )
    assert plivo.signature_v3("tok", url + "?b=2&a=1", form, "n1") == expected(
        "https://h.test/plivo/voice?a=1&b=2.CallUUIDc-1From+1To+2.n1"
    )
    assert plivo.signature_v3("tok", url, {}, "n1") == expected("https://h.test/plivo/voice.n1")
    good = plivo.signature_v3("tok", url, form, "n1")
    assert plivo.verify_signature("tok", url, form, "n1", good)
    assert plivo.verify_signature("tok", url, form, "n1", f"other,{good}")
    assert not plivo.verify_signature("tok", url, form, "n2", good)
    assert not plivo.verify_signature("tok", url, {**form, "To": "+3"}, "n1", good)
    assert not plivo.verify_signature("tok", url, form, "", good)


# ---------------------------------------------------------------------------------------------
# voicekit.serve.app(carrier="plivo"), run by uvicorn, called by the fake Plivo
# ---------------------------------------------------------------------------------------------

AUTH_TOKEN = "plivo-test-auth-token-0123"
FORM = {"CallUUID": "served-uuid-1", "From": "+15550001111", "To": "+15550002222",
        "Direction": "inbound"}


def signer(host: str, nonce: str = "31415926535") -> Callable[[bytes], dict[str, str]]:
    """What Plivo sends with its answer request: the V3 signature over URL, params, nonce."""

    def sign(body: bytes) -> dict[str, str]:
        params = dict(parse_qsl(body.decode(), keep_blank_values=True))
        url = f"http://{host}/plivo/voice"
        return {
            "X-Plivo-Signature-V3": plivo.signature_v3(AUTH_TOKEN, url, params, nonce),
            "X-Plivo-Signature-V3-Nonce": nonce,
        }

    return sign


def echo_reply(messages: Any) -> list[str]:
    return [f"You said {messages[-1]['content']}. ", "Anything else?"]


async def test_a_signed_plivo_call_is_answered_by_the_agent(monkeypatch, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PLIVO_AUTH_TOKEN", AUTH_TOKEN)
    rec = Recorder(["what time is it"], echo_reply)
    application = vk.serve.app(rec.on_call, carrier="plivo", on_end=rec.on_end)
    assert sorted(r.path for r in application.routes) == [
        "/healthz", "/plivo/media", "/plivo/voice", "/readyz", "/ws",
    ]
    async with serving(application) as host:
        url, headers = await fake_plivo.answer(f"http://{host}", FORM, signer(host))
        assert url == f"ws://{host}/plivo/media" and "+1555" not in headers
        peer = PlivoCall(url, call_id=FORM["CallUUID"], extra_headers=headers)
        record = await peer.call(  # the question, then 4 s for the reply to play out
            caller_audio(seconds=1.0), until=lambda r: bool(r.events("playAudio")), linger=4.0
        )
        await asyncio.wait_for(rec.done.wait(), 10)

    assert record.violations == []
    (started,) = rec.of(CallStarted)
    assert started.call_id == "served-uuid-1" and started.carrier == "plivo"
    assert (started.caller, started.callee) == ("+15550001111", "+15550002222")
    assert "token" not in started.parameters
    # one mark per sentence, echoed by the carrier once played, back inbound as Played
    assert len(record.echoed) == 2
    assert [p.name for p in rec.of(Played)] == [name for _, name in record.echoed]
    (session,) = rec.ended
    assert session.call_id == "served-uuid-1" and "+1555" not in repr(session)
    assert session.messages_json()[:2] == [
        {"role": "user", "content": "what time is it"},
        {"role": "assistant", "content": "You said what time is it. Anything else?"},
    ]
    assert 1.0 < record.heard_seconds < 10.0
    assert await voicekit_tasks() == []
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert caplog.records and "+1555" not in logged and "15550001111" not in logged


async def test_plivo_answer_and_stream_refusals(monkeypatch) -> None:
    monkeypatch.setenv("PLIVO_AUTH_TOKEN", AUTH_TOKEN)
    rec = Recorder([], echo_reply)
    application = vk.serve.app(rec.on_call, carrier="plivo", on_end=rec.on_end)
    async with serving(application) as host:
        base = f"http://{host}"
        with pytest.raises(fake_plivo.AnswerRefused) as refused:
            await fake_plivo.answer(base, FORM)  # unsigned
        assert refused.value.status == 403

        def forged(body: bytes) -> dict[str, str]:  # signed for other parameters
            return signer(host)(body.replace(b"served-uuid-1", b"other-uuid"))

        with pytest.raises(fake_plivo.AnswerRefused) as refused:
            await fake_plivo.answer(base, FORM, forged)
        assert refused.value.status == 403
        with pytest.raises(fake_plivo.AnswerRefused) as refused:
            await fake_plivo.answer(base, {"From": "+1"}, signer(host))
        assert refused.value.status == 400

        url, headers = await fake_plivo.answer(base, FORM, signer(host))
        no_token = await PlivoCall(url, call_id="served-uuid-1").call(hangup_at=3.0)
        other_call = await PlivoCall(url, call_id="other", extra_headers=headers).call(
            hangup_at=3.0
        )
        first = await PlivoCall(url, call_id="served-uuid-1", extra_headers=headers).call(
            hangup_at=0.3
        )
        replay = await PlivoCall(url, call_id="served-uuid-1", extra_headers=headers).call(
            hangup_at=3.0
        )
    for refused_call in (no_token, other_call, replay):
        assert refused_call.closed_by_server and refused_call.close_code == 1008
        assert refused_call.ended_at < 2.0
    assert not first.closed_by_server
    assert rec.calls == 1


async def test_a_barge_in_on_plivo_keeps_only_what_was_heard() -> None:
    long = ["This is the first sentence of a long answer. "] + [
        f"Here comes sentence number {i} of it, which goes on for a while. " for i in range(2, 9)
    ]
    rec = Recorder(["tell me everything", "stop"], lambda messages: long)
    application = vk.serve.app(rec.on_call, carrier="plivo", dev=True, on_end=rec.on_end)
    question = caller_audio(seconds=1.0)
    pause = b"\xff" * int(8000 * 3.0)
    interruption = caller_audio(seconds=0.8)
    async with serving(application) as host:
        record = await PlivoCall(f"ws://{host}/plivo/media").call(
            question + pause + interruption, until=lambda r: bool(r.clears), linger=1.5
        )
        await asyncio.wait_for(rec.done.wait(), 10)

    assert record.violations == [] and len(record.events("clearAudio")) >= 1
    messages = rec.ended[0].messages_json()
    assert messages[0] == {"role": "user", "content": "tell me everything"}
    heard = messages[1]
    assert heard["role"] == "assistant" and heard.get("interrupted") is True
    full = "".join(long).strip()
    assert heard["content"] and full.startswith(heard["content"].strip())
    assert len(heard["content"]) < len(full) / 2
    assert messages[2] == {"role": "user", "content": "stop"}
    assert await voicekit_tasks() == []


async def test_checkpoints_through_the_app_and_a_clear_that_drops_the_last_one() -> None:
    """Through the real connection layer, sent all at once (``lead`` 10 s): each checkpoint
    is answered when its audio has played; the caller's key press interrupts, Plivo drops the
    queued checkpoint and says clearedAudio; nothing more is Played."""
    loop = asyncio.get_running_loop()
    played: list[tuple[str, float]] = []
    keys: list[Dtmf] = []
    interrupt = asyncio.Event()
    began: list[float] = []

    async def on_call(call: Any) -> None:
        async def speak() -> Any:
            began.append(loop.time())
            for name, seconds in (("one", 0.5), ("two", 0.5), ("three", 3.0)):
                for i in range(int(seconds * 50)):
                    yield AudioChunk(np.full(320, 3000, np.int16), 16000, i * 0.02)
                yield Mark(name)
            await interrupt.wait()
            yield Interrupted()

        async def listen() -> None:
            async for item in call.inbound:
                if isinstance(item, Played):
                    played.append((item.name, loop.time() - began[0]))
                elif isinstance(item, Dtmf):
                    keys.append(item)
                    interrupt.set()

        await asyncio.gather(call.outbound(speak()), listen())

    application = vk.serve.app(on_call, carrier="plivo", dev=True, lead=10.0)
    async with serving(application) as host:
        record = await PlivoCall(f"ws://{host}/plivo/media").call(
            digits=[(2.0, "5")], until=lambda r: bool(r.clears), linger=0.5
        )
    assert record.violations == []
    assert [k.digit for k in keys] == ["5"]
    assert [name for _, name in record.echoed] == ["one", "two"]
    assert record.dropped == ["three"] and len(record.events("clearAudio")) == 1
    assert [name for name, _ in played] == ["one", "two"]
    (_, one), (_, two) = played
    assert 0.45 <= one <= 0.5 + 1.0 and 0.95 <= two <= 1.0 + 1.0
    # what played from the first audio to the clear, and not a frame more
    played_until_clear = record.clears[0] - record.events("playAudio")[0].t
    assert record.heard_seconds == pytest.approx(played_until_clear, abs=0.05)
    assert record.heard_seconds < 3.0  # the rest of part three was thrown away


@pytest.mark.parametrize("when", ["before start", "mid reply"])
async def test_a_plivo_hang_up_leaves_nothing_running(when: str) -> None:
    long = [f"Sentence {i} of a reply the caller never hears to its end. " for i in range(20)]
    rec = Recorder(["go on"], lambda messages: long)
    application = vk.serve.app(rec.on_call, carrier="plivo", dev=True, on_end=rec.on_end, grace=0.3)

    class Gone(PlivoCall):  # connects and is gone before its start
        def opening(self) -> list[dict[str, Any]]:
            return []

    async with serving(application) as host:
        url = f"ws://{host}/plivo/media"
        if when == "before start":
            record = await Gone(url).call(hangup_at=0.0)
            await asyncio.sleep(0.3)
            assert rec.calls == 0 and not record.closed_by_server
        else:
            record = await PlivoCall(url).call(
                caller_audio(seconds=1.0), until=lambda r: r.heard_seconds > 0.5
            )
            await asyncio.wait_for(rec.done.wait(), 5)
            assert rec.of(CallEnded)[-1].reason == "hangup"
            assert record.heard_seconds < 5.0
        assert await voicekit_tasks() == []
        assert application.state.voicekit.calls == 0
