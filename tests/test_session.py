"""The Session value: immutable, validated, private about callers."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

import voicekit as vk
from voicekit import FrozenDict, Session, SessionError


def test_updates_return_new_sessions_and_leave_the_old_one_alone():
    s0 = Session(call_id="CA1")
    s1 = s0.add_user("hi")
    s2 = s1.add_assistant("hello", interrupted=True)
    assert s0.messages == ()
    assert [m["role"] for m in s1.messages] == ["user"]
    assert s2.messages[-1] == {"role": "assistant", "content": "hello", "interrupted": True}
    assert s2.last_user_text == "hi"


def test_nothing_inside_a_session_can_be_mutated():
    s = Session(call_id="CA1", messages=[{"role": "user", "content": [{"type": "text"}]}])
    message = s.messages[0]
    with pytest.raises(TypeError, match="immutable"):
        message["content"] = "changed"  # type: ignore[index]
    with pytest.raises(TypeError, match="immutable"):
        message["content"][0]["type"] = "x"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.call_id = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.memory["k"] = 1  # type: ignore[index]


def test_input_dicts_are_copied_not_captured():
    original = {"role": "user", "content": "hi"}
    s = Session(call_id="CA1").add(original)
    original["content"] = "mutated later"
    assert s.messages[0]["content"] == "hi"


def test_messages_are_json_ready_and_thaw_to_plain_dicts():
    s = Session(call_id="CA1").add_tool_call("call_1", "weather", {"city": "Rome"})
    s = s.add_tool_result("call_1", {"temp": 21}, name="weather")
    text = json.dumps(list(s.messages))
    assert json.loads(text) == s.messages_json()
    plain = s.messages_json()
    plain[0]["content"] = "mutable copy"
    assert s.messages[0]["content"] is None
    assert s.messages[1]["content"] == '{"temp": 21}'


def test_validation_names_what_is_wrong():
    with pytest.raises(SessionError, match="message 0 has role 'robot'"):
        Session(messages=[{"role": "robot", "content": "beep"}])
    with pytest.raises(SessionError, match="no tool_call_id"):
        Session(messages=[{"role": "tool", "content": "x"}])
    with pytest.raises(SessionError, match="which no earlier assistant message asked for"):
        Session(call_id="CA1").add_tool_result("call_9", "x")
    with pytest.raises(SessionError, match="call_id must be a non-empty string"):
        Session(call_id="")
    with pytest.raises(SessionError, match="must be a mapping"):
        Session(messages=["hello"])  # type: ignore[list-item]


def test_the_raw_caller_never_shows_in_repr():
    s = Session(call_id="CA1", caller="+15551110000", callee="+15552220000")
    text = repr(s) + str(s)
    assert "5551110000" not in text and "5552220000" not in text
    assert s.caller_hash == "03de84388b1fa58e" == vk.hash_caller("+15551110000")
    assert "sha256:03de84388b1fa58e" in text


def test_continuity_and_memory():
    s = Session(call_id="CA1").with_continuity("responses", {"previous_response_id": "resp_1"})
    assert s.continuity_for("responses")["previous_response_id"] == "resp_1"
    assert s.continuity_for("other") == {}
    assert s.with_continuity("responses", None).continuity == {}
    s = s.remember(name="Ada", plan="gold").forget("plan")
    assert dict(s.memory) == {"name": "Ada"}


def test_sessions_compare_copy_and_pickle_by_value():
    s = Session(call_id="CA1").add_user("hi")
    assert s == Session(call_id="CA1").add_user("hi")
    assert s != s.add_user("again")
    assert copy.deepcopy(s) == s
    assert pickle.loads(pickle.dumps(s)) == s


def test_new_call_ids_are_unique():
    assert len({vk.new_call_id() for _ in range(1000)}) == 1000


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=10))
def test_freeze_thaw_round_trip(value):
    frozen = vk.freeze(value)
    assert vk.thaw(frozen) == vk.thaw(value)
    if isinstance(value, dict):
        assert isinstance(frozen, FrozenDict)
        assert json.loads(json.dumps(frozen)) == json.loads(json.dumps(value))
