"""User LLM functions get only the context they declare, checked once per function."""

from __future__ import annotations

import functools
import gc
import inspect
import sys
import warnings
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from voicekit.llm import _signature
from voicekit.llm._signature import CONTEXT_NAMES, accepted_context, call_llm
from voicekit.session import Session

SESSION = Session(call_id="CA1", caller="+15551110000", callee="+15552220000")
CONTEXT: dict[str, Any] = {
    "tools": [{"type": "function", "function": {"name": "f"}}],
    "session": SESSION,
    "client": object(),
    "system": "Be brief.",
    "call_id": "CA1",
    "caller": "+15551110000",
    "callee": "+15552220000",
}
MESSAGES = [{"role": "user", "content": "hi"}]


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]


@pytest.fixture
def count_signatures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record the objects voicekit's signature module passes to inspect.signature."""
    seen: list[Any] = []
    real = inspect.signature

    def counting(obj: Any, *args: Any, **kwargs: Any) -> inspect.Signature:
        if sys._getframe(1).f_globals.get("__name__") == _signature.__name__:
            seen.append(obj)
        return real(obj, *args, **kwargs)

    monkeypatch.setattr(inspect, "signature", counting)
    return seen


async def test_old_function_gets_only_the_messages() -> None:
    async def llm(messages):  # type: ignore[no-untyped-def]
        yield f"{len(messages)} message(s)"

    assert accepted_context(llm) == frozenset()
    assert await collect(call_llm(llm, MESSAGES, context=CONTEXT)) == ["1 message(s)"]


async def test_declared_session_is_passed() -> None:
    async def llm(messages: list[Any], session: Session | None = None) -> AsyncIterator[str]:
        assert session is SESSION
        yield session.call_id

    assert accepted_context(llm) == {"session"}
    assert await collect(call_llm(llm, MESSAGES, context=CONTEXT)) == ["CA1"]


async def test_kwargs_gets_everything_but_the_raw_caller() -> None:
    got: dict[str, Any] = {}

    async def llm(messages: list[Any], **kwargs: Any) -> AsyncIterator[str]:
        got.update(kwargs)
        yield "ok"

    await collect(call_llm(llm, MESSAGES, context=CONTEXT))
    assert set(got) == CONTEXT_NAMES - {"caller"}
    assert got["session"] is SESSION  # so it can still use session.caller_hash


async def test_raw_caller_only_when_declared() -> None:
    got: dict[str, Any] = {}

    async def llm(messages: list[Any], *, caller: str, **rest: Any) -> AsyncIterator[str]:
        got.update(rest, caller=caller)
        yield "ok"

    await collect(call_llm(llm, MESSAGES, context=CONTEXT))
    assert got == CONTEXT


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("async def f(messages, tools=None): yield", {"tools"}, id="positional"),
        pytest.param(
            "async def f(messages, *, call_id, callee): yield",
            {"call_id", "callee"},
            id="keyword-only",
        ),
        pytest.param("async def f(messages, temperature=0.2): yield", set(), id="unknown-name"),
        pytest.param(
            "async def f(session, *, tools=None): yield",
            {"tools"},
            id="first-parameter-is-the-messages",
        ),
        pytest.param("async def f(messages, session, /): yield", set(), id="positional-only"),
        pytest.param("async def f(*args, **kw): yield", CONTEXT_NAMES - {"caller"}, id="varargs"),
    ],
)
def test_accepted_names(source: str, expected: set[str]) -> None:
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    assert accepted_context(namespace["f"]) == expected


def test_introspection_runs_once_per_function(count_signatures: list[Any]) -> None:
    async def llm(messages: list[Any], session: Any = None) -> AsyncIterator[str]:
        yield "x"

    for _ in range(5):
        assert accepted_context(llm) == {"session"}
        call_llm(llm, MESSAGES, context=CONTEXT)
    assert count_signatures.count(llm) == 1

    async def other(messages: list[Any]) -> AsyncIterator[str]:
        yield "y"

    accepted_context(other)
    accepted_context(other)
    assert len(count_signatures) == 2


