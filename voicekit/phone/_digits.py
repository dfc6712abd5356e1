"""The keypad: the caller's key presses (``Dtmf``) collected into one entry.

:func:`collect_digits` is a stage for the inbound side, after the turn detector and before the
agent: it gathers the :class:`~voicekit.Dtmf` events of one entry and, when the entry ends, yields
a :class:`Digits` value and (unless ``text=None``) a user turn the agent answers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from .._errors import ConfigError
from ..events import AudioChunk, CallEnded, Dtmf, TurnEnded, TurnStarted
from ..ops import Stage

__all__ = ["DEFAULT_TEXT", "KEYS", "Digits", "collect_digits"]

_log = logging.getLogger("voicekit.phone")

KEYS = frozenset("0123456789*#ABCD")
"""The keypad keys a :class:`~voicekit.Dtmf` may name."""

DEFAULT_TEXT = "The caller pressed {digits}."
"""The user turn of an entry; ``{digits}`` is :attr:`Digits.spoken`, ``{count}`` the length."""

_MASK = "•"


@dataclass(frozen=True, slots=True, repr=False)
class Digits:
    """One keypad entry: ``value`` (the keys pressed, without the end key), what ended it
    (``ended_by``: ``"end"`` — the end key —, ``"count"``, ``"timeout"`` or ``"call_ended"``) and
    when (``t``, stream time).

    A ``sensitive`` entry (a card number, a PIN) shows only :attr:`shown` — every key masked but
    the last ``reveal_last`` — in its repr, its ``str`` and its :attr:`spoken` form; only
    ``value`` holds the keys in clear, for the code that needs them.

    >>> Digits("4111111111111111", "count", 9.5, sensitive=True, reveal_last=4)
    Digits('••••••••••••1111', ended_by='count', t=9.5, sensitive=True)
    >>> Digits("1234").spoken
    '1 2 3 4'
    """

    value: str
    ended_by: str = "end"
    t: float = 0.0
    sensitive: bool = False
    reveal_last: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.value, str) or any(key not in KEYS for key in self.value):
            raise ConfigError("Digits: value must hold keypad keys only (0-9, *, #, A-D)")
        keep = self.reveal_last
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise ConfigError(f"Digits: reveal_last must be an int ≥ 0, got {keep!r}")

    @property
    def shown(self) -> str:
        """The keys as they may be shown: ``value``, or masked when sensitive."""
        if not self.sensitive:
            return self.value
        keep = min(self.reveal_last, len(self.value))
        return _MASK * (len(self.value) - keep) + (self.value[len(self.value) - keep :])

    @property
    def spoken(self) -> str:
        """The keys for a sentence: ``"1 2 3 4"``; when sensitive ``"16 hidden digits"`` (or
        ``"16 hidden digits ending in 1 1 1 1"`` with ``reveal_last``)."""
        if not self.value:
            return "no keys"
        if not self.sensitive:
            return " ".join(self.value)
        keep = min(self.reveal_last, len(self.value))
        what = f"{len(self.value)} hidden {'key' if len(self.value) == 1 else 'keys'}"
        if keep:
            what += " ending in " + " ".join(self.value[len(self.value) - keep :])
        return what

    def __str__(self) -> str:
        return self.shown

    def __repr__(self) -> str:
        return (
            f"Digits({self.shown!r}, ended_by={self.ended_by!r}, t={self.t:g}, "
            f"sensitive={self.sensitive})"
        )


def _time_of(item: Any) -> float | None:
    """The stream time ``item`` says it is (an audio chunk: its end)."""
    t: Any = item.end if isinstance(item, AudioChunk) else getattr(item, "t", None)
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
        return None
    return float(t)


def _check(
    end: str | None,
    count: int | None,
    gap: float | None,
    reveal_last: int,
    text: str | Callable[[Digits], str] | None,
) -> None:
    if end is not None and (not isinstance(end, str) or end not in KEYS or len(end) != 1):
        raise ConfigError(f"collect_digits: end must be one keypad key or None, got {end!r}")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ConfigError(f"collect_digits: count must be an int ≥ 1 or None, got {count!r}")
    if gap is not None and (
        isinstance(gap, bool)
        or not isinstance(gap, int | float)
        or not math.isfinite(gap)
        or gap <= 0
    ):
        raise ConfigError(
            f"collect_digits: gap must be a positive number of seconds or None, got {gap!r}"
        )
    if isinstance(reveal_last, bool) or not isinstance(reveal_last, int) or reveal_last < 0:
        raise ConfigError(f"collect_digits: reveal_last must be an int ≥ 0, got {reveal_last!r}")
    if text is not None and not isinstance(text, str) and not callable(text):
        raise ConfigError(f"collect_digits: text must be a str, a function or None, got {text!r}")
    if end is None and count is None and gap is None:
        raise ConfigError("collect_digits: give at least one of end, count and gap")


def collect_digits(
    *,
    end: str | None = "#",
    count: int | None = None,
    gap: float | None = 3.0,
    sensitive: bool = False,
    reveal_last: int = 0,
    text: str | Callable[[Digits], str] | None = DEFAULT_TEXT,
) -> Stage[Any, Any]:
    """A stage that collects the caller's key presses into entries; pass everything else on in its place.

    An entry ends on the ``end`` key (``"#"``; not part of the value), after ``count`` keys, or
    ``gap`` seconds (the inter-digit timeout) of *stream time* after its last key (the time the
    stream's audio and events carry, so a test feeding it faster than real time gets the same
    result; a stream with no audio has no clock between key presses, and only the end key, the
    count, the call's end or the stream's end close an entry). Then comes a :class:`Digits` value and — unless
    ``text`` is None — ``TurnStarted`` (at the first key) and ``TurnEnded`` with ``text``
    formatted (``{digits}``: :attr:`Digits.spoken`, ``{count}``; or a function of the
    ``Digits``), which the agent answers like speech (a reply in progress is interrupted, as by
    words). An entry cut short by ``CallEnded`` or the end of the stream gives its ``Digits``
    with ``ended_by="call_ended"`` and no turn.

    ``sensitive=True`` (a card number, a PIN): the ``Dtmf`` events are consumed, not passed on,
    so no later stage, transport or log sees the keys; the ``Digits`` value shows them masked
    (all but the last ``reveal_last``) in its repr and ``str``, and so does the user turn, which
    is what the agent records in the Session and sends to the LLM. Only ``Digits.value`` holds
    the keys: a stage after the agent, or your own code, hands it to what needs it. Otherwise
    the ``Dtmf`` events pass on in their place, before the entry they end.

    >>> import asyncio
    >>> keys = [Dtmf("1", 1.0), Dtmf("2", 1.5), Dtmf("#", 2.0)]
    >>> asyncio.run((keys | collect_digits(sensitive=True)).list())[-3:]
    [Digits('••', ended_by='end', t=2, sensitive=True), TurnStarted(t=1.0), TurnEnded(text='The caller pressed 2 hidden keys.', t=2.0)]
    """  # noqa: E501
    _check(end, count, gap, reveal_last, text)
    return Stage.of(
        _collect, "collect_digits", end=end, count=count, gap=gap, sensitive=bool(sensitive),
        reveal_last=reveal_last, text=text,
    )


async def _collect(
    source: AsyncIterable[Any],
    /,
    *,
    end: str | None,
    count: int | None,
    gap: float | None,
    sensitive: bool,
    reveal_last: int,
    text: str | Callable[[Digits], str] | None,
) -> AsyncIterator[Any]:
    keys: list[str] = []
    first = last = 0.0

    def finish(ended_by: str, t: float) -> list[Any]:
        digits = Digits("".join(keys), ended_by, t, sensitive, reveal_last)
        keys.clear()
        _log.debug("keypad entry %r", digits)
        if text is None or ended_by == "call_ended":
            return [digits]
        said = text(digits) if callable(text) else text.format(
            digits=digits.spoken, count=len(digits.value)
        )
        return [digits, TurnStarted(first), TurnEnded(said, t)]

    async for item in source:
        t = _time_of(item)
        if keys and gap is not None and t is not None and t >= last + gap:
            for out in finish("timeout", last + gap):
                yield out
        if isinstance(item, Dtmf):
            if not sensitive:
                yield item
            if item.digit == end:
                if not keys:
                    first = item.t
                for out in finish("end", item.t):
                    yield out
                continue
            if not keys:
                first = item.t
            keys.append(item.digit)
            last = item.t
            if count is not None and len(keys) >= count:
                for out in finish("count", item.t):
                    yield out
            continue
        if isinstance(item, CallEnded) and keys:
            for out in finish("call_ended", last):
                yield out
        yield item
    if keys:
        for out in finish("call_ended", last):
            yield out
