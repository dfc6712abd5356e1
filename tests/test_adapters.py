"""Message adapters: the same conversation rules for every target, table-driven."""

from __future__ import annotations

import base64
import copy
import json
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import TypeAdapter

from voicekit._frozen import FrozenDict, freeze
from voicekit.llm import adapters
from voicekit.llm.adapters import (
    CONVERSATION_START,
    INTERRUPTED_MARKER,
    AdapterError,
    SystemInstructionConflict,
    to_anthropic,
    to_bedrock,
    to_chat_messages,
    to_gemini,
    to_realtime,
    to_responses_input,
    tools_to_anthropic,
    tools_to_bedrock,
    tools_to_gemini,
    tools_to_realtime,
    tools_to_responses,
)
from voicekit.session import Session


@pytest.fixture(autouse=True)
def _fresh_warning_memory() -> Iterator[None]:
    adapters._warned.clear()
    yield
    adapters._warned.clear()


# -- the conversations --------------------

PNG = "iVBORw0KGgo="
DATA_URL = f"data:image/png;base64,{PNG}"
ARGS = '{"city": "Rome"}'
RESULT = '{"temp": 21}'


def s(text: str) -> dict[str, Any]:
    return {"role": "system", "content": text}


def d(text: str) -> dict[str, Any]:
    return {"role": "developer", "content": text}


def u(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def a(text: str, **extra: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": text, **extra}


CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {"id": "call_A", "type": "function", "function": {"name": "weather", "arguments": ARGS}}
    ],
}
TOOL = {"role": "tool", "tool_call_id": "call_A", "content": RESULT}
IMAGE_USER = {
    "role": "user",
    "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": DATA_URL}},
    ],
}

# name -> (messages, explicit system, warns?)
SCENARIOS: dict[str, tuple[list[dict[str, Any]], str | None, bool]] = {
    "plain": ([u("Hi"), a("Hello!")], None, False),
    "context_system": ([s("Be brief."), u("Hi")], None, False),
    "explicit_system_wins": ([s("Old prompt"), u("Hi")], "New prompt", True),
    "lone_system": ([s("Greet the caller.")], None, False),
    "developer_middle": ([u("Hi"), d("Use metric units."), a("Ok")], "Sys", False),
    "developer_first": ([d("Note"), u("Hi")], "Sys", False),
    "same_role_merge": ([u("a"), u("b"), a("c"), a("d")], None, False),
    "tool_round": ([u("Weather in Rome?"), CALL, TOOL, a("It is 21 degrees.")], None, False),
    "image": ([IMAGE_USER], None, False),
    "interrupted": (
        [u("Hi"), a("The weather in Rome is", interrupted=True), u("Stop")],
        None,
        False,
    ),
    "assistant_first": ([a("Hello, how can I help?"), u("Hi")], None, False),
}

HEARD = f"The weather in Rome is {INTERRUPTED_MARKER}"

# -- expected output, per target --------------------


def chat(role: str, content: Any, **extra: Any) -> dict[str, Any]:
    return {"role": role, "content": content, **extra}


CHAT_CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {"id": "call_A", "type": "function", "function": {"name": "weather", "arguments": ARGS}}
    ],
}

EXPECTED_CHAT = {
    "plain": [chat("user", "Hi"), chat("assistant", "Hello!")],
    "context_system": [chat("system", "Be brief."), chat("user", "Hi")],
    "explicit_system_wins": [chat("system", "New prompt"), chat("user", "Hi")],
    "lone_system": [chat("user", "Greet the caller.")],
    "developer_middle": [
        chat("system", "Sys"),
        chat("user", "Hi"),
        chat("developer", "Use metric units."),
        chat("assistant", "Ok"),
    ],
    "developer_first": [chat("system", "Sys"), chat("developer", "Note"), chat("user", "Hi")],
    "same_role_merge": [
        chat("user", "a"),
        chat("user", "b"),
        chat("assistant", "c"),
        chat("assistant", "d"),
    ],
    "tool_round": [
        chat("user", "Weather in Rome?"),
        CHAT_CALL,
        {"role": "tool", "tool_call_id": "call_A", "content": RESULT},
        chat("assistant", "It is 21 degrees."),
    ],
    "image": [
        chat(
            "user",
            [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": DATA_URL}},
            ],
        )
    ],
    "interrupted": [chat("user", "Hi"), chat("assistant", HEARD), chat("user", "Stop")],
    "assistant_first": [chat("assistant", "Hello, how can I help?"), chat("user", "Hi")],
}


