"""The Session: everything a conversation must remember, as one immutable value.

A :class:`Session` holds who is on the call, the conversation so far (OpenAI-style message dicts,
deeply frozen), per-provider continuity state (for example a Responses API
``previous_response_id``) and free-form user memory. Every update is a method that returns a *new*
Session; the old one is untouched, so any earlier state can be kept, compared or replayed.
Text entering a Session is valid Unicode: a surrogate pair (half an emoji in each of two stream
chunks) is joined into its character and a lone surrogate becomes U+FFFD, so the conversation can
always be encoded and sent.

A long call keeps every message, and an update costs the same at message 50,000 as at message 5
(only what is added is checked and frozen). What is *sent* to the LLM can be limited with a
:class:`HistoryWindow` — the last turns, or a token budget — through :meth:`Session.window` or
``agent(history=...)``.

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
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._errors import ConfigError, SessionError
from ._frozen import FrozenDict, freeze, thaw
from ._unicode import frozen_valid

__all__ = [
    "ROLES",
    "HistoryOption",
    "HistoryWindow",
    "Message",
    "Session",
    "estimate_tokens",
    "hash_caller",
    "new_call_id",
]

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


class _Checked(FrozenDict):
    """A message that was validated and made valid Unicode when it entered a Session: it is
    never checked or copied again (a Session of 50,000 messages grows by one in O(1) work)."""

    __slots__ = ()


def _check_message(message: Any, index: int) -> FrozenDict:
    if type(message) is _Checked:
        return message
    if not isinstance(message, Mapping):
        raise SessionError(f"message {index} must be a mapping, got {type(message).__name__}")
    role = message.get("role")
    if role not in ROLES:
        raise SessionError(
            f"message {index} has role {role!r}; expected one of {', '.join(sorted(ROLES))}"
        )
    if role == "tool" and not message.get("tool_call_id"):
        raise SessionError(f"message {index} has role 'tool' but no tool_call_id")
    return _Checked(frozen_valid(message))  # lone surrogates never get in


def _mask(value: str | None) -> str:
    return "None" if value is None else f"<sha256:{hash_caller(value) or ''}>"


@dataclass(frozen=True, slots=True)
class Session:
    """Who is talking, what was said, and what each provider needs to continue the conversation.

    Build one with keyword arguments; change it only through the ``add_*``/``with_*`` methods or
    :func:`dataclasses.replace`, which all return a new Session. The methods check only what
    they add (a long conversation does not get slower to update); the constructor and
    ``replace`` check everything.
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

    def _evolve(self, **changes: Any) -> Session:
        """A copy with ``changes`` (already checked and frozen), without checking the rest."""
        new = object.__new__(Session)
        for name in _FIELDS:
            object.__setattr__(new, name, changes[name] if name in changes else getattr(self, name))
        return new

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
        start = len(self.messages)
        added = tuple(_check_message(m, start + i) for i, m in enumerate(messages))
        combined = self.messages + added
        _check_tool_results(combined, start)
        return self._evolve(messages=combined)

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

    def window(self, history: HistoryOption = None) -> tuple[Message, ...]:
        """The messages to send to an LLM under ``history`` (see :class:`HistoryWindow`; an int
        is a number of turns; None: all of them). The Session itself keeps everything.

        >>> s = Session(messages=[{"role": "system", "content": "Be brief."}])
        >>> for n in range(3):
        ...     s = s.add_user(f"question {n}").add_assistant(f"answer {n}")
        >>> [m["content"] for m in s.window(1)]
        ['Be brief.', 'question 2', 'answer 2']
        """
        window = HistoryWindow.of(history)
        return self.messages if window is None else _window(self.messages, window)

    def messages_json(self, history: HistoryOption = None) -> list[dict[str, Any]]:
        """The conversation (or its :meth:`window` under ``history``) as plain, mutable dicts
        (a copy)."""
        result: list[dict[str, Any]] = thaw(self.window(history))
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
        return self._evolve(continuity=freeze(updated))

    def remember(self, **items: Any) -> Session:
        """Store user memory values."""
        return self._evolve(memory=freeze({**self.memory, **items}))

    def forget(self, *keys: str) -> Session:
        """Drop user memory values."""
        return self._evolve(memory=freeze({k: v for k, v in self.memory.items() if k not in keys}))


_FIELDS = tuple(f.name for f in dataclasses.fields(Session))


def _check_tool_results(messages: tuple[Message, ...], start: int = 0) -> None:
    """Every tool result (from ``start`` on) must answer a tool call made earlier."""
    if start == 0:
        asked: set[str] = set()
        for index, message in enumerate(messages):
            for call in message.get("tool_calls") or ():
                if isinstance(call, Mapping) and call.get("id"):
                    asked.add(str(call["id"]))
            if message["role"] == "tool" and message["tool_call_id"] not in asked:
                _unasked(index, message)
        return
    for index in range(start, len(messages)):  # new results: look back for their call
        message = messages[index]
        if message["role"] == "tool" and not _asked_before(messages, index):
            _unasked(index, message)


