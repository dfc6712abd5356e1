"""Failover between LLM providers, as one LLM function.

:func:`failover` takes several LLMs — :class:`~voicekit.llm.Endpoint` values or LLM functions —
and returns one LLM function. Each call tries the first provider; if *that provider* fails
before it has yielded anything, the call goes on with the next one, and a
:class:`~voicekit.Switched` event is yielded in the stream to say so::

    from voicekit.llm import groq, ollama
    from voicekit.llm import failover

    llm = failover(groq(), ollama())  # use it wherever an LLM function is expected

What switches, and what does not:

* an exception raised by the active provider while the failover waits for its next event
  switches (``when=`` narrows which exceptions do, e.g. only
  :class:`~voicekit.ProviderError`);
* once the provider has yielded anything for this call, its error is re-raised: the text
  already on its way to the user must not be said twice;
* errors that only pass through — thrown into the failover by its consumer, or raised while
  the consumer is being cancelled (a barge-in) — and ``CancelledError`` itself never switch;
* the last provider's error is raised as is.

The function itself keeps no state. Given the conversation's ``session``, it remembers a
provider that failed in the Session instead: it yields a :class:`~voicekit.Continuity` event
(the conversation loop stores it) saying the provider is down for ``cooldown`` seconds, and later
calls with that Session try the healthy providers first — so a dead primary does not cost its
connect timeout on every turn. When every provider is cooling down they are tried in order anyway.

>>> import asyncio
>>> async def down(messages):
...     raise ConnectionError("no route to host")
...     yield
>>> async def backup(messages):
...     yield "Hello from the backup."
>>> async def run():
...     return [e async for e in failover(down, backup)([{"role": "user", "content": "hi"}])]
>>> for event in asyncio.run(run()):
...     print(event)
Switched(from_name='down', to_name='backup', error='ConnectionError: no route to host')
Hello from the backup.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from .._errors import ConfigError
from ..events import Continuity, Switched
from ._chat import chat
from ._signature import call_llm
from .endpoint import Endpoint

__all__ = ["failover", "provider_name"]

_UNSET: Any = object()


def provider_name(llm: Any) -> str:
    """A readable name for an LLM: the endpoint's name, or the function's.

    >>> async def mine(messages):
    ...     yield "hi"
    >>> provider_name(mine)
    'mine'
    """
    if isinstance(llm, Endpoint):
        return llm.name
    if isinstance(llm, functools.partial):
        inner = [a for a in llm.args if isinstance(a, Endpoint)]
        return inner[0].name if inner else provider_name(llm.func)
    return str(getattr(llm, "__name__", None) or type(llm).__name__)


def _as_function(llm: Any) -> Callable[..., Any]:
    if isinstance(llm, Endpoint):
        return functools.partial(chat, llm)
    if callable(llm):
        return llm
    raise ConfigError(
        f"failover(): each provider must be an Endpoint or an LLM function, got {llm!r}"
    )


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def failover(
    *llms: Any,
    when: Callable[[Exception], bool] | None = None,
    announce: bool = True,
    cooldown: float = 30.0,
    clock: Callable[[], float] = time.time,
) -> Callable[..., AsyncIterator[Any]]:
    """One LLM function over several providers, moving on when the active one fails.

    ``llms``: :class:`~voicekit.llm.Endpoint` values or LLM functions, in order of preference.
    ``when(exc)``: whether an error of a provider should switch (default: every
    ``Exception``). ``announce=False`` leaves the :class:`~voicekit.Switched` events out.
    The context values (``tools``, ``session``, ``client``…) given to the failover function
    are handed to each provider that declares them. ``cooldown``: seconds a failed provider is
    tried last in later calls with the same Session (0: never; ``clock`` gives the time, as
    seconds since the epoch). See the module documentation.
    """
    if not llms:
        raise ConfigError("failover() needs at least one LLM")
    if cooldown < 0:
        raise ConfigError(f"cooldown must be >= 0 seconds, got {cooldown!r}")
    providers = [(provider_name(llm), _as_function(llm)) for llm in llms]
    switches = when or (lambda exc: True)
    names = ", ".join(name for name, _ in providers)
    key = f"failover({names})"  # where the Session keeps which providers are cooling down

    def cooling(session: Any) -> dict[str, float]:
        if cooldown <= 0 or session is _UNSET or session is None:
            return {}
        state = session.continuity_for(key)
        return {str(k): float(v) for k, v in (state.get("down_until") or {}).items()}

    async def llm_failover(
        messages: Any,
        /,
        *,
        tools: Any = _UNSET,
        session: Any = _UNSET,
        client: Any = _UNSET,
        system: Any = _UNSET,
        call_id: Any = _UNSET,
        caller: Any = _UNSET,
        callee: Any = _UNSET,
    ) -> AsyncIterator[Any]:
        given = {
            "tools": tools,
            "session": session,
            "client": client,
            "system": system,
            "call_id": call_id,
            "caller": caller,
            "callee": callee,
        }
        context = {k: v for k, v in given.items() if v is not _UNSET}
        down = cooling(session)
        now = clock()
        numbered = [(f"{i}:{name}", name, fn) for i, (name, fn) in enumerate(providers)]
        healthy = [p for p in numbered if down.get(p[0], 0.0) <= now]
        order = healthy + [p for p in numbered if p not in healthy]
        last = len(order) - 1
        for index, (slot, name, fn) in enumerate(order):
            failed: Exception | None = None
            stream: Any = None
            yielded = False
            try:
                try:
                    stream = call_llm(fn, messages, context=context)
                except Exception as exc:  # a provider that cannot even be called
                    if index == last or not switches(exc):
                        raise
                    failed = exc
                while failed is None:
                    try:
                        event = await anext(stream)
                    except StopAsyncIteration:
                        if slot in down:  # it answered again: no longer cooling down
                            del down[slot]
                            yield Continuity(key, {"down_until": down} if down else None)
                        return
                    except Exception as exc:
                        if yielded or index == last or _being_cancelled() or not switches(exc):
                            raise
                        failed = exc
                        break
                    yielded = True
                    yield event  # what is thrown in here passes through: never a switch
            finally:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()
            if cooldown > 0 and session is not _UNSET and session is not None:
                down[slot] = clock() + cooldown
                yield Continuity(key, {"down_until": dict(down)})
            if announce:
                error = f"{type(failed).__name__}: {failed}"
                yield Switched(name, order[index + 1][1], error)

    llm_failover.__name__ = llm_failover.__qualname__ = f"failover({names})"
    return llm_failover
