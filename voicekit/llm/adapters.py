"""Message adapters: one conversation, every provider's wire shape.

A voicekit conversation is a sequence of OpenAI-chat-style messages (``role`` one of ``system``,
``developer``, ``user``, ``assistant``, ``tool``; ``content`` a string or a list of ``text`` /
``image_url`` parts; assistant ``tool_calls``; tool ``tool_call_id``), usually the deeply frozen
``Session.messages``. The functions here turn it into what each API expects. They are pure: the
input is never changed, and the output is built from fresh dicts and lists that share no mutable
object with the input, so it may be edited or serialised freely.

The same rules apply to every target:

* **System instruction.** An explicit ``system=`` argument wins over a ``system`` message at the
  *start* of the context (``messages[0]`` only): that message is dropped and a
  :class:`SystemInstructionConflict` warning is issued — once per process for each distinct
  (instruction, context system text) pair; none if both texts are identical. Without an explicit
  instruction, a leading system message *is* the instruction (``None`` or ``""`` mean "no explicit
  instruction").
* **Lone system message.** A context made only of a system message becomes a user message, so no
  provider receives an empty conversation (with an explicit instruction too, the conflict warning
  is still issued).
* **Developer messages** are supplementary guidance anywhere in the history. They are never
  promoted to the system instruction and never cause a conflict warning. OpenAI chat keeps them
  (or turns them into ``user`` with ``developer_role=False``), the Responses API gets ``developer``
  items, and Anthropic, Gemini, Bedrock and Realtime get ``user`` messages.
* **Later system messages** stay ``system`` for OpenAI chat and Realtime (both accept them
  mid-conversation), become ``developer`` items for Responses and ``user`` messages elsewhere.
* **Alternation.** Anthropic, Gemini and Bedrock need user/assistant turns to alternate:
  consecutive same-role messages are merged (their blocks combined, adjacent texts joined with
  ``"\\n"``, tool results first), and a conversation that does not start with a user turn gets a
  :data:`CONVERSATION_START` user turn in front. Messages with no content are left out (these APIs
  reject empty text blocks).
* **voicekit-only keys** never reach the wire. An assistant message with ``"interrupted": True``
  (the user barged in; its content is the part that was heard) is sent as the heard text followed
  by a space and :data:`INTERRUPTED_MARKER`, so the model knows the rest was never heard.

>>> msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
>>> to_anthropic(msgs)
('Be brief.', [{'role': 'user', 'content': [{'type': 'text', 'text': 'Hi'}]}])
>>> import warnings
>>> with warnings.catch_warnings(record=True) as caught:
...     warnings.simplefilter("always")
...     to_chat_messages(msgs, system="Be kind.")
[{'role': 'system', 'content': 'Be kind.'}, {'role': 'user', 'content': 'Hi'}]
>>> [w.category.__name__ for w in caught]
['SystemInstructionConflict']
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import mimetypes
import re
import threading
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .._errors import VoicekitError
from .._frozen import thaw

__all__ = [
    "CONVERSATION_START",
    "INTERRUPTED_MARKER",
    "AdapterError",
    "SystemInstructionConflict",
    "to_anthropic",
    "to_bedrock",
    "to_chat_messages",
    "to_gemini",
    "to_realtime",
    "to_responses_input",
    "tools_to_anthropic",
    "tools_to_bedrock",
    "tools_to_gemini",
    "tools_to_realtime",
    "tools_to_responses",
]

INTERRUPTED_MARKER = "[interrupted by the user]"
"""Appended (after a space) to the heard text of an interrupted assistant reply."""

CONVERSATION_START = "(conversation start)"
"""The user turn put in front of a conversation that must, but does not, start with the user."""

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})

# The keys each role may carry on the OpenAI /chat/completions wire; anything else (such as the
# voicekit-only "interrupted") is left out.
_CHAT_KEYS: Mapping[str, frozenset[str]] = {
    "system": frozenset({"role", "content", "name"}),
    "developer": frozenset({"role", "content", "name"}),
    "user": frozenset({"role", "content", "name"}),
    "assistant": frozenset(
        {"role", "content", "name", "tool_calls", "refusal", "audio", "function_call"}
    ),
    "tool": frozenset({"role", "content", "tool_call_id"}),
}

_EMPTY_SCHEMA: Mapping[str, Any] = {"type": "object", "properties": {}}


class AdapterError(VoicekitError, ValueError):
    """A conversation that cannot be expressed in the target's shape (the message says why)."""


class SystemInstructionConflict(UserWarning):
    """Both an explicit system instruction and a leading system message in the context were
    given; the explicit instruction is used and the context's system message is dropped."""


