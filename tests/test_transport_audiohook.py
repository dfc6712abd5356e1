"""The AudioHook codec and session state: every protocol rule as a unit test (pure functions, no
socket). The same rules against a real server: tests/test_transport_audiohook_serve.py."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import numpy as np
import pytest

from voicekit._errors import ConfigError, ProtocolError
from voicekit.events import AudioChunk, CallEnded, CallStarted, Dtmf, Interrupted, Played
from voicekit.transports import audiohook as ah
from voicekit.transports._audiohook_auth import Nonces, parse_keys, verify_handshake

SID = "e160e428-53e2-487c-977d-96989bf5c99d"
STEREO = {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000}
MONO_EXT = {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}
MONO_INT = {"type": "audio", "format": "PCMU", "channels": ["internal"], "rate": 8000}
L16 = {"type": "audio", "format": "L16", "channels": ["external"], "rate": 8000}


def send(state, type_, params=None, **over):
    message = ah.client_message(state, type_, state.clientseq + 1, params)
    message.update(over)
    return ah.decode(state, json.dumps(message))


def opened(mode="bot", media=None, **extra):
    state = ah.initial_state(SID, mode, ("en-US", "fr-FR"))
    state, events = ah.decode(state, json.dumps(ah.open_message(SID, 1, media=media, **extra)))
    return state, events


def reply(events):
    (out,) = [e for e in events if isinstance(e, ah.Outgoing)]
    return json.loads(out.message)


# --- the envelope ----------------------------------------------------------------------------


def test_server_messages_have_exactly_the_envelope_and_parameters_always():
    state = ah.initial_state(SID)
    for kind in ("pong", "closed", "opened", "event"):
        state, text = ah.server_message(state, kind)
        message = json.loads(text)
        assert set(message) == {"version", "id", "type", "seq", "clientseq", "parameters"}
        assert message["version"] == "2" and message["id"] == SID
        assert message["parameters"] == {}  # present even when empty (the seed's bug)
        assert "position" not in message  # server messages carry no position


def test_server_seq_starts_at_1_and_grows_by_exactly_1_across_replies_and_sends():
    state, events = opened()
    seqs = [reply(events)["seq"]]
    state, events = send(state, "ping")
    seqs.append(reply(events)["seq"])
    state, texts = ah.encode(state, Interrupted())
    seqs.append(json.loads(texts[0])["seq"])
    state, events = send(state, "close", {"reason": "end"})
    seqs.append(reply(events)["seq"])
    assert seqs == [1, 2, 3, 4]


def test_clientseq_is_the_seq_of_the_last_client_message_processed():
    state, events = opened()
    assert reply(events)["clientseq"] == 1
    state, events = send(state, "ping")
    assert reply(events)["clientseq"] == 2
    state, _ = ah.decode(state, b"\xff" * 160)  # audio has no seq
    state, texts = ah.encode(state, Interrupted())
    assert json.loads(texts[0])["clientseq"] == 2


@pytest.mark.parametrize("seq", [1, 3, 0])
def test_client_seq_must_be_previous_plus_one(seq):
    state, _ = opened()
    message = ah.client_message(state, "ping", seq)
    with pytest.raises(ProtocolError, match=r"seq .* is not the previous seq \+ 1"):
        ah.decode(state, json.dumps(message))


def test_serverseq_must_not_exceed_ours():
    state, _ = opened()
    message = ah.client_message(state, "ping", 2, serverseq=state.seq + 1)
    with pytest.raises(ProtocolError, match="serverseq 2 is higher than the last server seq 1"):
        ah.decode(state, json.dumps(message))


def test_id_must_be_the_session_id():
    state, _ = opened()
    message = ah.client_message("another-id", "ping", 2, serverseq=1)
    with pytest.raises(ProtocolError, match="id 'another-id' is not the session id"):
        ah.decode(state, json.dumps(message))


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"version": "1"}, "'version' must be \"2\""),
        ({"parameters": None}, "no 'parameters' object"),
        ({"parameters": []}, "no 'parameters' object"),
        ({"type": 5}, "no string 'type'"),
        ({"seq": "2"}, "'seq' must be a non-negative integer"),
        ({"seq": True}, "'seq' must be a non-negative integer"),
        ({"serverseq": -1}, "'serverseq' must be a non-negative integer"),
        ({"position": "12"}, "position '12' is not a duration"),
        ({"type": "pause"}, "'pause' is not a client message type"),
    ],
)
def test_a_malformed_envelope_names_the_rule(change, rule):
    state, _ = opened()
    message = ah.client_message(state, "ping", 2)
    message.update(change)
    with pytest.raises(ProtocolError, match=rule):
        ah.decode(state, json.dumps(message))


def test_a_missing_parameters_key_is_a_violation():
    state, _ = opened()
    message = ah.client_message(state, "ping", 2)
    del message["parameters"]
    with pytest.raises(ProtocolError, match="'ping' message has no 'parameters' object"):
        ah.decode(state, json.dumps(message))


def test_text_over_64k_and_bad_json_are_violations():
    state, _ = opened()
    with pytest.raises(ProtocolError, match="over the 64 KiB limit"):
        ah.decode(state, "x" * 65536)
    with pytest.raises(ProtocolError, match="not valid JSON"):
        ah.decode(state, "{")


def test_position_is_read_and_tracked():
    state, _ = opened()
    state, _ = send(state, "ping", position="PT12.345S")
    assert state.position == 12.345
    state, (dtmf,) = send(state, "dtmf", {"digit": "5"}, position="PT13S")
    assert dtmf == Dtmf("5", t=13.0)


def test_durations_round_trip():
    for seconds in (0.0, 0.02, 1.5, 3600.125):
        assert ah.parse_duration(ah.format_duration(seconds)) == seconds
    for bad in ("P1S", "PT-1S", "PT1.S", "1.5", 1.5, None):
        with pytest.raises(ProtocolError):
            ah.parse_duration(bad)


# --- open / opened ---------------------------------------------------------------------------


def test_open_selects_exactly_one_offered_format_echoed_as_offered():
    state, events = opened(media=[MONO_EXT, STEREO, L16])
    message = reply(events)
    assert message["type"] == "opened"
    assert message["parameters"]["media"] == [STEREO]  # stereo first, exactly as offered
    assert message["parameters"]["startPaused"] is False
    assert state.phase == "open" and state.channels == ("external", "internal")


def test_the_offered_channel_order_is_kept():
    reversed_stereo = {**STEREO, "channels": ["internal", "external"]}
    state, events = opened(media=[reversed_stereo])
    assert reply(events)["parameters"]["media"][0]["channels"] == ["internal", "external"]
    samples = np.array([1000, -1000] * 80, dtype=np.int16)  # internal, external interleaved
    from voicekit.audio import ulaw_encode

    state, (internal, external) = ah.decode(state, ulaw_encode(samples).tobytes())
    assert isinstance(internal, ah.ChannelAudio) and internal.chunk.samples[0] > 0
    assert isinstance(external, AudioChunk) and external.samples[0] < 0


def test_l16_is_taken_when_it_is_all_that_is_offered():
    state, events = opened(media=[L16])
    assert reply(events)["parameters"]["media"] == [L16]
    pcm = np.array([0, 1234, -1234], dtype="<i2")
    state, (chunk,) = ah.decode(state, pcm.tobytes())
    assert chunk.samples.tolist() == [0, 1234, -1234]


def test_bot_mode_needs_the_callers_channel_monitor_takes_any():
    with pytest.raises(ProtocolError, match="none of the offered media formats is supported"):
        opened(media=[MONO_INT])
    _, events = opened("monitor", media=[MONO_INT])
    assert reply(events)["parameters"]["media"] == [MONO_INT]


def test_unsupported_offers_are_skipped():
    bad = [{**MONO_EXT, "rate": 16000}, {**MONO_EXT, "format": "opus"},
           {**MONO_EXT, "channels": ["external", "external"]}, "PCMU"]
    assert ah.select_media(bad) is None
    assert ah.select_media([*bad, MONO_EXT]) == MONO_EXT


def test_supported_languages_only_when_the_client_asks():
    _, events = opened()
    assert "supportedLanguages" not in reply(events)["parameters"]
    _, events = opened(supportedLanguages=True)
    assert reply(events)["parameters"]["supportedLanguages"] == ["en-US", "fr-FR"]


def test_open_starts_the_call_with_the_conversation_and_participant():
    _, events = opened(inputVariables={"queue": "support", "n": 3})
    (started,) = [e for e in events if isinstance(e, CallStarted)]
    assert started.call_id == "a4b6b4e2-3f6b-4f9e-8d7c-0d2b8c9f4a11"
    assert started.carrier == "audiohook" and started.stream_id == SID
    assert started.caller == "+15551234567" and started.callee == "+15557654321"
    assert started.parameters["queue"] == "support" and "n" not in started.parameters


def test_a_connection_probe_is_answered_without_starting_a_call():
    state = ah.initial_state(SID)
    message = ah.open_message(SID, 1, conversation_id=ah.NULL_UUID)
    message["parameters"]["participant"]["id"] = ah.NULL_UUID
    state, events = ah.decode(state, json.dumps(message))
    assert state.probe and [type(e) for e in events] == [ah.Outgoing]
    state, events = send(state, "close", {"reason": "end"})
    assert reply(events)["type"] == "closed" and not any(
        isinstance(e, CallEnded) for e in events
    )
    assert ah.encode(state, AudioChunk(np.zeros(160, np.int16), 8000))[1] == []


@pytest.mark.parametrize("missing", ["organizationId", "conversationId", "participant", "media"])
def test_open_without_its_parameters_is_a_violation(missing):
    message = ah.open_message(SID, 1)
    del message["parameters"][missing]
    with pytest.raises(ProtocolError, match=missing):
        ah.decode(ah.initial_state(SID), json.dumps(message))


def test_open_comes_first_and_once():
    state = ah.initial_state(SID)
    with pytest.raises(ProtocolError, match="'dtmf' before 'open'"):
        send(state, "dtmf", {"digit": "1"})
    state, _ = opened()
    with pytest.raises(ProtocolError, match="'open' in a session that is open"):
        ah.decode(state, json.dumps(ah.open_message(SID, 2, serverseq=0)))


# --- the other messages ----------------------------------------------------------------------


def test_ping_gets_pong_with_empty_parameters():
    state, _ = opened()
    state, events = send(state, "ping", {"rtt": "PT0.05S"})
    assert reply(events)["type"] == "pong" and reply(events)["parameters"] == {}


def test_close_gets_closed_with_output_variables_where_set():
    state, _ = opened()
    state, _ = send(state, "close", {"reason": "end"})
    state2, _ = opened()
    state2, _ = ah.encode(state2, ah.SetOutputVariables({"action": "transfer"}))
    state2, events = send(state2, "close", {"reason": "end"})
    assert reply(events)["parameters"] == {"outputVariables": {"action": "transfer"}}
    assert [e for e in events if isinstance(e, CallEnded)] == [CallEnded("hangup", "end", 0.0)]
    with pytest.raises(ProtocolError, match="after 'closed'"):
        send(state2, "ping")


def test_pause_and_resume_go_server_to_client_and_the_client_answers():
    state, _ = opened()
    state, (text,) = ah.encode(state, ah.Pause())
    assert json.loads(text)["type"] == "pause" and state.phase == "open" and state.pausing
    state, _ = ah.decode(state, b"\xff" * 160)
    assert state.dropped == 0  # audio still flows until the client says paused
    state, _ = send(state, "paused")
    assert state.phase == "paused" and not state.pausing
    state, events = ah.decode(state, b"\xff" * 160)
    assert events == [] and state.dropped == 1  # audio while paused: dropped and counted
    state, (text,) = ah.encode(state, ah.Resume())
    assert json.loads(text)["type"] == "resume"
    before = state.samples
    start = ah.format_duration(before / 8000)  # the gap begins where our clock is
    state, _ = send(state, "resumed", {"start": start, "discarded": "PT1.5S"})
    assert state.phase == "open" and state.samples == before + 12000


def test_the_client_pausing_on_its_own_is_handled_and_pause_is_never_taken_from_it():
    state, _ = opened()
    state, events = send(state, "paused")
    assert state.phase == "paused" and events == []
    with pytest.raises(ProtocolError, match="'pause' is not a client message type"):
        send(state, "pause")


def test_update_discarded_and_error_from_the_client():
    state, _ = opened()
    state, events = send(state, "update", {"language": "fr-FR"})
    assert state.language == "fr-FR" and events == [ah.LanguageChanged("fr-FR", 0.0)]
    state, events = send(state, "discarded", {"start": "PT0S", "discarded": "PT0.5S"})
    assert events == [] and state.samples == 4000  # the position clock moves over the gap
    state, (chunk, _) = ah.decode(state, b"\xff" * 320)
    assert chunk.t == 0.5
    state, events = send(state, "error", {"code": 429, "message": "slow down",
                                         "retryAfter": "PT1.5S"})
    assert events == [ah.RateLimited(1.5, "slow down")]
    state, events = send(state, "error", {"code": 500, "message": "oops"})
    assert events == []


def test_dtmf_and_playback_events():
    state, _ = opened()
    state, events = send(state, "dtmf", {"digit": "#"})
    assert events == [Dtmf("#", t=0.0)]
    state, events = send(state, "playback_started")
    state, events2 = send(state, "playback_completed")
    assert events + events2 == [Played("playback_started"), Played("playback_completed")]
    with pytest.raises(ProtocolError, match="'dtmf' digit 'x'"):
        send(state, "dtmf", {"digit": "x"})


def test_disconnect_carries_reason_info_and_string_output_variables():
    state, _ = opened()
    state, (text,) = ah.disconnect(state, "completed", "", {"action": "transfer"})
    message = json.loads(text)
    assert message["parameters"] == {"reason": "completed",
                                     "outputVariables": {"action": "transfer"}}
    assert state.phase == "disconnecting"
    assert ah.disconnect(state, "error", "again") == (state, [])  # only once
    with pytest.raises(ConfigError, match="strings"):
        ah.disconnect(opened()[0], "completed", "", {"n": 3})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="reason"):
        ah.disconnect(opened()[0], "bye")


def test_after_our_disconnect_only_close_matters():
    state, _ = opened()
    state, _ = ah.disconnect(state, "error", "bad")
    state, events = send(state, "dtmf", {"digit": "1"})
    assert events == []
    state, events = send(state, "close", {"reason": "disconnect"})
    assert reply(events)["type"] == "closed"


# --- audio -----------------------------------------------------------------------------------


def test_audio_before_opened_is_dropped_and_counted():
    state = ah.initial_state(SID)
    state, events = ah.decode(state, b"\xff" * 160)
    assert events == [] and state.dropped == 1


def test_stereo_is_deinterleaved_into_two_channels_on_the_position_clock():
    from voicekit.audio import ulaw_encode

    state, _ = opened()
    pcm = np.empty(320, dtype=np.int16)
    pcm[0::2], pcm[1::2] = 8000, -8000
    data = ulaw_encode(pcm).tobytes()
    state, (ext, internal) = ah.decode(state, data)
    state, (ext2, _) = ah.decode(state, data)
    assert ext.rate == 8000 and ext.samples.shape == (160,) and ext.samples.min() > 7000
    assert internal.channel == "internal" and internal.chunk.samples.max() < -7000
    assert (ext.t, ext2.t) == (0.0, 0.02) and state.samples == 320
    with pytest.raises(ProtocolError, match="not whole PCMU 2-channel samples"):
        ah.decode(state, b"\xff" * 3)


def test_in_monitor_mode_both_channels_are_channel_audio():
    state, _ = opened("monitor")
    state, events = ah.decode(state, b"\xff" * 320)
    assert [e.channel for e in events] == ["external", "internal"]


def test_outbound_audio_is_pcmu_in_1600_byte_packets_and_barge_in_is_an_event():
    codec = ah.codec(SID)
    assert codec.rate * codec.frame_ms // 1000 == ah.PACKET_BYTES == 1600
    state, _ = opened()
    chunk = AudioChunk(np.full(1600, 1000, dtype=np.int16), 8000)
    state, (packet,) = ah.encode(state, chunk)
    assert isinstance(packet, bytes) and len(packet) == 1600
    state, (short,) = ah.encode(state, AudioChunk(np.full(100, 1000, dtype=np.int16), 8000))
    assert len(short) == 1600 and set(short[100:]) == {0xFF}  # padded with μ-law silence
    state, (text,) = ah.encode(state, Interrupted())
    assert json.loads(text)["parameters"] == {"entities": [{"type": "barge_in", "data": {}}]}
    monitor, _ = opened("monitor")
    assert ah.encode(monitor, chunk)[1] == []  # the monitor never talks


def test_transcript_events_for_the_monitor():
    state, _ = opened("monitor")
    entity = ah.transcript_entity("hello", channel="internal", offset=1.0, duration=0.75)
    state, (text,) = ah.encode(state, ah.EventEntities((entity,)))
    data = json.loads(text)["parameters"]["entities"][0]["data"]
    assert data["channel"] == "internal" and data["offset"] == "PT1S"
    assert data["duration"] == "PT0.75S"
    assert data["alternatives"][0]["interpretations"][0]["transcript"] == "hello"


# --- the handshake ---------------------------------------------------------------------------

KEY, SECRET = "key-1", b"0123456789abcdef0123456789abcdef"
HEADERS = {
    "audiohook-organization-id": "org-1",
    "audiohook-session-id": SID,
    "audiohook-correlation-id": "corr-1",
    "x-api-key": KEY,
    "host": "bot.example.com",
}


def signed(now=1_700_000_000, nonce="n1", created=None, expires=None, secret=SECRET,
           components=("@request-target", "@authority", "audiohook-organization-id",
                       "audiohook-session-id", "audiohook-correlation-id", "x-api-key")):
    created = now if created is None else created
    expires = created + 300 if expires is None else expires
    listed = " ".join(f'"{c}"' for c in components)
    params = (f'({listed});keyid="{KEY}";nonce="{nonce}";alg="hmac-sha256";created={created};'
              f"expires={expires}")
    values = {"@request-target": "/audiohook", "@authority": "bot.example.com", **HEADERS}
    base = "\n".join([*(f'"{c}": {values[c]}' for c in components),
                      f'"@signature-params": {params}'])
    mac = base64.b64encode(hmac.new(secret, base.encode(), hashlib.sha256).digest()).decode()
    return {**HEADERS, "signature-input": f"sig1={params}", "signature": f"sig1=:{mac}:"}


def check(headers, now=1_700_000_000, nonces=None, keys=None, **kw):
    table = keys if keys is not None else {KEY: SECRET}
    return verify_handshake(headers, target="/audiohook", authority="bot.example.com",
                            keys=table, nonces=nonces or Nonces(), now=now, **kw)


def test_a_good_signature_passes():
    assert check(signed()) == ""


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({**signed(), "x-api-key": "other"}, "unknown or missing X-API-KEY"),
        (signed(secret=b"wrong"), "signature does not match"),
        ({**signed(), "audiohook-session-id": "tampered"}, "signature does not match"),
        (signed(now=1_700_000_000 - 400, expires=1_700_000_000 - 10), "signature expired"),
        (signed(created=1_700_000_000 - 400, expires=1_700_000_000 + 400), "too old"),
        (signed(created=1_700_000_000 + 60), "created in the future"),
        (signed(components=("@request-target", "@authority", "x-api-key")),
         "does not cover audiohook-organization-id"),
        ({k: v for k, v in signed().items() if k != "signature"}, "not signed"),
    ],
)
def test_bad_signatures_are_refused_with_a_reason(headers, reason):
    assert reason in check(headers)


def test_a_replayed_nonce_is_refused():
    nonces = Nonces()
    assert check(signed(), nonces=nonces) == ""
    assert check(signed(), nonces=nonces) == "nonce replayed"


def test_unsigned_only_for_a_key_without_secret_and_orgs_allow_list():
    assert check(HEADERS, keys={KEY: None}) == ""
    assert check(HEADERS) == "request is not signed"
    assert check(signed(), organizations=frozenset({"org-2"})) == "organization not allowed"
    assert parse_keys("a:,b:" + base64.b64encode(b"s").decode()) == {"a": None, "b": b"s"}


def test_no_reason_shows_the_key_or_secret():
    for headers in (signed(secret=b"wrong"), {**signed(), "x-api-key": "other"}):
        reason = check(headers)
        assert KEY not in reason and SECRET.decode() not in reason