def r_in(role: str, *texts: str) -> dict[str, Any]:
    content = [{"type": "input_text", "text": t} for t in texts]
    return {"type": "message", "role": role, "content": content}


def r_out(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "assistant", "content": text}


R_CALL = {"type": "function_call", "call_id": "call_A", "name": "weather", "arguments": ARGS}
R_RESULT = {"type": "function_call_output", "call_id": "call_A", "output": RESULT}

EXPECTED_RESPONSES = {
    "plain": (None, [r_in("user", "Hi"), r_out("Hello!")]),
    "context_system": ("Be brief.", [r_in("user", "Hi")]),
    "explicit_system_wins": ("New prompt", [r_in("user", "Hi")]),
    "lone_system": (None, [r_in("user", "Greet the caller.")]),
    "developer_middle": (
        "Sys",
        [r_in("user", "Hi"), r_in("developer", "Use metric units."), r_out("Ok")],
    ),
    "developer_first": ("Sys", [r_in("developer", "Note"), r_in("user", "Hi")]),
    "same_role_merge": (None, [r_in("user", "a"), r_in("user", "b"), r_out("c"), r_out("d")]),
    "tool_round": (
        None,
        [r_in("user", "Weather in Rome?"), R_CALL, R_RESULT, r_out("It is 21 degrees.")],
    ),
    "image": (
        None,
        [
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": DATA_URL, "detail": "auto"},
                ],
            }
        ],
    ),
    "interrupted": (None, [r_in("user", "Hi"), r_out(HEARD), r_in("user", "Stop")]),
    "assistant_first": (None, [r_out("Hello, how can I help?"), r_in("user", "Hi")]),
}


def rt_user(text: str) -> dict[str, Any]:
    return r_in("user", text)


def rt_asst(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text}],
    }


EXPECTED_REALTIME = {
    "plain": (None, [rt_user("Hi"), rt_asst("Hello!")]),
    "context_system": ("Be brief.", [rt_user("Hi")]),
    "explicit_system_wins": ("New prompt", [rt_user("Hi")]),
    "lone_system": (None, [rt_user("Greet the caller.")]),
    "developer_middle": ("Sys", [rt_user("Hi"), rt_user("Use metric units."), rt_asst("Ok")]),
    "developer_first": ("Sys", [rt_user("Note"), rt_user("Hi")]),
    "same_role_merge": (None, [rt_user("a"), rt_user("b"), rt_asst("c"), rt_asst("d")]),
    "tool_round": (
        None,
        [rt_user("Weather in Rome?"), R_CALL, R_RESULT, rt_asst("It is 21 degrees.")],
    ),
    "image": (
        None,
        [
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": DATA_URL},
                ],
            }
        ],
    ),
    "interrupted": (None, [rt_user("Hi"), rt_asst(HEARD), rt_user("Stop")]),
    "assistant_first": (None, [rt_asst("Hello, how can I help?"), rt_user("Hi")]),
}


def an(role: str, *blocks: Any) -> dict[str, Any]:
    content = [{"type": "text", "text": b} if isinstance(b, str) else b for b in blocks]
    return {"role": role, "content": content}


EXPECTED_ANTHROPIC = {
    "plain": (None, [an("user", "Hi"), an("assistant", "Hello!")]),
    "context_system": ("Be brief.", [an("user", "Hi")]),
    "explicit_system_wins": ("New prompt", [an("user", "Hi")]),
    "lone_system": (None, [an("user", "Greet the caller.")]),
    "developer_middle": ("Sys", [an("user", "Hi\nUse metric units."), an("assistant", "Ok")]),
    "developer_first": ("Sys", [an("user", "Note\nHi")]),
    "same_role_merge": (None, [an("user", "a\nb"), an("assistant", "c\nd")]),
    "tool_round": (
        None,
        [
            an("user", "Weather in Rome?"),
            an(
                "assistant",
                {"type": "tool_use", "id": "call_A", "name": "weather", "input": {"city": "Rome"}},
            ),
            an("user", {"type": "tool_result", "tool_use_id": "call_A", "content": RESULT}),
            an("assistant", "It is 21 degrees."),
        ],
    ),
    "image": (
        None,
        [
            an(
                "user",
                "What is this?",
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                },
            )
        ],
    ),
    "interrupted": (None, [an("user", "Hi"), an("assistant", HEARD), an("user", "Stop")]),
    "assistant_first": (
        None,
        [
            an("user", CONVERSATION_START),
            an("assistant", "Hello, how can I help?"),
            an("user", "Hi"),
        ],
    ),
}


