"""Incremental context for the Responses API: which input items a turn must actually send.

Pure functions over plain values. After a response completes, the caller keeps a
:class:`Continuity` (in the Session): the response id, the sha256 of the canonical JSON of the
input that response covered, that input's length, the server's output items, and the id of the
connection it was made on. The next turn sends only the new items, with ``previous_response_id``,
when the server must already hold everything before them.

>>> history = [{"role": "user", "content": "hi"}]
>>> state = Continuity("resp_1", input_hash(history), 1,
...                    ({"type": "message", "role": "assistant",
...                      "content": [{"type": "output_text", "text": "Hello!"}]},), "c1")
>>> turn2 = [*history, {"role": "assistant", "content": "Hello!"},
...          {"role": "user", "content": "bye"}]
>>> plan = plan_input(state, turn2, connection="c1")
>>> plan.previous_response_id, plan.items
('resp_1', ({'role': 'user', 'content': 'bye'},))
>>> plan_input(state, turn2, connection="c2").incremental   # a new connection holds nothing
False
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._frozen import thaw

__all__ = [
    "Continuity",
    "InputPlan",
    "canonical_json",
    "input_hash",
    "plan_input",
    "starts_with_output",
]

Item = Mapping[str, Any]


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: the same value always gives the same text.

    >>> canonical_json({"b": 1, "a": [1, 2]})
    '{"a":[1,2],"b":1}'
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def input_hash(items: Sequence[Item]) -> str:
    """sha256 (hex) of the canonical JSON of a list of input items; key order does not matter.

    >>> input_hash([{"a": 1, "b": 2}]) == input_hash([{"b": 2, "a": 1}])
    True
    """
    return hashlib.sha256(canonical_json(list(items)).encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Continuity:
    """What the server holds after a completed response, as the Session stores it."""

    response_id: str
    input_hash: str
    input_length: int
    output: tuple[Item, ...]
    connection: str | None = None

    def to_mapping(self) -> dict[str, Any]:
        """A plain dict, for :meth:`voicekit.Session.with_continuity`."""
        return {
            "response_id": self.response_id,
            "input_hash": self.input_hash,
            "input_length": self.input_length,
            "output": [thaw(item) for item in self.output],
            "connection": self.connection,
        }

    @classmethod
    def from_mapping(cls, state: Mapping[str, Any] | None) -> Continuity | None:
        """Read a stored state back; ``None`` when there is none or it is malformed."""
        if not state:
            return None
        try:
            return cls(
                response_id=str(state["response_id"]),
                input_hash=str(state["input_hash"]),
                input_length=int(state["input_length"]),
                output=tuple(state.get("output") or ()),
                connection=state.get("connection"),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True, slots=True)
class InputPlan:
    """The input items to send, and the response they continue (``None``: full context)."""

    items: tuple[Item, ...]
    previous_response_id: str | None = None

    @property
    def incremental(self) -> bool:
        """True when only new items are sent."""
        return self.previous_response_id is not None


def _text_of(content: Any, part_type: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, Mapping) and part.get("type") == part_type
        )
    return str(content)


def _matches(item: Item, produced: Item) -> bool:
    kind = produced.get("type")
    if kind == "message":
        if item.get("type", "message") != "message":
            return False
        if item.get("role") != produced.get("role", "assistant"):
            return False
        said = _text_of(produced.get("content"), "output_text")
        content = item.get("content")
        # an assistant turn sent back as input may carry output_text or input_text parts
        sent = _text_of(content, "output_text") or _text_of(content, "input_text")
        return sent == said
    if kind == "function_call":
        return item.get("type") == "function_call" and item.get("call_id") == produced.get(
            "call_id"
        )
    return False  # reasoning, web search…: cannot be matched, so send full context


def starts_with_output(items: Sequence[Item], output: Sequence[Item]) -> bool:
    """Whether ``items`` begin with the server's ``output`` items, as the next turn must.

    Messages match on role and text; function calls on ``call_id``; any other output type never
    matches. An empty output always matches.

    >>> out = [{"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}]
    >>> starts_with_output([{"type": "function_call", "call_id": "c1"}], out)
    True
    >>> starts_with_output([], out)
    False
    """
    if len(items) < len(output):
        return False
    return all(_matches(item, produced) for item, produced in zip(items, output, strict=False))


def plan_input(
    state: Continuity | None, full_input: Sequence[Item], *, connection: str | None = None
) -> InputPlan:
    """The items to send for ``full_input`` given what the server holds (pure).

    Only new items are sent, with ``previous_response_id``, when all of these hold: there is a
    state; it was made on ``connection`` (a new connection holds nothing); ``full_input`` is
    strictly longer than the input it covered; its prefix of that length hashes the same; and
    the items after the prefix start with the previous output. Otherwise: the full context.
    """
    full = tuple(full_input)
    if state is None or state.connection != connection:
        return InputPlan(full)
    covered = state.input_length
    if len(full) <= covered or input_hash(full[:covered]) != state.input_hash:
        return InputPlan(full)
    rest = full[covered:]
    if not starts_with_output(rest, state.output):
        return InputPlan(full)
    new_items = rest[len(state.output) :]
    if not new_items:
        return InputPlan(full)
    return InputPlan(new_items, state.response_id)
