"""Stages and the operators that compose them.

A *stage* is an async-generator function whose first, positional-only parameter is its source::

    @vk.stage
    async def shout(source, /, *, marks="!"):
        async for text in source:
            yield text.upper() + marks

Decorated, it can be used three ways, all equivalent:

* ``shout(source, marks="!!")`` runs it on a source and gives a :class:`Flow`;
* ``shout(marks="!!")`` gives a :class:`Stage` (a transform not yet applied);
* ``source | shout(marks="!!")`` pipes a source into it, as aiostream's operators do.

A :class:`Flow` is a *description* of a stream: nothing runs until it is iterated, and iterating it
twice runs it twice. Iterating it builds the chain of stage generators; when the consumer stops
(end, ``break`` inside :meth:`Flow.open`, an error, or cancellation), every generator in the chain
is closed at once, downstream first, and the source is closed last. Errors coming out of a stage
are :class:`~voicekit.VoicekitError` s whose message names the stage.

>>> import asyncio
>>> @stage
... async def double(source, /):
...     async for x in source:
...         yield 2 * x
>>> asyncio.run((range(3) | double()).list())
[0, 2, 4]

Operators that take functions or other stages — :func:`switch_map`, :func:`parallel`,
:func:`tap`, :func:`failover` — return a :class:`Stage`, ready to be piped into.
aiostream's operators mix freely: ``flow | aiostream.pipe.take(3)`` is an aiostream stream, and
``aiostream_stream | some_stage()`` is a Flow again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from types import AsyncGeneratorType, TracebackType
from typing import Any, Generic, Literal, ParamSpec, TypeVar, overload

from aiostream.core import Stream as _AioStream

from ._errors import StageError, VoicekitError
from .events import Switched

__all__ = [
    "Flow",
    "Stage",
    "StageFunction",
    "collect",
    "failover",
    "parallel",
    "stage",
    "switch_map",
    "tap",
]

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")
P = ParamSpec("P")

Source = AsyncIterable[T] | Iterable[T]
"""What a stage accepts as its source: any async iterable, or a plain iterable (list, range…)."""


# ---------------------------------------------------------------------------------------------
# Opening and closing sources


class _Opened:
    """An async iterator over a source, plus how to release it."""

    __slots__ = ("_closer", "iterator")

    def __init__(
        self, iterator: AsyncIterator[Any], closer: Callable[[], Awaitable[Any]] | None
    ) -> None:
        self.iterator = iterator
        self._closer = closer

    async def close(self) -> None:
        if self._closer is not None:
            closer, self._closer = self._closer, None
            await closer()


async def _from_iterable(items: Iterable[T]) -> AsyncGenerator[T, None]:
    for item in items:
        yield item


async def _open(source: Any) -> _Opened:
    """Open ``source`` for iteration. The caller owns what it opened and must close it."""
    if isinstance(source, _AioStream):
        streamer = source.stream()
        await streamer.__aenter__()
        return _Opened(streamer, lambda: streamer.__aexit__(None, None, None))
    if isinstance(source, AsyncIterable):
        iterator: AsyncIterator[Any] = aiter(source)
        return _Opened(iterator, getattr(iterator, "aclose", None))
    if isinstance(source, Iterable) and not isinstance(source, str | bytes | Mapping):
        gen = _from_iterable(source)
        return _Opened(gen, gen.aclose)
    raise TypeError(
        "a stage's source must be an async iterable or a plain iterable, "
        f"got {type(source).__name__}"
    )


async def _close_all(gens: Sequence[Any], opened: _Opened | None) -> None:
    """Close ``gens`` downstream first, then the source; raise the first error met."""
    first: BaseException | None = None
    for gen in reversed(gens):
        aclose = getattr(gen, "aclose", None)
        if aclose is None:
            continue
        try:
            await aclose()
        except Exception as exc:  # keep closing the rest
            first = first or exc
    if opened is not None:
        try:
            await opened.close()
        except Exception as exc:
            first = first or exc
    if first is not None:
        raise first


# ---------------------------------------------------------------------------------------------
# Stage, Flow, @stage


@dataclass(frozen=True, slots=True)
class _Part:
    fn: Callable[..., AsyncIterator[Any]]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    name: str = ""


def _code_of(fn: Callable[..., Any]) -> Any:
    return getattr(inspect.unwrap(fn), "__code__", None)


class Stage(Generic[A, B]):
    """A transform from a stream of ``A`` to a stream of ``B``, not yet applied to a source.

    ``stage(source)`` and ``source | stage`` give a :class:`Flow`; ``stage_a | stage_b`` gives
    the composed Stage.
    """

    __slots__ = ("_parts",)

    def __init__(self, parts: tuple[_Part, ...]) -> None:
        self._parts = parts

    @classmethod
    def of(
        cls, fn: Callable[..., AsyncIterator[B]], name: str | None = None, /, **kwargs: Any
    ) -> Stage[Any, B]:
        """Make a Stage from an async-generator function ``fn(source, /, **kwargs)``."""
        return cls((_Part(fn, kwargs, name or str(getattr(fn, "__name__", "stage"))),))

    @property
    def name(self) -> str:
        """The names of the composed stages, joined with ``|``."""
        return " | ".join(part.name for part in self._parts)

    def __call__(self, source: Source[A]) -> Flow[B]:
        return Flow(source, self._parts)

    @overload
    def __or__(self, other: Stage[B, C]) -> Stage[A, C]: ...
    @overload
    def __or__(self, other: Callable[[Flow[B]], T]) -> Callable[[Source[A]], T]: ...
    def __or__(self, other: Any) -> Any:
        if isinstance(other, Stage):
            return Stage(self._parts + other._parts)
        if callable(other):
            return lambda source: other(self(source))
        return NotImplemented

    def __ror__(self, source: Source[A]) -> Flow[B]:
        return Flow(source, self._parts)

    def __repr__(self) -> str:
        return f"Stage({self.name})"


class Flow(AsyncIterable[T], Generic[T]):
    """A source piped through zero or more stages: a lazy, re-iterable stream description.

    Iterate it with ``async for`` (the chain is closed when the loop ends or is cancelled; after a
    ``break`` it is closed by the event loop shortly after), or with :meth:`open` to close it at
    once on ``break``. ``await flow.list()`` collects every item.
    """

    __slots__ = ("_parts", "_source")

    def __init__(self, source: Source[Any], parts: tuple[_Part, ...] = ()) -> None:
        self._source = source
        self._parts = parts

    @overload
    def __or__(self, other: Stage[T, C]) -> Flow[C]: ...
    @overload
    def __or__(self, other: Callable[[Flow[T]], C]) -> C: ...
    def __or__(self, other: Any) -> Any:
        if isinstance(other, Stage):
            return Flow(self._source, self._parts + other._parts)
        if callable(other):
            return other(self)
        return NotImplemented

    def __aiter__(self) -> AsyncGenerator[T, None]:
        return self._run()

    def open(self) -> contextlib.aclosing[AsyncGenerator[T, None]]:
        """An async context manager over a running iteration; leaving it closes the whole chain.

        >>> async def first_two(flow):
        ...     async with flow.open() as items:
        ...         return [await anext(items), await anext(items)]
        >>> asyncio.run(first_two(Flow(range(10))))
        [0, 1]
        """
        return contextlib.aclosing(self._run())

    async def list(self) -> list[T]:
        """Run the flow to the end and return every item."""
        async with self.open() as items:
            return [item async for item in items]

    @property
    def stages(self) -> tuple[str, ...]:
        """The names of the stages, in order."""
        return tuple(part.name for part in self._parts)

    def __repr__(self) -> str:
        names = " | ".join(("source", *self.stages))
        return f"Flow({names})"

    async def _run(self) -> AsyncGenerator[T, None]:
        opened = await _open(self._source)
        gens: list[Any] = []
        try:
            iterator: Any = opened.iterator
            for part in self._parts:
                iterator = part.fn(iterator, **part.kwargs)
                gens.append(iterator)
            step = iterator.__anext__
            while True:
                try:
                    item = await step()
                except StopAsyncIteration:
                    return
                except VoicekitError as exc:
                    if exc.stage is None:
                        exc.stage = self._origin(exc)
                    raise
                except Exception as exc:
                    raise StageError(self._origin(exc), exc) from exc
                yield item
        finally:
            await _close_all(gens, opened)

    def _origin(self, exc: BaseException) -> str:
        """Name the deepest stage (or the source) in the traceback of ``exc``."""
        names: dict[Any, str] = {}
        source = self._source
        if isinstance(source, AsyncGeneratorType):
            names[source.ag_code] = f"source {source.__name__}"
        for part in self._parts:
            code = _code_of(part.fn)
            if code is not None:
                names[code] = part.name
        found = None
        tb: TracebackType | None = exc.__traceback__
        while tb is not None:
            name = names.get(tb.tb_frame.f_code)
            if name is not None:
                found = name
            tb = tb.tb_next
        if found is not None:
            return found
        return self._parts[-1].name if self._parts else "source"


class StageFunction(Generic[A, P, B]):
    """An async-generator function lifted by :func:`stage`. See the module documentation."""

    def __init__(self, fn: Callable[..., AsyncIterator[B]]) -> None:
        if not inspect.isasyncgenfunction(inspect.unwrap(fn)):
            raise TypeError(f"@stage needs an async generator function, got {fn!r}")
        self._fn = fn
        self._signature = inspect.signature(fn)
        functools.update_wrapper(self, fn)

    @overload
    def __call__(self, source: Source[A], /, *args: P.args, **kwargs: P.kwargs) -> Flow[B]: ...
    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Stage[A, B]: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
        if len(args) > 1:
            raise TypeError(
                f"{self._fn.__name__}() takes its source as the only positional argument; "
                "pass the other parameters by keyword"
            )
        try:
            self._signature.bind(None, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self._fn.__name__}(): {exc}") from None
        part = _Part(self._fn, kwargs, self._fn.__name__)
        if args:
            return Flow(args[0], (part,))
        return Stage((part,))

    def __repr__(self) -> str:
        return f"<voicekit stage {self._fn.__name__}{self._signature}>"


def stage(fn: Callable[..., AsyncIterator[B]]) -> StageFunction[Any, ..., B]:
    """Lift an async-generator function ``fn(source, /, **params)`` into a pipeable stage.

    >>> @stage
    ... async def add(source, /, *, n=1):
    ...     async for x in source:
    ...         yield x + n
    >>> asyncio.run(add([1, 2], n=10).list())
    [11, 12]
    >>> asyncio.run(([1, 2] | add(n=10) | add()).list())
    [12, 13]
    """
    return StageFunction(fn)


async def collect(source: Source[T]) -> list[T]:
    """Collect every item of any source into a list, closing it afterwards.

    >>> asyncio.run(collect(range(3)))
    [0, 1, 2]
    """
    return await Flow(source).list()


# ---------------------------------------------------------------------------------------------
# tap


async def _tap(source: AsyncIterable[T], /, *, fn: Callable[[T], Any]) -> AsyncIterator[T]:
    async for item in source:
        result = fn(item)
        if inspect.isawaitable(result):
            await result
        yield item


def tap(fn: Callable[[T], Any], *, name: str | None = None) -> Stage[T, T]:
    """Call ``fn(item)`` (sync or async) on every item and pass the item on unchanged.

    >>> seen = []
    >>> asyncio.run(([1, 2] | tap(seen.append)).list()), seen
    ([1, 2], [1, 2])
    """
    return Stage.of(_tap, name or f"tap({getattr(fn, '__name__', 'fn')})", fn=fn)


# ---------------------------------------------------------------------------------------------
# switch_map: barge-in


async def _wait_done(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait until it has finished, without raising its outcome."""
    if not task.done():
        task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()  # mark retrieved


