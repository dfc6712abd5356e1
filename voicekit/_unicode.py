"""Text that is valid Unicode, and text a speech synthesiser can take.

LLM streams can split a character that is outside the Basic Multilingual Plane (an emoji) across
two chunks as a pair of JSON ``\\ud83d`` + ``\\ude00`` escapes; decoded one chunk at a time they
are two *lone surrogates*, which no UTF-8 encoder accepts. Text entering a Session, an HTTP body or
a TTS goes through :func:`valid_unicode` first.

>>> valid_unicode("smile \\ud83d\\ude00") == "smile \\U0001f600"
True
>>> valid_unicode("lone \\ud83d here")
'lone \\ufffd here'
>>> speakable("a\\x00b\\x07c\\nd")
'abc\\nd'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ._frozen import FrozenDict

__all__ = ["frozen_valid", "speakable", "split_trailing_surrogate", "valid_unicode"]

_SURROGATE = re.compile("[\ud800-\udfff]")
_UNSPEAKABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SCALARS = (type(None), bool, int, float)


def valid_unicode(text: str) -> str:
    """``text`` with surrogate pairs joined into their character and lone surrogates replaced
    by U+FFFD (the replacement character). Valid text is returned as it is."""
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def split_trailing_surrogate(text: str) -> tuple[str, str]:
    """``(head, tail)`` where ``tail`` is a trailing *high* surrogate that the next chunk of a
    stream may complete (``""`` if there is none). For joining streamed text.

    >>> split_trailing_surrogate("ok \\ud83d")
    ('ok ', '\\ud83d')
    >>> split_trailing_surrogate("ok")
    ('ok', '')
    """
    if text and "\ud800" <= text[-1] <= "\udbff":
        return text[:-1], text[-1]
    return text, ""


def speakable(text: str) -> str:
    """Valid Unicode without NUL and the other control characters (tab, newline and carriage
    return stay): what a TTS engine is given."""
    return _UNSPEAKABLE.sub("", valid_unicode(text))


def frozen_valid(value: Any) -> Any:
    """A deeply immutable copy of a JSON-like value whose strings (keys too) are all
    :func:`valid_unicode`: mappings become FrozenDicts, lists and tuples become tuples.

    One pass does both, so text entering a Session or a request body is frozen and made valid
    at once.

    >>> frozen = frozen_valid({"content": ["a\\ud83d\\ude00", "b\\udc00"]})
    >>> frozen["content"] == ("a\\U0001f600", "b\\ufffd"), type(frozen).__name__
    (True, 'FrozenDict')
    """
    kind = type(value)
    if kind is str:
        return value if value.isascii() else valid_unicode(value)
    if kind is dict or kind is FrozenDict or isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():  # leaves inline: this runs over whole conversations
            if type(key) is not str:
                key = str(key)
            elif not key.isascii():
                key = valid_unicode(key)
            item_kind = type(item)
            if item_kind is str:
                out[key] = item if item.isascii() else valid_unicode(item)
            elif item_kind in _SCALARS:
                out[key] = item
            else:
                out[key] = frozen_valid(item)
        return FrozenDict(out)
    if kind is list or kind is tuple or isinstance(value, list | tuple):
        return tuple([frozen_valid(item) for item in value])
    if isinstance(value, str):
        return valid_unicode(str(value))
    return value
