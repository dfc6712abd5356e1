"""voicekit.phone.collect_digits: keypad entries ended by '#', a count or an inter-digit gap on
stream time; sensitive entries masked everywhere but Digits.value; the agent answers an entry;
and keys pressed on a simulated Twilio call and a fake Telnyx call."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
import pytest
from servers.fake_telnyx import TelnyxCall
from servers.phone_calls import PhoneAgent
from servers.serving import serving, voicekit_tasks
from streamdouble import api
from streamdouble.scenario import parse
from streamdouble.session import SessionConfig

import voicekit as vk
import voicekit.serve
from voicekit import ConfigError
from voicekit.conversation import scripted_llm
from voicekit.events import AudioChunk, CallEnded, Dtmf, SpeechStarted, TurnEnded, TurnStarted
from voicekit.phone import Digits, collect_digits
from voicekit.tts import tones


def silence(start: float, seconds: float) -> list[AudioChunk]:
    """Caller audio: 20 ms chunks of silence from ``start`` (the stream's clock)."""
    zeros = np.zeros(320, np.int16)
    return [AudioChunk(zeros, 16000, start + i * 0.02) for i in range(round(seconds / 0.02))]


async def run(items: list[Any], **options: Any) -> list[Any]:
    return await (items | collect_digits(**options)).list()


def marks(items: list[Any]) -> list[Any]:
    return [x for x in items if not isinstance(x, AudioChunk)]


async def test_the_end_key_ends_an_entry_and_makes_a_user_turn():
    out = await run([Dtmf("1", 1.0), Dtmf("2", 1.2), Dtmf("3", 1.4), Dtmf("#", 1.6)])
    assert out == [
        Dtmf("1", 1.0), Dtmf("2", 1.2), Dtmf("3", 1.4), Dtmf("#", 1.6),
        Digits("123", "end", 1.6),
        TurnStarted(1.0),
        TurnEnded("The caller pressed 1 2 3.", 1.6),
    ]


async def test_a_count_ends_an_entry_and_the_next_keys_start_another():
    out = await run([Dtmf(d, 0.1 * i) for i, d in enumerate("123456")], count=4, text=None)
    digits = [x for x in out if isinstance(x, Digits)]
    assert [(d.value, d.ended_by) for d in digits] == [("1234", "count"), ("56", "call_ended")]
    assert not any(isinstance(x, TurnEnded) for x in out)  # text=None: a value only


async def test_the_gap_is_measured_on_stream_time():
    # keys at 1.0 and 1.5, then silent audio: the entry ends 2.01 s after the last key, at
    # 3.51, just before the first item that takes the stream there — however fast it is fed
    items = [*silence(0.0, 1.0), Dtmf("4", 1.0), *silence(1.0, 0.5), Dtmf("2", 1.5),
             *silence(1.5, 3.0), Dtmf("7", 4.5)]
    out = await run(items, gap=2.01)
    entry = next(x for x in out if isinstance(x, Digits))
    assert (entry.value, entry.ended_by) == ("42", "timeout")
    assert entry.t == pytest.approx(3.51)
    at = out.index(entry)
    assert max(c.end for c in out[:at] if isinstance(c, AudioChunk)) < 3.51
    assert next(x for x in out[at:] if isinstance(x, AudioChunk)).end == pytest.approx(3.52)
    assert out[at + 1] == TurnStarted(1.0)
    assert out[at + 2].text == "The caller pressed 4 2."
    # the key at 4.5 starts a new entry, cut short by the end of the stream
    assert [x for x in out if isinstance(x, Digits)][-1] == Digits("7", "call_ended", 4.5)


async def test_without_audio_there_is_no_clock_between_keys():
    out = await run([Dtmf("1", 0.0), SpeechStarted(10.0), Dtmf("2", 20.0), Dtmf("#", 21.0)],
                    gap=None)
    assert [x.value for x in out if isinstance(x, Digits)] == ["12"]


async def test_an_entry_cut_short_by_the_end_of_the_call_gives_no_turn():
    out = await run([Dtmf("9", 0.5), CallEnded("hangup", t=0.7)])
    assert out == [Dtmf("9", 0.5), Digits("9", "call_ended", 0.5), CallEnded("hangup", t=0.7)]


async def test_sensitive_keys_are_masked_everywhere_but_the_value(caplog):
    caplog.set_level(logging.DEBUG)
    keys = "4111111111111111"
    items = [Dtmf(k, i * 0.1) for i, k in enumerate(keys)]
    out = await run(items, count=16, sensitive=True, reveal_last=4)
    assert not any(isinstance(x, Dtmf) for x in out)  # the key presses do not go on
    entry, _, ended = out
    assert entry.value == keys and entry.ended_by == "count"
    assert keys not in repr(entry) and keys not in str(entry)
    assert str(entry) == "••••••••••••1111"
    assert ended.text == "The caller pressed 16 hidden keys ending in 1 1 1 1."
    assert keys not in caplog.text and "1 1 1 1 1" not in caplog.text
    assert "keypad entry" in caplog.text  # it was logged, masked


async def test_the_agent_answers_an_entry_and_records_it_masked_when_sensitive():
    llm = scripted_llm("Thank you, your PIN is checked.", "You chose option 2.")
    bot = collect_digits(count=4, sensitive=True) | vk.agent(llm=llm, tts=tones())
    keys = [Dtmf(k, 0.1 * i) for i, k in enumerate("2580")]
    out = await ([*keys, Dtmf("2", 5.0), Dtmf("#", 5.1)] | bot).list()
    session = [x for x in out if isinstance(x, vk.SessionUpdated)][-1].session
    assert [m["content"] for m in session.messages if m["role"] == "user"] == [
        "The caller pressed 4 hidden keys.", "The caller pressed 1 hidden key.",
    ]
    assert "2580" not in str(session.messages_json()) and "2580" not in str(llm.calls)
    entries = [x for x in out if isinstance(x, Digits)]  # the values go on, past the agent
    assert [d.value for d in entries] == ["2580", "2"]


async def test_keys_over_a_reply_interrupt_it():
    long = " ".join(f"Sentence number {i} of a long menu." for i in range(12))
    started = asyncio.Event()

    async def caller() -> Any:
        yield TurnStarted(0.0)
        yield TurnEnded("menu", 0.0)
        await started.wait()
        yield Dtmf("1", 0.5)

    llm = scripted_llm(long, "Connecting you to sales.")
    bot = collect_digits(count=1) | vk.agent(llm=llm, tts=tones())
    out = []
    async for item in caller() | bot:
        out.append(item)
        if isinstance(item, AudioChunk):
            started.set()
    kinds = [type(x).__name__ for x in marks(out)]
    assert "Interrupted" in kinds
    final = out[-1].session.messages_json()
    assert final[1]["interrupted"] is True
    assert final[2] == {"role": "user", "content": "The caller pressed 1."}
    assert final[3] == {"role": "assistant", "content": "Connecting you to sales."}


def test_bad_options_are_named():
    with pytest.raises(ConfigError, match="end must be one keypad key"):
        collect_digits(end="x")
    with pytest.raises(ConfigError, match="count must be an int"):
        collect_digits(count=0)
    with pytest.raises(ConfigError, match="gap must be a positive"):
        collect_digits(gap=-1)
    with pytest.raises(ConfigError, match="at least one of end, count and gap"):
        collect_digits(end=None, gap=None)
    with pytest.raises(ConfigError, match="keypad keys only"):
        Digits("12x")


# ---------------------------------------------------------------------------------------------
# Real calls


def echo_keys(text: str) -> Any:
    async def llm(messages: Any) -> Any:
        yield f"{text} {messages[-1]['content']}"

    return llm


async def test_keys_on_a_simulated_twilio_call_get_an_answer():
    bot = PhoneAgent(echo_keys("Got it."), digits={"end": "#"})
    application = vk.serve.app(bot.on_call, dev=True, on_end=bot.on_end)
    scenario = parse({"name": "keys", "steps": [
        {"wait": 0.3}, {"dtmf": "1234#"}, {"wait_for": {"event": "audio", "timeout": 30}},
        {"wait": 2.5},
    ]})
    config = SessionConfig(response_timeout_s=10.0, quiet_period_s=1.0, max_drain_s=10.0)
    async with serving(application) as host:
        report = await api.run_scenario(f"ws://{host}/twilio/media", scenario, config=config)
        await asyncio.wait_for(bot.done.wait(), 10)
    assert report.violations == []
    assert [d.digit for d in bot.came_in(Dtmf)] == list("1234#")
    (entry,) = bot.went_out(Digits)
    assert (entry.value, entry.ended_by) == ("1234", "end")
    assert bot.ended[0].messages_json()[:2] == [
        {"role": "user", "content": "The caller pressed 1 2 3 4."},
        {"role": "assistant", "content": "Got it. The caller pressed 1 2 3 4."},
    ]
    assert report.result.marks_echoed  # the answer was played to the caller
    assert await voicekit_tasks() == []


async def test_an_inter_digit_gap_ends_an_entry_on_a_fake_telnyx_call():
    bot = PhoneAgent(echo_keys("Option"), digits={"end": None, "gap": 1.0})
    application = vk.serve.app(bot.on_call, carrier="telnyx", dev=True, on_end=bot.on_end)
    async with serving(application) as host:
        record = await TelnyxCall(f"ws://{host}/telnyx/media").call(
            digits=[(0.4, "4"), (0.6, "2")],
            until=lambda r: bool(r.events("mark")), linger=1.5,
        )
        await asyncio.wait_for(bot.done.wait(), 10)
    assert record.violations == []
    (entry,) = bot.went_out(Digits)
    # the gap counts on the call's stream time: the entry ends 1 s after the last key
    assert (entry.value, entry.ended_by) == ("42", "timeout")
    last_key = bot.came_in(Dtmf)[-1].t
    assert entry.t == pytest.approx(last_key + 1.0)
    assert bot.ended[0].messages_json()[1] == {
        "role": "assistant", "content": "Option The caller pressed 4 2.",
    }
    assert await voicekit_tasks() == []


def test_every_carrier_codec_decodes_keypad_keys():
    """Twilio, Telnyx, Plivo and AudioHook all give Dtmf for a key press, from the messages the
    simulated carriers send (each codec's own suite tests its rules)."""
    import json

    from servers.fake_plivo import PlivoCall

    from voicekit.transports import audiohook, plivo, telnyx, twilio

    def keys(codec: Any, opening: list[Any], *presses: Any) -> list[Any]:
        state, events = codec.initial(), []
        for message in [*opening, *presses]:
            state, out = codec.decode(state, json.dumps(message))
            events += out
        return [e for e in events if isinstance(e, Dtmf)]

    start = {"event": "start", "sequenceNumber": "1", "streamSid": "MZ1", "start": {
        "streamSid": "MZ1", "accountSid": "AC1", "callSid": "CA1", "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {}}}
    press = {"event": "dtmf", "streamSid": "MZ1", "sequenceNumber": "2", "dtmf": {"digit": "7"}}
    assert keys(twilio.codec, [start], press) == [Dtmf("7", 0.0)]
    fake_telnyx = TelnyxCall("ws://unused")
    assert keys(telnyx.codec(), fake_telnyx.opening(), fake_telnyx.dtmf("#")) == [Dtmf("#")]
    fake_plivo = PlivoCall("ws://unused")
    assert keys(plivo.codec(), fake_plivo.opening(), fake_plivo.dtmf("3")) == [Dtmf("3")]
    sid = "e160e428-53e2-487c-977d-96989bf5c99d"
    state = audiohook.initial_state(sid)
    state, _ = audiohook.decode(state, json.dumps(audiohook.open_message(sid, 1)))
    message = audiohook.client_message(state, "dtmf", 2, {"digit": "5"})
    _, events = audiohook.decode(state, json.dumps(message))
    assert [e for e in events if isinstance(e, Dtmf)] == [Dtmf("5", 0.0)]