async def _switch_map(
    source: AsyncIterable[A], /, *, fn: Callable[[A], AsyncIterable[B]]
) -> AsyncIterator[B]:
    src = aiter(source)
    pull_source: asyncio.Future[A] | None = asyncio.ensure_future(anext(src))
    inner: _Opened | None = None
    pull_inner: asyncio.Future[B] | None = None

    async def drop_inner() -> None:
        nonlocal inner, pull_inner
        if pull_inner is not None:
            await _wait_done(pull_inner)
            pull_inner = None
        if inner is not None:
            opened, inner = inner, None
            await opened.close()

    try:
        while pull_source is not None or inner is not None:
            waiting = [t for t in (pull_source, pull_inner) if t is not None]
            if pull_inner is None and inner is not None:
                pull_inner = asyncio.ensure_future(anext(inner.iterator))
                waiting.append(pull_inner)
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if pull_source is not None and pull_source.done():
                done, pull_source = pull_source, None
                try:
                    item = done.result()
                except StopAsyncIteration:
                    pass  # the source ended: let the inner stream in flight finish
                else:
                    await drop_inner()  # a new item supersedes the stream in flight
                    inner = await _open(fn(item))
                    pull_source = asyncio.ensure_future(anext(src))
                continue
            if pull_inner is not None and pull_inner.done():
                finished, pull_inner = pull_inner, None
                try:
                    out = finished.result()
                except StopAsyncIteration:
                    await drop_inner()
                    continue
                yield out
    finally:
        if pull_source is not None:
            await _wait_done(pull_source)
        await drop_inner()