def _asked_before(messages: tuple[Message, ...], index: int) -> bool:
    """Whether a message before ``index`` asked for the call that ``messages[index]`` answers
    (looking back from it: the call is nearly always a message or two before)."""
    call_id = messages[index]["tool_call_id"]
    for earlier in range(index - 1, -1, -1):
        for call in messages[earlier].get("tool_calls") or ():
            if isinstance(call, Mapping) and call.get("id") and str(call["id"]) == call_id:
                return True
    return False


def _unasked(index: int, message: Mapping[str, Any]) -> None:
    raise SessionError(
        f"message {index} is a tool result for call {message['tool_call_id']!r}, "
        "which no earlier assistant message asked for"
    )


# -- what is sent to the LLM ---------------------------------------------------------------------


def estimate_tokens(message: Message) -> int:
    """About how many tokens ``message`` costs: the characters of its compact JSON form / 4,
    rounded up.

    Four characters a token is the usual rule of thumb for English text with the tokenizers of
    current LLMs; counting the JSON form adds the role and the keys, the few tokens a message
    costs beyond its text. It is an estimate, not a tokenizer: other languages, code and emoji
    take more tokens per character, so leave a margin.

    >>> estimate_tokens({"role": "user", "content": "What is the weather like in Rome?"})
    16
    """
    text = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
    return math.ceil(len(text) / 4)


@dataclass(frozen=True, slots=True)
class HistoryWindow:
    """Which part of a long conversation is sent to the LLM (the Session keeps all of it).

    ``turns``: at most this many user turns — each from a user message to the next — with all
    they hold (replies, tool calls and results). ``tokens``: at most about this many tokens
    (:func:`estimate_tokens`, the leading system messages included). Give either or both; the
    window is then the smaller.

    Always sent: the leading ``system``/``developer`` messages, and the newest message (with
    the tool call it answers) even when it alone is over the budget. Never: a tool result
    without the assistant message that asked for it — an assistant message with
    ``tool_calls`` and its results are kept or dropped together. The window starts at a user
    message when the budget allows one, else at the earliest message that fits. An agent's
    ``system`` instruction is sent apart from the Session and not counted.
    """

    turns: int | None = None
    tokens: int | None = None

    def __post_init__(self) -> None:
        for name in ("turns", "tokens"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigError(
                    f"HistoryWindow: {name} must be an int ≥ 1 or None, got {value!r}"
                )

    @staticmethod
    def of(option: HistoryOption) -> HistoryWindow | None:
        """The window an option means: a HistoryWindow as is, an int as that many turns, None
        as no window (everything is sent).

        >>> HistoryWindow.of(10)
        HistoryWindow(turns=10, tokens=None)
        """
        if option is None or isinstance(option, HistoryWindow):
            return option
        if isinstance(option, int) and not isinstance(option, bool):
            return HistoryWindow(turns=option)
        raise ConfigError(
            f"history must be a HistoryWindow, a number of turns or None, got {option!r}"
        )


HistoryOption = HistoryWindow | int | None
"""A history window: a :class:`HistoryWindow`, a number of turns, or None (everything)."""


def _answered(needed: set[str], message: Mapping[str, Any]) -> None:
    """Walking back: a tool result needs its call; an assistant message's calls are found."""
    if message["role"] == "tool":
        needed.add(str(message["tool_call_id"]))
    for call in message.get("tool_calls") or ():
        if isinstance(call, Mapping) and call.get("id"):
            needed.discard(str(call["id"]))


def _window(messages: tuple[Message, ...], window: HistoryWindow) -> tuple[Message, ...]:
    """See :class:`HistoryWindow`. Walks back from the newest message only as far as the
    window reaches, so the cost does not grow with the conversation."""
    count = len(messages)
    head = 0
    while head < count and messages[head]["role"] in ("system", "developer"):
        head += 1
    budget = None
    if window.tokens is not None:
        budget = window.tokens - sum(estimate_tokens(m) for m in messages[:head])
    needed: set[str] = set()  # tool results in the window whose call is not in it yet
    used = users = 0
    at_user: int | None = None  # the earliest whole start found, at a user message
    anywhere: int | None = None  # the earliest whole start found
    index = count
    while index > head:
        message = messages[index - 1]
        if message["role"] == "user":
            users += 1
            if window.turns is not None and users > window.turns:
                break
        if budget is not None:
            used += estimate_tokens(message)
            if used > budget:
                break
        _answered(needed, message)
        index -= 1
        if not needed:
            anywhere = index
            if message["role"] == "user":
                at_user = index
    start = at_user if at_user is not None else anywhere
    if start is None:  # not even the newest message fits: send the smallest whole tail
        needed.clear()
        start = count
        while start > head:
            start -= 1
            _answered(needed, messages[start])
            if not needed:
                break
    if start <= head:
        return messages
    return messages[:head] + messages[start:]
