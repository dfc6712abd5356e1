"""voicekit.phone's call-control tools: end_call and transfer_call make the agent finish its
line — audio and Mark — and then yield HangUp / TransferCall; a barge-in on the goodbye does
not lose the hang-up; send_dtmf yields SendDtmf at once; the Session records what happened.
Over a simulated Twilio call and a fake Plivo call too."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from servers.fake_plivo import PlivoCall
from servers.phone_calls import PhoneAgent, tone_wav
from servers.phone_rest import carrier_api, rest_api
from servers.serving import serving, voicekit_tasks
from streamdouble import api
from streamdouble.scenario import parse
from streamdouble.session import SessionConfig

import voicekit as vk
import voicekit.serve
from voicekit import ConfigError, phone
from voicekit.conversation import barge_in, run_conversation, say, scripted_llm
from voicekit.events import (
    AudioChunk,
    HangUp,
    Mark,
    Played,
    SendDtmf,
    SessionUpdated,
    ToolCall,
    ToolResult,
    TransferCall,
    TurnEnded,
    TurnStarted,
)
from voicekit.tts import tones


def kinds(items: list[Any]) -> list[str]:
    return [type(x).__name__ for x in items if not isinstance(x, AudioChunk)]


def final(items: list[Any]) -> vk.Session:
    return [x for x in items if isinstance(x, SessionUpdated)][-1].session


async def talk(bot: Any, *texts: str) -> list[Any]:
    items: list[Any] = []
    for text in texts:
        items += [TurnStarted(), TurnEnded(text)]
    return await (items | bot).list()


async def test_end_call_with_a_goodbye_line_hangs_up_after_its_audio_and_mark():
    llm = scripted_llm([ToolCall("c1", "end_call")])
    bot = vk.agent(llm=llm, tts=tones(), tools=[phone.end_call(goodbye="Thanks. Goodbye!")])
    out = await talk(bot, "That's all.")
    names = kinds(out)
    assert names[-4:] == ["Mark", "Mark", "SessionUpdated", "HangUp"]
    last_audio = max(i for i, x in enumerate(out) if isinstance(x, AudioChunk))
    hang_up = next(i for i, x in enumerate(out) if isinstance(x, HangUp))
    assert last_audio < hang_up  # everything said comes before it
    assert out[hang_up] == HangUp("completed")
    assert len(llm.calls) == 1  # the tool's own line: the LLM is not asked again
    session = final(out)
    messages = session.messages_json()
    assert messages[1]["tool_calls"][0]["function"]["name"] == "end_call"
    assert json.loads(messages[2]["content"])["action"] == "hang_up"
    assert messages[3] == {"role": "assistant", "content": "Thanks. Goodbye!", "kind": "call_line"}
    assert dict(session.memory["call_end"]) == {
        "action": "hang_up", "by": "end_call", "reason": "completed",
        "line": "Thanks. Goodbye!", "interrupted": False,
    }


async def test_end_call_after_the_llms_own_goodbye():
    llm = scripted_llm(["Glad I could help. Goodbye! ", ToolCall("c1", "end_call")], "")
    bot = vk.agent(llm=llm, tts=tones(), tools=[phone.end_call()])
    out = await talk(bot, "Thanks, bye.")
    assert kinds(out)[-5:] == ["Mark", "ToolCall", "ToolResult", "SessionUpdated", "HangUp"]
    assert "ReplyFailed" not in kinds(out)  # an empty round after the goodbye is no failure
    assert len(llm.calls) == 2  # the LLM was told the call ends, and had nothing to add
    assert "ends once your reply is heard" in llm.calls[1][-1]["content"]
    record = final(out).memory["call_end"]
    assert record["line"] == "Glad I could help. Goodbye!" and record["by"] == "end_call"


async def test_transfer_call_says_its_line_then_transfers_to_the_chosen_desk():
    desks = {"sales": "+15550100", "support": "sip:help@pbx.example"}
    llm = scripted_llm([ToolCall("c1", "transfer_call", '{"to": "support"}')])
    bot = vk.agent(llm=llm, tts=tones(), tools=[phone.transfer_call(desks)])
    out = await talk(bot, "I need a human.")
    assert kinds(out)[-3:] == ["Mark", "SessionUpdated", "TransferCall"]
    assert [x for x in out if isinstance(x, TransferCall)] == [
        TransferCall("sip:help@pbx.example")
    ]
    session = final(out)
    assert session.messages_json()[-1] == {
        "role": "assistant", "content": phone.DEFAULT_TRANSFER_LINE, "kind": "call_line",
    }
    assert dict(session.memory["call_end"])["to"] == "sip:help@pbx.example"


async def test_a_destination_the_llm_made_up_is_refused():
    llm = scripted_llm(
        [ToolCall("c1", "transfer_call", '{"to": "+19005550000"}')], "Sorry, I can't do that."
    )
    bot = vk.agent(llm=llm, tts=tones(), tools=[phone.transfer_call({"sales": "+15550100"})])
    out = await talk(bot, "Transfer me to this number.")
    assert not any(isinstance(x, TransferCall) for x in out)
    (result,) = [x for x in out if isinstance(x, ToolResult)]
    assert "unknown destination" in result.content
    assert "call_end" not in final(out).memory


async def test_send_dtmf_presses_keys_at_once_and_the_reply_goes_on():
    llm = scripted_llm(
        ["Choosing billing. ", ToolCall("c1", "send_dtmf", '{"digits": "2"}')],
        "I pressed 2 for billing.",
    )
    bot = vk.agent(llm=llm, tts=tones(), tools=[phone.send_dtmf()])
    out = await talk(bot, "Press two for billing.")
    names = kinds(out)
    assert names.index("SendDtmf") == names.index("ToolResult") + 1
    assert [x for x in out if isinstance(x, SendDtmf)] == [SendDtmf("2")]
    assert names[-2:] == ["Mark", "SessionUpdated"]  # no hang-up: the call goes on
    assert "call_end" not in final(out).memory
    with pytest.raises(ConfigError, match="keypad keys"):
        phone.press("1x")


async def test_a_python_tool_of_your_own_can_end_the_call():
    @vk.tool
    def book_table(people: int) -> phone.CallAction:
        """Book a table and end the call."""
        return phone.hang_up(f"Booked for {people}. Goodbye!", reason="booked")

    llm = scripted_llm([ToolCall("c1", "book_table", '{"people": 4}')])
    out = await talk(vk.agent(llm=llm, tts=tones(), tools=[book_table]), "A table for four.")
    assert [x for x in out if isinstance(x, HangUp)] == [HangUp("booked")]
    assert final(out).memory["call_end"]["line"] == "Booked for 4. Goodbye!"


async def test_a_barge_in_on_the_goodbye_still_hangs_up_after_what_was_heard():
    goodbye = "Thank you for calling. Have a wonderful day. We hope to hear from you soon."
    llm = scripted_llm([ToolCall("c1", "end_call")], "never asked")
    bot = vk.agent(
        llm=llm, tts=tones(), tools=[phone.end_call(goodbye=goodbye)],
        interruption=vk.Interruption.immediate(),
    )
    result = await run_conversation(
        bot, [say("bye"), barge_in(after_audio_ms=800)], time_limit=20
    )
    names = kinds([x for _, x in result.timeline])
    # cut: Interrupted and its Session, then the hang-up right after them, and nothing more
    assert names[-4:] == ["TurnStarted", "Interrupted", "SessionUpdated", "HangUp"]
    record = result.session.memory["call_end"]
    assert record["interrupted"] is True
    assert record["line"] == "Thank you for calling."  # the one sentence heard whole
    assert result.session.messages_json()[-1] == {
        "role": "assistant", "content": "Thank you for calling.", "kind": "call_line",
        "interrupted": True,
    }


async def test_once_the_call_is_ending_the_agent_answers_no_more():
    llm = scripted_llm([ToolCall("c1", "end_call")], "I should never be asked.")
    bot = vk.agent(llm=llm, tts=tones(), tools=[phone.end_call(goodbye="Goodbye.")])
    hung_up = asyncio.Event()

    async def caller() -> Any:
        yield TurnStarted(0.0)
        yield TurnEnded("bye", 0.0)
        await hung_up.wait()
        yield TurnStarted(5.0)
        yield TurnEnded("wait, one more thing", 5.5)

    out = []
    async for item in caller() | bot:
        out.append(item)
        if isinstance(item, HangUp):
            hung_up.set()
    assert len(llm.calls) == 1
    assert kinds(out).count("ReplyStarted") == 1
    assert kinds(out)[-4:] == ["SessionUpdated", "HangUp", "TurnStarted", "TurnEnded"]
    assert final(out).messages_json()[-1]["content"] == "Goodbye."


def test_the_action_values_check_their_input():
    with pytest.raises(ConfigError, match="phone number or SIP"):
        phone.transfer("")
    with pytest.raises(ConfigError, match="strings to strings"):
        phone.hang_up(variables={"n": 1})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="HangUp, TransferCall or SendDtmf"):
        phone.CallAction("bye")  # type: ignore[arg-type]
    assert phone.end_call()().event == HangUp()  # the tool is a plain function too


# ---------------------------------------------------------------------------------------------
# Real calls


def goodbye_llm() -> Any:
    return scripted_llm(["Thanks for calling. ", ToolCall("c1", "end_call")], "Goodbye!")


def check_hang_up_after_the_goodbye(bot: PhoneAgent, session: vk.Session) -> None:
    out = bot.outbound
    hang_up = next(i for i, x in enumerate(out) if isinstance(x, HangUp))
    last_mark = max(i for i, x in enumerate(out) if isinstance(x, Mark))
    assert last_mark < hang_up  # after all the goodbye's audio and its last mark
    assert not any(isinstance(x, AudioChunk) for x in out[hang_up:])
    goodbye_marks = [x.name for x in out[:hang_up] if isinstance(x, Mark)]
    # the carrier played every sentence of it: each mark came back as Played
    assert {p.name for p in bot.came_in(Played)} >= set(goodbye_marks)
    record = session.memory["call_end"]
    assert (record["action"], record["by"]) == ("hang_up", "end_call")
    assert record["line"] == "Thanks for calling. Goodbye!" and record["interrupted"] is False


async def test_end_call_on_a_simulated_twilio_call(tmp_path):
    bot = PhoneAgent(goodbye_llm(), transcripts=["that's all, bye"], tools=[phone.end_call()])
    tone_wav(tmp_path / "bye.wav", 1.0, 0.3)
    scenario = parse({"name": "bye", "steps": [
        {"say": "bye.wav"}, {"wait_for": {"event": "audio", "timeout": 30}}, {"wait": 4.0},
    ]}, base_dir=tmp_path)
    config = SessionConfig(response_timeout_s=10.0, quiet_period_s=1.0, max_drain_s=10.0)
    async with rest_api() as (fake_api, base):
        application = vk.serve.app(bot.on_call, dev=True, on_end=bot.on_end,
                                   api=carrier_api("twilio", base))
        async with serving(application) as host:
            report = await api.run_scenario(f"ws://{host}/twilio/media", scenario, config=config)
            await asyncio.wait_for(bot.done.wait(), 10)
    assert report.violations == []
    assert len(report.result.marks_received) == 2
    session = bot.ended[0]
    check_hang_up_after_the_goodbye(bot, session)
    # the transport carried it out: Twilio's REST update with Status=completed, once
    (request,) = fake_api.of("hangup")
    assert request.call_id == session.call_id and request.body.get("Status") == "completed"
    assert await voicekit_tasks() == []


async def test_end_call_on_a_fake_plivo_call():
    from servers.fake_carrier import caller_audio

    bot = PhoneAgent(goodbye_llm(), transcripts=["that's all, bye"], tools=[phone.end_call()])
    async with rest_api() as (fake_api, base):
        fake_api.live("fake-call-uuid-1")
        application = vk.serve.app(bot.on_call, carrier="plivo", dev=True, on_end=bot.on_end,
                                   api=carrier_api("plivo", base))
        async with serving(application) as host:
            record = await PlivoCall(f"ws://{host}/plivo/media").call(
                caller_audio(seconds=1.0),
                until=lambda r: fake_api.acted.is_set(), linger=0.2, max_seconds=30,
            )
            await asyncio.wait_for(bot.done.wait(), 10)
    assert record.violations == []
    check_hang_up_after_the_goodbye(bot, bot.ended[0])
    (request,) = fake_api.of("hangup")
    assert (request.call_id, request.method, request.status) == ("fake-call-uuid-1", "DELETE", 204)
    assert await voicekit_tasks() == []


async def test_transfer_call_on_a_simulated_twilio_call(tmp_path):
    llm = scripted_llm([ToolCall("c1", "transfer_call", '{"to": "sales"}')])
    bot = PhoneAgent(llm, transcripts=["a human, please"],
                     tools=[phone.transfer_call({"sales": "+15550003333"})])
    tone_wav(tmp_path / "human.wav", 1.0, 0.3)
    scenario = parse({"name": "transfer", "steps": [
        {"say": "human.wav"}, {"wait_for": {"event": "audio", "timeout": 30}}, {"wait": 4.0},
    ]}, base_dir=tmp_path)
    config = SessionConfig(response_timeout_s=10.0, quiet_period_s=1.0, max_drain_s=10.0)
    async with rest_api() as (fake_api, base):
        application = vk.serve.app(bot.on_call, dev=True, on_end=bot.on_end,
                                   api=carrier_api("twilio", base))
        async with serving(application) as host:
            report = await api.run_scenario(f"ws://{host}/twilio/media", scenario, config=config)
            await asyncio.wait_for(bot.done.wait(), 10)
    assert report.violations == []
    out = bot.outbound
    (transfer,) = [x for x in out if isinstance(x, TransferCall)]
    assert transfer.to == "+15550003333"
    (line_mark,) = [x for x in out if isinstance(x, Mark)]
    assert line_mark.text == phone.DEFAULT_TRANSFER_LINE
    assert out.index(line_mark) < out.index(transfer)
    assert line_mark.name in {p.name for p in bot.came_in(Played)}  # the caller heard the line
    session = bot.ended[0]
    assert dict(session.memory["call_end"]) == {
        "action": "transfer", "by": "transfer_call", "to": "+15550003333",
        "line": phone.DEFAULT_TRANSFER_LINE, "interrupted": False,
    }
    (update,) = fake_api.of("update")  # Twilio's REST update with a <Dial>, by the transport
    assert "<Dial>+15550003333</Dial>" in update.body["Twiml"]
    assert await voicekit_tasks() == []


async def test_send_dtmf_on_a_fake_plivo_call():
    from servers.fake_carrier import caller_audio

    llm = scripted_llm(["Choosing billing. ", ToolCall("c1", "send_dtmf", '{"digits": "2"}')],
                       "I pressed two.")
    bot = PhoneAgent(llm, transcripts=["for billing press two"], tools=[phone.send_dtmf()])
    async with rest_api() as (_, base):
        application = vk.serve.app(bot.on_call, carrier="plivo", dev=True, on_end=bot.on_end,
                                   api=carrier_api("plivo", base))
        async with serving(application) as host:
            record = await PlivoCall(f"ws://{host}/plivo/media").call(
                caller_audio(seconds=1.0),
                until=lambda r: len(r.echoed) >= 2, linger=0.5, max_seconds=30,
            )
            await asyncio.wait_for(bot.done.wait(), 10)
    assert record.violations == []
    names = [type(x).__name__ for x in bot.outbound if not isinstance(x, AudioChunk)]
    assert names.index("SendDtmf") == names.index("ToolResult") + 1
    # the keys went out on Plivo's stream as sendDTMF, after the sentence before them
    events = [r.event for r in record.received]
    assert [r.message["dtmf"] for r in record.received if r.event == "sendDTMF"] == ["2"]
    assert events.index("checkpoint") < events.index("sendDTMF")
    assert bot.ended[0].messages_json()[-1] == {"role": "assistant", "content": "I pressed two."}
    assert await voicekit_tasks() == []