def ge(role: str, *parts: Any) -> dict[str, Any]:
    return {"role": role, "parts": [{"text": p} if isinstance(p, str) else p for p in parts]}


EXPECTED_GEMINI = {
    "plain": (None, [ge("user", "Hi"), ge("model", "Hello!")]),
    "context_system": ("Be brief.", [ge("user", "Hi")]),
    "explicit_system_wins": ("New prompt", [ge("user", "Hi")]),
    "lone_system": (None, [ge("user", "Greet the caller.")]),
    "developer_middle": ("Sys", [ge("user", "Hi\nUse metric units."), ge("model", "Ok")]),
    "developer_first": ("Sys", [ge("user", "Note\nHi")]),
    "same_role_merge": (None, [ge("user", "a\nb"), ge("model", "c\nd")]),
    "tool_round": (
        None,
        [
            ge("user", "Weather in Rome?"),
            ge(
                "model",
                {"function_call": {"id": "call_A", "name": "weather", "args": {"city": "Rome"}}},
            ),
            ge(
                "user",
                {
                    "function_response": {
                        "id": "call_A",
                        "name": "weather",
                        "response": {"temp": 21},
                    }
                },
            ),
            ge("model", "It is 21 degrees."),
        ],
    ),
    "image": (
        None,
        [ge("user", "What is this?", {"inline_data": {"mime_type": "image/png", "data": PNG}})],
    ),
    "interrupted": (None, [ge("user", "Hi"), ge("model", HEARD), ge("user", "Stop")]),
    "assistant_first": (
        None,
        [ge("user", CONVERSATION_START), ge("model", "Hello, how can I help?"), ge("user", "Hi")],
    ),
}


def br(role: str, *blocks: Any) -> dict[str, Any]:
    return {"role": role, "content": [{"text": b} if isinstance(b, str) else b for b in blocks]}


EXPECTED_BEDROCK = {
    "plain": ([], [br("user", "Hi"), br("assistant", "Hello!")]),
    "context_system": ([{"text": "Be brief."}], [br("user", "Hi")]),
    "explicit_system_wins": ([{"text": "New prompt"}], [br("user", "Hi")]),
    "lone_system": ([], [br("user", "Greet the caller.")]),
    "developer_middle": (
        [{"text": "Sys"}],
        [br("user", "Hi\nUse metric units."), br("assistant", "Ok")],
    ),
    "developer_first": ([{"text": "Sys"}], [br("user", "Note\nHi")]),
    "same_role_merge": ([], [br("user", "a\nb"), br("assistant", "c\nd")]),
    "tool_round": (
        [],
        [
            br("user", "Weather in Rome?"),
            br(
                "assistant",
                {"toolUse": {"toolUseId": "call_A", "name": "weather", "input": {"city": "Rome"}}},
            ),
            br("user", {"toolResult": {"toolUseId": "call_A", "content": [{"text": RESULT}]}}),
            br("assistant", "It is 21 degrees."),
        ],
    ),
    "image": (
        [],
        [
            br(
                "user",
                "What is this?",
                {"image": {"format": "png", "source": {"bytes": base64.b64decode(PNG)}}},
            )
        ],
    ),
    "interrupted": ([], [br("user", "Hi"), br("assistant", HEARD), br("user", "Stop")]),
    "assistant_first": (
        [],
        [
            br("user", CONVERSATION_START),
            br("assistant", "Hello, how can I help?"),
            br("user", "Hi"),
        ],
    ),
}

