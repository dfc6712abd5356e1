"""The conversation loop: replies, tools, barge-in, heard history, error fallback, first message."""

from __future__ import annotations

import asyncio
import json

import pytest

import voicekit as vk
from voicekit import agent, tool
from voicekit._agent import CANCELLED_RESULT, OVER_LIMIT_RESULT
from voicekit.conversation import (
    ScriptedLLM,
    barge_in,
    run_conversation,
    say,
    scripted_llm,
    wait,
)
from voicekit.events import (
    AudioChunk,
    Interrupted,
    ReplyFailed,
    ReplyStarted,
    Sentence,
    SessionUpdated,
    ToolCall,
    ToolResult,
    TurnEnded,
    TurnStarted,
)
from voicekit.tts import synthesize_tones, tones

SORRY = "Sorry, I am having trouble right now."


def session() -> vk.Session:
    return vk.Session(call_id="test-call")


def tts() -> vk.Stage:
    return tones(pass_text=True)


def ms(text: str) -> float:
    """How long tones() speaks ``text``, in ms."""
    samples, rate = synthesize_tones(text)
    return samples.shape[0] * 1000 / rate


def other_tasks() -> set[asyncio.Task]:
    me = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not me and not t.done()}


def spoken(result) -> list[str]:
    return [s.text for s in result.of(Sentence)]


def reply_slices(result) -> list[list]:
    """The yielded items of each reply, from its ReplyStarted to its SessionUpdated."""
    slices, current = [], None
    for _, item in result.timeline:
        if isinstance(item, ReplyStarted):
            current = []
        if current is not None:
            current.append(item)
        if isinstance(item, SessionUpdated) and current is not None:
            slices.append(current)
            current = None
    return slices


# -- a normal exchange -----------------------------------------------------------------------


async def test_two_turn_exchange_records_both_turns_after_their_audio():
    llm = scripted_llm("Hello there! How can I help?", "It is noon. Anything else?")
    bot = agent(llm=llm, tts=tts(), session=session(), system="Be brief.")
    result = await run_conversation(bot, [say("hi"), say("what time is it?")])

    assert result.transcript == [
        ("user", "hi"),
        ("assistant", "Hello there! How can I help?"),
        ("user", "what time is it?"),
        ("assistant", "It is noon. Anything else?"),
    ]
    assert spoken(result) == ["Hello there!", "How can I help?", "It is noon.", "Anything else?"]
    # one Session out of every turn, each the one before plus that turn
    sessions = [e.session for e in result.of(SessionUpdated)]
    assert [len(s.messages) for s in sessions] == [2, 4]
    assert sessions[1].messages[:2] == sessions[0].messages
    assert result.session is sessions[-1]
    # the end of each reply is recorded after the last sentence's audio was yielded
    for items in reply_slices(result):
        last_audio = max(i for i, item in enumerate(items) if isinstance(item, AudioChunk))
        assert isinstance(items[-1], SessionUpdated)
        assert last_audio < len(items) - 1
        assert isinstance(items[last_audio + 1], Sentence)
    expected_ms = sum(ms(s) for s in spoken(result))
    assert result.audio_seconds * 1000 == pytest.approx(expected_ms, abs=0.1)
    # the LLM saw the whole history, and the system instruction went only where declared
    assert [m["content"] for m in llm.calls[1]] == [
        "hi",
        "Hello there! How can I help?",
        "what time is it?",
    ]


async def test_llm_gets_only_the_context_it_declares():
    seen = {}

    async def llm(messages, *, session, system, tools, call_id):
        seen.update(session=session, system=system, tools=tools, call_id=call_id)
        yield "Fine."

    def lookup(code: str) -> str:
        """Look a code up."""
        return code

    bot = agent(llm=llm, tts=tts(), session=session(), system="S", tools=[lookup])
    await run_conversation(bot, [say("hi")])
    assert seen["system"] == "S"
    assert seen["call_id"] == "test-call"
    assert seen["session"].messages[-1]["content"] == "hi"
    assert seen["tools"][0]["function"]["name"] == "lookup"


