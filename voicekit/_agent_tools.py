"""Tools for the agent: a plain function plus its JSON schema, and how a call is run."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import enum
import functools
import inspect
import json
import re
import threading
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._errors import ConfigError
from ._frozen import freeze, thaw
from .events import HangUp, SendDtmf, ToolCall, TransferCall

__all__ = ["CallAction", "Tool", "in_thread", "run_tool", "run_tool_action", "tool", "tools_of"]

_SIMPLE: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the LLM may call, with the JSON schema the LLM sees.

    ``schema`` is a bare function schema: ``{"name", "description", "parameters"}``. Calling
    the Tool calls the function, so ``@tool`` leaves a function usable as before.
    """

    name: str
    fn: Callable[..., Any]
    schema: Mapping[str, Any]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    @property
    def spec(self) -> dict[str, Any]:
        """The schema in the chat-completions shape ``{"type": "function", "function": ...}``."""
        return {"type": "function", "function": thaw(self.schema)}


@dataclass(frozen=True, slots=True)
class CallAction:
    """What a tool returns to act on the call (see :mod:`voicekit.phone`): the agent yields
    ``event`` — after the reply's audio for a :class:`~voicekit.HangUp` or
    :class:`~voicekit.TransferCall`, at once for a :class:`~voicekit.SendDtmf`. ``say``: a line
    the agent speaks itself before a hang-up or transfer (the LLM is then not asked again);
    ``result``: the tool result the LLM sees (a description of the action when empty). A tool
    may also return a bare ``HangUp``/``TransferCall``/``SendDtmf``."""

    event: HangUp | TransferCall | SendDtmf
    say: str | None = None
    result: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.event, HangUp | TransferCall | SendDtmf):
            raise ConfigError(
                "CallAction: event must be a HangUp, TransferCall or SendDtmf, "
                f"got {type(self.event).__name__}"
            )
        if self.say is not None and not isinstance(self.say, str):
            raise ConfigError(f"CallAction: say must be a str or None, got {self.say!r}")

    @property
    def ends_call(self) -> bool:
        """Whether the call is over for the agent once the action is taken."""
        return isinstance(self.event, HangUp | TransferCall)


def _action_of(result: Any) -> CallAction | None:
    if isinstance(result, CallAction):
        return result
    if isinstance(result, HangUp | TransferCall | SendDtmf):
        return CallAction(result)
    return None


def _describe(action: CallAction) -> str:
    """The tool result the LLM sees for ``action`` when the tool gave none."""
    event = action.event
    if isinstance(event, SendDtmf):
        return json.dumps({"ok": True, "pressed": event.digits})
    what = "hang_up" if isinstance(event, HangUp) else "transfer"
    if action.say:
        note = "the caller hears the line below, then the call ends; say nothing more"
        return json.dumps({"ok": True, "action": what, "line": action.say, "note": note})
    note = "the call ends once your reply is heard: say a short goodbye, or nothing if you did"
    return json.dumps({"ok": True, "action": what, "note": note})


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    schema: Mapping[str, Any] | None = None,
    name: str | None = None,
    description: str | None = None,
) -> Any:
    """Make a :class:`Tool` of a plain function (sync or async); usable as a decorator.

    Without ``schema``, the schema is derived from the signature: each parameter's type hint
    (``str``, ``int``, ``float``, ``bool``, ``list[...]``, ``dict``, ``Literal[...]``, an
    ``Enum``, ``X | None``; ``Annotated[X, "text"]`` adds a description), required unless it
    has a default; the description is the docstring's first paragraph, and parameter
    descriptions come from an ``Args:`` section. A given ``schema`` (bare or wrapped in
    ``{"type": "function", "function": ...}``) is used as is.

    >>> from typing import Literal
    >>> @tool
    ... def weather(city: str, unit: Literal["C", "F"] = "C") -> str:
    ...     '''Current weather in a city.
    ...
    ...     Args:
    ...         city: The city name, e.g. Paris.
    ...     '''
    ...     return f"18 {unit} in {city}"
    >>> schema = weather.spec["function"]
    >>> schema["description"], schema["parameters"]["required"]
    ('Current weather in a city.', ['city'])
    >>> for name, prop in schema["parameters"]["properties"].items():
    ...     print(name, prop)
    city {'type': 'string', 'description': 'The city name, e.g. Paris.'}
    unit {'type': 'string', 'enum': ['C', 'F']}
    >>> weather("Rome")
    '18 C in Rome'
    """
    if fn is None:
        return functools.partial(tool, schema=schema, name=name, description=description)
    if isinstance(fn, Tool):  # a Tool again: keep its schema unless a new one is given
        if schema is None and name is None and description is None:
            return fn
        schema = fn.schema if schema is None else schema
        fn = fn.fn
    if not callable(fn):
        raise ConfigError(f"tool(): expected a function, got {type(fn).__name__}")
    if schema is not None:
        bare = _bare_schema(schema)
        if name is not None:
            bare["name"] = name
        if description is not None:
            bare["description"] = description
    else:
        bare = _derive(fn, name, description)
    if not isinstance(bare.get("name"), str) or not bare["name"]:
        raise ConfigError("tool(): the schema has no name")
    return Tool(bare["name"], fn, freeze(bare))


