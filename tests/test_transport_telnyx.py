"""Telnyx Media Streaming: every protocol rule of the codec, the answers, and a call placed by a
fake Telnyx peer (tests/servers/fake_telnyx.py) against a real WebSocket server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pytest
from servers import fake_telnyx
from servers.codec_server import CodecServer
from servers.fake_carrier import caller_audio
from servers.fake_telnyx import TelnyxCall
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
from voicekit.transports import telnyx
from voicekit.transports.telnyx import TelnyxState

CODEC = telnyx.codec()
ULAW = bytes(range(0, 256, 16))  # 16 μ-law codes


def msg(event: str, **fields: Any) -> str:
    return json.dumps({"event": event, **fields})


def start_msg(**start: Any) -> str:
    body = {"call_control_id": "v3:call-1", "from": "+15550001111", "to": "+15550002222"}
    body.update(start)
    return msg("start", sequence_number="1", stream_id="stream-1", start=body)


def media_msg(raw: bytes = ULAW, track: str = "inbound") -> str:
    payload = base64.b64encode(raw).decode()
    return msg("media", sequence_number="2", media={"track": track, "payload": payload})


def run(codec: Any, *messages: str, state: Any = None) -> tuple[Any, list[Any]]:
    state = codec.initial() if state is None else state
    events: list[Any] = []
    for m in messages:
        state, out = codec.decode(state, m)
        events += out
    return state, events


def started(codec: Any = CODEC) -> TelnyxState:
    return run(codec, msg("connected", version="1.0.0"), start_msg())[0]


def test_codec_value() -> None:
    assert (CODEC.name, CODEC.rate, CODEC.frame_ms) == ("telnyx", 8000, 20)
    assert CODEC.acknowledges is True
    assert telnyx.codec(marks=False).acknowledges is False
    with pytest.raises(ConfigError, match="max_message"):
        telnyx.codec(max_message=0)


def test_start_gives_call_started_with_parties_and_parameters() -> None:
    connected = msg("connected", version="1.0.0", connected={"x-telnyx-streaming-auth-token": "tk"})
    state, events = run(CODEC, connected, start_msg(custom_parameters={"lang": "en", "n": 3}))
    (call,) = events
    assert isinstance(call, CallStarted)
    assert (call.call_id, call.carrier, call.caller, call.callee) == (
        "v3:call-1",
        "telnyx",
        "+15550001111",
        "+15550002222",
    )
    assert call.stream_id == "stream-1" and call.acknowledges
    assert dict(call.parameters) == {"lang": "en", "n": "3", "token": "tk"}
    assert state.phase == "started" and state.call_id == "v3:call-1"


def test_token_parameter_wins_over_connected_token() -> None:
    connected = msg("connected", connected={"x-telnyx-streaming-auth-token": "header"})
    _, (call,) = run(CODEC, connected, start_msg(custom_parameters={"token": "param"}))
    assert call.parameters["token"] == "param"


def test_start_without_connected_and_with_null_parties() -> None:
    _, (call,) = run(CODEC, start_msg(**{"from": None, "to": None}))
    assert (call.caller, call.callee, dict(call.parameters)) == ("", "", {})


def test_media_inbound_decodes_at_stream_time() -> None:
    state, events = run(CODEC, media_msg(), media_msg(), state=started())
    assert [type(e) for e in events] == [AudioChunk, AudioChunk]
    assert events[0] == ulaw_decode_bytes(ULAW, t=0.0)
    assert events[1].t == pytest.approx(16 / 8000) and events[1].rate == 8000
    assert state.samples == 32


def test_media_outbound_track_and_empty_payload_are_skipped() -> None:
    state, events = run(CODEC, media_msg(track="outbound"), media_msg(b""), state=started())
    assert events == [] and state.samples == 0


def test_media_without_track_counts_as_inbound() -> None:
    m = msg("media", media={"payload": base64.b64encode(ULAW).decode()})
    assert len(run(CODEC, m, state=started())[1]) == 1


def test_a_late_or_repeated_media_chunk_is_dropped() -> None:
    def numbered(n: int) -> str:  # frame n is 160 times the μ-law code n
        payload = base64.b64encode(bytes([n] * 160)).decode()
        return msg("media", media={"track": "inbound", "chunk": str(n), "payload": payload})

    state, events = run(CODEC, *(numbered(n) for n in (1, 2, 4, 3, 4, 5)), state=started())
    kept = [int(ulaw_encode_chunk_first(e)) for e in events]
    assert kept == [1, 2, 4, 5] and state.chunk == 5
    assert [e.t for e in events] == [0.0, 0.02, 0.04, 0.06]  # the stream clock counts kept audio


def ulaw_encode_chunk_first(chunk: AudioChunk) -> int:
    """The μ-law code of a chunk's first sample (each test frame repeats one code)."""
    from voicekit.audio import ulaw_encode

    return int(ulaw_encode(chunk.samples[:1])[0])


