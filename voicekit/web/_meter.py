"""A stage after the agent that measures each turn, for the page's latency bar."""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

from .._metrics import TurnMetrics, turn_metrics
from ..events import AudioChunk, ReplyStarted, SessionUpdated
from ..ops import Stage


async def _meter(
    source: AsyncIterable[Any], /, *, clock: Callable[[], float]
) -> AsyncIterator[Any]:
    seen: list[tuple[float, Any]] = []
    replies = 0  # replies to a user turn seen so far
    measured = 0  # of those, how many have been measured
    for_turn = False
    final: TurnMetrics | None = None  # ours, held one item: the agent may send its own
    async for item in source:
        if final is not None:
            if not isinstance(item, TurnMetrics):  # the agent measures nothing: ours then
                yield final
            final = None  # (an agent's TurnMetrics knows more: the LLM's tokens, tools)
        now = clock()
        seen.append((now, item))
        if isinstance(item, AudioChunk):
            if for_turn and measured < replies:
                yield item
                measured = replies
                yield turn_metrics(seen)
                continue
        else:
            if isinstance(item, ReplyStarted):
                for_turn = item.turn is not None
                replies += for_turn
            elif isinstance(item, SessionUpdated) and for_turn and measured == replies:
                yield item
                final = turn_metrics(seen)  # again, with the reply's end
                seen = seen[-1:]
                for_turn = False
                continue
        yield item
    if final is not None:
        yield final


def turn_meter(clock: Callable[[], float] = time.monotonic) -> Stage[Any, Any]:
    """Pass every item on, and after the first audio of each reply to a user turn (and again
    after its ``SessionUpdated``) a :class:`~voicekit._metrics.TurnMetrics` of that turn, as
    seen here (put it right after the agent). After the ``SessionUpdated``, an agent built with
    ``metrics=True`` sends its own, which knows more (the LLM's first token, tokens, tools):
    that one is passed on in place of the meter's. The ``/ws`` route sends it to a page that asked
    for ``events``.

    >>> import asyncio, numpy as np
    >>> from voicekit.events import *
    >>> items = [SpeechStarted(0.0), SpeechStopped(1.0), TurnEnded("hi", 1.0),
    ...          ReplyStarted("hi", 1.0), AudioChunk(np.zeros(160, np.int16), 16000)]
    >>> out = asyncio.run((items | turn_meter(iter(range(100)).__next__)).list())
    >>> type(out[-1]).__name__, out[-1].text, out[-1].first_audio
    ('TurnMetrics', 'hi', 4.0)
    """
    return Stage.of(_meter, "turn_meter", clock=clock)