def switch_map(fn: Callable[[A], AsyncIterable[B]], *, name: str | None = None) -> Stage[A, B]:
    """For each source item, stream ``fn(item)``; a newer item cancels the stream in flight.

    This is barge-in: when the user speaks again, the reply being generated is cancelled at once,
    along with everything it was awaiting (an HTTP request, a TTS call, a tool), and the reply to
    the new turn starts. The source is read concurrently with the inner stream.

    >>> async def turns():
    ...     yield "a"; await asyncio.sleep(0.05); yield "b"
    >>> async def reply(turn):
    ...     for i in range(3):
    ...         yield f"{turn}{i}"
    ...         await asyncio.sleep(0.03)
    >>> asyncio.run((turns() | switch_map(reply)).list())
    ['a0', 'a1', 'b0', 'b1', 'b2']
    """
    return Stage.of(_switch_map, name or f"switch_map({getattr(fn, '__name__', 'fn')})", fn=fn)


# ---------------------------------------------------------------------------------------------
# parallel: fan out to branches, merge back in a chosen order

_OUT, _SYNC, _DONE, _ERR = range(4)
_END = object()


async def _parallel(
    source: AsyncIterable[A],
    /,
    *,
    branches: tuple[Stage[A, Any], ...],
    order: Literal["arrival", "pipeline"],
) -> AsyncIterator[Any]:
    n = len(branches)
    inboxes: list[asyncio.Queue[Any]] = [asyncio.Queue() for _ in range(n)]
    events: asyncio.Queue[tuple[int, int, Any]] = asyncio.Queue()

    async def feed(k: int) -> AsyncIterator[A]:
        while True:
            item = await inboxes[k].get()
            if item is _END:
                return
            yield item
            events.put_nowait((k, _SYNC, None))  # the branch asks for more: done with this item

    async def run(k: int) -> None:
        try:
            async with branches[k](feed(k)).open() as outputs:
                async for out in outputs:
                    events.put_nowait((k, _OUT, out))
        except Exception as exc:
            events.put_nowait((k, _ERR, exc))
        else:
            events.put_nowait((k, _DONE, None))

    tasks = [asyncio.ensure_future(run(k)) for k in range(n)]
    live = set(range(n))

    async def round_trip(message: Any) -> AsyncGenerator[Any, None]:
        """Send ``message`` to every live branch and yield their outputs in the chosen order."""
        for k in live:
            inboxes[k].put_nowait(message)
        pending = set(live)
        buffers: list[list[Any]] = [[] for _ in range(n)]
        cursor = 0  # pipeline order: the branch whose outputs may be yielded right away
        while pending:
            k, kind, payload = await events.get()
            if kind == _ERR:
                raise payload
            if kind == _OUT:
                if order == "arrival" or k == cursor:
                    yield payload
                else:
                    buffers[k].append(payload)
                continue
            pending.discard(k)
            if kind == _DONE:
                live.discard(k)
            if order == "pipeline":
                while cursor < n and cursor not in pending:
                    cursor += 1
                    if cursor < n:
                        for out in buffers[cursor]:
                            yield out
                        buffers[cursor].clear()

    try:
        async for item in source:
            if not live:
                break
            async with contextlib.aclosing(round_trip(item)) as outs:
                async for out in outs:
                    yield out
        if live:
            async with contextlib.aclosing(round_trip(_END)) as outs:
                async for out in outs:
                    yield out
    finally:
        for task in tasks:
            await _wait_done(task)


