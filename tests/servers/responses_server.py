"""The package's local Responses / Chat Completions server (:mod:`voicekit.testing`), with every
client event checked against the ``openai`` package's own types (the schema oracle)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pydantic
from openai.types.realtime import ResponseCancelEvent
from openai.types.responses.responses_client_event import ResponseCreate

from voicekit.testing import Connection, Recorded, Reply, comparable, echo_text
from voicekit.testing import ResponsesServer as _PackageServer

__all__ = [
    "Connection",
    "Recorded",
    "Reply",
    "ResponsesServer",
    "check_client_event",
    "comparable",
    "echo_text",
]


_CLIENT_EVENTS: dict[str, type[pydantic.BaseModel]] = {
    "response.create": ResponseCreate,
    "response.cancel": ResponseCancelEvent,
}


def check_client_event(message: Mapping[str, Any], websocket: bool = True) -> list[str]:
    """What is wrong with a client event, judged by the ``openai`` package's own types.

    Dispatches on ``type`` first, then rejects keys the type does not declare (the SDK models
    would silently accept them) and validates the values. An HTTP body is checked as the
    ``response.create`` it mirrors.
    """
    kind = message.get("type")
    model = _CLIENT_EVENTS.get(str(kind))
    if model is None:
        return [f"unknown client event type {kind!r}"]
    problems = []
    unknown = sorted(set(message) - set(model.model_fields))
    if unknown:
        problems.append(f"{kind}: keys the openai types do not declare: {unknown}")
    if websocket and kind == "response.create" and "stream" in message:
        problems.append("response.create over a WebSocket must not carry 'stream'")
    try:
        model.model_validate(dict(message))
    except pydantic.ValidationError as exc:
        problems.append(f"{kind}: {str(exc)[:2000]}")
    return problems



class ResponsesServer(_PackageServer):
    """:class:`voicekit.testing.ResponsesServer` whose ``problems`` list every client event the
    ``openai`` types reject."""

    def __init__(self, *, api_key: str | None = None, delay: float = 0.0) -> None:
        super().__init__(api_key=api_key, delay=delay, check=check_client_event)
