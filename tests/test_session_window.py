"""A long call stays fast: Session updates touch only what they add, and a history window limits
what is sent to the LLM while the Session keeps everything (issue 9 item 13)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from servers.sse_server import SSEServer, chunk, stream_reply, text_reply, tool_chunks

import voicekit as vk
from voicekit import ConfigError, HistoryWindow, Session, SessionError, estimate_tokens
from voicekit.conversation import run_conversation, say
from voicekit.llm import custom

SYSTEM = {"role": "system", "content": "You are a terse assistant."}


def conversation(turns: int, *, tools_every: int = 0, system: bool = True) -> Session:
    """``turns`` user turns; every ``tools_every``-th turn makes a tool call before replying."""
    s = Session(call_id="CA1", messages=[SYSTEM] if system else [])
    for n in range(turns):
        s = s.add_user(f"question {n}: what about item {n}?")
        if tools_every and n % tools_every == 0:
            s = s.add_tool_call(f"c{n}", "lookup", {"item": n})
            s = s.add_tool_result(f"c{n}", {"item": n, "found": True}, name="lookup")
        s = s.add_assistant(f"answer {n}: item {n} is fine.")
    return s


def contents(messages: Any) -> list[Any]:
    return [m["content"] for m in messages]


def check_whole(window: tuple[Any, ...]) -> None:
    """No tool result without its call; no call without all its results."""
    asked: set[str] = set()
    answered: set[str] = set()
    for message in window:
        for call in message.get("tool_calls") or ():
            asked.add(call["id"])
        if message["role"] == "tool":
            assert message["tool_call_id"] in asked, "a tool result without its call"
            answered.add(message["tool_call_id"])
    assert asked == answered, "a tool call without its result"


# -- updates -----------------------------------------------------------------------------------


def test_updates_keep_the_old_messages_as_they_are() -> None:
    s1 = conversation(50)
    s2 = s1.add_user("more").with_continuity("p", {"id": "r1"}).remember(name="Ada")
    assert all(a is b for a, b in zip(s1.messages, s2.messages, strict=False))  # not re-made
    assert len(s2.messages) == len(s1.messages) + 1 and s2.continuity_for("p") == {"id": "r1"}
    assert s2 == Session(**{f: getattr(s2, f) for f in ("call_id", "messages", "continuity")},
                         memory={"name": "Ada"})  # what the full check makes of it is the same


def test_updates_still_check_what_they_add() -> None:
    s = conversation(30, tools_every=7)
    assert len(s.messages) == 71
    with pytest.raises(SessionError, match="message 71 is a tool result for call 'nope'"):
        s.add_tool_result("nope", "x")
    with pytest.raises(SessionError, match="message 71 has role 'robot'"):
        s.add({"role": "robot", "content": "beep"})
    late = s.add_tool_result("c0", "a late second answer to the very first call")
    assert late.messages[-1]["tool_call_id"] == "c0"  # found by looking back all the way
    same = s.add_tool_call("z", "f", {}).add_tool_result("z", "r")
    assert same.messages[-1]["content"] == "r"


# -- the window --------------------------------------------------------------------------------


def test_no_window_is_everything() -> None:
    s = conversation(5)
    assert s.window() is s.messages and s.window(HistoryWindow()) is s.messages
    assert s.window(10) is s.messages  # fewer turns than asked for


def test_last_turns_with_the_system_message() -> None:
    s = conversation(10, tools_every=3)
    window = s.window(2)
    assert window[0] == SYSTEM
    assert window[1]["content"] == "question 8: what about item 8?"
    assert window[-1]["content"] == "answer 9: item 9 is fine."  # after a tool round
    assert [m["role"] for m in window[-4:]] == ["user", "assistant", "tool", "assistant"]
    assert window[1:] == s.messages[-len(window) + 1 :]
    check_whole(window)
    turn_9 = s.window(1)
    assert turn_9[0] == SYSTEM and len(turn_9) == 5  # system, user, call, result, answer
    assert s.messages_json(1) == [dict(m) for m in json.loads(json.dumps(turn_9))]


def test_a_token_budget_is_respected_and_starts_at_a_turn() -> None:
    s = conversation(40, tools_every=4)
    for budget in (60, 100, 250, 600, 1200):
        window = s.window(HistoryWindow(tokens=budget))
        assert sum(estimate_tokens(m) for m in window) <= budget
        assert window[0] == SYSTEM and window[1]["role"] == "user"
        check_whole(window)
        bigger = s.window(HistoryWindow(tokens=budget + 200))
        assert len(bigger) > len(window)  # the budget is used, not wasted
    assert len(s.messages) == 1 + 40 * 2 + 10 * 2  # the Session keeps everything


def test_turns_and_tokens_together_give_the_smaller_window() -> None:
    s = conversation(30)
    by_turns = s.window(HistoryWindow(turns=3))
    by_tokens = s.window(HistoryWindow(tokens=400))
    both = s.window(HistoryWindow(turns=3, tokens=400))
    assert both == min(by_turns, by_tokens, key=len)


def test_the_newest_message_is_sent_even_over_budget() -> None:
    s = conversation(3).add_user("x" * 4000)
    window = s.window(HistoryWindow(tokens=50))
    assert window == (SYSTEM, s.messages[-1])
    mid_turn = conversation(3).add_user("go").add_tool_call("c9", "f", {"q": "y" * 4000})
    mid_turn = mid_turn.add_tool_result("c9", "z" * 4000)
    tail = mid_turn.window(HistoryWindow(tokens=50))
    assert [m["role"] for m in tail] == ["system", "assistant", "tool"]  # the call with it
    check_whole(tail)


def test_within_an_over_budget_turn_the_window_never_starts_on_a_tool_result() -> None:
    s = conversation(2).add_user("look it up")
    for n in range(6):
        s = s.add_tool_call(f"k{n}", "f", {"n": n}).add_tool_result(f"k{n}", "r" * 200)
    window = s.window(HistoryWindow(tokens=300))
    assert window[0] == SYSTEM and window[1]["role"] == "assistant" and window[1]["tool_calls"]
    assert sum(estimate_tokens(m) for m in window) <= 300
    check_whole(window)


def test_without_a_system_message_nothing_is_kept_in_front() -> None:
    s = conversation(6, system=False)
    assert contents(s.window(1)) == ["question 5: what about item 5?", "answer 5: item 5 is fine."]


def test_bad_windows_are_config_errors() -> None:
    for bad in ({"turns": 0}, {"tokens": -5}, {"turns": True}, {"tokens": 2.5}):
        with pytest.raises(ConfigError, match="HistoryWindow"):
            HistoryWindow(**bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="history must be"):
        conversation(1).window("all")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="agent: history must be"):
        vk.agent(llm=custom(base_url="http://127.0.0.1:9/v1", model="m"), tts=vk.tts.tones(),
                 history=[3])  # type: ignore[arg-type]


@st.composite
def conversations(draw: Any) -> Session:
    s = Session(call_id="CA1", messages=[SYSTEM] if draw(st.booleans()) else [])
    for n in range(draw(st.integers(0, 12))):
        s = s.add_user("u" * draw(st.integers(1, 300)))
        for k in range(draw(st.integers(0, 2))):
            calls = draw(st.integers(1, 2))
            ids = [f"c{n}_{k}_{i}" for i in range(calls)]
            s = s.add_assistant(
                None,
                tool_calls=[
                    {"id": i, "type": "function", "function": {"name": "f", "arguments": "{}"}}
                    for i in ids
                ],
            )
            for i in ids:
                s = s.add_tool_result(i, "r" * draw(st.integers(1, 300)))
        if draw(st.booleans()):
            s = s.add_assistant("a" * draw(st.integers(1, 300)))
    return s


@settings(max_examples=150, deadline=None)
@given(
    conversations(),
    st.one_of(st.none(), st.integers(1, 6)),
    st.one_of(st.none(), st.integers(1, 800)),
)
def test_window_invariants(s: Session, turns: int | None, tokens: int | None) -> None:
    window = s.window(HistoryWindow(turns=turns, tokens=tokens))
    messages = s.messages
    head = 0
    while head < len(messages) and messages[head]["role"] == "system":
        head += 1
    assert window[:head] == messages[:head]  # the system message is always kept
    rest = window[head:]
    if messages[head:]:
        assert rest and rest == messages[len(messages) - len(rest) :]  # the newest, in order
    assert not rest or rest[0]["role"] != "tool"  # never an orphan tool result first
    check_whole(window)
    if turns is not None:
        assert sum(m["role"] == "user" for m in rest) <= turns
    if tokens is not None:
        cost = sum(estimate_tokens(m) for m in window)
        if cost > tokens and rest:  # over the budget only when nothing smaller would be whole
            smallest = next(
                messages[len(messages) - k :]
                for k in range(1, len(messages) + 1)
                if _whole(messages[len(messages) - k :])
            )
            assert rest == smallest


def _whole(messages: tuple[Any, ...]) -> bool:
    try:
        check_whole(messages)
    except AssertionError:
        return False
    return True


# -- the agent sends only the window -------------------------------------------------------------


async def test_the_agent_sends_only_the_window_to_the_llm(sse_server: SSEServer) -> None:
    long = conversation(200, tools_every=10)
    sse_server.enqueue(
        stream_reply([*tool_chunks(0, "w1", "lookup", '{"item": 1}'), chunk(finish="tool_calls")]),
        text_reply(["Found it."]),
        text_reply(["Bye."]),
    )

    def lookup(item: int) -> dict[str, Any]:
        """Find an item."""
        return {"item": item, "found": True}

    bot = vk.agent(
        llm=custom(base_url=sse_server.base_url, model="m"),
        tts=vk.tts.tones(),
        session=long,
        tools=[lookup],
        history=HistoryWindow(turns=2),
    )
    result = await run_conversation(bot, [say("find item 1"), say("thanks")], time_limit=30)
    sent = [r.json()["messages"] for r in sse_server.requests]
    assert len(sent) == 3
    for messages in sent:
        assert messages[0] == SYSTEM  # the Session's leading system message
        assert sum(m["role"] == "user" for m in messages) <= 2
    assert [m["content"] for m in sent[0][1:]] == [
        "question 199: what about item 199?",
        "answer 199: item 199 is fine.",
        "find item 1",
    ]
    assert [m["role"] for m in sent[1][-3:]] == ["user", "assistant", "tool"]  # the tool round
    assert sent[2][1]["content"] == "find item 1" and sent[2][-1]["content"] == "thanks"
    assert result.session is not None
    assert len(result.session.messages) == len(long.messages) + 6  # the Session keeps it all
    assert result.transcript[-1] == ("assistant", "Bye.")


async def test_the_agent_respects_a_token_budget(sse_server: SSEServer) -> None:
    long = conversation(300)
    bot = vk.agent(
        llm=custom(base_url=sse_server.base_url, model="m"),
        tts=vk.tts.tones(),
        session=long,
        history=HistoryWindow(tokens=500),
    )
    await run_conversation(bot, [say("hello")], time_limit=30)
    messages = sse_server.requests[-1].json()["messages"]
    assert sum(estimate_tokens(m) for m in messages) <= 500
    assert messages[0] == SYSTEM and messages[-1] == {"role": "user", "content": "hello"}
    assert 10 < len(messages) < len(long.messages) / 4