async def test_inbound_audio_is_consumed_and_other_items_pass_through():
    chunk = AudioChunk(vk.audio.to_int16([0.0] * 320), 16000)

    async def llm(messages):
        yield "Ok."

    items = [chunk, vk.Transcript("hi"), TurnStarted(1.0), chunk, TurnEnded("hi", 1.0)]
    out = await (items | agent(llm=llm, tts=tts())).list()
    kinds = [type(x).__name__ for x in out]
    assert kinds[:4] == ["Transcript", "TurnStarted", "TurnEnded", "ReplyStarted"]
    assert all(x.t == 0.0 or x.duration for x in out if isinstance(x, AudioChunk))
    assert chunk not in out  # the caller's audio never comes back out
    assert kinds[-1] == "SessionUpdated"


# -- tools -----------------------------------------------------------------------------------


async def test_tool_call_runs_and_is_recorded_in_order():
    calls = []

    @tool
    async def weather(city: str) -> dict:
        """The weather in a city."""
        calls.append(city)
        return {"city": city, "sky": "sunny"}

    llm = scripted_llm(
        ["Let me check. ", ToolCall("c1", "weather", '{"city": "Paris"}')],
        "It is sunny in Paris.",
    )
    bot = agent(llm=llm, tts=tts(), session=session(), tools=[weather])
    result = await run_conversation(bot, [say("weather in Paris?")])

    assert calls == ["Paris"]
    messages = result.session.messages_json()
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[1]["content"] == "Let me check."
    assert messages[1]["tool_calls"][0]["function"] == {
        "name": "weather",
        "arguments": '{"city": "Paris"}',
    }
    assert json.loads(messages[2]["content"]) == {"city": "Paris", "sky": "sunny"}
    assert messages[2]["tool_call_id"] == "c1"
    assert messages[3]["content"] == "It is sunny in Paris."
    # the sentence before the call is spoken before the tool runs; the second LLM call sees
    # the tool result and is offered the tool again
    events = [type(e).__name__ for e in reply_slices(result)[0] if not isinstance(e, AudioChunk)]
    assert events == [
        "ReplyStarted",
        "Sentence",
        "Mark",  # after each sentence's audio (see tests/test_agent_marks.py)
        "ToolCall",
        "ToolResult",
        "Sentence",
        "Mark",
        "SessionUpdated",
    ]
    assert llm.calls[1][-1]["role"] == "tool"
    assert llm.tools[1][0]["function"]["name"] == "weather"


async def test_tool_errors_and_bad_arguments_go_back_to_the_llm():
    def divide(a: int, b: int) -> float:
        return a / b

    llm = scripted_llm(
        [
            ToolCall("c1", "divide", '{"a": 1, "b": 0}'),
            ToolCall("c2", "divide", "{not json"),
            ToolCall("c3", "nope", "{}"),
        ],
        "I could not do that.",
    )
    bot = agent(llm=llm, tts=tts(), session=session(), tools=[divide])
    result = await run_conversation(bot, [say("divide one by zero")])
    results = {r.call_id: json.loads(r.content)["error"] for r in result.of(ToolResult)}
    assert results["c1"] == "ZeroDivisionError: division by zero"
    assert "not valid JSON" in results["c2"]
    assert "no tool named 'nope'" in results["c3"]
    assert result.transcript[-1] == ("assistant", "I could not do that.")


async def test_tool_rounds_are_limited_then_the_llm_answers_without_tools():
    runs = []

    def ping() -> str:
        runs.append(1)
        return "pong"

    def again(n):
        return [ToolCall(f"c{n}", "ping", "{}")]

    llm = scripted_llm(again(1), again(2), again(3), "Done pinging.")
    bot = agent(llm=llm, tts=tts(), session=session(), tools=[ping], max_tool_rounds=2)
    result = await run_conversation(bot, [say("ping a lot")])
    assert len(runs) == 2
    assert [t is not None for t in llm.tools] == [True, True, False]
    # the third round's call was made without tools, and was not run
    assert result.of(ToolResult)[-1].content == OVER_LIMIT_RESULT
    assert len(llm.calls) == 3
    messages = result.session.messages_json()
    assert [m["role"] for m in messages].count("tool") == 3
    assert "Done pinging." not in [m.get("content") for m in messages]


# -- barge-in --------------------------------------------------------------------------------


