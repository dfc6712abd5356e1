"""Calling user-supplied LLM functions with only the context they declare.

Any async-generator function can be the LLM of a conversation: ``async def llm(messages): ...``
is enough. voicekit has more to offer it — the tools, the Session, an HTTP client, the system
instruction, the call id, caller and callee — but passes each of these only if the function
declares a parameter of that name, so functions written for an older voicekit keep working when
new context names are added. The signature is inspected once per function and cached.

Rules:

* A parameter that can be passed by keyword and is named like a context value receives it. The
  first positional parameter receives the messages and is never a context parameter.
* ``**kwargs`` receives every context value *except* ``caller``: the raw caller (for example a
  phone number) goes only to a function that explicitly declares ``caller``. ``session`` is still
  passed, so such a function can read ``session.caller_hash``.
* Keywords already bound with :func:`functools.partial` are never overridden.
* A signature that cannot be inspected (some builtins) accepts no context.
* Only context values present in the ``context`` mapping are passed; the conversation loop always
  supplies every name (``None`` when it has no value).

>>> async def llm(messages, *, session=None):
...     yield "hi"
>>> sorted(accepted_context(llm))
['session']
"""

from __future__ import annotations

import functools
import inspect
import threading
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, MutableMapping
from typing import Any

__all__ = ["CONTEXT_NAMES", "accepted_context", "call_llm"]

CONTEXT_NAMES: frozenset[str] = frozenset(
    {"tools", "session", "client", "system", "call_id", "caller", "callee"}
)
"""The context values voicekit can pass to an LLM function."""

_EXPLICIT_ONLY = frozenset({"caller"})  # never passed through **kwargs

_KEYWORD_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)

# Caches. Functions and partials are keyed weakly on themselves, bound methods on their
# underlying function (a new bound-method object is made on every attribute access), callable
# instances on their class. Objects that are unhashable or cannot be weakly referenced go to a
# small bounded fallback cache keyed by id() that keeps them alive while cached.
_by_object: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()
_by_method: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()
_by_class: weakref.WeakKeyDictionary[type, frozenset[str]] = weakref.WeakKeyDictionary()
_FALLBACK_LIMIT = 256
_fallback: OrderedDict[int, tuple[object, frozenset[str]]] = OrderedDict()
_lock = threading.Lock()


def _inspect(fn: Callable[..., Any]) -> frozenset[str]:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return frozenset()
    bound_by_partial = frozenset(fn.keywords) if isinstance(fn, functools.partial) else frozenset()
    parameters = list(signature.parameters.values())
    if parameters and parameters[0].kind in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        parameters = parameters[1:]  # it receives the messages
    accepted: set[str] = set()
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            accepted |= CONTEXT_NAMES - _EXPLICIT_ONLY
        elif parameter.kind in _KEYWORD_KINDS and parameter.name in CONTEXT_NAMES:
            accepted.add(parameter.name)
    return frozenset(accepted - bound_by_partial)


def _slot(fn: Callable[..., Any]) -> tuple[MutableMapping[Any, frozenset[str]], Any] | None:
    """Which weak cache holds ``fn``'s answer, and under which key (None: use the fallback)."""
    if inspect.ismethod(fn):
        return _by_method, fn.__func__
    if inspect.isfunction(fn) or isinstance(fn, functools.partial | type):
        return _by_object, fn
    if inspect.isbuiltin(fn) or inspect.ismethoddescriptor(fn):
        return None
    return _by_class, type(fn)  # a callable instance: the signature is its class's __call__


def _weakly_keyable(key: Any) -> bool:
    try:
        weakref.ref(key)
        hash(key)
    except TypeError:
        return False
    return True


def accepted_context(fn: Callable[..., Any]) -> frozenset[str]:
    """The context names (see :data:`CONTEXT_NAMES`) that ``fn`` accepts as keyword arguments.

    Inspects ``fn``'s signature the first time it is seen and remembers the answer.

    >>> async def old(messages):
    ...     yield "hi"
    >>> accepted_context(old)
    frozenset()
    >>> async def anything(messages, **kwargs):
    ...     yield "hi"
    >>> "caller" in accepted_context(anything), "call_id" in accepted_context(anything)
    (False, True)
    """
    if not callable(fn):
        raise TypeError(
            "the LLM must be callable (an async generator function taking the messages), "
            f"got {type(fn).__name__}"
        )
    slot = _slot(fn)
    if slot is not None and _weakly_keyable(slot[1]):
        cache, key = slot
        with _lock:
            cached = cache.get(key)
        if cached is None:
            cached = _inspect(fn)
            with _lock:
                cache[key] = cached
        return cached
    with _lock:
        entry = _fallback.get(id(fn))
        if entry is not None and entry[0] is fn:
            _fallback.move_to_end(id(fn))
            return entry[1]
    accepted = _inspect(fn)
    with _lock:
        _fallback[id(fn)] = (fn, accepted)
        while len(_fallback) > _FALLBACK_LIMIT:
            _fallback.popitem(last=False)
    return accepted


def call_llm(
    fn: Callable[..., Any], messages: Any, *, context: Mapping[str, Any]
) -> AsyncIterator[Any]:
    """Call the LLM function ``fn`` with ``messages`` and the context values it declares.

    Returns the async iterator ``fn`` produced. Raises :class:`TypeError` if ``fn`` is not
    callable or does not return an async iterable (for example a plain ``async def`` that
    ``return``\\ s instead of ``yield``\\ ing), and :class:`ValueError` for a context name voicekit
    does not know.

    >>> import asyncio
    >>> async def llm(messages, *, call_id=None):
    ...     yield f"{call_id}: {len(messages)} messages"
    >>> async def first(stream):
    ...     async for item in stream:
    ...         return item
    >>> asyncio.run(first(call_llm(llm, [], context={"call_id": "CA1", "caller": "+1555"})))
    'CA1: 0 messages'
    """
    unknown = set(context) - CONTEXT_NAMES
    if unknown:
        raise ValueError(
            f"unknown LLM context name(s) {', '.join(sorted(unknown))}; "
            f"expected some of {', '.join(sorted(CONTEXT_NAMES))}"
        )
    accepted = accepted_context(fn)
    result = fn(messages, **{k: v for k, v in context.items() if k in accepted})
    if hasattr(result, "__aiter__"):
        iterator: AsyncIterator[Any] = result.__aiter__()
        return iterator
    if inspect.iscoroutine(result):
        result.close()  # never awaited on purpose: do not leave a "never awaited" warning
        raise TypeError(
            f"the LLM {_name(fn)} returned a coroutine; it must be an async generator function "
            "(use `yield` to stream text) or return an async iterable"
        )
    raise TypeError(
        f"the LLM {_name(fn)} returned {type(result).__name__}; it must be an async generator "
        "function (use `yield` to stream text) or return an async iterable"
    )


def _name(fn: Callable[..., Any]) -> str:
    if isinstance(fn, functools.partial):
        return _name(fn.func)
    return getattr(fn, "__qualname__", None) or type(fn).__name__