def tools_of(tools: Sequence[Any] | None) -> tuple[Tool, ...]:
    """The tools given to an agent as Tool values (plain functions are wrapped with tool())."""
    out = tuple(t if isinstance(t, Tool) else tool(t) for t in tools or ())
    names = [t.name for t in out]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"two tools have the same name: {', '.join(repeated)}")
    return out


def _bare_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(schema, Mapping):
        raise ConfigError(f"tool(): schema must be a mapping, got {type(schema).__name__}")
    plain: dict[str, Any] = thaw(schema)
    if plain.get("type") == "function" and isinstance(plain.get("function"), Mapping):
        plain = dict(plain["function"])
    plain.setdefault("parameters", {"type": "object", "properties": {}})
    return plain


def _derive(fn: Callable[..., Any], name: str | None, description: str | None) -> dict[str, Any]:
    target = fn.func if isinstance(fn, functools.partial) else fn
    fn_name = name or getattr(target, "__name__", None)
    if not fn_name or fn_name == "<lambda>":
        raise ConfigError("tool(): give a name= for a lambda or a nameless callable")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"tool(): cannot read the signature of {fn_name}: {exc}") from None
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except Exception:  # unresolvable forward references: fall back to untyped parameters
        hints = {}
    summary, arg_docs = _parse_doc(inspect.getdoc(target) or "")
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in signature.parameters.values():
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise ConfigError(
                f"tool(): parameter {param.name!r} of {fn_name} is positional-only; "
                "tools are called with keyword arguments"
            )
        prop = _json_type(hints.get(param.name, Any))
        if param.name in arg_docs and "description" not in prop:
            prop["description"] = arg_docs[param.name]
        properties[param.name] = prop
        if param.default is inspect.Parameter.empty:
            required.append(param.name)
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    out: dict[str, Any] = {"name": fn_name}
    text = description if description is not None else summary
    if text:
        out["description"] = text
    out["parameters"] = parameters
    return out