async def test_barge_in_mid_sentence_keeps_only_the_heard_sentences():
    reply = "The sky is clear today. The wind is calm. Rain comes tomorrow."
    first = ms("The sky is clear today.")
    llm = scripted_llm(reply, "Okay.")
    bot = agent(llm=llm, tts=tts(), session=session())
    cut = first + 100  # 100 ms into the second sentence
    result = await run_conversation(bot, [say("weather?"), barge_in("stop", after_audio_ms=cut)])

    first_reply = reply_slices(result)[0]
    heard_ms = sum(c.duration for c in first_reply if isinstance(c, AudioChunk)) * 1000
    assert heard_ms == pytest.approx(cut, abs=1e-6)  # not one chunk after the barge-in
    assert [s.text for s in first_reply if isinstance(s, Sentence)] == ["The sky is clear today."]
    interrupted = result.of(Interrupted)
    assert interrupted == [Interrupted("The sky is clear today.", interrupted[0].t)]
    messages = result.session.messages_json()
    assert messages[1] == {
        "role": "assistant",
        "content": "The sky is clear today.",
        "interrupted": True,
    }
    assert result.transcript[2:] == [("user", "stop"), ("assistant", "Okay.")]
    # the LLM was asked again with the interrupted history; its first call had finished
    assert llm.calls[1][1]["interrupted"] is True
    assert not other_tasks()


async def test_barge_in_after_a_tool_round_keeps_the_round_and_the_heard_part():
    def weather(city: str) -> str:
        return "sunny"

    llm = scripted_llm(
        ["Let me check. ", ToolCall("c1", "weather", '{"city": "Paris"}')],
        "It is sunny in Paris. The temperature is twenty degrees.",
        "Sure.",
    )
    bot = agent(llm=llm, tts=tts(), session=session(), tools=[weather])
    cut = ms("Let me check.") + ms("It is sunny in Paris.") + 60
    # "hold on", not "ok": "ok" alone is a backchannel, which does not interrupt (issue 12)
    result = await run_conversation(
        bot, [say("weather?"), barge_in("hold on", after_audio_ms=cut)]
    )
    assert result.of(Interrupted)[0].heard == "Let me check. It is sunny in Paris."
    messages = result.session.messages_json()
    assert [m["role"] for m in messages] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
        "assistant",
    ]
    assert messages[1]["content"] == "Let me check." and "interrupted" not in messages[1]
    assert messages[3] == {
        "role": "assistant",
        "content": "It is sunny in Paris.",
        "interrupted": True,
    }


async def test_barge_in_during_the_first_sentence_records_an_empty_interrupted_reply():
    bot = agent(llm=scripted_llm("One two three four five six.", "Yes?"), tts=tts())
    result = await run_conversation(bot, [say("count"), barge_in("wait", after_audio_ms=100)])
    assert result.session.messages_json()[1] == {
        "role": "assistant",
        "content": "",
        "interrupted": True,
    }
    assert ("assistant", "Yes?") in result.transcript


async def test_barge_in_before_the_first_byte_cancels_the_llm_request():
    llm = scripted_llm([30.0, "Too late."], "Sure.")
    bot = agent(llm=llm, tts=tts(), session=session(), llm_error_message=SORRY)
    result = await asyncio.wait_for(
        run_conversation(bot, [say("hello"), say("hello?", after=0.05)]), 5
    )
    assert llm.completed == [False, True]
    assert result.transcript == [
        ("user", "hello"),
        ("user", "hello?"),
        ("assistant", "Sure."),
    ]
    assert not result.of(ReplyFailed)
    assert "Too late." not in spoken(result) and SORRY not in spoken(result)
    assert not other_tasks()


async def test_barge_in_cancels_a_running_tool_and_records_it_as_cancelled():
    state = {"started": 0, "cancelled": 0, "finished": 0}

    async def book(day: str) -> str:
        state["started"] += 1
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            state["cancelled"] += 1
            raise
        state["finished"] += 1
        return "booked"

    llm = scripted_llm([ToolCall("c1", "book", '{"day": "monday"}')], "Okay, not booking.")
    bot = agent(llm=llm, tts=tts(), session=session(), tools=[book])
    result = await asyncio.wait_for(
        run_conversation(bot, [say("book monday"), say("no, stop", after=0.1)]), 5
    )
    assert state == {"started": 1, "cancelled": 1, "finished": 0}
    messages = result.session.messages_json()
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "user", "assistant"]
    assert messages[2]["content"] == CANCELLED_RESULT
    assert not other_tasks()


