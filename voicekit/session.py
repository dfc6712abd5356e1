"""The Session: everything a conversation must remember, as one immutable value.

A :class:`Session` holds who is on the call, the conversation so far (OpenAI-style message dicts,
deeply frozen), per-provider continuity state (for example a Responses API
``previous_response_id``) and free-form user memory. Every update is a method that returns a *new*
Session; the old one is untouched, so any earlier state can be kept, compared or replayed.
Text entering a Session is valid Unicode: a surrogate pair (half an emoji in each of two stream
chunks) is joined into its character and a lone surrogate becomes U+FFFD, so the conversation can
always be encoded and sent.

>>> s0 = Session(call_id="CA1", caller="+15551110000")
>>> s1 = s0.add_user("What's the weather?").add_assistant("Sunny.")
>>> [m["role"] for m in s1.messages], len(s0.messages)
(['user', 'assistant'], 0)
>>> s1.caller_hash
'03de84388b1fa58e'
>>> "+1555" in repr(s1)
False
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._errors import SessionError
from ._frozen import FrozenDict, freeze, thaw
from ._unicode import frozen_valid

__all__ = ["ROLES", "Message", "Session", "hash_caller", "new_call_id"]

Message = Mapping[str, Any]
"""An OpenAI-style chat message: ``{"role": ..., "content": ..., ...}`` (frozen in a Session)."""

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
"""The message roles a Session accepts."""


def new_call_id() -> str:
    """A fresh, random call id.

    >>> len(new_call_id())
    15
    """
    return "vk-" + uuid.uuid4().hex[:12]


def hash_caller(caller: str | None) -> str | None:
    """The first 16 hex characters of sha256(caller), or None for no caller.

    The raw string is hashed exactly as given (no normalisation), which keeps it compatible with
    gateways configured for Patter. It is not a security measure — a phone number has too little
    entropy — only a way to keep the raw number off the wire and out of logs.

    >>> hash_caller("+15551110000")
    '03de84388b1fa58e'
    >>> hash_caller("") is None
    True
    """
    if not caller:
        return None
    return hashlib.sha256(caller.encode("utf-8")).hexdigest()[:16]


def _check_message(message: Any, index: int) -> FrozenDict:
    if not isinstance(message, Mapping):
        raise SessionError(f"message {index} must be a mapping, got {type(message).__name__}")
    role = message.get("role")
    if role not in ROLES:
        raise SessionError(
            f"message {index} has role {role!r}; expected one of {', '.join(sorted(ROLES))}"
        )
    if role == "tool" and not message.get("tool_call_id"):
        raise SessionError(f"message {index} has role 'tool' but no tool_call_id")
    frozen: FrozenDict = frozen_valid(message)  # lone surrogates never get in
    return frozen


def _mask(value: str | None) -> str:
    return "None" if value is None else f"<sha256:{hash_caller(value) or ''}>"


@dataclass(frozen=True, slots=True)
class Session:
    """Who is talking, what was said, and what each provider needs to continue the conversation.

    Build one with keyword arguments; change it only through the ``add_*``/``with_*`` methods or
    :func:`dataclasses.replace`, which all return a new Session.
    """

    call_id: str = field(default_factory=new_call_id)
    caller: str | None = None
    callee: str | None = None
    messages: tuple[Message, ...] = ()
    continuity: Mapping[str, Mapping[str, Any]] = field(default_factory=FrozenDict)
    memory: Mapping[str, Any] = field(default_factory=FrozenDict)

    def __post_init__(self) -> None:
        if not isinstance(self.call_id, str) or not self.call_id:
            raise SessionError(f"call_id must be a non-empty string, got {self.call_id!r}")
        messages = tuple(_check_message(m, i) for i, m in enumerate(self.messages))
        object.__setattr__(self, "messages", messages)
        object.__setattr__(self, "continuity", freeze(dict(self.continuity)))
        object.__setattr__(self, "memory", freeze(dict(self.memory)))
        _check_tool_results(messages)

    def __repr__(self) -> str:
        return (
            f"Session(call_id={self.call_id!r}, caller={_mask(self.caller)}, "
            f"callee={_mask(self.callee)}, messages=<{len(self.messages)}>, "
            f"continuity={sorted(self.continuity)}, memory={sorted(self.memory)})"
        )

    @property
    def caller_hash(self) -> str | None:
        """:func:`hash_caller` of the caller: safe to send where a per-caller key is needed."""
        return hash_caller(self.caller)

    # -- conversation ---------------------------------------------------------------------------

    def add(self, *messages: Message) -> Session:
        """Append messages (OpenAI-style dicts) and return the new Session."""
        return dataclasses.replace(self, messages=self.messages + tuple(messages))

    def add_user(self, text: str) -> Session:
        """Append what the user said."""
        return self.add({"role": "user", "content": text})

    def add_assistant(
        self,
        text: str | None,
        *,
        interrupted: bool = False,
        tool_calls: Iterable[Mapping[str, Any]] = (),
    ) -> Session:
        """Append what the assistant said (or the tool calls it made).

        ``interrupted=True`` marks a reply the user cut off; ``text`` is then the part that was
        heard. ``tool_calls`` are OpenAI-style ``{"id", "type": "function", "function": {...}}``.
        """
        message: dict[str, Any] = {"role": "assistant", "content": text}
        calls = [dict(c) for c in tool_calls]
        if calls:
            message["tool_calls"] = calls
        if interrupted:
            message["interrupted"] = True
        return self.add(message)

    def add_tool_call(self, call_id: str, name: str, arguments: str | Mapping[str, Any]) -> Session:
        """Append an assistant message asking for one tool call."""
        args = arguments if isinstance(arguments, str) else json.dumps(frozen_valid(arguments))
        call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
        return self.add_assistant(None, tool_calls=[call])

    def add_tool_result(self, call_id: str, content: Any, *, name: str | None = None) -> Session:
        """Append the result of a tool call (JSON-encoded unless it is already a string)."""
        text = content if isinstance(content, str) else json.dumps(frozen_valid(content))
        message: dict[str, Any] = {"role": "tool", "tool_call_id": call_id, "content": text}
        if name:
            message["name"] = name
        return self.add(message)

    def with_messages(self, messages: Iterable[Message]) -> Session:
        """Replace the whole conversation."""
        return dataclasses.replace(self, messages=tuple(messages))

    def messages_json(self) -> list[dict[str, Any]]:
        """The conversation as plain, mutable dicts (a copy)."""
        result: list[dict[str, Any]] = thaw(self.messages)
        return result

    @property
    def last_user_text(self) -> str | None:
        """The text of the most recent user message, if any."""
        for message in reversed(self.messages):
            if message["role"] == "user" and isinstance(message.get("content"), str):
                return str(message["content"])
        return None

    # -- provider continuity and memory ---------------------------------------------------------

    def continuity_for(self, provider: str) -> Mapping[str, Any]:
        """The continuity state stored for ``provider`` (empty if none)."""
        return self.continuity.get(provider, FrozenDict())

    def with_continuity(self, provider: str, state: Mapping[str, Any] | None) -> Session:
        """Store (or, with ``None``, drop) the continuity state of ``provider``."""
        updated = dict(self.continuity)
        if state is None:
            updated.pop(provider, None)
        else:
            updated[provider] = state
        return dataclasses.replace(self, continuity=updated)

    def remember(self, **items: Any) -> Session:
        """Store user memory values."""
        return dataclasses.replace(self, memory={**self.memory, **items})

    def forget(self, *keys: str) -> Session:
        """Drop user memory values."""
        return dataclasses.replace(
            self, memory={k: v for k, v in self.memory.items() if k not in keys}
        )


def _check_tool_results(messages: tuple[FrozenDict, ...]) -> None:
    """Every tool result must answer a tool call made earlier in the conversation."""
    asked: set[str] = set()
    for index, message in enumerate(messages):
        for call in message.get("tool_calls") or ():
            if isinstance(call, Mapping) and call.get("id"):
                asked.add(str(call["id"]))
        if message["role"] == "tool" and message["tool_call_id"] not in asked:
            raise SessionError(
                f"message {index} is a tool result for call {message['tool_call_id']!r}, "
                "which no earlier assistant message asked for"
            )
