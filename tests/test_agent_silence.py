"""A turn never ends in silence without a word: tool loops and empty replies are failures the
caller hears about (issue 9 item 6)."""

from __future__ import annotations

import json

import pytest

import voicekit as vk
from voicekit import agent
from voicekit._agent import NOT_OFFERED_RESULT, OVER_LIMIT_RESULT
from voicekit.conversation import run_conversation, say, scripted_llm
from voicekit.events import AudioChunk, ReplyFailed, Sentence, ToolCall, ToolResult
from voicekit.tts import tones

SORRY = "Sorry, I am having trouble right now."


def bot(llm, **options) -> vk.Stage:
    return agent(
        llm=llm,
        tts=tones(pass_text=True),
        session=vk.Session(call_id="silence"),
        llm_error_message=SORRY,
        **options,
    )


def call(n: int, name: str = "ping") -> list[ToolCall]:
    return [ToolCall(f"c{n}", name, "{}")]


async def test_a_model_that_calls_a_tool_in_every_round_fails_and_the_fallback_is_spoken():
    runs = []

    def ping() -> str:
        runs.append(1)
        return "pong"

    llm = scripted_llm(call(1), call(2), call(3), "Unused.")
    result = await run_conversation(bot(llm, tools=[ping], max_tool_rounds=2), [say("ping")])
    assert len(runs) == 2 and len(llm.calls) == 3
    [failed] = result.of(ReplyFailed)
    assert (failed.source, failed.fallback) == ("llm", True)
    assert "called tools in every round (3 rounds) and never answered" in failed.error
    assert [s.text for s in result.of(Sentence)] == [SORRY]
    assert result.audio_seconds > 0
    messages = result.session.messages_json()
    assert [m["role"] for m in messages] == ["user"] + ["assistant", "tool"] * 3
    assert messages[-1]["content"] == OVER_LIMIT_RESULT
    assert SORRY not in json.dumps(messages)  # the fallback is not the LLM's words


async def test_a_tool_loop_after_something_was_said_still_speaks_the_fallback():
    def ping() -> str:
        return "pong"

    llm = scripted_llm(["Let me check. ", *call(1)], call(2), "Unused.")
    result = await run_conversation(bot(llm, tools=[ping], max_tool_rounds=1), [say("ping")])
    assert [s.text for s in result.of(Sentence)] == ["Let me check.", SORRY]
    assert [f.fallback for f in result.of(ReplyFailed)] == [True]
    assert result.transcript == [("user", "ping"), ("assistant", "Let me check.")]


@pytest.mark.parametrize(
    "reply", [[], ["", ""], ["  ", "\n", " \t "]], ids=["none", "empty", "blank"]
)
async def test_an_empty_or_blank_reply_fails_and_the_fallback_is_spoken(reply):
    llm = scripted_llm(reply, "Hello again.")
    result = await run_conversation(bot(llm), [say("hi"), say("hello?")])
    [failed] = result.of(ReplyFailed)
    assert (failed.source, failed.fallback) == ("llm", True)
    assert "the LLM's reply was empty" in failed.error
    assert [s.text for s in result.of(Sentence)] == [SORRY, "Hello again."]
    # nothing of the failed reply is recorded: the next turn follows the user's first one
    assert result.transcript == [("user", "hi"), ("user", "hello?"), ("assistant", "Hello again.")]


async def test_text_with_nothing_to_speak_fails_and_names_the_text():
    result = await run_conversation(bot(scripted_llm(["...", " !!"])), [say("hi")])
    [failed] = result.of(ReplyFailed)
    assert "nothing to speak: '... !!'" in failed.error and failed.fallback


async def test_an_empty_reply_without_a_fallback_message_still_fails():
    quiet = agent(llm=scripted_llm([]), tts=tones(pass_text=True))
    result = await run_conversation(quiet, [say("hi")])
    assert [(f.source, f.fallback) for f in result.of(ReplyFailed)] == [("llm", False)]
    assert not [x for _, x in result.timeline if isinstance(x, AudioChunk)]


async def test_an_empty_answer_after_a_spoken_tool_round_is_no_failure():
    def set_alarm() -> str:
        return "set"

    llm = scripted_llm(["I set your alarm. ", *call(1, "set_alarm")], [])
    result = await run_conversation(bot(llm, tools=[set_alarm]), [say("wake me at 7")])
    assert not result.of(ReplyFailed)
    assert [s.text for s in result.of(Sentence)] == ["I set your alarm."]


async def test_a_tool_call_when_no_tools_were_offered_gets_its_own_result():
    llm = scripted_llm(call(1, "weather"), "I cannot look that up.")
    result = await run_conversation(bot(llm), [say("weather?")])
    assert [r.content for r in result.of(ToolResult)] == [NOT_OFFERED_RESULT]
    assert json.loads(NOT_OFFERED_RESULT)["error"] == "no such tool: tools were not offered"
    assert llm.tools == [None, None]
    assert not result.of(ReplyFailed)
    assert result.transcript[-1] == ("assistant", "I cannot look that up.")


async def test_a_model_that_keeps_calling_tools_that_were_not_offered_fails():
    llm = scripted_llm(call(1), call(2), call(3))
    result = await run_conversation(bot(llm, max_tool_rounds=2), [say("ping")])
    assert [r.content for r in result.of(ToolResult)] == [NOT_OFFERED_RESULT] * 3
    [failed] = result.of(ReplyFailed)
    assert "although no tools were offered" in failed.error and failed.fallback
    assert [s.text for s in result.of(Sentence)] == [SORRY]