def parallel(
    *branches: Stage[A, Any], order: Literal["arrival", "pipeline"] = "arrival"
) -> Stage[A, Any]:
    """Send every source item to each branch, run the branches side by side, merge the outputs.

    ``order="arrival"`` yields outputs as the branches produce them. ``order="pipeline"`` yields,
    for each input item, all outputs of branch 1, then all of branch 2, and so on, in the order the
    branches were given — while still running them concurrently. A branch is taken to be done with
    an item when it asks for the next one (so a branch that reads ahead before yielding has its
    outputs counted with the later item).

    >>> async def slow(src, /):
    ...     async for x in src:
    ...         await asyncio.sleep(0.02)
    ...         yield f"slow{x}"
    >>> async def fast(src, /):
    ...     async for x in src:
    ...         yield f"fast{x}"
    >>> both = lambda order: parallel(Stage.of(slow), Stage.of(fast), order=order)
    >>> asyncio.run(([1, 2] | both("arrival")).list())
    ['fast1', 'slow1', 'fast2', 'slow2']
    >>> asyncio.run(([1, 2] | both("pipeline")).list())
    ['slow1', 'fast1', 'slow2', 'fast2']
    """
    if not branches:
        raise ValueError("parallel() needs at least one branch")
    if order not in ("arrival", "pipeline"):
        raise ValueError(f"order must be 'arrival' or 'pipeline', got {order!r}")
    for branch in branches:
        if not isinstance(branch, Stage):
            raise TypeError(f"parallel() branches must be Stages, got {type(branch).__name__}")
    name = f"parallel({', '.join(b.name for b in branches)}, order={order!r})"
    return Stage.of(_parallel, name, branches=tuple(branches), order=order)