async def test_a_tool_call_of_a_cancelled_generation_never_runs():
    runs = []

    def transfer(amount: int) -> str:
        runs.append(amount)
        return "done"

    # the call is already generated, but waits in the TTS queue behind the sentence's audio
    call = ToolCall("c1", "transfer", '{"amount": 5}')
    llm = scripted_llm(["I will transfer the money right now for you. ", call], "Cancelled.")
    bot = agent(llm=llm, tts=tts(), session=session(), tools=[transfer])
    result = await run_conversation(bot, [say("send five"), barge_in("no!", after_audio_ms=200)])
    await asyncio.sleep(0.05)
    assert runs == []
    assert not result.of(ToolCall)
    assert [m["role"] for m in result.session.messages_json()] == [
        "user",
        "assistant",
        "user",
        "assistant",
    ]


async def test_a_turn_started_alone_cuts_the_reply_and_the_next_reply_starts_clean():
    llm = scripted_llm("First answer is long. It goes on and on.", "Second answer.")
    # a TurnStarted alone (no words, no end) cuts only with the at-once strategy: the default
    # pauses the reply until the words (or the turn's end) say whether it was an interruption
    bot = agent(llm=llm, tts=tts(), session=session(), interruption=vk.Interruption.immediate())
    result = await run_conversation(
        bot, [say("one"), barge_in(after_audio_ms=150), wait(0.01), say("two")]
    )
    second = reply_slices(result)[-1]
    assert [s.text for s in second if isinstance(s, Sentence)] == ["Second answer."]
    second_ms = sum(c.duration for c in second if isinstance(c, AudioChunk)) * 1000
    assert second_ms == pytest.approx(ms("Second answer."), abs=0.1)
    assert result.transcript == [
        ("user", "one"),
        ("user", "two"),
        ("assistant", "Second answer."),
    ]


async def test_barge_in_on_the_first_message_keeps_the_heard_part():
    greeting = "Welcome to the bank. I can help with cards and loans."
    bot = agent(
        llm=scripted_llm("Sure, cards."),
        tts=tts(),
        session=session(),
        first_message=greeting,
    )
    cut = ms("Welcome to the bank.") + 50
    result = await run_conversation(bot, [barge_in("cards", after_audio_ms=cut)])
    messages = result.session.messages_json()
    assert messages[0] == {
        "role": "assistant",
        "content": "Welcome to the bank.",
        "interrupted": True,
    }
    assert result.transcript[1:] == [("user", "cards"), ("assistant", "Sure, cards.")]


async def test_first_message_is_spoken_and_recorded_before_the_first_turn():
    llm = scripted_llm("Fine, thanks.")
    bot = agent(llm=llm, tts=tts(), session=session(), first_message="Hi! How are you?")
    result = await run_conversation(bot, [say("good, you?")])
    assert isinstance(result.timeline[0][1], ReplyStarted)
    assert result.timeline[0][1].turn is None
    assert spoken(result)[:2] == ["Hi!", "How are you?"]
    assert result.transcript == [
        ("assistant", "Hi! How are you?"),
        ("user", "good, you?"),
        ("assistant", "Fine, thanks."),
    ]
    assert llm.calls[0][0] == {"role": "assistant", "content": "Hi! How are you?"}


# -- errors ----------------------------------------------------------------------------------


async def test_llm_failing_before_first_audio_speaks_the_fallback_once():
    # partial tokens, then a timeout: no audio was emitted, so the fallback is spoken
    llm = scripted_llm(["Let me ch", 0.01, vk.ProviderTimeout("read timed out")], "Better now.")
    bot = agent(llm=llm, tts=tts(), session=session(), llm_error_message=SORRY)
    result = await run_conversation(bot, [say("hi"), say("again")])

    failed = result.of(ReplyFailed)
    assert [(f.source, f.fallback) for f in failed] == [("llm", True)]
    assert isinstance(failed[0].exception, vk.ProviderTimeout)
    assert spoken(result) == [SORRY, "Better now."]
    first = reply_slices(result)[0]
    audio_ms = sum(c.duration for c in first if isinstance(c, AudioChunk)) * 1000
    assert audio_ms == pytest.approx(ms(SORRY), abs=0.1)
    # neither the partial tokens nor the fallback are the LLM's words in the history
    assert result.transcript == [("user", "hi"), ("user", "again"), ("assistant", "Better now.")]


