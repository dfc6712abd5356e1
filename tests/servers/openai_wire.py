"""Check a request body against the ``openai`` package's own request types.

``CompletionCreateParamsStreaming`` is a TypedDict whose list fields are ``Iterable``s, which
pydantic validates lazily, and which ignores unknown keys. :func:`validate_chat_request` forces
every lazy iterator and rejects top-level keys the type does not declare, so a misspelt or
invented field fails the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pydantic
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionDeveloperMessageParam,
    ChatCompletionSystemMessageParam,
    ChatCompletionToolMessageParam,
    ChatCompletionUserMessageParam,
)
from openai.types.chat.completion_create_params import CompletionCreateParamsStreaming

__all__ = ["validate_chat_request"]

_ADAPTER = pydantic.TypeAdapter(CompletionCreateParamsStreaming)


def _keys(typed_dict: Any) -> frozenset[str]:
    return frozenset(typed_dict.__required_keys__) | frozenset(typed_dict.__optional_keys__)


_KNOWN = _keys(CompletionCreateParamsStreaming)
_MESSAGE_KEYS = {
    "system": _keys(ChatCompletionSystemMessageParam),
    "developer": _keys(ChatCompletionDeveloperMessageParam),
    "user": _keys(ChatCompletionUserMessageParam),
    "assistant": _keys(ChatCompletionAssistantMessageParam),
    "tool": _keys(ChatCompletionToolMessageParam),
}


def _force(value: Any) -> Any:
    if isinstance(value, Iterator):
        return [_force(v) for v in value]
    if isinstance(value, dict):
        return {k: _force(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_force(v) for v in value]
    return value


def validate_chat_request(body: dict[str, Any]) -> dict[str, Any]:
    """Validate ``body`` as a streaming chat-completions request; return the validated copy."""
    unknown = sorted(set(body) - _KNOWN)
    if unknown:
        raise AssertionError(f"keys the openai request type does not know: {unknown}")
    for index, message in enumerate(body.get("messages", ())):
        extra = sorted(set(message) - _MESSAGE_KEYS.get(message.get("role"), frozenset()))
        if extra:
            raise AssertionError(f"message {index} has keys openai does not know: {extra}")
    forced: dict[str, Any] = _force(_ADAPTER.validate_python(body))
    return forced