# ---------------------------------------------------------------------------------------------
# failover


class _Upstream:
    """Hands the shared upstream to one provider stage; remembers what came from upstream."""

    __slots__ = ("error", "last", "pending", "replay", "src")

    def __init__(self, src: AsyncIterator[Any], replay: list[Any]) -> None:
        self.src = src
        self.replay = replay
        self.error: BaseException | None = None
        self.last: list[Any] = []
        self.pending = False  # an item was pulled and nothing was yielded since

    def __aiter__(self) -> _Upstream:
        return self

    async def __anext__(self) -> Any:
        if self.replay:
            item = self.replay.pop(0)
        else:
            try:
                item = await self.src.__anext__()
            except StopAsyncIteration:
                raise
            except BaseException as exc:
                self.error = exc
                raise
        self.last = [item]
        self.pending = True
        return item


def _caused_by(exc: BaseException | None, origin: BaseException) -> bool:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if exc is origin:
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


async def _failover(
    source: AsyncIterable[A], /, *, stages: tuple[Stage[A, B], ...], announce: bool
) -> AsyncIterator[B | Switched]:
    src = aiter(source)
    replay: list[Any] = []
    index = 0
    while True:
        upstream = _Upstream(src, replay)
        outputs = stages[index](upstream).open()
        async with outputs as items:
            while True:
                try:
                    out = await anext(items)
                except StopAsyncIteration:
                    return
                except Exception as exc:
                    if upstream.error is not None and _caused_by(exc, upstream.error):
                        raise  # an error passing through, not the provider's own
                    if index + 1 >= len(stages):
                        raise
                    failed = exc
                    break
                upstream.pending = False
                yield out
        # the item the failed stage was working on is replayed, unless it already yielded for it
        replay = upstream.last if upstream.pending else []
        if announce:
            yield Switched(stages[index].name, stages[index + 1].name, str(failed))
        index += 1


def failover(*stages: Stage[A, B], announce: bool = True) -> Stage[A, B | Switched]:
    """Run the first stage; if *it* fails, continue the stream with the next one.

    Only an error raised by the active stage itself causes a switch: an error that merely passes
    through it from upstream is re-raised as is. On a switch, the item the failed stage was working
    on is given to the next stage again if the failed one had yielded nothing for it yet (so a
    sentence is not spoken twice), and a :class:`~voicekit.events.Switched` event is yielded
    (``announce=False`` to leave it out). When the last stage fails, its error is raised.
    """
    if not stages:
        raise ValueError("failover() needs at least one stage")
    for candidate in stages:
        if not isinstance(candidate, Stage):
            raise TypeError(f"failover() takes Stages, got {type(candidate).__name__}")
    name = f"failover({', '.join(s.name for s in stages)})"
    return Stage.of(_failover, name, stages=tuple(stages), announce=announce)