def test_dtmf_and_mark_echo() -> None:
    state = started()
    state, _ = run(CODEC, media_msg(), state=state)
    state, out = CODEC.encode(state, Mark("s1"))
    assert json.loads(out[0]) == {"event": "mark", "mark": {"name": "s1"}}
    state, events = run(
        CODEC, msg("dtmf", dtmf={"digit": "5"}), msg("mark", mark={"name": "s1"}), state=state
    )
    assert events == [Dtmf("5", t=16 / 8000), Played("s1", t=16 / 8000)]
    assert state.pending == ()


def test_echo_of_a_cleared_mark_is_not_heard() -> None:
    state = started()
    state, _ = CODEC.encode(state, Mark("a"))
    state, _ = CODEC.encode(state, Mark("b"))
    state, out = CODEC.encode(state, Interrupted())
    assert out == ['{"event":"clear"}']
    assert state.pending == () and state.cleared == ("a", "b")
    state, events = run(
        CODEC, msg("mark", mark={"name": "a"}), msg("mark", mark={"name": "b"}), state=state
    )
    assert events == [] and state.cleared == ()


def test_echo_of_a_mark_never_sent_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="never sent"):
        run(CODEC, msg("mark", mark={"name": "ghost"}), state=started())


def test_stop_and_error_end_the_call() -> None:
    state, events = run(CODEC, msg("stop"), state=started())
    assert events == [CallEnded("hangup")] and state.phase == "stopped"
    error = msg("error", payload={"code": 100003, "title": "Malformed frame", "detail": "x"})
    state, (ended,) = run(CODEC, error, state=started())
    assert ended.reason == "error" and "100003 Malformed frame x" in ended.detail
    assert state.phase == "stopped"


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ([media_msg()], "'media' before 'start'"),
        ([msg("dtmf", dtmf={"digit": "1"})], "'dtmf' before 'start'"),
        ([msg("mark", mark={"name": "x"})], "'mark' before 'start'"),
        ([start_msg(), start_msg()], "second 'start'"),
        ([start_msg(), msg("connected")], "'connected' when the stream is already started"),
        ([start_msg(), msg("stop"), media_msg()], "'media' after the stream stopped"),
        ([msg("hello")], "unknown event 'hello'"),
        (["{not json"], "not valid JSON"),
        (["[1, 2]"], "JSON object"),
        (['{"event": 5}'], "no 'event'"),
        ([msg("start", start={"from": "+1"})], "call_control_id"),
        ([msg("start")], "no 'start' object"),
        ([start_msg(media_format={"encoding": "L16", "sample_rate": 16000})], "PCMU at 8000"),
        ([start_msg(custom_parameters=[1])], "custom_parameters"),
        ([start_msg(), msg("media", media={"payload": "@@@"})], "not valid base64"),
        ([start_msg(), msg("media", media={})], "payload"),
        ([start_msg(), media_msg(track="both")], "unknown track"),
        ([start_msg(), msg("dtmf", dtmf={"digit": "x"})], "keypad"),
        ([start_msg(), msg("dtmf")], "no 'dtmf' object"),
        ([start_msg(), msg("mark", mark={})], "no name"),
    ],
)
def test_protocol_errors(messages: list[str], match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        run(CODEC, *messages)


def test_errors_never_show_the_callers_number() -> None:
    bad = start_msg(media_format={"encoding": "OPUS", "sample_rate": 48000})
    with pytest.raises(ProtocolError) as info:
        run(CODEC, bad)
    assert "+1555" not in str(info.value)


def test_binary_and_oversize_messages_are_rejected() -> None:
    with pytest.raises(ProtocolError, match="binary frame"):
        CODEC.decode(CODEC.initial(), b'{"event": "stop"}')
    small = telnyx.codec(max_message=100)
    with pytest.raises(ProtocolError, match="over the cap of 100"):
        small.decode(small.initial(), media_msg(bytes(200)))
    assert small.decode(small.initial(), msg("stop"))[1] == [CallEnded("hangup")]


def test_encode_audio_frames() -> None:
    state = started()
    samples = np.linspace(-8000, 8000, 160).astype(np.int16)
    _, (frame,) = CODEC.encode(state, AudioChunk(samples, rate=8000))
    sent = json.loads(frame)
    assert set(sent) == {"event", "media"} and sent["event"] == "media"
    raw = base64.b64decode(sent["media"]["payload"])
    assert len(raw) == 160
    back = ulaw_decode_bytes(raw).samples.astype(int)
    assert np.max(np.abs(back - samples)) < 300  # μ-law round trip
    assert CODEC.encode(state, AudioChunk(np.zeros(0, np.int16), rate=8000)) == (state, [])
    _, (short,) = CODEC.encode(state, AudioChunk(np.full(40, 1000, np.int16), rate=8000))
    raw = base64.b64decode(json.loads(short)["media"]["payload"])  # 5 ms, padded to 20 ms
    assert len(raw) == 160 and raw[40:] == b"\xff" * 120 and raw[0] != 0xFF


def test_encode_rules() -> None:
    state = started()
    assert CODEC.encode(state, Sentence("hi")) == (state, [])
    with pytest.raises(ValueError, match="8000"):
        CODEC.encode(state, AudioChunk(np.zeros(320, np.int16), rate=16000))
    with pytest.raises(ProtocolError, match="before 'start'"):
        CODEC.encode(CODEC.initial(), Mark("m"))
    state, _ = CODEC.encode(state, Mark("m"))
    with pytest.raises(ProtocolError, match="already waiting"):
        CODEC.encode(state, Mark("m"))
    stopped = run(CODEC, msg("stop"), state=state)[0]
    assert CODEC.encode(stopped, Mark("n")) == (stopped, [])


def test_without_marks_nothing_is_acknowledged() -> None:
    quiet = telnyx.codec(marks=False)
    state = started(quiet)
    assert quiet.encode(state, Mark("m")) == (state, [])
    _, (call,) = run(quiet, start_msg())
    assert call.acknowledges is False


def test_answer_command() -> None:
    command = telnyx.answer_command("wss://h.test/telnyx/media", token="tok")
    assert command == {
        "stream_url": "wss://h.test/telnyx/media",
        "stream_track": "inbound_track",
        "stream_bidirectional_mode": "rtp",
        "stream_bidirectional_codec": "PCMU",
        "stream_bidirectional_sampling_rate": 8000,
        "stream_bidirectional_target_legs": "self",
        "stream_auth_token": "tok",
    }
    assert "stream_auth_token" not in telnyx.answer_command("wss://h.test/x")
    with pytest.raises(ConfigError, match="wss://"):
        telnyx.answer_command("https://h.test/x")


def test_texml_escapes_and_carries_parameters() -> None:
    xml = telnyx.texml("wss://h.test/m?a=1&b=2", token='t"<', parameters={"x": "y"})
    stream = ElementTree.fromstring(xml).find("Connect/Stream")
    assert stream is not None and stream.get("url") == "wss://h.test/m?a=1&b=2"
    assert (stream.get("bidirectionalMode"), stream.get("bidirectionalCodec")) == ("rtp", "PCMU")
    assert stream.get("bidirectionalSamplingRate") == "8000"
    params = [(p.get("name"), p.get("value")) for p in stream.findall("Parameter")]
    assert params == [("x", "y"), ("token", 't"<')]


def test_webhook_call() -> None:
    form = {"CallSid": "v3:c", "From": "+1", "To": "+2"}
    assert telnyx.webhook_call(form) == ("v3:c", "+1", "+2")
    with pytest.raises(ProtocolError, match="CallSid"):
        telnyx.webhook_call({"From": "+1"})


# ---------------------------------------------------------------------------------------------
# The codec against the fake Telnyx peer, over a real WebSocket on 127.0.0.1
# ---------------------------------------------------------------------------------------------

def frames(seconds: float) -> list[AudioChunk]:
    """``seconds`` of a 440 Hz tone at 8 kHz as 20 ms chunks."""
    t = np.arange(int(seconds * 8000)) / 8000
    tone = (6000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    return [AudioChunk(tone[i : i + 160], rate=8000) for i in range(0, tone.shape[0], 160)]


async def test_a_call_through_the_codec_with_marks_and_dtmf() -> None:
    async def script(event: Any, send: Callable[[Any], Awaitable[None]]) -> None:
        if isinstance(event, CallStarted):  # the reply, all at once: the carrier buffers it
            for chunk in frames(0.6):
                await send(chunk)
            await send(Mark("s1"))
            for chunk in frames(0.4):
                await send(chunk)
            await send(Mark("s2"))

    async with CodecServer(telnyx.codec(), script) as server:
        peer = TelnyxCall(server.url, token="tok-1", custom_parameters={"lang": "en"})
        record = await peer.call(
            caller_audio(seconds=0.5),
            digits=[(0.2, "7")],
            until=lambda r: len(r.echoed) == 2,
            linger=0.1,
        )
        await asyncio.wait_for(server.ended.wait(), 5)

    assert record.violations == [] and server.errors == []
    call = server.events[0]
    assert isinstance(call, CallStarted) and call.call_id == "v3:fake-call-1"
    assert (call.caller, call.callee) == ("+15550001111", "+15550002222")
    assert dict(call.parameters) == {"lang": "en", "token": "tok-1"}
    assert [e for e in server.events if isinstance(e, Dtmf)] == [Dtmf("7", t=0.2)]
    assert [e.name for e in server.events if isinstance(e, Played)] == ["s1", "s2"]
    assert server.events[-1] == CallEnded("hangup", t=server.events[-1].t)
    # every frame the fake caller sent came through, in order and on the stream clock
    chunks = [e for e in server.events if isinstance(e, AudioChunk)]
    sent = sum(1 for _, event in record.sent if event == "media")
    assert len(chunks) == sent and chunks[-1].t == pytest.approx((sent - 1) * 0.02)
    # real play-out: a mark comes back only when the audio before it has played
    first_audio = record.events("media")[0].t
    (t1, n1), (t2, n2) = record.echoed
    assert (n1, n2) == ("s1", "s2")
    assert 0.55 <= t1 - first_audio <= 0.6 + 1.0
    assert 0.95 <= t2 - first_audio <= 1.0 + 1.0
    assert record.heard_seconds == pytest.approx(1.0)


async def test_barge_in_clears_and_the_returned_mark_is_not_heard() -> None:
    async def script(event: Any, send: Callable[[Any], Awaitable[None]]) -> None:
        if isinstance(event, CallStarted):
            for chunk in frames(3.0):
                await send(chunk)
            await send(Mark("long"))
        elif isinstance(event, Dtmf):
            await send(Interrupted())

    async with CodecServer(telnyx.codec(), script) as server:
        record = await TelnyxCall(server.url).call(digits=[(0.4, "5")], hangup_at=1.0)
        await asyncio.wait_for(server.ended.wait(), 5)

    assert record.violations == [] and server.errors == []
    assert len(record.clears) == 1 and record.events("clear")
    assert [name for _, name in record.echoed] == ["long"]  # Telnyx returns the queued mark…
    assert not any(isinstance(e, Played) for e in server.events)  # …which was not heard
    assert 0.3 <= record.heard_seconds <= 1.0  # the rest of the 3 s was thrown away


async def test_media_before_start_ends_the_call_with_a_protocol_error() -> None:
    class Rude(TelnyxCall):
        def opening(self) -> list[dict[str, Any]]:
            return []

    async def script(event: Any, send: Callable[[Any], Awaitable[None]]) -> None:
        return None

    async with CodecServer(telnyx.codec(), script) as server:
        record = await Rude(server.url).call(hangup_at=2.0)
    assert [str(e) for e in server.errors] == ["telnyx: 'media' before 'start'"]
    assert record.closed_by_server and record.close_code == 1008


def test_verify_webhook_ed25519() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    private = Ed25519PrivateKey.generate()
    public = base64.b64encode(
        private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    ).decode()
    body = b"CallSid=v3%3Aabc&From=%2B1555"
    signature = base64.b64encode(private.sign(b"1700000000|" + body)).decode()
    assert telnyx.verify_webhook(public, body, signature, "1700000000", now=1700000100)
    assert not telnyx.verify_webhook(public, body + b"x", signature, "1700000000", now=1700000100)
    assert not telnyx.verify_webhook(public, body, signature, "1700000001", now=1700000100)
    assert not telnyx.verify_webhook(public, body, signature, "1700000000", now=1700000400)
    assert not telnyx.verify_webhook(public, body, "not base64!", "1700000000", now=1700000000)
    assert not telnyx.verify_webhook(public, body, signature, "soon", now=1700000000)
    with pytest.raises(ConfigError, match="TELNYX_PUBLIC_KEY"):
        telnyx.verify_webhook("short", body, signature, "1700000000")


# ---------------------------------------------------------------------------------------------
# voicekit.serve.app(carrier="telnyx"), run by uvicorn, called by the fake Telnyx
# ---------------------------------------------------------------------------------------------


class TelnyxAccount:
    """A Telnyx account for the tests: an Ed25519 key pair; ``sign`` makes the headers Telnyx
    sends with a webhook (``telnyx-signature-ed25519`` over ``"{timestamp}|{body}"``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        self.private = Ed25519PrivateKey.generate()
        raw = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        monkeypatch.setenv("TELNYX_PUBLIC_KEY", base64.b64encode(raw).decode())
        monkeypatch.setenv("TELNYX_API_KEY", "KEY-test-telnyx-0123456789")

    def sign(self, body: bytes, *, age: float = 0.0) -> dict[str, str]:
        stamp = str(int(time.time() - age))
        signature = self.private.sign(stamp.encode() + b"|" + body)
        return {
            "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
            "telnyx-timestamp": stamp,
        }


FORM = {"CallSid": "v3:served-1", "From": "+15550001111", "To": "+15550002222"}


def echo_reply(messages: Any) -> list[str]:
    return [f"You said {messages[-1]['content']}. ", "Anything else?"]


async def test_a_signed_telnyx_call_is_answered_by_the_agent(monkeypatch, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    account = TelnyxAccount(monkeypatch)
    rec = Recorder(["what time is it"], echo_reply)
    application = vk.serve.app(rec.on_call, carrier="telnyx", on_end=rec.on_end)
    assert sorted(r.path for r in application.routes) == [
        "/healthz", "/readyz", "/telnyx/amd", "/telnyx/media", "/telnyx/voice", "/ws",
    ]
    async with serving(application) as host:
        url, params = await fake_telnyx.answer(f"http://{host}", FORM, account.sign)
        assert url == f"ws://{host}/telnyx/media" and set(params) == {"token"}
        peer = TelnyxCall(url, call_control_id=FORM["CallSid"], custom_parameters=params)
        record = await peer.call(  # the question, then 4 s for the reply to play out
            caller_audio(seconds=1.0), until=lambda r: bool(r.events("media")), linger=4.0
        )
        await asyncio.wait_for(rec.done.wait(), 10)

    assert record.violations == []
    (started,) = rec.of(CallStarted)
    assert started.call_id == "v3:served-1" and started.carrier == "telnyx"
    assert (started.caller, started.callee) == ("+15550001111", "+15550002222")
    assert "token" not in started.parameters  # checked, then kept from the pipeline
    # one mark per sentence, echoed by the carrier once played, back inbound as Played
    assert len(record.echoed) == 2
    assert [p.name for p in rec.of(Played)] == [name for _, name in record.echoed]
    (session,) = rec.ended
    assert session.call_id == "v3:served-1" and "+1555" not in repr(session)
    assert session.messages_json()[:2] == [
        {"role": "user", "content": "what time is it"},
        {"role": "assistant", "content": "You said what time is it. Anything else?"},
    ]
    assert 1.0 < record.heard_seconds < 10.0
    assert await voicekit_tasks() == []
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert caplog.records and "+1555" not in logged and "15550001111" not in logged


async def test_telnyx_answer_and_stream_refusals(monkeypatch) -> None:
    account = TelnyxAccount(monkeypatch)
    rec = Recorder([], echo_reply)
    application = vk.serve.app(rec.on_call, carrier="telnyx", on_end=rec.on_end)
    async with serving(application) as host:
        base = f"http://{host}"
        with pytest.raises(fake_telnyx.AnswerRefused) as refused:
            await fake_telnyx.answer(base, FORM)  # unsigned
        assert refused.value.status == 403
        with pytest.raises(fake_telnyx.AnswerRefused) as refused:
            await fake_telnyx.answer(base, FORM, lambda body: account.sign(body, age=3600))
        assert refused.value.status == 403
        with pytest.raises(fake_telnyx.AnswerRefused) as refused:
            await fake_telnyx.answer(base, {"From": "+1"}, account.sign)
        assert refused.value.status == 400

        url, params = await fake_telnyx.answer(base, FORM, account.sign)
        no_token = await TelnyxCall(url, call_control_id="v3:served-1").call(hangup_at=3.0)
        other_call = await TelnyxCall(url, call_control_id="v3:other", custom_parameters=params)\
            .call(hangup_at=3.0)
        first = await TelnyxCall(url, call_control_id="v3:served-1", custom_parameters=params)\
            .call(hangup_at=0.3)
        replay = await TelnyxCall(url, call_control_id="v3:served-1", custom_parameters=params)\
            .call(hangup_at=3.0)
    for refused_call in (no_token, other_call, replay):
        assert refused_call.closed_by_server and refused_call.close_code == 1008
        assert refused_call.ended_at < 2.0
    assert not first.closed_by_server
    assert rec.calls == 1  # only the first use of the token reached on_call


def texts(long: list[str]) -> Callable[[Any], list[str]]:
    return lambda messages: long


async def test_a_barge_in_on_telnyx_keeps_only_what_was_heard(monkeypatch) -> None:
    """Telnyx returns the marks still queued when it gets a clear; the codec takes them for
    what they are (not heard), so the Session keeps only the sentences really played."""
    long = ["This is the first sentence of a long answer. "] + [
        f"Here comes sentence number {i} of it, which goes on for a while. " for i in range(2, 9)
    ]
    rec = Recorder(["tell me everything", "stop"], texts(long))
    application = vk.serve.app(rec.on_call, carrier="telnyx", dev=True, on_end=rec.on_end)
    question = caller_audio(seconds=1.0)
    pause = b"\xff" * int(8000 * 3.0)  # the reply starts ~0.5 s in: ~2.5 s of it is heard
    interruption = caller_audio(seconds=0.8)
    async with serving(application) as host:
        record = await TelnyxCall(f"ws://{host}/telnyx/media").call(
            question + pause + interruption, until=lambda r: bool(r.clears), linger=1.5
        )
        await asyncio.wait_for(rec.done.wait(), 10)

    assert record.violations == [] and len(record.clears) >= 1
    # the interrupted reply's marks echoed on the clear (the reply to "stop", started right
    # after the clear now that the words decide the cut, plays its own marks)
    returned = {n for t, n in record.echoed if t >= record.clears[0] and n.startswith("1-")}
    assert not returned & {p.name for p in rec.of(Played)}  # a returned mark is not "played"
    messages = rec.ended[0].messages_json()
    assert messages[0] == {"role": "user", "content": "tell me everything"}
    heard = messages[1]
    assert heard["role"] == "assistant" and heard.get("interrupted") is True
    full = "".join(long).strip()
    assert heard["content"] and full.startswith(heard["content"].strip())
    assert len(heard["content"]) < len(full) / 2
    assert messages[2] == {"role": "user", "content": "stop"}
    assert await voicekit_tasks() == []


async def test_marks_through_the_app_and_a_clear_that_returns_the_last_one() -> None:
    """A hand-written outbound stream through the real connection layer, sent all at once
    (``lead`` 10 s: Telnyx holds it all): each mark comes back as Played when its audio has
    played; the caller's key press makes the agent interrupt, the clear makes Telnyx return the
    mark still queued, and that one is not Played."""
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

    application = vk.serve.app(on_call, carrier="telnyx", dev=True, lead=10.0)
    async with serving(application) as host:
        record = await TelnyxCall(f"ws://{host}/telnyx/media").call(
            digits=[(2.0, "5")], until=lambda r: bool(r.clears), linger=0.5
        )
    assert record.violations == []
    assert [k.digit for k in keys] == ["5"]
    assert [name for _, name in record.echoed] == ["one", "two", "three"]  # three: returned
    assert [name for name, _ in played] == ["one", "two"]  # … and not taken as heard
    (_, one), (_, two) = played  # played out in real time, not when sent
    assert 0.45 <= one <= 0.5 + 1.0 and 0.95 <= two <= 1.0 + 1.0
    # what played from the first audio to the clear, and not a frame more
    played_until_clear = record.clears[0] - record.events("media")[0].t
    assert record.heard_seconds == pytest.approx(played_until_clear, abs=0.05)
    assert record.heard_seconds < 3.0  # the rest of part three was thrown away


@pytest.mark.parametrize("when", ["before start", "mid reply"])
async def test_a_telnyx_hang_up_leaves_nothing_running(when: str) -> None:
    long = [f"Sentence {i} of a reply the caller never hears to its end. " for i in range(20)]
    rec = Recorder(["go on"], texts(long))
    application = vk.serve.app(
        rec.on_call, carrier="telnyx", dev=True, on_end=rec.on_end, grace=0.3
    )

    class Gone(TelnyxCall):  # connects, says hello, and is gone before its start
        def opening(self) -> list[dict[str, Any]]:
            return [{"event": "connected", "version": "1.0.0"}]

    async with serving(application) as host:
        url = f"ws://{host}/telnyx/media"
        if when == "before start":
            record = await Gone(url).call(hangup_at=0.0)
            await asyncio.sleep(0.3)
            assert rec.calls == 0 and not record.closed_by_server
        else:
            record = await TelnyxCall(url).call(
                caller_audio(seconds=1.0),
                until=lambda r: r.heard_seconds > 0.5,  # the reply is playing: hang up
            )
            await asyncio.wait_for(rec.done.wait(), 5)  # on_end within the grace, not 20 s
            assert rec.of(CallEnded)[-1].reason == "hangup"  # Telnyx says stop, then closes
            assert record.heard_seconds < 5.0
        assert await voicekit_tasks() == []
        assert application.state.voicekit.calls == 0
