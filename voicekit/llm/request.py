"""The request :func:`voicekit.llm.chat` sends, built by pure functions.

Everything that goes on the wire is decided here, from three values: the :class:`Endpoint`, the
conversation and (optionally) the :class:`~voicekit.Session`. Nothing is sent or logged; the result
can be inspected in a notebook — its repr names headers but never shows their values.

>>> from voicekit.session import Session
>>> from voicekit.llm.presets import hermes
>>> req = build_request(hermes(api_key="k1"), [{"role": "user", "content": "hi"}],
...                     session=Session(call_id="CA123"))
>>> req.headers["X-Hermes-Session-Id"], req.body["user"]
('patter-call-CA123', 'patter-call-CA123')
>>> "k1" in repr(req)
False
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._errors import ConfigError
from .._frozen import FrozenDict, thaw
from .._unicode import frozen_valid, valid_unicode
from ..session import Session
from .adapters import to_chat_messages
from .endpoint import Endpoint

__all__ = [
    "ChatRequest",
    "build_request",
    "normalize_tools",
    "request_headers",
    "session_key_value",
]

Messages = Sequence[Mapping[str, Any]] | Session


def session_key_value(endpoint: Endpoint, session: Session | None) -> str | None:
    """The memory-scope header value for this session, or None when it must not be sent.

    >>> from voicekit.llm.presets import hermes
    >>> session_key_value(hermes(session_key_from="caller_hash"),
    ...                   Session(call_id="CA1", caller="+15551110000"))
    'patter-caller-03de84388b1fa58e'
    """
    if not endpoint.session_key_header:
        return None
    if endpoint.session_key_factory is not None:
        value = endpoint.session_key_factory(session) if session is not None else None
    elif endpoint.session_key_from == "caller_hash":
        digest = session.caller_hash if session is not None else None
        value = endpoint.session_key_prefix + digest if digest else None
    else:
        value = endpoint.session_key
    if value is not None and not isinstance(value, str):
        raise ConfigError(
            f"endpoint {endpoint.name!r}: session_key_factory must return a string or None, "
            f"got {type(value).__name__}"
        )
    return value or None


def request_headers(endpoint: Endpoint, session: Session | None = None) -> dict[str, str]:
    """A fresh dict of the headers for one request (the caller may mutate it).

    Order: ``User-Agent``, ``Content-Type``, ``Authorization`` (only with a key), the endpoint's
    ``headers``, then the session headers.
    """
    headers = {"User-Agent": endpoint.user_agent, "Content-Type": "application/json"}
    if endpoint.api_key is not None:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    headers.update(endpoint.headers)
    call_id = session.call_id if session is not None else None
    if endpoint.session_id_header and call_id:
        headers[endpoint.session_id_header] = endpoint.session_id_prefix + call_id
    key = session_key_value(endpoint, session)
    if key and endpoint.session_key_header:
        headers[endpoint.session_key_header] = key
    return headers


def normalize_tools(tools: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """Tool schemas in the chat-completions shape ``{"type": "function", "function": {...}}``.

    A bare function schema (``{"name": ..., "parameters": ...}``) is wrapped.

    >>> normalize_tools([{"name": "lookup", "parameters": {"type": "object"}}])[0]["type"]
    'function'
    """
    out: list[dict[str, Any]] = []
    for index, tool in enumerate(tools or ()):
        if not isinstance(tool, Mapping):
            raise ConfigError(f"tool {index} must be a mapping, got {type(tool).__name__}")
        plain: dict[str, Any] = thaw(tool)
        if "type" not in plain and "name" in plain:
            plain = {"type": "function", "function": plain}
        function = plain.get("function")
        if plain.get("type") == "function" and not (
            isinstance(function, Mapping) and function.get("name")
        ):
            raise ConfigError(f"tool {index} has no function name: {json.dumps(plain)[:200]}")
        out.append(plain)
    return out


def _sampling(endpoint: Endpoint) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name in (
        "response_format",
        "parallel_tool_calls",
        "tool_choice",
        "seed",
        "top_p",
        "frequency_penalty",
        "presence_penalty",
        "stop",
        "temperature",
    ):
        value = getattr(endpoint, name)
        if value is not None:
            body[name] = thaw(value)
    if endpoint.max_tokens is not None:
        body[endpoint.max_tokens_param] = endpoint.max_tokens
    return body


@dataclass(frozen=True, slots=True, repr=False)
class ChatRequest:
    """One ``POST {base_url}/chat/completions``: URL, headers and JSON body."""

    url: str
    headers: Mapping[str, str]
    body: Mapping[str, Any]

    def content(self) -> bytes:
        """The JSON body as bytes, as sent (UTF-8; a lone surrogate becomes U+FFFD).

        Raises :class:`~voicekit.ConfigError` when the body holds a value JSON cannot carry.
        """
        try:
            text = json.dumps(self.body, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError, RecursionError) as exc:
            raise ConfigError(
                f"the request to {self.url} cannot be encoded as JSON: {exc}"
            ) from exc
        try:
            return text.encode()
        except UnicodeEncodeError:  # a body built by hand, not by build_request
            return valid_unicode(text).encode()

    def fresh_headers(self) -> dict[str, str]:
        """A new, mutable copy of the headers (``aconnect_sse`` mutates what it is given)."""
        return dict(self.headers)

    def __repr__(self) -> str:
        keys = [k for k in self.body if k != "messages"]
        return (
            f"ChatRequest(POST {self.url}, headers={list(self.headers)}, "
            f"messages=<{len(self.body.get('messages', ()))}>, body_keys={keys})"
        )


def build_request(
    endpoint: Endpoint,
    messages: Messages,
    /,
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
    session: Session | None = None,
    system: str | None = None,
) -> ChatRequest:
    """The request :func:`voicekit.llm.chat` would send.

    ``messages`` is a list of OpenAI-style dicts or a :class:`~voicekit.Session` (whose messages
    are used, and which is then also the default ``session``). Body keys, in order: ``model``,
    ``messages``, ``stream``, ``stream_options``, ``tools`` (if any), the endpoint's sampling
    values, ``user`` (if the endpoint has a ``user_prefix`` and the session a call id), then
    ``extra_body``.
    """
    if isinstance(messages, Session):
        session = messages if session is None else session
        conversation: Sequence[Mapping[str, Any]] = messages.messages
    else:
        conversation = messages
    if session is not None and not isinstance(session, Session):
        raise ConfigError(f"session must be a voicekit Session, got {type(session).__name__}")
    chat_messages = to_chat_messages(
        conversation, system=system, developer_role=endpoint.developer_role
    )
    body: dict[str, Any] = {
        "model": endpoint.model,
        "messages": chat_messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    tool_list = normalize_tools(tools)
    if tool_list:
        body["tools"] = tool_list
    body.update(_sampling(endpoint))
    if endpoint.user_prefix is not None and session is not None and session.call_id:
        body["user"] = endpoint.user_prefix + session.call_id
    body.update(thaw(endpoint.extra_body))
    headers = request_headers(endpoint, session)
    _check_headers(endpoint, headers)
    return ChatRequest(url=endpoint.chat_url, headers=FrozenDict(headers), body=frozen_valid(body))


def _check_headers(endpoint: Endpoint, headers: Mapping[str, str]) -> None:
    """HTTP header values are ASCII: say which header is not (never its value, maybe a key)."""
    for key, value in headers.items():
        if not key.isascii() or (isinstance(value, str) and not value.isascii()):
            raise ConfigError(
                f"endpoint {endpoint.name!r}: the {key!r} header has a character that is not "
                "ASCII (check the API key, the headers and the session values); HTTP headers "
                "must be ASCII"
            )
