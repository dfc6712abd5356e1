"""The Twilio Media Streams codec, rule by rule, without a socket."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from voicekit import ProtocolError
from voicekit.audio import ulaw_encode
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
from voicekit.transports import twilio
from voicekit.transports._resample import StreamResampler
from voicekit.transports._token import Spent, check_token, make_token

codec = twilio.codec


def msg(event: str, **fields: object) -> str:
    return json.dumps({"event": event, "streamSid": "MZ1", **fields})


START = msg(
    "start",
    sequenceNumber="1",
    start={
        "streamSid": "MZ1",
        "callSid": "CA1",
        "accountSid": "AC1",
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {"caller": "+15550001111", "callee": "+15550002222", "token": "t"},
    },
)


def media(payload: bytes, ts: str = "40", **extra: object) -> str:
    body = {"track": "inbound", "chunk": "3", "timestamp": ts}
    body["payload"] = base64.b64encode(payload).decode()
    body.update(extra)  # type: ignore[arg-type]
    return msg("media", sequenceNumber="4", media=body)


def started() -> twilio.TwilioState:
    state, _ = codec.decode(codec.initial(), json.dumps({"event": "connected", "protocol": "Call",
                                                        "version": "1.0.0"}))
    state, _ = codec.decode(state, START)
    return state


def test_connected_then_start_gives_call_started_with_parameters():
    state, events = codec.decode(codec.initial(), '{"event":"connected","protocol":"Call"}')
    assert events == []
    state, events = codec.decode(state, START)
    (event,) = events
    assert isinstance(event, CallStarted)
    assert (event.call_id, event.carrier, event.stream_id) == ("CA1", "twilio", "MZ1")
    assert event.acknowledges is True
    assert (event.caller, event.callee) == ("+15550001111", "+15550002222")
    assert state.phase == "started" and state.stream_sid == "MZ1"


def test_media_payload_decodes_to_8k_audio_at_the_string_timestamp():
    samples = np.array([0, 1000, -1000, 8000], dtype=np.int16)
    _, (chunk,) = codec.decode(started(), media(ulaw_encode(samples).tobytes(), ts="1260"))
    assert isinstance(chunk, AudioChunk)
    assert chunk.rate == 8000 and chunk.t == pytest.approx(1.26)
    assert np.abs(chunk.samples.astype(int) - samples).max() < 100  # μ-law steps


def test_mark_dtmf_and_stop():
    state = started()
    state, _ = codec.decode(state, media(b"\xff" * 160, ts="100"))
    state, events = codec.decode(state, msg("mark", sequenceNumber="5", mark={"name": "s1"}))
    assert events == [Played("s1", t=0.1)]
    state, events = codec.decode(
        state, msg("dtmf", sequenceNumber="6", dtmf={"track": "inbound_track", "digit": "#"})
    )
    assert events == [Dtmf("#", t=0.1)]
    state, events = codec.decode(state, msg("stop", sequenceNumber="7", stop={"callSid": "CA1"}))
    assert events == [CallEnded("hangup", t=0.1)]
    with pytest.raises(ProtocolError, match="after 'stop'"):
        codec.decode(state, media(b"\xff" * 160))


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (media(b"\xff" * 160), "'media' before 'start'"),
        (msg("mark", mark={"name": "x"}), "'mark' before 'start'"),
        (b"\x00\x01", "binary frame"),
        ("not json", "not JSON"),
        ("[1, 2]", "not an object"),
        ('{"streamSid": "MZ1"}', "no string 'event'"),
        ("x" * (twilio.MAX_MESSAGE + 1), "over the"),
    ],
)
def test_bad_messages_before_start(message, error):
    with pytest.raises(ProtocolError, match=error):
        codec.decode(codec.initial(), message)


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (msg("bogus"), "unknown event 'bogus'"),
        (START, "a second 'start'"),
        (msg("media", media={"payload": "!!!not base64"}), "not valid base64"),
        (msg("media", media={"timestamp": "20"}), "no string 'media.payload'"),
        (media(b"\xff", ts="soon"), "media.timestamp must be a number"),
        (msg("dtmf", dtmf={"digit": "x"}), "not a keypad key"),
        (msg("mark", mark={}), "no string 'name'"),
        ('{"event": "connected"}', "'connected' after 'start'"),
    ],
)
def test_bad_messages_after_start(message, error):
    with pytest.raises(ProtocolError, match=error):
        codec.decode(started(), message)


def test_outbound_media_mark_clear():
    state = started()
    chunk = AudioChunk(np.zeros(160, dtype=np.int16), 8000)
    _, (text,) = codec.encode(state, chunk)
    sent = json.loads(text)
    assert sent == {"event": "media", "streamSid": "MZ1",
                    "media": {"payload": base64.b64encode(b"\xff" * 160).decode()}}
    assert json.loads(codec.encode(state, Mark("m1"))[1][0]) == {
        "event": "mark", "streamSid": "MZ1", "mark": {"name": "m1"}}
    assert json.loads(codec.encode(state, Interrupted("x"))[1][0]) == {
        "event": "clear", "streamSid": "MZ1"}
    assert codec.encode(state, Sentence("hi")) == (state, [])


def test_nothing_is_sent_before_start_or_at_the_wrong_rate():
    with pytest.raises(ProtocolError, match="while the stream is 'new'"):
        codec.encode(codec.initial(), Mark("m"))
    with pytest.raises(ValueError, match="8000 Hz"):
        codec.encode(started(), AudioChunk(np.zeros(320, dtype=np.int16), 16000))


def test_twiml_escapes_parameters():
    xml = twilio.twiml("wss://h.example/twilio/media", {"caller": '"<&>'})
    assert '<Parameter name="caller" value="&quot;&lt;&amp;&gt;"/>' in xml
    assert xml.count("<Connect><Stream") == 1


def test_signature_matches_twilios_published_example():
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675309", "Digits": "1234",
              "From": "+14158675309", "To": "+18005551212"}
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio.signature("12345", url, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert twilio.verify_signature("12345", url, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not twilio.verify_signature("12345", url, {**params, "Digits": "9"},
                                       "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


def test_tokens_are_per_call_expiring_and_single_use():
    key = b"k" * 32
    token = make_token(key, "CA1", now=100.0, ttl=10)
    check_token(key, token, "CA1", now=105.0)
    for bad, now, error in [(token, 111.0, "expired"), ("a.b", 105.0, "malformed"),
                            (token[:-2] + "xx", 105.0, "not valid")]:
        with pytest.raises(ProtocolError, match=error):
            check_token(key, bad, "CA1", now=now)
    with pytest.raises(ProtocolError, match="not valid for this call"):
        check_token(b"j" * 32, token, "CA1", now=105.0)
    spent = Spent()
    spent.use(token, now=105.0)
    with pytest.raises(ProtocolError, match="already used"):
        spent.use(token, now=106.0)


@pytest.mark.parametrize(("a", "b"), [(8000, 16000), (16000, 8000), (22050, 8000), (8000, 24000)])
def test_the_resampler_is_seamless_and_keeps_a_tone(a, b):
    tone = (np.sin(2 * np.pi * 1000 * np.arange(a) / a) * 10000).astype(np.int16)
    pieces = StreamResampler(a, b)
    out = np.concatenate([pieces.push(tone[i : i + 137]) for i in range(0, a, 137)])
    whole = StreamResampler(a, b).push(tone)
    assert np.array_equal(out, whole[: out.shape[0]])
    assert abs(out.shape[0] - b) < 40  # only the filter's half-width is held back
    rms = np.sqrt(np.mean(out[100:].astype(float) ** 2))
    assert rms == pytest.approx(10000 / np.sqrt(2), rel=0.02)


def test_the_resampler_answers_every_20ms_frame():
    r = StreamResampler(8000, 16000)
    sizes = [r.push(np.zeros(160, dtype=np.int16)).shape[0] for _ in range(10)]
    assert all(s > 0 for s in sizes) and sizes[1:] == [320] * 9