async def test_bound_methods(count_signatures: list[Any]) -> None:
    class Agent:
        def __init__(self, name: str) -> None:
            self.name = name

        async def stream(self, messages: list[Any], *, call_id: str | None = None) -> Any:
            yield f"{self.name}:{call_id}"

    first, second = Agent("a"), Agent("b")
    assert await collect(call_llm(first.stream, MESSAGES, context=CONTEXT)) == ["a:CA1"]
    assert await collect(call_llm(second.stream, MESSAGES, context=CONTEXT)) == ["b:CA1"]
    assert accepted_context(first.stream) == {"call_id"}
    assert len(count_signatures) == 1  # cached on the underlying function, not per instance


async def test_callable_instances(count_signatures: list[Any]) -> None:
    @dataclass  # eq=True makes instances unhashable: the cache must not need to hash them
    class Echo:
        prefix: str

        async def __call__(self, messages: list[Any], *, system: str | None = None) -> Any:
            yield f"{self.prefix}{system}"

    assert await collect(call_llm(Echo("> "), MESSAGES, context=CONTEXT)) == ["> Be brief."]
    assert await collect(call_llm(Echo("< "), MESSAGES, context=CONTEXT)) == ["< Be brief."]
    assert len(count_signatures) == 1


async def test_partial_keywords_are_not_overridden() -> None:
    async def llm(
        messages: list[Any], *, tools: Any = None, session: Any = None
    ) -> AsyncIterator[Any]:
        yield tools
        yield session

    mine = functools.partial(llm, tools=["my tools"])
    assert accepted_context(mine) == {"session"}
    assert await collect(call_llm(mine, MESSAGES, context=CONTEXT)) == [["my tools"], SESSION]


def test_the_cache_does_not_keep_functions_alive() -> None:
    async def llm(messages: list[Any], session: Any = None) -> AsyncIterator[str]:
        yield "x"

    accepted_context(llm)
    ref = weakref.ref(llm)
    del llm
    gc.collect()
    assert ref() is None


def test_uninspectable_callables_accept_nothing(count_signatures: list[Any]) -> None:
    def fn(messages: Any) -> Any:
        return None

    fn.__signature__ = "not a signature"  # type: ignore[attr-defined]
    assert accepted_context(fn) == frozenset()
    # a builtin without a signature (not print: Ray replaces builtins.print once it has run)
    assert accepted_context(getattr) == frozenset()  # the fallback cache
    assert accepted_context(getattr) == frozenset()
    assert count_signatures.count(getattr) == 1


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        pytest.param(42, "must be callable", id="not-callable"),
        pytest.param(lambda messages: "hi", "returned str", id="plain-function"),
        pytest.param(lambda messages: iter(["hi"]), "returned list_iterator", id="sync-iterator"),
    ],
)
def test_clear_type_errors(fn: Any, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        call_llm(fn, MESSAGES, context=CONTEXT)


def test_a_coroutine_function_is_rejected_without_a_warning() -> None:
    async def llm(messages: list[Any]) -> str:
        return "hi"

    message = ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            call_llm(llm, MESSAGES, context=CONTEXT)
        except TypeError as exc:
            message = str(exc)
        gc.collect()  # a coroutine that was never awaited nor closed would warn here
    assert "returned a coroutine" in message and "async generator" in message
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]


async def test_a_function_returning_an_async_iterable_is_fine() -> None:
    async def gen() -> AsyncIterator[str]:
        yield "from a factory"

    def llm(messages: list[Any], *, tools: Any = None) -> AsyncIterator[str]:
        return gen()

    assert await collect(call_llm(llm, MESSAGES, context=CONTEXT)) == ["from a factory"]


def test_unknown_context_names_are_an_error() -> None:
    async def llm(messages: list[Any]) -> AsyncIterator[str]:
        yield "x"

    with pytest.raises(ValueError, match="temperature"):
        call_llm(llm, MESSAGES, context={"temperature": 0.3})


async def test_only_present_context_values_are_passed() -> None:
    async def llm(messages: list[Any], call_id: str = "default") -> AsyncIterator[str]:
        yield call_id

    assert await collect(call_llm(llm, MESSAGES, context={})) == ["default"]


def test_fallback_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_signature, "_FALLBACK_LIMIT", 2)
    builtins = [len, abs, min, max]
    for fn in builtins:
        accepted_context(fn)
    assert len(_signature._fallback) <= 2