TARGETS: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
    "chat": (to_chat_messages, EXPECTED_CHAT),
    "responses": (to_responses_input, EXPECTED_RESPONSES),
    "realtime": (to_realtime, EXPECTED_REALTIME),
    "anthropic": (to_anthropic, EXPECTED_ANTHROPIC),
    "gemini": (to_gemini, EXPECTED_GEMINI),
    "bedrock": (to_bedrock, EXPECTED_BEDROCK),
}

CASES = [
    pytest.param(target, scenario, id=f"{target}-{scenario}")
    for target in TARGETS
    for scenario in SCENARIOS
]


def _run(target: str, scenario: str, *, freeze_input: bool = False) -> tuple[Any, list[Any]]:
    fn, _ = TARGETS[target]
    messages, system, _ = SCENARIOS[scenario]
    given: Any = freeze(messages) if freeze_input else copy.deepcopy(messages)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(given, system=system)
    return out, [w for w in caught if issubclass(w.category, SystemInstructionConflict)]


@pytest.mark.parametrize(("target", "scenario"), CASES)
def test_target_table(target: str, scenario: str) -> None:
    out, conflicts = _run(target, scenario)
    assert out == TARGETS[target][1][scenario]
    assert len(conflicts) == (1 if SCENARIOS[scenario][2] else 0)


@pytest.mark.parametrize(("target", "scenario"), CASES)
def test_never_mutates_and_shares_nothing_mutable(target: str, scenario: str) -> None:
    fn, _ = TARGETS[target]
    messages, system, _ = SCENARIOS[scenario]
    given = copy.deepcopy(messages)
    before = copy.deepcopy(given)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SystemInstructionConflict)
        out = fn(given, system=system)
    assert given == before
    assert not _mutable_ids(out) & _mutable_ids(given)


@pytest.mark.parametrize(("target", "scenario"), CASES)
def test_frozen_input_gives_the_same_plain_output(target: str, scenario: str) -> None:
    out, _ = _run(target, scenario, freeze_input=True)
    assert out == TARGETS[target][1][scenario]
    _assert_plain(out)


def _mutable_ids(value: Any) -> set[int]:
    found: set[int] = set()

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            found.add(id(v))
            for item in v.values():
                walk(item)
        elif isinstance(v, list | tuple):
            if isinstance(v, list):
                found.add(id(v))
            for item in v:
                walk(item)

    walk(value)
    return found


def _assert_plain(value: Any) -> None:
    if isinstance(value, tuple):  # the (system, messages) pair itself
        for item in value:
            _assert_plain(item)
        return
    assert type(value) in (dict, list, str, int, float, bool, bytes, type(None)), type(value)
    if type(value) is dict:
        for item in value.values():
            assert not isinstance(item, tuple | FrozenDict)
            _assert_plain(item)
    elif type(value) is list:
        for item in value:
            assert not isinstance(item, tuple | FrozenDict)
            _assert_plain(item)


# -- the wire shapes the openai package defines --------------------


def _materialise(value: Any) -> Any:
    """pydantic validates Iterable fields lazily; turn them into lists to compare."""
    if isinstance(value, dict):
        return {k: _materialise(v) for k, v in value.items()}
    if isinstance(value, list | tuple) or (
        hasattr(value, "__iter__") and not isinstance(value, str | bytes | dict)
    ):
        return [_materialise(v) for v in value]
    return value


def _validates_exactly(type_: Any, value: Any) -> None:
    """Valid for the openai TypedDicts, and no key is unknown to them (extra keys are dropped)."""
    assert _materialise(TypeAdapter(type_).validate_python(value)) == value


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_responses_items_match_the_openai_types(scenario: str) -> None:
    from openai.types.responses import ResponseInputParam

    (_, items), _ = _run("responses", scenario)
    _validates_exactly(ResponseInputParam, items)
    json.dumps(items)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_realtime_items_match_the_openai_types(scenario: str) -> None:
    from openai.types.realtime import ConversationItemParam

    (_, items), _ = _run("realtime", scenario)
    _validates_exactly(list[ConversationItemParam], items)
    json.dumps(items)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_chat_messages_match_the_openai_types(scenario: str) -> None:
    from openai.types.chat import ChatCompletionMessageParam

    out, _ = _run("chat", scenario)
    _validates_exactly(list[ChatCompletionMessageParam], out)
    json.dumps(out)


