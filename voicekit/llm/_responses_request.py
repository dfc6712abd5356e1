"""The Responses API request body, built by pure functions (shared by HTTP and WebSocket).

>>> from voicekit.llm.endpoint import Endpoint
>>> ep = Endpoint(base_url="https://api.openai.com/v1", model="gpt-4.1", temperature=0.2)
>>> body = response_body(ep, [{"role": "system", "content": "Be brief."},
...                           {"role": "user", "content": "Hi"}])
>>> body["instructions"], body["store"], body["temperature"], len(body["input"])
('Be brief.', False, 0.2, 1)
>>> responses_url(ep), websocket_url(ep)
('https://api.openai.com/v1/responses', 'wss://api.openai.com/v1/responses')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._errors import ConfigError
from .._frozen import thaw
from ..session import Session
from .adapters import to_responses_input, tools_to_responses
from .endpoint import Endpoint
from .request import Messages, normalize_tools

__all__ = [
    "conversation_of",
    "response_body",
    "responses_url",
    "websocket_url",
]

# Body keys voicekit decides; ``extra_body`` cannot override them.
_OWN_KEYS = frozenset({"input", "previous_response_id", "stream", "type"})


def responses_url(endpoint: Endpoint) -> str:
    """``{base_url}/responses``."""
    return endpoint.base_url + "/responses"


def websocket_url(endpoint: Endpoint) -> str:
    """``{base_url}/responses`` with ``ws(s)://`` in place of ``http(s)://``."""
    scheme, rest = endpoint.base_url.split("://", 1)
    return ("wss" if scheme == "https" else "ws") + "://" + rest + "/responses"


def conversation_of(
    messages: Messages, session: Session | None
) -> tuple[Sequence[Mapping[str, Any]], Session | None]:
    """The messages to send and the Session to use (a Session passed as messages is both)."""
    if isinstance(messages, Session):
        return messages.messages, messages if session is None else session
    if session is not None and not isinstance(session, Session):
        raise ConfigError(f"session must be a voicekit Session, got {type(session).__name__}")
    return messages, session


def _tool_choice(choice: Any) -> Any:
    """A chat-completions ``tool_choice`` in the Responses shape."""
    if isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        return {"type": "function", "name": choice["function"].get("name")}
    return thaw(choice)


def _sampling(endpoint: Endpoint) -> dict[str, Any]:
    """The endpoint's sampling defaults that the Responses API understands."""
    body: dict[str, Any] = {}
    if endpoint.temperature is not None:
        body["temperature"] = endpoint.temperature
    if endpoint.top_p is not None:
        body["top_p"] = endpoint.top_p
    if endpoint.max_tokens is not None:
        body["max_output_tokens"] = endpoint.max_tokens
    if endpoint.tool_choice is not None:
        body["tool_choice"] = _tool_choice(endpoint.tool_choice)
    if endpoint.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = endpoint.parallel_tool_calls
    return body


def response_body(
    endpoint: Endpoint,
    conversation: Sequence[Mapping[str, Any]],
    /,
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
    session: Session | None = None,
    system: str | None = None,
) -> dict[str, Any]:
    """The body of one Responses request carrying the full context (no ``stream`` key).

    Keys: ``model``, ``input`` (the full context as input items), ``instructions`` (when there
    is a system instruction), ``store`` (always False), ``tools`` (Responses shape, if any), the
    endpoint's ``temperature``/``top_p``/``max_output_tokens``/``tool_choice``/
    ``parallel_tool_calls``, ``user`` (``user_prefix`` + call id), then ``extra_body``.
    """
    instructions, items = to_responses_input(conversation, system=system)
    body: dict[str, Any] = {"model": endpoint.model, "input": items}
    if instructions is not None:
        body["instructions"] = instructions
    body["store"] = False
    tool_list = tools_to_responses(normalize_tools(tools))
    if tool_list:
        body["tools"] = tool_list
    body.update(_sampling(endpoint))
    if endpoint.user_prefix is not None and session is not None and session.call_id:
        body["user"] = endpoint.user_prefix + session.call_id
    body.update({k: thaw(v) for k, v in endpoint.extra_body.items() if k not in _OWN_KEYS})
    return body
