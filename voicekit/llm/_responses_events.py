"""Reading one Responses API stream: typed server events in, voicekit events out.

Shared by the HTTP (SSE) and WebSocket variants. A :class:`ResponseReader` is made per response
and fed each decoded server event (a dict, dispatched on its ``type``); it returns the voicekit
events that event produces:

* ``response.output_text.delta`` (and ``response.refusal.delta``) → :class:`~voicekit.Token`;
* function calls (``output_item.added``, ``function_call_arguments.delta``/``.done``,
  ``output_item.done``) are gathered and yielded as :class:`~voicekit.ToolCall` s once the
  response completes, then :class:`~voicekit.Usage` (with cached and reasoning tokens) and
  :class:`~voicekit.Finish`;
* ``response.failed``, ``response.incomplete`` and ``error`` raise
  :class:`~voicekit.ProviderResponseError` carrying the server's message and code.

>>> r = ResponseReader()
>>> r.feed({"type": "response.created", "response": {"id": "resp_1"}})
[]
>>> r.feed({"type": "response.output_text.delta", "delta": "Hi"})
[Token(text='Hi')]
>>> r.feed({"type": "response.completed", "response": {"id": "resp_1", "output": [],
...         "usage": {"input_tokens": 5, "output_tokens": 1,
...                   "input_tokens_details": {"cached_tokens": 2}}}})
[Usage(prompt_tokens=5, completion_tokens=1, cached_tokens=2, reasoning_tokens=0), \
Finish(reason='stop', response_id='resp_1')]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._errors import ProviderResponseError, ProviderStreamError
from ..events import Finish, Token, ToolCall, Usage

__all__ = [
    "CONNECTION_LIMIT",
    "PREVIOUS_NOT_FOUND",
    "TERMINAL",
    "ResponseReader",
    "error_details",
    "failure_details",
    "usage_of",
]

TERMINAL = frozenset({"response.completed", "response.failed", "response.incomplete"})
"""The event types that end a response."""

PREVIOUS_NOT_FOUND = "previous_response_not_found"
CONNECTION_LIMIT = "websocket_connection_limit_reached"


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def usage_of(response: Mapping[str, Any]) -> Usage | None:
    """The :class:`~voicekit.Usage` of a completed response, if it reports one."""
    usage = response.get("usage")
    if not isinstance(usage, Mapping):
        return None
    return Usage(
        prompt_tokens=_int(usage.get("input_tokens")),
        completion_tokens=_int(usage.get("output_tokens")),
        cached_tokens=_int(_mapping(usage.get("input_tokens_details")).get("cached_tokens")),
        reasoning_tokens=_int(_mapping(usage.get("output_tokens_details")).get("reasoning_tokens")),
    )


def error_details(event: Mapping[str, Any]) -> tuple[str, str | None]:
    """``(message, code)`` of an ``error`` event, in its WebSocket or SSE shape.

    >>> error_details({"type": "error", "error": {"code": "x", "message": "boom"}})
    ('boom', 'x')
    >>> error_details({"type": "error", "code": None, "message": "bad"})
    ('bad', None)
    """
    body = _mapping(event.get("error")) or event
    message = body.get("message") or "unknown error"
    code = body.get("code") or (body.get("type") if body is not event else None)
    return str(message), (str(code) if code else None)


def failure_details(response: Mapping[str, Any], kind: str) -> tuple[str, str | None]:
    """``(message, code)`` of a failed or incomplete response, with the server's message."""
    error = _mapping(response.get("error")) or _mapping(
        _mapping(response.get("status_details")).get("error")
    )
    status = response.get("status") or kind.removeprefix("response.")
    reason = _mapping(response.get("incomplete_details")).get("reason")
    detail = error.get("message") or (f"reason {reason}" if reason else "no details given")
    code = error.get("code") or reason
    return f"response {status}: {detail}", (str(code) if code else None)


@dataclass(slots=True)
class _Call:
    index: int
    call_id: str
    name: str
    arguments: str = ""


