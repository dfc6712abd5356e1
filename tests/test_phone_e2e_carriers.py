"""The phone agent's behaviours on the carriers the other phone tests leave out (issue 14 items
1-4): keys and an idle caller on a fake Plivo call, the transfer_call and send_dtmf tools on a
fake Telnyx call — each a whole simulated call: ``voicekit.serve.app`` under uvicorn, the fake
carrier peer of ``tests/servers`` (real pacing, a play-out clock, acknowledgements) and the
carriers' fake REST API (``tests/servers/fake_rest.py``) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from servers.fake_carrier import caller_audio
from servers.fake_plivo import PlivoCall
from servers.fake_telnyx import TelnyxCall
from servers.phone_calls import PhoneAgent
from servers.phone_rest import carrier_api, rest_api
from servers.serving import serving, voicekit_tasks
from streamdouble import api
from streamdouble.scenario import parse
from streamdouble.session import SessionConfig

import voicekit as vk
import voicekit.serve
from voicekit import phone
from voicekit.conversation import scripted_llm
from voicekit.events import (
    AudioChunk,
    Dtmf,
    HangUp,
    Mark,
    Played,
    ReplyStarted,
    SendDtmf,
    ToolCall,
    TransferCall,
)
from voicekit.phone import Digits

PLIVO_CALL = "fake-call-uuid-1"
TELNYX_CALL = "v3:fake-call-1"


def echo_keys(text: str) -> Any:
    async def llm(messages: Any) -> Any:
        yield f"{text} {messages[-1]['content']}"

    return llm


async def test_keys_on_a_fake_plivo_call_are_collected_and_answered():
    bot = PhoneAgent(echo_keys("Got it."), digits={"end": "#"})
    application = vk.serve.app(bot.on_call, carrier="plivo", dev=True, on_end=bot.on_end)
    async with serving(application) as host:
        record = await PlivoCall(f"ws://{host}/plivo/media").call(
            digits=[(0.3, "7"), (0.5, "0"), (0.7, "3"), (0.9, "#")],
            until=lambda r: len(r.echoed) >= 2, linger=0.3, max_seconds=30,
        )
        await asyncio.wait_for(bot.done.wait(), 10)
    assert record.violations == []
    assert [d.digit for d in bot.came_in(Dtmf)] == list("703#")
    (entry,) = bot.went_out(Digits)
    assert (entry.value, entry.ended_by) == ("703", "end")
    assert bot.ended[0].messages_json()[:2] == [
        {"role": "user", "content": "The caller pressed 7 0 3."},
        {"role": "assistant", "content": "Got it. The caller pressed 7 0 3."},
    ]
    assert record.heard_seconds > 0.5  # the answer was played to the caller
    assert await voicekit_tasks() == []


async def test_an_idle_caller_on_a_fake_plivo_call():
    bot = PhoneAgent(scripted_llm(), first_message="Hello, how can I help?",
                     idle=phone.idle(1.5, reprompts=1, goodbye="Goodbye."))
    async with rest_api() as (fake_api, base):
        fake_api.live(PLIVO_CALL)
        application = vk.serve.app(bot.on_call, carrier="plivo", dev=True, on_end=bot.on_end,
                                   api=carrier_api("plivo", base))
        async with serving(application) as host:
            peer = PlivoCall(f"ws://{host}/plivo/media")
            record = await peer.call(
                until=lambda r: fake_api.acted.is_set(), linger=0.2, max_seconds=30,
            )
            await asyncio.wait_for(bot.done.wait(), 10)
    assert record.violations == []
    started = bot.went_out(ReplyStarted)
    assert [s.turn for s in started] == [None, None, None]  # greeting, reprompt, goodbye
    # the timer starts at Plivo's playedStream for the greeting's checkpoint, on stream time
    played = {p.name: p.t for p in bot.came_in(Played)}
    greeting = [x.name for x in bot.outbound[: bot.outbound.index(started[1])]
                if isinstance(x, Mark)][-1]
    assert started[1].t == pytest.approx(played[greeting] + 1.5)
    out = bot.outbound
    hang_up = next(i for i, x in enumerate(out) if isinstance(x, HangUp))
    assert out[hang_up] == HangUp("idle")
    assert {x.name for x in out[:hang_up] if isinstance(x, Mark)} <= set(played)
    (session,) = bot.ended
    assert [m.get("kind") for m in session.messages_json()] == [None, "idle_reprompt",
                                                               "idle_goodbye"]
    (request,) = fake_api.of("hangup")  # Plivo's REST DELETE, after the goodbye was heard
    assert (request.call_id, request.method, request.status) == (PLIVO_CALL, "DELETE", 204)
    goodbye_mark = [x.name for x in out[:hang_up] if isinstance(x, Mark)][-1]
    echoed = next(at for at, name in record.echoed if name == goodbye_mark)
    assert request.t >= peer._t0 + echoed
    assert await voicekit_tasks() == []


async def test_the_transfer_call_tool_on_a_fake_telnyx_call():
    llm = scripted_llm([ToolCall("c1", "transfer_call", '{"to": "support"}')])
    desks = {"sales": "+15550100", "support": "sip:help@pbx.example"}
    bot = PhoneAgent(llm, transcripts=["a human, please"], tools=[phone.transfer_call(desks)])
    async with rest_api() as (fake_api, base):
        fake_api.live(TELNYX_CALL)
        application = vk.serve.app(bot.on_call, carrier="telnyx", dev=True, on_end=bot.on_end,
                                   api=carrier_api("telnyx", base))
        async with serving(application) as host:
            peer = TelnyxCall(f"ws://{host}/telnyx/media")
            record = await peer.call(caller_audio(seconds=1.0),
                                     until=lambda r: fake_api.acted.is_set(), linger=0.2,
                                     max_seconds=30)
            await asyncio.wait_for(bot.done.wait(), 10)
    assert record.violations == []
    (transfer,) = bot.went_out(TransferCall)
    assert transfer.to == "sip:help@pbx.example"
    (line,) = bot.went_out(Mark)
    assert line.text == phone.DEFAULT_TRANSFER_LINE
    (request,) = fake_api.of("transfer")  # Call Control's transfer, once the line was heard
    assert (request.call_id, request.body) == (TELNYX_CALL, {"to": "sip:help@pbx.example"})
    echoed = next(at for at, name in record.echoed if name == line.name)
    assert request.t >= peer._t0 + echoed
    assert abs(record.heard_seconds - sum(
        c.duration for c in bot.went_out(AudioChunk))) < 0.1  # all of the line was played
    assert bot.ended[0].memory["call_end"]["to"] == "sip:help@pbx.example"
    assert await voicekit_tasks() == []


async def test_the_send_dtmf_tool_on_a_fake_telnyx_call():
    llm = scripted_llm(["Choosing billing. ", ToolCall("c1", "send_dtmf", '{"digits": "2"}')],
                       "I pressed two.")
    bot = PhoneAgent(llm, transcripts=["for billing press two"], tools=[phone.send_dtmf()])
    async with rest_api() as (fake_api, base):
        fake_api.live(TELNYX_CALL)
        application = vk.serve.app(bot.on_call, carrier="telnyx", dev=True, on_end=bot.on_end,
                                   api=carrier_api("telnyx", base))
        async with serving(application) as host:
            peer = TelnyxCall(f"ws://{host}/telnyx/media")
            record = await peer.call(caller_audio(seconds=1.0),
                                     until=lambda r: len(r.echoed) >= 2, linger=0.3,
                                     max_seconds=30)
            await asyncio.wait_for(bot.done.wait(), 10)
    assert record.violations == []
    assert bot.went_out(SendDtmf) == [SendDtmf("2")]
    (request,) = fake_api.of("send_dtmf")  # Call Control's send_dtmf, after "Choosing billing."
    assert request.body == {"digits": "2", "duration_millis": 250}
    first = bot.went_out(Mark)[0]
    assert first.text == "Choosing billing."
    echoed = next(at for at, name in record.echoed if name == first.name)
    assert request.t >= peer._t0 + echoed
    assert bot.ended[0].messages_json()[-1] == {"role": "assistant", "content": "I pressed two."}
    assert "call_end" not in bot.ended[0].memory  # the call went on
    assert await voicekit_tasks() == []


CARD = "4111111111111111"


@pytest.mark.parametrize("carrier", ["twilio", "telnyx", "plivo"])
async def test_a_card_number_keyed_on_each_carrier_is_never_shown(carrier, tmp_path, caplog):
    """``collect_digits(sensitive=True)`` on a whole call: the keys come in as each carrier's
    ``dtmf`` messages, the agent answers the masked turn, and neither the Session, the LLM, a
    voicekit log line nor the call's recording has the number; ``Digits.value`` has it."""
    caplog.set_level(logging.DEBUG)
    llm = scripted_llm("Thank you, I have the card ending in one one one one.")
    bot = PhoneAgent(llm, digits={"count": 16, "sensitive": True, "reveal_last": 4})
    calls = tmp_path / "calls"
    application = vk.serve.app(bot.on_call, carrier=carrier, dev=True, on_end=bot.on_end,
                               record_dir=calls)
    async with serving(application) as host:
        if carrier == "twilio":
            scenario = parse({"name": "card", "steps": [
                {"wait": 0.3}, {"dtmf": CARD}, {"wait_for": {"event": "audio", "timeout": 30}},
                {"wait": 3.5},
            ]})
            config = SessionConfig(response_timeout_s=10.0, quiet_period_s=1.0, max_drain_s=5.0)
            report = await api.run_scenario(f"ws://{host}/twilio/media", scenario, config=config)
            assert report.violations == []
        else:
            peer = (TelnyxCall(f"ws://{host}/telnyx/media") if carrier == "telnyx"
                    else PlivoCall(f"ws://{host}/plivo/media"))
            record = await peer.call(digits=[(0.3 + 0.06 * i, k) for i, k in enumerate(CARD)],
                                     until=lambda r: bool(r.echoed), linger=0.3,
                                     max_seconds=30)  # the answer (one sentence) was heard
            assert record.violations == []
        await asyncio.wait_for(bot.done.wait(), 10)
    assert [d.digit for d in bot.came_in(Dtmf)] == list(CARD)  # they did come in
    assert not bot.went_out(Dtmf)
    (entry,) = bot.went_out(Digits)
    assert entry.value == CARD and str(entry) == "••••••••••••1111"
    (final,) = bot.ended
    assert final.messages_json()[0] == {
        "role": "user", "content": "The caller pressed 16 hidden keys ending in 1 1 1 1."}
    assert final.messages_json()[1]["content"].startswith("Thank you")
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("voicekit"))
    assert "keypad entry" in ours
    shown = [CARD, " ".join(CARD), "41111111"]
    for text in (ours, str(final.messages_json()), str(llm.calls)):
        assert not any(s in text for s in shown)
    (transcript,) = calls.glob("*.json")
    kept = transcript.read_text()
    assert kept.count('"dtmf"') == 16 and not any(s in kept for s in shown)
    assert await voicekit_tasks() == []