# -- system instruction rules --------------------

NON_CHAT = ["responses", "realtime", "anthropic", "gemini", "bedrock"]


@pytest.mark.parametrize("target", TARGETS)
def test_conflict_warns_once_per_distinct_pair(target: str) -> None:
    fn, _ = TARGETS[target]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn([s("Old"), u("Hi")], system="New")
        fn([s("Old"), u("Hi")], system="New")  # same pair: silent
        fn([s("Other"), u("Hi")], system="New")  # a new pair: warns again
        fn([s("Same"), u("Hi")], system="Same")  # identical texts: no conflict
    conflicts = [w for w in caught if issubclass(w.category, SystemInstructionConflict)]
    assert len(conflicts) == 2
    assert "'New'" in str(conflicts[0].message) and "'Old'" in str(conflicts[0].message)
    assert conflicts[0].filename == __file__  # attributed to the caller, not to voicekit


@pytest.mark.parametrize("target", TARGETS)
def test_developer_is_never_promoted_nor_a_conflict(target: str) -> None:
    fn, _ = TARGETS[target]
    with warnings.catch_warnings():
        warnings.simplefilter("error", SystemInstructionConflict)
        out = fn([d("Guidance"), u("Hi")], system="Sys")
        no_system = fn([d("Guidance"), u("Hi")])
    if target == "chat":
        assert out[0] == {"role": "system", "content": "Sys"}
        assert no_system[0] == {"role": "developer", "content": "Guidance"}
    elif target == "bedrock":
        assert out[0] == [{"text": "Sys"}] and no_system[0] == []
    else:
        assert out[0] == "Sys" and no_system[0] is None


@pytest.mark.parametrize("target", TARGETS)
def test_lone_system_with_explicit_instruction_becomes_user_and_warns(target: str) -> None:
    fn, _ = TARGETS[target]
    with pytest.warns(SystemInstructionConflict):
        out = fn([s("Greet the caller.")], system="You are Ada.")
    assert "Greet the caller." in json.dumps(out)
    assert "You are Ada." in json.dumps(out)


@pytest.mark.parametrize("target", ["realtime", "anthropic", "gemini", "bedrock"])
def test_only_messages_0_is_the_system_instruction(target: str) -> None:
    fn, _ = TARGETS[target]
    out = fn([u("Hi"), s("Later note"), a("Ok")])
    assert out[0] in (None, [])
    assert "Later note" in json.dumps(out[1])


def test_later_system_messages_per_target() -> None:
    msgs = [u("Hi"), s("Now speak French.")]
    assert to_chat_messages(msgs)[1] == {"role": "system", "content": "Now speak French."}
    assert to_responses_input(msgs)[1][1] == r_in("developer", "Now speak French.")
    assert to_realtime(msgs)[1][1] == {
        "type": "message",
        "role": "system",
        "content": [{"type": "input_text", "text": "Now speak French."}],
    }
    assert to_anthropic(msgs)[1] == [an("user", "Hi\nNow speak French.")]


def test_chat_without_developer_role() -> None:
    out = to_chat_messages([s("Sys"), d("Note"), u("Hi")], developer_role=False)
    assert out == [chat("system", "Sys"), chat("user", "Note"), chat("user", "Hi")]


def test_responses_empty_input() -> None:
    assert to_responses_input([]) == (None, [])
    assert to_responses_input([], system="Sys") == (None, [r_in("developer", "Sys")])
    # a context system message that leaves nothing else behaves the same way
    assert to_responses_input([s("Sys"), u("")]) == (None, [r_in("developer", "Sys")])


def test_empty_system_means_no_instruction() -> None:
    assert to_anthropic([s("Ctx"), u("Hi")], system="") == ("Ctx", [an("user", "Hi")])
    with pytest.raises(AdapterError, match="system must be a string"):
        to_anthropic([u("Hi")], system=42)  # type: ignore[arg-type]


# -- content details --------------------