class ResponseReader:
    """Turns the server events of one response into voicekit events (one reader per response).

    After the terminal event, ``done`` is True and ``response_id``, ``output`` (the server's
    output items) and ``status`` describe the response.
    """

    def __init__(self, provider: str | None = None) -> None:
        self.provider = provider
        self.response_id: str | None = None
        self.status: str | None = None
        self.output: list[Mapping[str, Any]] = []
        self.created = False
        self.done = False
        self._calls: dict[str, _Call] = {}
        self._text: list[str] = []

    @property
    def text(self) -> str:
        """The text streamed so far."""
        return "".join(self._text)

    def feed(self, event: Any) -> list[Any]:
        """Take one decoded server event; return the voicekit events it produces."""
        if not isinstance(event, Mapping) or not isinstance(event.get("type"), str):
            raise ProviderStreamError(
                f"expected a JSON object with a 'type', got {str(event)[:200]!r}",
                provider=self.provider,
            )
        kind: str = event["type"]
        if kind == "response.output_text.delta" or kind == "response.refusal.delta":
            delta = event.get("delta")
            if isinstance(delta, str) and delta:
                self._text.append(delta)
                return [Token(delta)]
            return []
        if kind == "response.created":
            self.created = True
            self.response_id = _mapping(event.get("response")).get("id") or self.response_id
            return []
        if kind in ("response.output_item.added", "response.output_item.done"):
            self._item(event, final=kind.endswith("done"))
            return []
        if kind == "response.function_call_arguments.delta":
            call = self._calls.get(str(event.get("item_id")))
            if call is not None and isinstance(event.get("delta"), str):
                call.arguments += event["delta"]
            return []
        if kind == "response.function_call_arguments.done":
            call = self._calls.get(str(event.get("item_id")))
            if call is not None and isinstance(event.get("arguments"), str):
                call.arguments = event["arguments"]
            return []
        if kind in TERMINAL:
            return self._finish(kind, _mapping(event.get("response")))
        if kind == "error":
            self.done = True
            message, code = error_details(event)
            raise ProviderResponseError(message, code=code, provider=self.provider)
        return []  # in_progress, content_part.*, output_text.done, reasoning…: nothing to yield

    def _item(self, event: Mapping[str, Any], *, final: bool) -> None:
        item = _mapping(event.get("item"))
        if item.get("type") != "function_call":
            return
        key = str(item.get("id") or item.get("call_id"))
        index = event.get("output_index")
        call = self._calls.get(key) or _Call(
            index=index if isinstance(index, int) else len(self._calls),
            call_id=str(item.get("call_id") or key),
            name=str(item.get("name") or ""),
        )
        self._calls[key] = call
        if item.get("call_id"):
            call.call_id = str(item["call_id"])
        if item.get("name"):
            call.name = str(item["name"])
        if final and isinstance(item.get("arguments"), str):
            call.arguments = item["arguments"]

    def _finish(self, kind: str, response: Mapping[str, Any]) -> list[Any]:
        self.done = True
        self.response_id = response.get("id") or self.response_id
        self.status = response.get("status") or kind.removeprefix("response.")
        if kind != "response.completed":
            message, code = failure_details(response, kind)
            raise ProviderResponseError(message, code=code, provider=self.provider)
        output = response.get("output")
        self.output = (
            [dict(item) for item in output if isinstance(item, Mapping)]
            if isinstance(output, list | tuple)
            else self._rebuilt_output()
        )
        calls = self._tool_calls()
        events: list[Any] = list(calls)
        usage = usage_of(response)
        if usage is not None:
            events.append(usage)
        events.append(Finish("tool_calls" if calls else "stop", self.response_id))
        return events

    def _tool_calls(self) -> list[ToolCall]:
        calls = sorted(self._calls.values(), key=lambda c: c.index)
        if not calls:  # a server that sent only the final output
            calls = [
                _Call(
                    i,
                    str(item.get("call_id")),
                    str(item.get("name")),
                    str(item.get("arguments") or ""),
                )
                for i, item in enumerate(self.output)
                if item.get("type") == "function_call"
            ]
        return [ToolCall(c.call_id, c.name, c.arguments or "{}") for c in calls]

    def _rebuilt_output(self) -> list[Mapping[str, Any]]:
        """Output items rebuilt from the stream, for a server whose completed event has none."""
        items: list[Mapping[str, Any]] = []
        if self._text:
            items.append(
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": self.text}],
                }
            )
        for call in sorted(self._calls.values(), key=lambda c: c.index):
            items.append(
                {
                    "type": "function_call",
                    "call_id": call.call_id,
                    "name": call.name,
                    "arguments": call.arguments,
                }
            )
        return items
