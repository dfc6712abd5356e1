"""The incremental-context rules of the Responses WebSocket variant, as pure functions."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from voicekit.llm._responses_context import (
    Continuity,
    InputPlan,
    input_hash,
    plan_input,
    starts_with_output,
)
from voicekit.session import Session


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def said(text: str) -> dict[str, Any]:
    """An assistant turn as the adapter sends it back (string content)."""
    return {"type": "message", "role": "assistant", "content": text}


def produced(text: str) -> dict[str, Any]:
    """An assistant message as the server outputs it."""
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def call(call_id: str) -> dict[str, Any]:
    return {"type": "function_call", "call_id": call_id, "name": "f", "arguments": "{}"}


def state(items: list[dict[str, Any]], output: list[dict[str, Any]], **kw: Any) -> Continuity:
    return Continuity(
        kw.get("rid", "resp_123"), input_hash(items), len(items), tuple(output), kw.get("conn", "c")
    )


# -- hashing --------------------------------------------------------------------------------


def test_same_input_same_hash_and_key_order_does_not_matter() -> None:
    a = [{"role": "user", "content": "hi", "type": "message"}]
    b = [{"type": "message", "content": "hi", "role": "user"}]
    assert input_hash(a) == input_hash(b)
    assert len(input_hash(a)) == 64


def test_different_input_different_hash() -> None:
    assert input_hash([user("hi")]) != input_hash([user("hi!")])
    assert input_hash([user("a"), user("b")]) != input_hash([user("b"), user("a")])


def test_tuples_and_frozen_values_hash_like_lists_and_dicts() -> None:
    session = Session().add_user("hi")
    assert input_hash(session.messages) == input_hash([{"role": "user", "content": "hi"}])


# -- matching the previous output -------------------------------------------------------------


def test_text_message_matches_on_role_and_text() -> None:
    assert starts_with_output([said("Hello")], [produced("Hello")])
    assert not starts_with_output([said("Hello!")], [produced("Hello")])
    assert not starts_with_output([user("Hello")], [produced("Hello")])


def test_output_text_parts_and_input_text_parts_also_match() -> None:
    as_parts = {"role": "assistant", "content": [{"type": "output_text", "text": "Hi"}]}
    as_input = {"role": "assistant", "content": [{"type": "input_text", "text": "Hi"}]}
    assert starts_with_output([as_parts], [produced("Hi")])
    assert starts_with_output([as_input], [produced("Hi")])


def test_function_call_matches_on_call_id_only() -> None:
    assert starts_with_output([{"type": "function_call", "call_id": "c1"}], [call("c1")])
    assert not starts_with_output([call("c2")], [call("c1")])
    assert not starts_with_output([said("c1")], [call("c1")])


def test_mixed_output_must_match_in_order() -> None:
    output = [produced("Let me check."), call("c1")]
    assert starts_with_output([said("Let me check."), call("c1"), user("x")], output)
    assert not starts_with_output([call("c1"), said("Let me check.")], output)


def test_too_few_items_do_not_match_and_empty_output_always_matches() -> None:
    assert not starts_with_output([said("a")], [produced("a"), call("c")])
    assert starts_with_output([], [])
    assert starts_with_output([user("x")], [])


def test_any_other_output_type_forces_full_context() -> None:
    reasoning = {"type": "reasoning", "id": "rs_1", "summary": []}
    assert not starts_with_output([reasoning], [reasoning])


# -- the plan -----------------------------------------------------------------------------------


def test_no_state_sends_full_context() -> None:
    items = [user("hi")]
    assert plan_input(None, items) == InputPlan((user("hi"),))


def test_matching_prefix_and_output_sends_only_new_items() -> None:
    before = [user("hi")]
    now = [*before, said("Hello"), user("bye")]
    plan = plan_input(state(before, [produced("Hello")]), now, connection="c")
    assert plan.items == (user("bye"),)
    assert plan.previous_response_id == "resp_123"
    assert plan.incremental


def test_each_failed_condition_falls_back_to_full_context() -> None:
    before = [user("hi")]
    now = [*before, said("Hello"), user("bye")]
    good = state(before, [produced("Hello")])
    assert plan_input(good, now, connection="other").items == tuple(now)  # new connection
    changed = [user("HI"), said("Hello"), user("bye")]
    assert plan_input(good, changed, connection="c").items == tuple(changed)  # prefix differs
    assert plan_input(good, before, connection="c").items == tuple(before)  # not longer
    wrong = [*before, said("Hi there"), user("bye")]
    assert plan_input(good, wrong, connection="c").items == tuple(wrong)  # output differs
    only_output = [*before, said("Hello")]
    assert not plan_input(good, only_output, connection="c").incremental  # nothing new


def test_tool_round_trip_continues_incrementally() -> None:
    before = [user("weather?")]
    now = [*before, call("c1"), {"type": "function_call_output", "call_id": "c1", "output": "9"}]
    plan = plan_input(state(before, [call("c1")]), now, connection="c")
    assert plan.items == (now[-1],)


def test_state_round_trips_through_a_session() -> None:
    before = [user("hi")]
    now = [*before, said("Hello"), user("bye")]
    original = state(before, [produced("Hello")])
    session = Session().with_continuity("responses", original.to_mapping())
    restored = Continuity.from_mapping(session.continuity_for("responses"))
    assert restored is not None
    assert restored.response_id == "resp_123" and restored.connection == "c"
    assert plan_input(restored, now, connection="c") == plan_input(original, now, connection="c")
    assert Continuity.from_mapping({}) is None
    assert Continuity.from_mapping({"response_id": "r"}) is None  # malformed: ignored


_items = st.lists(
    st.builds(user, st.text(max_size=8)) | st.builds(said, st.text(max_size=8)),
    max_size=6,
)


@given(before=_items, reply=st.text(max_size=8), new=_items)
def test_what_is_sent_plus_what_is_held_is_the_full_context(
    before: list[dict[str, Any]], reply: str, new: list[dict[str, Any]]
) -> None:
    now = [*before, said(reply), *new]
    plan = plan_input(state(before, [produced(reply)]), now, connection="c")
    if plan.incremental:
        assert [*before, said(reply), *plan.items] == now
        assert len(plan.items) == len(new) > 0
    else:
        assert list(plan.items) == now
        assert not new
