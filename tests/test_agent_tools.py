"""tool(): schemas from type hints and docstrings; how the agent runs tools and keeps state."""

from __future__ import annotations

import enum
import json
import threading
from typing import Annotated, Literal

import pytest

import voicekit as vk
from voicekit import Tool, agent, tool
from voicekit.conversation import run_conversation, say, scripted_llm
from voicekit.events import ToolCall, ToolResult
from voicekit.llm import ResponsesState
from voicekit.tts import tones


class Unit(enum.Enum):
    C = "celsius"
    F = "fahrenheit"


def test_schema_from_hints_defaults_and_docstring():
    def forecast(
        city: str,
        days: int = 1,
        unit: Unit = Unit.C,
        hourly: bool = False,
        tags: list[str] | None = None,
        mood: Literal["calm", "windy"] = "calm",
        note: Annotated[str, "a note for the forecaster"] = "",
        extra: dict | None = None,
        anything=None,
    ) -> str:
        """The forecast for a city.

        More words that are not the summary.

        Args:
            city: The city, e.g. Paris.
            days (int): How many days,
                counted from today.
        """
        return ""

    schema = tool(forecast).spec["function"]
    assert schema["name"] == "forecast"
    assert schema["description"] == "The forecast for a city."
    params = schema["parameters"]
    assert params["required"] == ["city"]
    assert params["properties"] == {
        "city": {"type": "string", "description": "The city, e.g. Paris."},
        "days": {"type": "integer", "description": "How many days, counted from today."},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "hourly": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "mood": {"type": "string", "enum": ["calm", "windy"]},
        "note": {"type": "string", "description": "a note for the forecaster"},
        "extra": {"type": "object"},
        "anything": {},
    }


def test_given_schema_name_and_description():
    wrapped = {
        "type": "function",
        "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
    }
    t = tool(lambda: "x", schema=wrapped, description="Look something up.")
    assert t.name == "lookup"
    assert t.spec == {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {"type": "object", "properties": {}},
            "description": "Look something up.",
        },
    }
    assert tool(name="renamed")(lambda city: city).name == "renamed"
    assert tool(t).fn is t.fn  # a Tool is unwrapped, not nested


def test_decorated_functions_stay_callable():
    @tool
    def add(a: int, b: int) -> int:
        return a + b

    assert isinstance(add, Tool) and add(2, 3) == 5


def test_what_cannot_be_a_tool():
    with pytest.raises(vk.ConfigError, match="name="):
        tool(lambda x: x)
    with pytest.raises(vk.ConfigError, match="positional-only"):
        tool(lambda x, /: x, name="f")
    with pytest.raises(vk.ConfigError, match="same name"):

        def f() -> None: ...

        agent(llm=scripted_llm(), tts=tones(), tools=[f, tool(f)])
    with pytest.raises(vk.ConfigError):
        tool(42)


async def test_sync_tools_run_off_the_event_loop_and_async_ones_on_it():
    threads = {}

    def blocking(x: int) -> int:
        threads["sync"] = threading.current_thread()
        return x * 2

    async def awaiting(x: int) -> dict:
        threads["async"] = threading.current_thread()
        return {"x": x}

    llm = scripted_llm(
        [ToolCall("a", "blocking", '{"x": 2}'), ToolCall("b", "awaiting", '{"x": 3}')],
        "Done.",
    )
    bot = agent(llm=llm, tts=tones(), tools=[blocking, awaiting])
    result = await run_conversation(bot, [say("go")])
    assert threads["sync"] is not threading.main_thread()
    assert threads["async"] is threading.main_thread()
    assert [(r.call_id, r.content) for r in result.of(ToolResult)] == [
        ("a", "4"),
        ("b", json.dumps({"x": 3})),
    ]
    assert [m["role"] for m in llm.calls[1]] == ["user", "assistant", "tool", "tool"]


async def test_continuity_state_from_the_llm_goes_into_the_session():
    async def llm(messages, *, session):
        yield "Hi."
        previous = session.continuity_for("responses").get("response_id", "none")
        yield ResponsesState(state={"response_id": f"after-{previous}"})

    bot = agent(llm=llm, tts=tones(), session=vk.Session(call_id="r"))
    result = await run_conversation(bot, [say("one"), say("two")])
    assert result.session.continuity_for("responses")["response_id"] == "after-after-none"


# -- a blocking sync tool never keeps the process alive (issue 9 item 7) ---------------------

_SLEEPY_SCRIPT = """
import asyncio, sys, time
import voicekit as vk
from voicekit.conversation import scripted_llm
from voicekit.events import Interrupted, ToolCall, TurnEnded, TurnStarted

started = None

def slow_lookup() -> str:
    started.set()  # thread-safe enough for the test: set via the loop below
    time.sleep(20)
    return "too late"

async def main():
    global started
    loop = asyncio.get_running_loop()
    running = asyncio.Event()

    class Flag:
        def set(self):
            loop.call_soon_threadsafe(running.set)

    started = Flag()
    llm = scripted_llm([ToolCall("c1", "slow_lookup", "{}")], "Unused.")
    bot = vk.agent(
        llm=llm, tts=vk.tts.tones(), tools=[slow_lookup], interruption=vk.Interruption.immediate()
    )

    async def caller():
        yield TurnStarted(0.0)
        yield TurnEnded("look it up", 0.0)
        await running.wait()
        yield TurnStarted(1.0)  # barge-in while the tool sleeps

    out = await (caller() | bot).list()
    assert any(isinstance(x, Interrupted) for x in out), out
    print("agent done", flush=True)

begin = time.monotonic()
asyncio.run(main())
print(f"asyncio.run returned after {time.monotonic() - begin:.2f} s", flush=True)
"""


def test_an_abandoned_sync_tool_does_not_delay_exit(tmp_path):
    import subprocess
    import sys
    import time

    script = tmp_path / "sleepy.py"
    script.write_text(_SLEEPY_SCRIPT)
    begin = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )
    took = time.monotonic() - begin
    assert done.returncode == 0, done.stderr
    assert "agent done" in done.stdout
    returned = float(done.stdout.split("returned after ")[1].split()[0])
    assert returned < 5.0, done.stdout  # the tool sleeps 20 s; nothing waits for it
    assert took < 12.0, took  # the process exits too (interpreter start included)


async def test_a_sync_tool_sees_the_callers_context_and_its_error_is_a_result():
    import contextvars

    from voicekit._agent_tools import run_tool

    where: contextvars.ContextVar[str] = contextvars.ContextVar("where", default="unset")
    where.set("call-7")

    @tool
    def whereami() -> str:
        return f"{where.get()} on {threading.current_thread().name}"

    @tool
    def broken() -> str:
        raise KeyError("no such city")

    tools = {t.name: t for t in (whereami, broken)}
    text, ok = await run_tool(tools, ToolCall("c1", "whereami"))
    assert ok and text == "call-7 on voicekit-tool-whereami"
    text, ok = await run_tool(tools, ToolCall("c2", "broken"))
    assert not ok and json.loads(text) == {"error": "KeyError: 'no such city'"}