# -- warn once --------------------------------------------------------------------------------

_WARNED_LIMIT = 1024
_warned: set[bytes] = set()
_warned_lock = threading.Lock()


def _preview(text: str, limit: int = 40) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "…")


def _warn_conflict(instruction: str, context_system: str) -> None:
    """Warn about a conflict once per process for each distinct pair of texts."""
    if instruction == context_system:
        return
    key = hashlib.sha256(json.dumps([instruction, context_system]).encode()).digest()[:16]
    with _warned_lock:
        if key in _warned:
            return
        if len(_warned) >= _WARNED_LIMIT:  # keep memory bounded in very long-lived processes
            _warned.clear()
        _warned.add(key)
    warnings.warn(
        SystemInstructionConflict(
            "Both an explicit system instruction and a system message at the start of the "
            f"context are set; using the explicit instruction {_preview(instruction)} and "
            f"dropping the context's system message {_preview(context_system)}. Put "
            "supplementary guidance in developer messages instead."
        ),
        stacklevel=4,  # _warn_conflict <- _resolve_system <- public adapter <- the caller
    )


# -- a neutral intermediate form ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Text:
    text: str


@dataclass(frozen=True, slots=True)
class _Image:
    url: str
    detail: str | None


@dataclass(frozen=True, slots=True)
class _Call:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class _Result:
    call_id: str
    name: str | None
    output: str


@dataclass(frozen=True, slots=True)
class _Raw:
    """A content part voicekit does not interpret (a fresh, plain copy of it)."""

    part: Mapping[str, Any]


_Part = _Text | _Image | _Call | _Result | _Raw


@dataclass(slots=True)
class _Msg:
    role: str
    parts: list[_Part]


@dataclass(frozen=True, slots=True)
class _Resolved:
    system: str | None  # the instruction to send (explicit, or the leading context message)
    leading: Mapping[str, Any] | None  # the context message it came from, if any
    rest: list[Mapping[str, Any]]