async def test_llm_failing_after_first_audio_never_speaks_the_fallback():
    llm = scripted_llm(["Hello there. ", "And then", RuntimeError("stream cut")])
    bot = agent(llm=llm, tts=tts(), session=session(), llm_error_message=SORRY)
    result = await run_conversation(bot, [say("hi")])
    assert [(f.source, f.fallback) for f in result.of(ReplyFailed)] == [("llm", False)]
    assert spoken(result) == ["Hello there."]
    assert result.transcript == [("user", "hi"), ("assistant", "Hello there.")]


async def test_without_a_fallback_message_an_error_is_silent_but_reported():
    llm = scripted_llm([ConnectionError("refused")])
    result = await run_conversation(agent(llm=llm, tts=tts()), [say("hi")])
    assert result.audio_seconds == 0
    assert [(f.source, f.error) for f in result.of(ReplyFailed)] == [
        ("llm", "ConnectionError: refused")
    ]
    assert result.transcript == [("user", "hi")]


async def test_an_error_caused_by_a_barge_in_is_no_error():
    calls = []

    async def llm(messages):
        calls.append(len(calls))
        if len(calls) > 1:
            yield "Yes?"
            return
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:  # as a client whose read fails when it is closed
            raise vk.ProviderConnectError("connection closed while reading") from None
        yield "never"

    bot = agent(llm=llm, tts=tts(), session=session(), llm_error_message=SORRY)
    result = await asyncio.wait_for(
        run_conversation(bot, [say("hello"), say("hey", after=0.05)]), 5
    )
    assert not result.of(ReplyFailed)
    assert SORRY not in spoken(result)
    assert result.transcript == [("user", "hello"), ("user", "hey"), ("assistant", "Yes?")]
    assert not other_tasks()


async def test_an_error_raised_while_cancelling_is_not_even_logged(caplog):
    # without a TTS task in between, the LLM's cancel-time error reaches the reply itself
    async def llm(messages):
        if len(messages) > 1:
            yield "Yes?"
            return
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise vk.ProviderConnectError("connection closed while reading") from None
        yield "never"

    bot = agent(llm=llm, tts=instant_tts(), llm_error_message=SORRY)
    with caplog.at_level("DEBUG", logger="voicekit.agent"):
        result = await asyncio.wait_for(
            run_conversation(bot, [say("hello"), say("hey", after=0.05)]), 5
        )
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert not result.of(ReplyFailed)
    assert result.transcript[-1] == ("assistant", "Yes?")


async def test_a_tts_failure_is_reported_without_the_spoken_fallback():
    @vk.stage
    async def broken(source, /):
        async for item in source:
            if isinstance(item, Sentence):
                raise OSError("synthesiser crashed")
            yield item

    bot = agent(llm=scripted_llm("Hello."), tts=broken(), llm_error_message=SORRY)
    result = await run_conversation(bot, [say("hi")])
    failed = result.of(ReplyFailed)
    assert [(f.source, f.fallback) for f in failed] == [("tts", False)]
    assert "synthesiser crashed" in failed[0].error
    assert result.transcript == [("user", "hi")]


async def test_a_plain_string_llm_and_usage_events_pass():
    async def llm(messages):
        yield "Hi"
        yield " there."
        yield vk.Usage(3, 2)
        yield vk.Finish("stop")

    out = await ([TurnEnded("yo")] | agent(llm=llm, tts=tts())).list()
    kinds = [type(x).__name__ for x in out if not isinstance(x, AudioChunk)]
    # " there." completes the sentence unambiguously: it is spoken before the Usage comes
    assert kinds == [
        "TurnEnded",
        "ReplyStarted",
        "Sentence",
        "Mark",
        "Usage",
        "Finish",
        "SessionUpdated",
    ]


@vk.stage
async def instant_tts(source, /):
    """A TTS without a helper task: one 20 ms chunk per word, the sentence after its audio."""
    async for item in source:
        if isinstance(item, Sentence):
            for _ in item.text.split():
                yield AudioChunk(vk.audio.to_int16([0.1] * 320), 16000)
        yield item


