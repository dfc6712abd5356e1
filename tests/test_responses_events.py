"""Reading Responses API server events (shared by the HTTP and WebSocket variants)."""

from __future__ import annotations

import json
import typing
from typing import Any

import pydantic
import pytest
from openai.types.responses.responses_server_event import ResponsesServerEvent
from servers.responses_server import Reply, ResponsesServer  # tests/ is on sys.path (conftest)
from websockets.asyncio.client import connect

from voicekit import Finish, ProviderResponseError, ProviderStreamError, Token, ToolCall, Usage
from voicekit.llm._responses_events import ResponseReader, error_details


def created(rid: str = "resp_1") -> dict[str, Any]:
    return {"type": "response.created", "response": {"id": rid, "status": "in_progress"}}


def completed(output: list[Any], usage: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"id": "resp_1", "status": "completed", "output": output}
    if usage is not None:
        response["usage"] = usage
    return {"type": "response.completed", "response": response}


def feed_all(reader: ResponseReader, events: list[dict[str, Any]]) -> list[Any]:
    out: list[Any] = []
    for event in events:
        out.extend(reader.feed(event))
    return out


def test_text_deltas_become_tokens_and_completion_maps_usage() -> None:
    usage = {
        "input_tokens": 100,
        "output_tokens": 50,
        "total_tokens": 150,
        "input_tokens_details": {"cached_tokens": 20},
        "output_tokens_details": {"reasoning_tokens": 10},
    }
    reader = ResponseReader()
    events = feed_all(
        reader,
        [
            created(),
            {"type": "response.in_progress", "response": {"id": "resp_1"}},
            {"type": "response.output_text.delta", "delta": "Hello"},
            {"type": "response.output_text.delta", "delta": " world"},
            {"type": "response.output_text.done", "text": "Hello world"},
            completed([], usage),
        ],
    )
    assert events == [
        Token("Hello"),
        Token(" world"),
        Usage(prompt_tokens=100, completion_tokens=50, cached_tokens=20, reasoning_tokens=10),
        Finish("stop", "resp_1"),
    ]
    assert reader.done and reader.status == "completed" and reader.text == "Hello world"