def test_chat_drops_voicekit_only_and_unknown_keys() -> None:
    msgs = [
        u("Hi"),
        a("Hel", interrupted=True, x_debug=1),
        CALL,
        {**TOOL, "name": "weather"},
    ]
    out = to_chat_messages(msgs)
    assert out[1] == {"role": "assistant", "content": f"Hel {INTERRUPTED_MARKER}"}
    assert out[3] == {"role": "tool", "tool_call_id": "call_A", "content": RESULT}
    assert all("interrupted" not in m and "x_debug" not in m for m in out)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param("", INTERRUPTED_MARKER, id="nothing-heard"),
        pytest.param(None, INTERRUPTED_MARKER, id="none"),
        pytest.param("Hi there ", f"Hi there {INTERRUPTED_MARKER}", id="trailing-space"),
        pytest.param(f"Hi {INTERRUPTED_MARKER}", f"Hi {INTERRUPTED_MARKER}", id="idempotent"),
    ],
)
def test_interrupted_marker(content: str | None, expected: str) -> None:
    msgs = [u("Hi"), {"role": "assistant", "content": content, "interrupted": True}]
    assert to_chat_messages(msgs)[1]["content"] == expected
    assert to_anthropic(msgs)[1][1] == an("assistant", expected)
    assert to_responses_input(msgs)[1][1] == r_out(expected)


def test_interrupted_marker_with_list_content() -> None:
    msgs = [
        u("Hi"),
        {"role": "assistant", "content": [{"type": "text", "text": "Well"}], "interrupted": True},
    ]
    assert to_chat_messages(msgs)[1]["content"] == [
        {"type": "text", "text": f"Well {INTERRUPTED_MARKER}"}
    ]
    assert to_gemini(msgs)[1][1] == ge("model", f"Well {INTERRUPTED_MARKER}")


def test_assistant_text_with_tool_calls_is_kept() -> None:
    msgs = [u("Weather?"), {**CALL, "content": "Let me check."}, TOOL]
    items = to_responses_input(msgs)[1]
    assert items[1:] == [r_out("Let me check."), R_CALL, R_RESULT]
    blocks = to_anthropic(msgs)[1][1]["content"]
    assert [b["type"] for b in blocks] == ["text", "tool_use"]


def test_tool_results_open_the_user_turn() -> None:
    # a developer note between the call and its result must not come before the tool_result
    msgs = [u("Weather?"), CALL, d("Answer in Celsius."), TOOL]
    user_turn = to_anthropic(msgs)[1][2]
    assert [b["type"] for b in user_turn["content"]] == ["tool_result", "text"]
    assert [next(iter(b)) for b in to_bedrock(msgs)[1][2]["content"]] == ["toolResult", "text"]


def test_parallel_tool_results_merge_into_one_turn() -> None:
    calls = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "g", "arguments": ""}},
        ],
    }
    msgs = [
        u("Go"),
        calls,
        {"role": "tool", "tool_call_id": "c1", "content": "1"},
        {"role": "tool", "tool_call_id": "c2", "content": "two"},
    ]
    contents = to_gemini(msgs)[1]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[2]["parts"] == [
        {"function_response": {"id": "c1", "name": "f", "response": {"output": 1}}},
        {"function_response": {"id": "c2", "name": "g", "response": {"output": "two"}}},
    ]
    assert contents[1]["parts"][1]["function_call"]["args"] == {}


def test_tool_arguments_that_are_not_an_object() -> None:
    bad = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
        ],
    }
    block = to_anthropic([u("Go"), bad])[1][1]["content"][0]
    assert block["input"] == {"_raw_arguments": "{oops"}
    assert to_responses_input([u("Go"), bad])[1][1]["arguments"] == "{oops"


def test_mapping_arguments_are_encoded_for_openai() -> None:
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}
        ],
    }
    out = to_chat_messages([u("Go"), call])
    assert out[1]["tool_calls"][0]["function"]["arguments"] == '{"x": 1}'
    assert to_realtime([u("Go"), call])[1][1]["arguments"] == '{"x": 1}'


def test_gemini_needs_the_tool_name() -> None:
    orphan = {"role": "tool", "tool_call_id": "nope", "content": "x"}
    with pytest.raises(AdapterError, match="function name"):
        to_gemini([u("Go"), orphan])
    named = to_gemini([u("Go"), {**orphan, "name": "lookup"}])[1][0]["parts"][0]
    assert named["function_response"]["name"] == "lookup"


