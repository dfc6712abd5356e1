"""The offline responder: intents, the demo tool round trip, streaming shape, determinism."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from voicekit import ConfigError, Finish, Session, Token, ToolCall, Usage, llm
from voicekit._agent_tools import Tool, run_tool, tools_of
from voicekit.llm._signature import accepted_context
from voicekit.llm.local import WEATHER_TOOL, get_weather, local_responder
from voicekit.text import split_sentences

NOON = datetime(2025, 3, 4, 12, 5)  # a Tuesday


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


async def events(messages: Any, **options: Any) -> list[Any]:
    return [e async for e in local_responder(messages, **options)]


async def reply(text: str, **options: Any) -> str:
    out = await events(user(text), **options)
    return "".join(e.text for e in out if isinstance(e, Token))


@pytest.mark.parametrize(
    ("said", "answer"),
    [
        ("Hello!", "Hello! How can I help?"),
        ("hey there", "Hello! How can I help?"),
        ("Good morning.", "Hello! How can I help?"),
        ("Thanks a lot", "You're welcome!"),
        ("Thank you, that's great.", "You're welcome!"),
        ("OK, goodbye", "Goodbye! Talk soon."),
        ("What time is it?", "It's 12:05 PM."),
        ("what's the date today", "It's Tuesday, March 4. The time is 12:05 PM."),
        ("", "I didn't catch that. Could you say it again?"),
    ],
)
async def test_intents(said: str, answer: str) -> None:
    assert await reply(said, clock=lambda: NOON) == answer


async def test_what_can_you_do_names_the_intents_and_how_to_get_a_real_llm() -> None:
    text = await reply("What can you do?")
    assert text.startswith("I'm voicekit's offline responder.")
    assert "time" in text and "weather" in text and "--llm" in text


async def test_anything_else_is_quoted_back_with_how_to_plug_in_a_real_llm() -> None:
    text = await reply("Tell me a joke about penguins?")
    assert text == (
        "I heard: 'Tell me a joke about penguins'. I'm voicekit's offline responder; "
        "point --llm at a real model to get real answers."
    )
    # the quote never ends a sentence early, and long input is trimmed
    long = await reply("one. two! three? " + "word " * 40)
    first = split_sentences(long)[0]
    assert first.startswith("I heard: 'one, two, three,") and first.endswith("…'.")
    # an apostrophe inside does not look like the end of the quote
    assert (await reply("it's late, isn't it")).startswith("I heard: 'it’s late, isn’t it'. ")


async def test_the_clock_is_read_only_for_the_time() -> None:
    calls = []

    def clock() -> datetime:
        calls.append(1)
        return NOON

    await reply("hello", clock=clock)
    assert calls == []
    assert await reply("what time is it", clock=lambda: datetime(2025, 1, 1, 0, 7)) == (
        "It's 12:07 AM."
    )


async def test_tokens_are_words_then_usage_then_finish() -> None:
    out = await events(user("hello"), system="Be brief.")
    tokens = [e for e in out if isinstance(e, Token)]
    assert [t.text for t in tokens] == ["Hello!", " How", " can", " I", " help?"]
    assert out[len(tokens) :] == [Usage(prompt_tokens=3, completion_tokens=5), Finish("stop")]


# ---------------------------------------------------------------------------------------------
# The weather tool round trip


async def test_weather_calls_the_demo_tool_then_answers_from_its_result() -> None:
    messages: list[dict[str, Any]] = user("What's the weather like in new york today?")
    first = await events(messages, tools=[t.spec for t in llm.demo_tools()])
    (call,) = [e for e in first if isinstance(e, ToolCall)]
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "New York"}
    assert first[-1] == Finish("tool_calls")
    assert not any(isinstance(e, Token) for e in first)

    result, ok = await run_tool({t.name: t for t in llm.demo_tools()}, call)
    assert ok and json.loads(result) == get_weather("New York")
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "name": "get_weather", "content": result},
    ]
    second = await events(messages, tools=llm.demo_tools())
    text = "".join(e.text for e in second if isinstance(e, Token))
    data = get_weather("New York")
    assert text == (
        f"{data['conditions'].capitalize()} in New York. "
        f"It's {data['temperature_c']} degrees, says the demo weather tool."
    )
    assert second[-1] == Finish("stop")


async def test_the_bundled_question_asks_for_the_weather_in_rome() -> None:
    # what voicekit demo's sample recording says
    specs = [WEATHER_TOOL.spec]
    out = await events(user("What is the weather like in Rome today?"), tools=specs)
    (call,) = [e for e in out if isinstance(e, ToolCall)]
    assert json.loads(call.arguments) == {"city": "Rome"}


async def test_plain_schemas_count_as_tools_too() -> None:
    schema = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
    out = await events(user("weather in Oslo"), tools=[schema])
    assert any(isinstance(e, ToolCall) for e in out)
    bare = {"name": "get_weather", "parameters": {}}
    out = await events(user("weather in Oslo"), tools=[bare])
    assert any(isinstance(e, ToolCall) for e in out)


async def test_weather_without_the_tool_or_a_city_says_so() -> None:
    text = await reply("weather in Oslo")
    assert text.startswith("I need the weather tool for Oslo. Pass demo_tools()")
    text = await reply("how's the weather?", tools=llm.demo_tools())
    assert text == "Which city? Ask me about the weather in a city, like Paris."


async def test_another_tools_result_is_read_out() -> None:
    messages = [
        *user("look it up"),
        {"role": "tool", "tool_call_id": "c1", "name": "lookup", "content": "42 items"},
    ]
    assert "".join(e.text for e in await events(messages) if isinstance(e, Token)) == (
        "The lookup tool says: 42 items."
    )


async def test_a_new_user_message_after_a_tool_result_is_answered_afresh() -> None:
    messages = [
        *user("weather in Oslo"),
        {"role": "tool", "tool_call_id": "c1", "name": "get_weather", "content": "{}"},
        *user("thanks"),
    ]
    assert "".join(e.text for e in await events(messages) if isinstance(e, Token)) == (
        "You're welcome!"
    )


def test_the_demo_tool_is_an_agent_tool_with_a_fixed_schema() -> None:
    (tool,) = llm.demo_tools()
    assert isinstance(tool, Tool) and tool is WEATHER_TOOL
    assert tool.spec == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": tool.spec["function"]["description"],
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "The city name, e.g. Paris"}
                },
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    }
    assert "demo data" in tool.spec["function"]["description"]
    assert tools_of(llm.demo_tools()) == (tool,)  # the agent takes it as it is
    assert tool("Paris") == get_weather("Paris") == get_weather(" Paris ")
    assert get_weather("Paris") != get_weather("Lima")
    with pytest.raises(ConfigError):
        get_weather("")


async def test_the_agent_runs_a_call_of_the_demo_tool() -> None:
    call = ToolCall("c1", "get_weather", '{"city": "Lima"}')
    content, ok = await run_tool({WEATHER_TOOL.name: WEATHER_TOOL}, call)
    assert ok and json.loads(content) == get_weather("Lima")


async def test_the_demo_tool_schema_goes_over_the_wire(sse_server: Any) -> None:
    ep = llm.custom(base_url=sse_server.base_url, model="m")
    specs = [t.spec for t in llm.demo_tools()]
    async for _ in llm.chat(ep, user("weather in Paris?"), tools=specs):
        pass
    body = sse_server.requests[-1].json()
    assert body["tools"] == [WEATHER_TOOL.spec]


# ---------------------------------------------------------------------------------------------
# Shape


async def test_a_session_works_as_the_messages() -> None:
    session = Session(call_id="CA1").add_user("hello")
    out = await events(session)
    assert "".join(e.text for e in out if isinstance(e, Token)) == "Hello! How can I help?"


async def test_content_parts_are_read() -> None:
    parts = [{"type": "text", "text": "thank"}, {"type": "text", "text": "you"}]
    assert await reply(parts) == "You're welcome!"  # type: ignore[arg-type]


async def test_deterministic_and_short_first_sentences() -> None:
    prompts = [
        "hello",
        "what time is it",
        "what can you do",
        "thanks",
        "bye",
        "tell me about quantum physics",
        "weather in Paris",
    ]
    for prompt in prompts:
        a = await events(user(prompt), clock=lambda: NOON)
        b = await events(user(prompt), clock=lambda: NOON)
        assert a == b
        text = "".join(e.text for e in a if isinstance(e, Token))
        first = split_sentences(text)[0]
        assert len(first.split()) <= 10, first


def test_it_takes_the_context_an_llm_function_gets() -> None:
    assert accepted_context(local_responder) == {"tools", "session", "system"}
    assert llm.local_responder is local_responder


async def test_the_agent_runs_the_weather_round_with_the_responder() -> None:
    from voicekit import agent
    from voicekit.events import TurnEnded, TurnStarted
    from voicekit.tts import tones

    bot = agent(llm=local_responder, tts=tones(), tools=llm.demo_tools(), session=Session())
    question = "What is the weather like in Rome today?"
    out = await ([TurnStarted(), TurnEnded(question)] | bot).list()
    messages = out[-1].session.messages_json()
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert json.loads(messages[2]["content"]) == get_weather("Rome")
    assert messages[3]["content"].startswith(f"{get_weather('Rome')['conditions'].capitalize()}")
