"""Deeply immutable JSON-like values: dicts that refuse mutation, lists turned into tuples."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

__all__ = ["FrozenDict", "freeze", "thaw"]


class FrozenDict(dict[str, Any]):
    """A dict that cannot be changed after it is made. It still *is* a dict, so ``json.dumps``
    and every API that wants a mapping accept it.

    >>> d = FrozenDict(role="user", content="hi")
    >>> d["content"] = "bye"
    Traceback (most recent call last):
    ...
    TypeError: FrozenDict is immutable; build a new value instead
    """

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("FrozenDict is immutable; build a new value instead")

    __setitem__ = __delitem__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse
    __ior__ = _refuse

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted((k, _hashable(v)) for k, v in self.items())))

    def __repr__(self) -> str:
        return f"FrozenDict({dict.__repr__(self)})"

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenDict:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))


_SCALARS = (type(None), bool, int, float)


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    return value


def freeze(value: Any) -> Any:
    """Return a deeply immutable copy: mappings become FrozenDicts, lists become tuples.

    >>> freeze({"a": [1, {"b": 2}]})
    FrozenDict({'a': (1, FrozenDict({'b': 2}))})
    """
    if isinstance(value, FrozenDict):
        return value
    if isinstance(value, Mapping):
        return FrozenDict({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Return a plain, mutable copy: dicts and lists all the way down.

    >>> thaw(freeze({"a": (1, {"b": 2})}))
    {'a': [1, {'b': 2}]}
    """
    if isinstance(value, dict | Mapping):
        out = {}
        for key, item in value.items():  # leaves inline: this runs over whole conversations
            kind = type(item)
            out[key] = item if kind is str or kind in _SCALARS else thaw(item)
        return out
    if isinstance(value, list | tuple):
        return [thaw(v) for v in value]
    return value