@pytest.mark.parametrize(
    ("target", "url", "expected"),
    [
        pytest.param(
            "anthropic",
            "https://example.com/cat.png",
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
            id="anthropic-url",
        ),
        pytest.param(
            "gemini",
            "https://example.com/cat.webp?size=2",
            {
                "file_data": {
                    "mime_type": "image/webp",
                    "file_uri": "https://example.com/cat.webp?size=2",
                }
            },
            id="gemini-url",
        ),
        pytest.param(
            "bedrock",
            "s3://bucket/cat.jpg",
            {"image": {"format": "jpeg", "source": {"s3Location": {"uri": "s3://bucket/cat.jpg"}}}},
            id="bedrock-s3",
        ),
    ],
)
def test_image_urls(target: str, url: str, expected: dict[str, Any]) -> None:
    fn, _ = TARGETS[target]
    msg = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}
    out = fn([msg])[1][0]
    assert (out.get("content") or out.get("parts"))[0] == expected


@pytest.mark.parametrize(
    ("target", "url", "match"),
    [
        pytest.param("bedrock", "https://example.com/cat.png", "cannot fetch", id="bedrock-http"),
        pytest.param("realtime", "https://example.com/cat.png", "data: URLs", id="realtime-http"),
        pytest.param("anthropic", "ftp://x/cat.png", "scheme", id="anthropic-ftp"),
        pytest.param("bedrock", "data:image/tiff;base64,AAAA", "unsupported image", id="tiff"),
        pytest.param("bedrock", "data:image/png;base64,***", "base64", id="bad-base64"),
        pytest.param("gemini", "data:image/png,rawtext", "base64 data", id="non-base64"),
    ],
)
def test_unsupported_images(target: str, url: str, match: str) -> None:
    fn, _ = TARGETS[target]
    msg = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}
    with pytest.raises(AdapterError, match=match):
        fn([msg])


def test_unknown_parts() -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    msg = {"role": "user", "content": [audio]}
    assert to_chat_messages([msg])[0]["content"] == [audio]
    assert to_responses_input([msg])[1][0]["content"] == [audio]  # passed through as is
    for fn in (to_anthropic, to_gemini, to_bedrock, to_realtime):
        with pytest.raises(AdapterError, match="input_audio"):
            fn([msg])


def test_empty_messages_are_left_out_where_alternation_matters() -> None:
    msgs = [u("Hi"), a(""), u("Hello?")]
    assert to_anthropic(msgs)[1] == [an("user", "Hi\nHello?")]
    assert to_chat_messages(msgs)[1] == {"role": "assistant", "content": ""}
    assert to_anthropic([])[1] == [an("user", CONVERSATION_START)]


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        pytest.param([{"role": "robot", "content": "x"}], "role 'robot'", id="role"),
        pytest.param(["hi"], "must be a mapping", id="not-a-mapping"),
        pytest.param([{"role": "tool", "content": "x"}], "tool_call_id", id="tool-without-id"),
        pytest.param({"role": "user"}, "sequence", id="a-mapping"),
        pytest.param([{"role": "user", "content": {"a": 1}}], "content", id="dict-content"),
    ],
)
def test_bad_input(messages: Any, match: str) -> None:
    with pytest.raises(AdapterError, match=match):
        to_anthropic(messages)
    assert issubclass(AdapterError, ValueError)


def test_session_messages_round_trip() -> None:
    session = (
        Session(call_id="CA1")
        .add({"role": "system", "content": "Be brief."})
        .add_assistant("Hi, how can I", interrupted=True)
        .add_user("Weather in Rome?")
        .add_tool_call("call_A", "weather", {"city": "Rome"})
        .add_tool_result("call_A", {"temp": 21}, name="weather")
    )
    before = session.messages
    system, msgs = to_anthropic(session.messages)
    assert system == "Be brief."
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user"]
    assert msgs[1]["content"] == [{"type": "text", "text": f"Hi, how can I {INTERRUPTED_MARKER}"}]
    assert session.messages == before
    chat_out = to_chat_messages(session.messages)
    _assert_plain(chat_out)
    json.dumps(chat_out)
    json.dumps(to_gemini(session.messages))