def _check(messages: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    if isinstance(messages, str | bytes | Mapping):
        raise AdapterError(
            f"messages must be a sequence of message mappings, got {type(messages).__name__}"
        )
    checked = list(messages)
    for index, message in enumerate(checked):
        if not isinstance(message, Mapping):
            raise AdapterError(f"message {index} must be a mapping, got {type(message).__name__}")
        role = message.get("role")
        if role not in _ROLES:
            raise AdapterError(
                f"message {index} has role {role!r}; expected one of {', '.join(sorted(_ROLES))}"
            )
        if role == "tool" and not message.get("tool_call_id"):
            raise AdapterError(f"message {index} has role 'tool' but no tool_call_id")
    return checked


def _resolve_system(messages: Iterable[Mapping[str, Any]], system: str | None) -> _Resolved:
    """Apply the system-instruction rules shared by every target (see the module docstring)."""
    if system is not None and not isinstance(system, str):
        raise AdapterError(f"system must be a string or None, got {type(system).__name__}")
    explicit = system or None
    msgs = _check(messages)
    if not msgs or msgs[0]["role"] != "system":
        return _Resolved(explicit, None, msgs)
    first = msgs[0]
    first_text = _joined_text(first.get("content"))
    if len(msgs) == 1:
        if explicit is not None:
            _warn_conflict(explicit, first_text)
        as_user = {k: v for k, v in first.items() if k != "role"}
        as_user["role"] = "user"
        return _Resolved(explicit, None, [as_user])
    if explicit is not None:
        _warn_conflict(explicit, first_text)
        return _Resolved(explicit, None, msgs[1:])
    return _Resolved(first_text, first, msgs[1:])


# -- content helpers --------------------------------------------------------------------------


def _joined_text(content: Any) -> str:
    """The text of a content value: a string, or the ``text`` parts of a list joined by "\\n"."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        return json.dumps(thaw(content))
    texts: list[str] = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, Mapping) and part.get("type") == "text":
            texts.append(str(part.get("text", "")))
    return "\n".join(texts)


def _with_marker(text: str) -> str:
    stripped = text.rstrip()
    if stripped.endswith(INTERRUPTED_MARKER):
        return text
    return f"{stripped} {INTERRUPTED_MARKER}" if stripped else INTERRUPTED_MARKER


def _arguments_text(arguments: Any) -> str:
    if arguments is None:
        return "{}"
    if isinstance(arguments, str):
        return arguments
    return json.dumps(thaw(arguments))


def _arguments_object(arguments: str) -> dict[str, Any]:
    """Tool-call arguments as an object; invalid JSON is kept under ``_raw_arguments``."""
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        return {"_raw_arguments": arguments}
    return value if isinstance(value, dict) else {"_raw_arguments": arguments}


def _content_parts(content: Any, index: int) -> list[_Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [_Text(content)] if content else []
    if isinstance(content, Mapping):
        raise AdapterError(f"message {index}: content must be a string or a list of parts")
    parts: list[_Part] = []
    for part in content:
        if isinstance(part, str):
            if part:
                parts.append(_Text(part))
            continue
        if not isinstance(part, Mapping):
            raise AdapterError(
                f"message {index}: a content part must be a mapping, got {type(part).__name__}"
            )
        kind = part.get("type")
        if kind == "text":
            text = str(part.get("text") or "")
            if text:
                parts.append(_Text(text))
        elif kind == "image_url":
            image = part.get("image_url")
            if isinstance(image, str):
                parts.append(_Image(image, None))
            elif isinstance(image, Mapping) and isinstance(image.get("url"), str):
                parts.append(_Image(image["url"], image.get("detail")))
            else:
                raise AdapterError(f"message {index}: an image_url part needs a url")
        else:
            parts.append(_Raw(thaw(part)))
    return parts


def _normalise(messages: list[Mapping[str, Any]]) -> list[_Msg]:
    """Turn checked messages into the neutral form, applying the interrupted marker."""
    names: dict[str, str] = {}
    result: list[_Msg] = []
    for index, message in enumerate(messages):
        role = message["role"]
        if role == "tool":
            call_id = str(message["tool_call_id"])
            name = message.get("name") or names.get(call_id)
            content = message.get("content")
            output = content if isinstance(content, str) else _joined_text(content)
            result.append(_Msg("tool", [_Result(call_id, name, output)]))
            continue
        parts = _content_parts(message.get("content"), index)
        if role == "assistant" and message.get("interrupted"):
            if parts and isinstance(parts[-1], _Text):
                parts[-1] = _Text(_with_marker(parts[-1].text))
            else:
                parts.append(_Text(INTERRUPTED_MARKER))
        if role == "assistant":
            for call in message.get("tool_calls") or ():
                if not isinstance(call, Mapping):
                    raise AdapterError(f"message {index}: a tool call must be a mapping")
                function = call.get("function") or {}
                call_id, name = str(call.get("id") or ""), str(function.get("name") or "")
                if not call_id or not name:
                    raise AdapterError(f"message {index}: a tool call needs an id and a name")
                names[call_id] = name
                parts.append(_Call(call_id, name, _arguments_text(function.get("arguments"))))
        result.append(_Msg(role, parts))
    return result


def _alternate(msgs: list[_Msg], roles: Mapping[str, str]) -> list[_Msg]:
    """Map roles, drop empty messages, merge same-role neighbours and start with the user."""
    merged: list[_Msg] = []
    for msg in msgs:
        if not msg.parts:
            continue
        role = roles[msg.role]
        if merged and merged[-1].role == role:
            merged[-1].parts.extend(msg.parts)
        else:
            merged.append(_Msg(role, list(msg.parts)))
    for msg in merged:
        # tool results must open the turn that answers the calls (Anthropic and Bedrock insist)
        ordered = sorted(msg.parts, key=lambda p: 0 if isinstance(p, _Result) else 1)
        tidy: list[_Part] = []
        for part in ordered:
            if tidy and isinstance(part, _Text) and isinstance(tidy[-1], _Text):
                tidy[-1] = _Text(f"{tidy[-1].text}\n{part.text}")
            else:
                tidy.append(part)
        msg.parts = tidy
    if not merged or merged[0].role != "user":
        merged.insert(0, _Msg("user", [_Text(CONVERSATION_START)]))
    return merged


_DATA_URL = re.compile(
    r"data:(?P<mime>[\w.+-]+/[\w.+-]+)(?:;[\w.+-]+=[^;,]*)*;base64,(?P<data>.*)", re.DOTALL
)


def _data_url(url: str) -> tuple[str, str] | None:
    """``(mime type, base64 data)`` of a base64 ``data:`` URL, else None."""
    match = _DATA_URL.fullmatch(url.strip())
    if match is None:
        if url.startswith("data:"):
            raise AdapterError("only base64 data: URLs are supported for images")
        return None
    return match["mime"].lower(), match["data"].strip()


def _guess_mime(url: str) -> str:
    return mimetypes.guess_type(urlsplit(url).path)[0] or "image/jpeg"


def _unsupported(target: str, part: _Raw) -> AdapterError:
    return AdapterError(f"{target}: unsupported content part type {part.part.get('type')!r}")


# -- OpenAI chat ----------------------------------------------------------------------------


def _chat_message(message: Mapping[str, Any], role: str) -> dict[str, Any]:
    allowed = _CHAT_KEYS[role]
    out: dict[str, Any] = {"role": role}
    for key, value in message.items():
        if key in allowed and key != "role":
            out[key] = thaw(value)
    if role == "assistant":
        if message.get("interrupted"):
            content = out.get("content")
            if isinstance(content, list):
                texts = [p for p in content if isinstance(p, dict) and p.get("type") == "text"]
                if texts:
                    texts[-1]["text"] = _with_marker(str(texts[-1].get("text") or ""))
                else:
                    content.append({"type": "text", "text": INTERRUPTED_MARKER})
            else:
                out["content"] = _with_marker(content or "")
        calls = out.get("tool_calls")
        if calls:
            for call in calls:
                call.setdefault("type", "function")
                function = call.get("function")
                if isinstance(function, dict):
                    function["arguments"] = _arguments_text(function.get("arguments"))
        else:
            out.pop("tool_calls", None)
            if out.get("content") is None:
                out["content"] = ""
    elif out.get("content") is None:
        out["content"] = ""
    return out


def to_chat_messages(
    messages: Iterable[Mapping[str, Any]],
    *,
    system: str | None = None,
    developer_role: bool = True,
) -> list[dict[str, Any]]:
    """Messages for OpenAI ``/chat/completions``: plain, JSON-ready dicts and lists.

    The system instruction becomes a leading ``system`` message. ``developer`` messages pass
    through, or become ``user`` with ``developer_role=False`` (for endpoints without the role).
    Only the keys the chat API knows for each role are kept.

    >>> to_chat_messages([{"role": "developer", "content": "Be terse."}, {"role": "user",
    ...                   "content": "Hi"}], system="You are Ada.", developer_role=False)
    ... # doctest: +NORMALIZE_WHITESPACE
    [{'role': 'system', 'content': 'You are Ada.'}, {'role': 'user', 'content': 'Be terse.'},
     {'role': 'user', 'content': 'Hi'}]
    >>> to_chat_messages([{"role": "assistant", "content": "The weather is", "interrupted": True}])
    [{'role': 'assistant', 'content': 'The weather is [interrupted by the user]'}]
    """
    resolved = _resolve_system(messages, system)
    out: list[dict[str, Any]] = []
    if resolved.leading is not None:
        out.append(_chat_message(resolved.leading, "system"))
    elif resolved.system is not None:
        out.append({"role": "system", "content": resolved.system})
    for message in resolved.rest:
        role = message["role"]
        if role == "developer" and not developer_role:
            role = "user"
        out.append(_chat_message(message, role))
    return out


# -- OpenAI Responses ---------------------------------------------------------------------------


def _input_part(part: _Part) -> dict[str, Any]:
    if isinstance(part, _Text):
        return {"type": "input_text", "text": part.text}
    if isinstance(part, _Image):
        return {"type": "input_image", "image_url": part.url, "detail": part.detail or "auto"}
    if isinstance(part, _Raw):
        return dict(part.part)
    raise AdapterError(f"unexpected {type(part).__name__} in a message")  # pragma: no cover


def _assistant_text(target: str, parts: list[_Part]) -> str:
    texts: list[str] = []
    for part in parts:
        if isinstance(part, _Text):
            texts.append(part.text)
        elif not isinstance(part, _Call):
            raise AdapterError(f"{target}: an assistant message can only carry text")
    return "\n".join(texts)


def _call_item(part: _Call) -> dict[str, Any]:
    return {
        "type": "function_call",
        "call_id": part.id,
        "name": part.name,
        "arguments": part.arguments,
    }


def _output_item(msg: Any) -> dict[str, Any]:
    """A tool result as a ``function_call_output`` item (Responses and Realtime alike)."""
    result = msg.parts[0]
    assert isinstance(result, _Result)
    return {"type": "function_call_output", "call_id": result.call_id, "output": result.output}


def _assistant_items(target: str, msg: Any, *, text_parts: bool) -> list[dict[str, Any]]:
    """An assistant turn as items: its text as a message (a plain string, or ``output_text``
    parts), then one ``function_call`` item per tool call."""
    items: list[dict[str, Any]] = []
    text = _assistant_text(target, msg.parts)
    if text:
        content: Any = [{"type": "output_text", "text": text}] if text_parts else text
        items.append({"type": "message", "role": "assistant", "content": content})
    items.extend(_call_item(p) for p in msg.parts if isinstance(p, _Call))
    return items


def to_responses_input(
    messages: Iterable[Mapping[str, Any]], *, system: str | None = None
) -> tuple[str | None, list[dict[str, Any]]]:
    """``(instructions, input items)`` for the OpenAI Responses API.

    * The system instruction becomes ``instructions``; with an otherwise empty input it becomes a
      single ``developer`` item instead (the API needs at least one input item), and
      ``instructions`` is None.
    * ``system`` (after the first) and ``developer`` messages → ``developer`` message items;
      ``user`` → ``user`` items with ``input_text`` / ``input_image`` parts (other parts pass
      through as they are).
    * ``assistant`` text → an ``assistant`` message item with *string* content (the SDK's input
      types accept assistant text as a string, not as ``input_text`` parts), followed by one
      ``function_call`` item per tool call — the text is kept, unlike Pipecat, so the items match
      what the model produced.
    * ``tool`` → ``function_call_output`` items.

    >>> to_responses_input([{"role": "user", "content": "Hi"}], system="Be brief.")
    ... # doctest: +NORMALIZE_WHITESPACE
    ('Be brief.', [{'type': 'message', 'role': 'user',
                    'content': [{'type': 'input_text', 'text': 'Hi'}]}])
    >>> to_responses_input([], system="Be brief.")
    ... # doctest: +NORMALIZE_WHITESPACE
    (None, [{'type': 'message', 'role': 'developer',
             'content': [{'type': 'input_text', 'text': 'Be brief.'}]}])
    """
    resolved = _resolve_system(messages, system)
    items: list[dict[str, Any]] = []
    for msg in _normalise(resolved.rest):
        if not msg.parts:
            continue
        if msg.role == "tool":
            items.append(_output_item(msg))
        elif msg.role == "assistant":
            items.extend(_assistant_items("responses", msg, text_parts=False))
        else:
            role = "user" if msg.role == "user" else "developer"
            content = [_input_part(p) for p in msg.parts]
            items.append({"type": "message", "role": role, "content": content})
    if not items and resolved.system is not None:
        developer = {"type": "input_text", "text": resolved.system}
        return None, [{"type": "message", "role": "developer", "content": [developer]}]
    return resolved.system, items


# -- Anthropic ----------------------------------------------------------------------------------

_TO_USER_OR_ASSISTANT = {
    "system": "user",
    "developer": "user",
    "user": "user",
    "tool": "user",
    "assistant": "assistant",
}


def _anthropic_block(part: _Part) -> dict[str, Any]:
    if isinstance(part, _Text):
        return {"type": "text", "text": part.text}
    if isinstance(part, _Image):
        data = _data_url(part.url)
        if data is not None:
            source = {"type": "base64", "media_type": data[0], "data": data[1]}
            return {"type": "image", "source": source}
        if part.url.startswith(("https://", "http://")):
            return {"type": "image", "source": {"type": "url", "url": part.url}}
        raise AdapterError(f"anthropic: unsupported image URL scheme in {part.url[:40]!r}")
    if isinstance(part, _Call):
        return {
            "type": "tool_use",
            "id": part.id,
            "name": part.name,
            "input": _arguments_object(part.arguments),
        }
    if isinstance(part, _Result):
        return {"type": "tool_result", "tool_use_id": part.call_id, "content": part.output}
    raise _unsupported("anthropic", part)


def to_anthropic(
    messages: Iterable[Mapping[str, Any]], *, system: str | None = None
) -> tuple[str | None, list[dict[str, Any]]]:
    """``(system, messages)`` for the Anthropic Messages API.

    Every message has a list of content blocks (``text``, ``image``, ``tool_use``,
    ``tool_result``); tool results travel in ``user`` turns; roles alternate (same-role neighbours
    merged) and the first turn is a user turn (:data:`CONVERSATION_START` is put in front when it
    is not). Tool-call arguments that are not a JSON object are kept under ``_raw_arguments``.

    >>> to_anthropic([{"role": "assistant", "content": "Hello!"},
    ...               {"role": "user", "content": "Hi"},
    ...               {"role": "developer", "content": "Be brief."}])
    ... # doctest: +NORMALIZE_WHITESPACE
    (None, [{'role': 'user', 'content': [{'type': 'text', 'text': '(conversation start)'}]},
            {'role': 'assistant', 'content': [{'type': 'text', 'text': 'Hello!'}]},
            {'role': 'user', 'content': [{'type': 'text', 'text': 'Hi\\nBe brief.'}]}])
    """
    resolved = _resolve_system(messages, system)
    turns = _alternate(_normalise(resolved.rest), _TO_USER_OR_ASSISTANT)
    out = [{"role": t.role, "content": [_anthropic_block(p) for p in t.parts]} for t in turns]
    return resolved.system, out


# -- Gemini -----------------------------------------------------------------------------------


def _response_object(output: str) -> dict[str, Any]:
    try:
        value = json.loads(output)
    except ValueError:
        return {"output": output}
    return value if isinstance(value, dict) else {"output": value}


def _gemini_part(part: _Part) -> dict[str, Any]:
    if isinstance(part, _Text):
        return {"text": part.text}
    if isinstance(part, _Image):
        data = _data_url(part.url)
        if data is not None:
            return {"inline_data": {"mime_type": data[0], "data": data[1]}}
        return {"file_data": {"mime_type": _guess_mime(part.url), "file_uri": part.url}}
    if isinstance(part, _Call):
        call = {"id": part.id, "name": part.name, "args": _arguments_object(part.arguments)}
        return {"function_call": call}
    if isinstance(part, _Result):
        if not part.name:
            raise AdapterError(
                f"gemini: the tool result for call {part.call_id!r} needs the function name; "
                "no earlier tool call with that id and no 'name' on the tool message"
            )
        response = {
            "id": part.call_id,
            "name": part.name,
            "response": _response_object(part.output),
        }
        return {"function_response": response}
    raise _unsupported("gemini", part)


def to_gemini(
    messages: Iterable[Mapping[str, Any]], *, system: str | None = None
) -> tuple[str | None, list[dict[str, Any]]]:
    """``(system instruction, contents)`` for the Gemini API (``generateContent``).

    Only ``messages[0]`` can be the system instruction. Contents have role ``user`` or ``model``
    (``assistant`` → ``model``) and ``parts``: ``text``, ``inline_data`` (base64 ``data:`` image
    URLs), ``file_data`` (other URLs), ``function_call`` and ``function_response`` (a JSON object
    result as is, anything else as ``{"output": ...}``). Roles alternate and start with ``user``
    as for :func:`to_anthropic`. Field names are snake_case, as the ``google-genai`` SDK writes them
    (the REST API accepts them too).

    >>> to_gemini([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}])
    ... # doctest: +NORMALIZE_WHITESPACE
    (None, [{'role': 'user', 'parts': [{'text': 'Hi'}]},
            {'role': 'model', 'parts': [{'text': 'Hello'}]}])
    """
    resolved = _resolve_system(messages, system)
    turns = _alternate(_normalise(resolved.rest), _TO_USER_OR_ASSISTANT)
    out = [
        {
            "role": "model" if t.role == "assistant" else "user",
            "parts": [_gemini_part(p) for p in t.parts],
        }
        for t in turns
    ]
    return resolved.system, out


# -- Bedrock ------------------------------------------------------------------------------------

_BEDROCK_FORMATS = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "gif": "gif", "webp": "webp"}


def _bedrock_format(mime: str) -> str:
    subtype = mime.partition("/")[2]
    if subtype not in _BEDROCK_FORMATS:
        raise AdapterError(f"bedrock: unsupported image type {mime!r} (png, jpeg, gif, webp)")
    return _BEDROCK_FORMATS[subtype]


def _bedrock_block(part: _Part) -> dict[str, Any]:
    if isinstance(part, _Text):
        return {"text": part.text}
    if isinstance(part, _Image):
        data = _data_url(part.url)
        if data is not None:
            try:
                raw = base64.b64decode(data[1], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise AdapterError("bedrock: the image data: URL is not valid base64") from exc
            return {"image": {"format": _bedrock_format(data[0]), "source": {"bytes": raw}}}
        if part.url.startswith("s3://"):
            source = {"s3Location": {"uri": part.url}}
            return {"image": {"format": _bedrock_format(_guess_mime(part.url)), "source": source}}
        raise AdapterError(
            "bedrock: images must be base64 data: URLs or s3:// URIs (Converse cannot fetch "
            f"{part.url[:40]!r})"
        )
    if isinstance(part, _Call):
        use = {"toolUseId": part.id, "name": part.name, "input": _arguments_object(part.arguments)}
        return {"toolUse": use}
    if isinstance(part, _Result):
        return {"toolResult": {"toolUseId": part.call_id, "content": [{"text": part.output}]}}
    raise _unsupported("bedrock", part)


def to_bedrock(
    messages: Iterable[Mapping[str, Any]], *, system: str | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(system blocks, messages)`` for the AWS Bedrock Converse API.

    System blocks are ``[{"text": ...}]`` (empty without an instruction). Messages have
    ``user``/``assistant`` roles and content blocks: ``text``, ``image`` (raw ``bytes`` decoded
    from a base64 ``data:`` URL, or an ``s3Location``; Converse cannot fetch http URLs),
    ``toolUse`` and ``toolResult``. Roles alternate and start with ``user`` as for
    :func:`to_anthropic`. The result is what ``boto3``'s ``converse`` takes (bytes included).

    >>> to_bedrock([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    ([{'text': 'Be brief.'}], [{'role': 'user', 'content': [{'text': 'Hi'}]}])
    """
    resolved = _resolve_system(messages, system)
    turns = _alternate(_normalise(resolved.rest), _TO_USER_OR_ASSISTANT)
    out = [{"role": t.role, "content": [_bedrock_block(p) for p in t.parts]} for t in turns]
    blocks = [{"text": resolved.system}] if resolved.system is not None else []
    return blocks, out