async def close_mid_reply(tts_stage) -> ScriptedLLM:
    llm = scripted_llm(["Hello. More", 30.0, " text."])

    async def source():
        yield TurnEnded("hi")
        await asyncio.sleep(30)

    flow = source() | agent(llm=llm, tts=tts_stage)
    async with flow.open() as items:
        async for item in items:
            if isinstance(item, Sentence):
                break
    return llm


async def test_closing_the_agent_mid_reply_leaves_no_task_behind():
    llm = await asyncio.wait_for(close_mid_reply(instant_tts()), 5)
    assert not other_tasks()
    assert llm.completed == [False]


async def test_closing_the_agent_mid_reply_with_tones_leaves_no_task_behind():
    await asyncio.wait_for(close_mid_reply(tts()), 5)
    assert not other_tasks()


def test_bad_arguments_are_config_errors():
    with pytest.raises(vk.ConfigError):
        agent(llm=42, tts=tts())
    with pytest.raises(vk.ConfigError):
        agent(llm=scripted_llm(), tts=lambda s: s)
    with pytest.raises(vk.ConfigError):
        agent(llm=scripted_llm(), tts=tts(), max_tool_rounds=-1)
    with pytest.raises(vk.ConfigError):
        agent(llm=scripted_llm(), tts=tts(), tools=[lambda: 1])


# -- front ends and providers ------------------------------------------------------------------


async def test_wake_phrase_session_answers_only_once_woken():
    from voicekit.conversation import transcript
    from voicekit.turns import turns, vad_start, wake_phrase

    llm = scripted_llm("It is noon.", "Why did the chicken cross the road?")
    wake = wake_phrase("hey robot", mode="single_activation")
    pipeline = turns(start=[wake, vad_start()]) | agent(llm=llm, tts=tts(), session=session())
    result = await run_conversation(
        pipeline,
        [
            transcript("what time is it", reply=False),  # asleep: dropped
            transcript("Hey, Robot! What time is it?"),
            transcript("and the date?", reply=False),  # one wake, one turn: asleep again
            transcript("hey robot tell me a joke"),
        ],
        time_limit=10,
    )
    assert result.transcript == [
        ("user", "Hey, Robot! What time is it?"),
        ("assistant", "It is noon."),
        ("user", "hey robot tell me a joke"),
        ("assistant", "Why did the chicken cross the road?"),
    ]
    assert len(llm.calls) == 2
    assert [e.text for e in result.of(TurnEnded)] == [
        "Hey, Robot! What time is it?",
        "hey robot tell me a joke",
    ]


async def test_provider_failover_inside_the_agent():
    from voicekit.llm import failover

    primary = scripted_llm([vk.ProviderStatusError("503 overloaded", status_code=503)])
    backup = scripted_llm("Backup here. How can I help?")
    llm = failover(primary, backup)
    bot = agent(llm=llm, tts=tts(), session=session(), llm_error_message=SORRY)
    result = await run_conversation(bot, [say("hello")])

    switched = result.of(vk.Switched)
    assert len(switched) == 1 and "503 overloaded" in switched[0].error
    assert not result.of(ReplyFailed)
    assert SORRY not in spoken(result)
    assert result.transcript == [("user", "hello"), ("assistant", "Backup here. How can I help?")]
    assert backup.calls[0] == primary.calls[0]  # the backup got the same conversation


async def test_the_whole_pipeline_from_audio():
    from voicekit import stt, voice_agent
    from voicekit import vad as vad_module
    from voicekit.conversation import audio

    llm = scripted_llm("It is sunny.", "You are welcome.")
    pipeline = voice_agent(
        vad=vad_module.vad(detector=vad_module.energy()),
        stt=stt.fake(transcripts=["what is the weather", "thank you"]),
        llm=llm,
        tts=tts(),
        session=session(),
    )
    wav = vk.audio.sample_path()
    result = await run_conversation(pipeline, [audio(wav), audio(wav)], time_limit=20)
    assert result.transcript == [
        ("user", "what is the weather"),
        ("assistant", "It is sunny."),
        ("user", "thank you"),
        ("assistant", "You are welcome."),
    ]
    assert len(result.of(vk.SpeechStarted)) == 2