def test_generators_are_accepted() -> None:
    assert to_anthropic(m for m in [u("Hi")]) == (None, [an("user", "Hi")])


# -- tools --------------------

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": ["string", "null"], "description": "City"}},
    "required": ["city"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Current weather.",
        "parameters": SCHEMA,
        "strict": True,
    },
}
NOW = {"type": "function", "function": {"name": "now"}}
EMPTY = {"type": "object", "properties": {}}

TOOL_CASES = [
    pytest.param(
        tools_to_responses,
        [
            {
                "type": "function",
                "name": "weather",
                "description": "Current weather.",
                "parameters": SCHEMA,
                "strict": True,
            },
            {"type": "function", "name": "now", "parameters": EMPTY, "strict": False},
        ],
        id="responses",
    ),
    pytest.param(
        tools_to_realtime,
        [
            {
                "type": "function",
                "name": "weather",
                "description": "Current weather.",
                "parameters": SCHEMA,
            },
            {"type": "function", "name": "now", "parameters": EMPTY},
        ],
        id="realtime",
    ),
    pytest.param(
        tools_to_anthropic,
        [
            {"name": "weather", "description": "Current weather.", "input_schema": SCHEMA},
            {"name": "now", "input_schema": EMPTY},
        ],
        id="anthropic",
    ),
    pytest.param(
        tools_to_bedrock,
        [
            {
                "toolSpec": {
                    "name": "weather",
                    "description": "Current weather.",
                    "inputSchema": {"json": SCHEMA},
                }
            },
            {"toolSpec": {"name": "now", "inputSchema": {"json": EMPTY}}},
        ],
        id="bedrock",
    ),
    pytest.param(
        tools_to_gemini,
        [
            {
                "function_declarations": [
                    {
                        "name": "weather",
                        "description": "Current weather.",
                        "parameters": {
                            "type": "object",
                            "properties": {
                                "city": {"type": "string", "nullable": True, "description": "City"}
                            },
                            "required": ["city"],
                        },
                    },
                    {"name": "now"},
                ]
            }
        ],
        id="gemini",
    ),
]


@pytest.mark.parametrize(("fn", "expected"), TOOL_CASES)
def test_tools(fn: Callable[..., Any], expected: list[dict[str, Any]]) -> None:
    tools = [copy.deepcopy(WEATHER), NOW]
    before = copy.deepcopy(tools)
    out = fn(tools)
    assert out == expected
    assert tools == before
    assert not _mutable_ids(out) & _mutable_ids(tools)
    assert fn(freeze(tools)) == expected
    _assert_plain(fn(freeze(tools)))
    assert fn(None) == [] and fn([]) == []


def test_tools_match_the_openai_types() -> None:
    from openai.types.realtime.realtime_function_tool_param import RealtimeFunctionToolParam
    from openai.types.responses import FunctionToolParam

    _validates_exactly(list[FunctionToolParam], tools_to_responses([WEATHER, NOW]))
    _validates_exactly(list[RealtimeFunctionToolParam], tools_to_realtime([WEATHER, NOW]))


@pytest.mark.parametrize(
    "tool",
    [
        pytest.param({"type": "custom", "custom": {"name": "x"}}, id="custom"),
        pytest.param({"type": "function", "function": {}}, id="no-name"),
        pytest.param("weather", id="string"),
    ],
)
def test_bad_tools(tool: Any) -> None:
    with pytest.raises(AdapterError):
        tools_to_anthropic([tool])


def test_gemini_schema_type_union() -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "f",
            "parameters": {"type": "object", "properties": {"x": {"type": ["string", "integer"]}}},
        },
    }
    with pytest.raises(AdapterError, match="single type"):
        tools_to_gemini([tool])


def test_frozen_dict_is_still_a_dict() -> None:
    # FrozenDict input must come out as plain dicts, including nested tool calls
    out = to_chat_messages(freeze([u("Go"), CALL]))
    assert type(out[1]["tool_calls"][0]) is dict
    assert type(out[1]["tool_calls"]) is list