# -- OpenAI Realtime ------------------------------------------------------------------------


def _realtime_user_part(part: _Part) -> dict[str, Any]:
    if isinstance(part, _Text):
        return {"type": "input_text", "text": part.text}
    if isinstance(part, _Image):
        if _data_url(part.url) is None:
            raise AdapterError("realtime: images must be base64 data: URLs (PNG or JPEG)")
        image: dict[str, Any] = {"type": "input_image", "image_url": part.url}
        if part.detail in ("auto", "low", "high"):
            image["detail"] = part.detail
        return image
    if isinstance(part, _Raw):
        raise _unsupported("realtime", part)
    raise AdapterError(f"unexpected {type(part).__name__} in a message")  # pragma: no cover


def to_realtime(
    messages: Iterable[Mapping[str, Any]], *, system: str | None = None
) -> tuple[str | None, list[dict[str, Any]]]:
    """``(instructions, conversation items)`` for the OpenAI Realtime API.

    The instruction goes in the session's ``instructions``; the items are sent with
    ``conversation.item.create``. ``developer`` → ``user`` items; later ``system`` messages stay
    ``system`` items (the Realtime API accepts them mid-conversation); assistant text →
    ``output_text`` parts, then one ``function_call`` item per tool call; tool results →
    ``function_call_output``. Images must be base64 ``data:`` URLs.

    >>> to_realtime([{"role": "developer", "content": "Speak slowly."}])
    ... # doctest: +NORMALIZE_WHITESPACE
    (None, [{'type': 'message', 'role': 'user',
             'content': [{'type': 'input_text', 'text': 'Speak slowly.'}]}])
    """
    resolved = _resolve_system(messages, system)
    items: list[dict[str, Any]] = []
    for msg in _normalise(resolved.rest):
        if not msg.parts:
            continue
        if msg.role == "tool":
            items.append(_output_item(msg))
        elif msg.role == "assistant":
            items.extend(_assistant_items("realtime", msg, text_parts=True))
        elif msg.role == "system":
            text = "\n".join(p.text for p in msg.parts if isinstance(p, _Text))
            content = [{"type": "input_text", "text": text}]
            items.append({"type": "message", "role": "system", "content": content})
        else:
            content = [_realtime_user_part(p) for p in msg.parts]
            items.append({"type": "message", "role": "user", "content": content})
    return resolved.system, items