_ARGS_HEADER = re.compile(r"^(Args|Arguments|Parameters)\s*:\s*$")
_ARG_LINE = re.compile(r"^\s+(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def _parse_doc(doc: str) -> tuple[str, dict[str, str]]:
    """The first paragraph of a docstring, and the ``name: text`` entries of its Args section."""
    first = doc.strip().split("\n\n")[0]
    summary = "" if _ARGS_HEADER.match(first.split("\n")[0]) else " ".join(first.split())
    args: dict[str, str] = {}
    inside = False
    indent: int | None = None  # the indentation of the entries
    current: str | None = None
    for line in doc.splitlines():
        if not inside:
            inside = bool(_ARGS_HEADER.match(line))
            continue
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if depth == 0:
            break  # the next section
        match = _ARG_LINE.match(line)
        if match and (indent is None or depth == indent):
            indent, current = depth, match.group(1)
            args[current] = match.group(2).strip()
        elif current is not None:
            args[current] = f"{args[current]} {line.strip()}".strip()
    return summary, args


def _json_type(hint: Any) -> dict[str, Any]:
    """A JSON-schema fragment for a Python type hint ({} when it says nothing useful)."""
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        base, *extras = typing.get_args(hint)
        out = _json_type(base)
        texts = [e for e in extras if isinstance(e, str)]
        if texts:
            out["description"] = texts[0]
        return out
    if hint in _SIMPLE:
        return {"type": _SIMPLE[hint]}
    if origin is typing.Literal:
        values = list(typing.get_args(hint))
        kinds = {_SIMPLE.get(type(v)) for v in values}
        out = {"enum": values}
        if len(kinds) == 1 and None not in kinds:
            out = {"type": kinds.pop(), "enum": values}
        return out
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        values = [m.value for m in hint]
        kinds = {_SIMPLE.get(type(v)) for v in values}
        if len(kinds) == 1 and None not in kinds:
            return {"type": kinds.pop(), "enum": values}
        return {"enum": values}
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(members) == 1:
            return _json_type(members[0])
        return {"anyOf": [_json_type(m) for m in members]}
    if hint in (list, tuple, set, frozenset) or origin in (list, tuple, set, frozenset, Sequence):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        out = {"type": "array"}
        if len(args) == 1:
            items = _json_type(args[0])
            if items:
                out["items"] = items
        return out
    if hint in (dict, Mapping) or origin in (dict, Mapping):
        return {"type": "object"}
    if dataclasses.is_dataclass(hint):
        return {"type": "object"}
    return {}


def _result_text(result: Any) -> str:
    if isinstance(result, str):
        return result
    return json.dumps(thaw(result), ensure_ascii=False, default=str)


def _error(message: str) -> str:
    return json.dumps({"error": message}, ensure_ascii=False)


def _deliver(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # abandoned: the await was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


async def in_thread(fn: Callable[..., Any], /, **kwargs: Any) -> Any:
    """``fn(**kwargs)`` in a thread of its own, awaited.

    The thread is a daemon and owned by nobody: cancelling the await abandons it (a thread
    cannot be stopped; it runs on until ``fn`` returns and its result is dropped), and it never
    delays the end of the event loop or of the process. (``asyncio.to_thread`` would use the
    loop's default executor, which ``asyncio.run`` joins on the way out: a tool abandoned in
    the middle of a 20 s sleep would keep the program alive for those 20 s.) The result comes
    back to the loop with ``call_soon_threadsafe``; context variables are copied in.

    >>> asyncio.run(in_thread(dict, city="Rome"))
    {'city': 'Rome'}
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def work() -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = context.run(fn, **kwargs)
        except BaseException as exc:  # handed to the awaiting task, whatever it is
            error = exc
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(_deliver, future, result, error)

    name = getattr(fn, "__name__", "call")
    threading.Thread(target=work, name=f"voicekit-tool-{name}", daemon=True).start()
    return await future


async def run_tool(tools: Mapping[str, Tool], call: ToolCall) -> tuple[str, bool]:
    """Run one tool call; return the text for the LLM and whether the call succeeded
    (:func:`run_tool_action` also says what the tool asked to do to the call)."""
    content, ok, _ = await run_tool_action(tools, call)
    return content, ok


async def run_tool_action(
    tools: Mapping[str, Tool], call: ToolCall
) -> tuple[str, bool, CallAction | None]:
    """Run one tool call; return the text for the LLM, whether the call succeeded, and the
    :class:`CallAction` the tool returned (a hang-up, transfer or key press), if any.

    Arguments that are not a JSON object are not run. A sync function runs in a daemon thread
    of its own (:func:`in_thread`): cancelling the await abandons it — a thread cannot be
    stopped, so it runs to its end and its result is dropped — but it never keeps the event
    loop or the process alive. An async function is awaited and is cancelled with the reply.
    An exception becomes an ``{"error": ...}`` result.
    """
    found = tools.get(call.name)
    if found is None:
        return _error(f"there is no tool named {call.name!r}; the call was not run"), False, None
    try:
        arguments = json.loads(call.arguments or "{}")
    except ValueError:
        return _error("the arguments were not valid JSON; the call was not run"), False, None
    if not isinstance(arguments, dict):
        return _error("the arguments must be a JSON object; the call was not run"), False, None
    fn = found.fn
    try:
        if inspect.iscoroutinefunction(inspect.unwrap(fn)) or (
            isinstance(fn, functools.partial) and inspect.iscoroutinefunction(fn.func)
        ):
            result = await fn(**arguments)
        else:
            result = await in_thread(fn, **arguments)
            if inspect.isawaitable(result):
                result = await result
    except Exception as exc:
        return _error(f"{type(exc).__name__}: {exc}"), False, None
    action = _action_of(result)
    if action is not None:
        return action.result or _describe(action), True, action
    return _result_text(result), True, None