def test_function_call_arguments_accumulate_and_final_item_wins() -> None:
    added = {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "get_weather"}
    final = {**added, "arguments": '{"location":"SF"}', "status": "completed"}
    reader = ResponseReader()
    events = feed_all(
        reader,
        [
            created(),
            {"type": "response.output_item.added", "output_index": 0, "item": added},
            {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": '{"lo'},
            {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": "ca"},
            {"type": "response.output_item.done", "output_index": 0, "item": final},
            completed([final]),
        ],
    )
    assert events == [
        ToolCall("call_1", "get_weather", '{"location":"SF"}'),
        Finish("tool_calls", "resp_1"),
    ]
    assert reader.output == [final]


def test_arguments_done_sets_the_arguments_and_calls_keep_output_order() -> None:
    a = {"id": "fc_a", "type": "function_call", "call_id": "ca", "name": "a"}
    b = {"id": "fc_b", "type": "function_call", "call_id": "cb", "name": "b"}
    reader = ResponseReader()
    events = feed_all(
        reader,
        [
            {"type": "response.output_item.added", "output_index": 1, "item": b},
            {"type": "response.output_item.added", "output_index": 0, "item": a},
            {"type": "response.function_call_arguments.done", "item_id": "fc_b", "arguments": "{}"},
            {
                "type": "response.function_call_arguments.done",
                "item_id": "fc_a",
                "arguments": "[1]",
            },
            completed([]),
        ],
    )
    assert [e for e in events if isinstance(e, ToolCall)] == [
        ToolCall("ca", "a", "[1]"),
        ToolCall("cb", "b", "{}"),
    ]


def test_calls_only_in_the_final_output_are_still_reported() -> None:
    final = {"type": "function_call", "call_id": "c9", "name": "now", "arguments": ""}
    events = ResponseReader().feed(completed([final]))
    assert events == [ToolCall("c9", "now", "{}"), Finish("tool_calls", "resp_1")]


def test_output_is_rebuilt_when_the_completed_event_has_none() -> None:
    reader = ResponseReader()
    feed_all(
        reader,
        [
            {"type": "response.output_text.delta", "delta": "Hi"},
            {"type": "response.completed", "response": {"id": "r"}},
        ],
    )
    assert reader.output == [
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi"}]}
    ]


def test_failed_carries_the_server_message_and_code() -> None:
    failed = {
        "type": "response.failed",
        "response": {
            "id": "r",
            "status": "failed",
            "error": {"code": "content_filter", "message": "Content filter triggered"},
        },
    }
    reader = ResponseReader("ep")
    with pytest.raises(ProviderResponseError, match="Content filter triggered") as info:
        reader.feed(failed)
    assert info.value.code == "content_filter" and info.value.provider == "ep"
    assert reader.done


def test_incomplete_is_an_error_with_its_reason() -> None:
    incomplete = {
        "type": "response.incomplete",
        "response": {
            "id": "r",
            "status": "incomplete",
            "incomplete_details": {"reason": "max_output_tokens"},
        },
    }
    with pytest.raises(ProviderResponseError, match="max_output_tokens") as info:
        ResponseReader().feed(incomplete)
    assert info.value.code == "max_output_tokens"


def test_error_events_in_websocket_and_sse_shapes() -> None:
    ws = {"type": "error", "error": {"code": "previous_response_not_found", "message": "gone"}}
    with pytest.raises(ProviderResponseError, match="gone") as info:
        ResponseReader().feed(ws)
    assert info.value.code == "previous_response_not_found"
    sse = {"type": "error", "code": "server_error", "message": "Internal server error"}
    with pytest.raises(ProviderResponseError, match="Internal server error"):
        ResponseReader().feed(sse)
    assert error_details({"type": "error"}) == ("unknown error", None)


def test_events_without_a_type_are_a_stream_error() -> None:
    with pytest.raises(ProviderStreamError):
        ResponseReader().feed({"delta": "x"})
    with pytest.raises(ProviderStreamError):
        ResponseReader().feed([1, 2])


def test_unknown_events_are_ignored() -> None:
    reader = ResponseReader()
    assert reader.feed({"type": "response.reasoning_summary_text.delta", "delta": "hm"}) == []
    assert not reader.done


def _server_event_models() -> dict[str, type[pydantic.BaseModel]]:
    """The openai server event models, keyed by their ``type`` literal."""
    union = typing.get_args(ResponsesServerEvent)[0]
    models = {}
    for model in typing.get_args(union):
        for literal in typing.get_args(model.model_fields["type"].annotation):
            models[literal] = model
    return models


_MODELS = _server_event_models()


def parse_server_event(event: dict[str, Any]) -> pydantic.BaseModel:
    """Dispatch on ``type`` first, then validate strictly against that one model."""
    return _MODELS[event["type"]].model_validate(event)


async def test_the_test_server_speaks_what_the_openai_types_describe() -> None:
    """Every event the fault-injecting test server sends parses as an openai server event."""
    seen: list[str] = []
    async with ResponsesServer() as server:
        server.enqueue(
            Reply(text="Checking.", tool_calls=[("call_1", "lookup", '{"q": "x"}')]),
            Reply(status="failed"),
            Reply(error=("server_error", "boom")),
        )
        async with connect(server.ws_url) as ws:
            for _ in range(4):
                await ws.send(
                    json.dumps(
                        {
                            "type": "response.create",
                            "model": "m",
                            "input": [{"role": "user", "content": "hi"}],
                        }
                    )
                )
                while True:
                    event = json.loads(await ws.recv())
                    parsed = parse_server_event(event)
                    assert parsed.type == event["type"]
                    seen.append(event["type"])
                    if event["type"] in ("response.completed", "response.failed", "error"):
                        break
            await ws.send(
                json.dumps(
                    {
                        "type": "response.create",
                        "model": "m",
                        "previous_response_id": "resp_nope",
                        "input": [],
                    }
                )
            )
            assert parse_server_event(json.loads(await ws.recv())).type == "error"
        assert not server.problems
    assert {
        "response.function_call_arguments.delta",
        "response.output_text.delta",
        "response.failed",
        "error",
    } <= set(seen)