# -- tools ----------------------------------------------------------------------------------------


def _functions(tools: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """The ``function`` objects of OpenAI chat tool schemas, as fresh plain dicts."""
    functions: list[dict[str, Any]] = []
    for index, tool in enumerate(tools or ()):
        if not isinstance(tool, Mapping):
            raise AdapterError(f"tool {index} must be a mapping, got {type(tool).__name__}")
        if tool.get("type", "function") != "function" or not isinstance(
            tool.get("function"), Mapping
        ):
            raise AdapterError(
                f"tool {index} must be an OpenAI chat function tool "
                '{"type": "function", "function": {"name": ..., "parameters": ...}}'
            )
        function: dict[str, Any] = thaw(tool["function"])
        if not function.get("name"):
            raise AdapterError(f"tool {index} has no function name")
        functions.append(function)
    return functions


def _parameters(function: Mapping[str, Any]) -> dict[str, Any]:
    parameters = function.get("parameters")
    result: dict[str, Any] = thaw(parameters) if parameters else thaw(_EMPTY_SCHEMA)
    return result


def _described(out: dict[str, Any], function: Mapping[str, Any]) -> dict[str, Any]:
    if function.get("description"):
        out["description"] = function["description"]
    return out


def tools_to_responses(tools: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """OpenAI chat function tools → Responses API function tools.

    ``strict`` is always sent: the chat value, or ``False`` when unset — the Responses API would
    otherwise default to strict schemas, which plain chat schemas often do not satisfy.

    >>> tools_to_responses([{"type": "function", "function": {"name": "now"}}])
    ... # doctest: +NORMALIZE_WHITESPACE
    [{'type': 'function', 'name': 'now', 'parameters': {'type': 'object', 'properties': {}},
      'strict': False}]
    """
    return [
        _described(
            {
                "type": "function",
                "name": f["name"],
                "parameters": _parameters(f),
                "strict": bool(f.get("strict")),
            },
            f,
        )
        for f in _functions(tools)
    ]


def tools_to_realtime(tools: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """OpenAI chat function tools → Realtime session tools.

    >>> tools_to_realtime([{"type": "function", "function": {"name": "now"}}])
    [{'type': 'function', 'name': 'now', 'parameters': {'type': 'object', 'properties': {}}}]
    """
    return [
        _described({"type": "function", "name": f["name"], "parameters": _parameters(f)}, f)
        for f in _functions(tools)
    ]


def tools_to_anthropic(tools: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """OpenAI chat function tools → Anthropic tools (``name``, ``description``, ``input_schema``).

    >>> tools_to_anthropic([{"type": "function", "function": {"name": "now",
    ...                      "description": "The time."}}])
    ... # doctest: +NORMALIZE_WHITESPACE
    [{'name': 'now', 'input_schema': {'type': 'object', 'properties': {}},
      'description': 'The time.'}]
    """
    return [
        _described({"name": f["name"], "input_schema": _parameters(f)}, f)
        for f in _functions(tools)
    ]


def tools_to_bedrock(tools: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """OpenAI chat function tools → Bedrock Converse ``toolConfig["tools"]`` entries.

    >>> tools_to_bedrock([{"type": "function", "function": {"name": "now"}}])
    ... # doctest: +NORMALIZE_WHITESPACE
    [{'toolSpec': {'name': 'now',
                   'inputSchema': {'json': {'type': 'object', 'properties': {}}}}}]
    """
    return [
        {"toolSpec": _described({"name": f["name"], "inputSchema": {"json": _parameters(f)}}, f)}
        for f in _functions(tools)
    ]


# The JSON-Schema keywords Gemini's (OpenAPI-subset) Schema understands.
_GEMINI_SCHEMA_KEYS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "items",
        "properties",
        "required",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "default",
        "example",
        "anyOf",
        "propertyOrdering",
    }
)


def _gemini_schema(schema: Any) -> Any:
    """A JSON schema reduced to what Gemini accepts: unknown keywords (``additionalProperties``,
    ``$schema``, ...) dropped, ``"type": [X, "null"]`` turned into ``X`` + ``nullable``."""
    if not isinstance(schema, Mapping):
        return thaw(schema)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key not in _GEMINI_SCHEMA_KEYS:
            continue
        if key == "properties" and isinstance(value, Mapping):
            out[key] = {name: _gemini_schema(sub) for name, sub in value.items()}
        elif key == "items":
            out[key] = _gemini_schema(value)
        elif key == "anyOf" and isinstance(value, list | tuple):
            out[key] = [_gemini_schema(sub) for sub in value]
        elif key == "type" and isinstance(value, list | tuple):
            types = [t for t in value if t != "null"]
            if len(types) != 1:
                raise AdapterError(f"gemini: a schema type must be a single type, got {value!r}")
            out[key] = types[0]
            if len(types) != len(value):
                out["nullable"] = True
        else:
            out[key] = thaw(value)
    return out


def tools_to_gemini(tools: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """OpenAI chat function tools → Gemini ``tools``: one ``function_declarations`` tool.

    Parameter schemas are reduced to Gemini's schema subset; a function without parameters gets
    no ``parameters`` (Gemini rejects an object schema with no properties). No tools → ``[]``.

    >>> tools_to_gemini([{"type": "function", "function": {"name": "now"}}])
    [{'function_declarations': [{'name': 'now'}]}]
    """
    declarations: list[dict[str, Any]] = []
    for f in _functions(tools):
        declaration: dict[str, Any] = _described({"name": f["name"]}, f)
        parameters = _gemini_schema(f.get("parameters") or {})
        if parameters.get("properties") or parameters.get("type") not in (None, "object"):
            declaration["parameters"] = parameters
        declarations.append(declaration)
    return [{"function_declarations": declarations}] if declarations else []
