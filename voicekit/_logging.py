"""voicekit's logs: one logger hierarchy, the call on every record of a call, nothing secret.

* Every logger of voicekit is ``voicekit`` or a child of it (``voicekit.agent``,
  ``voicekit.transports``, …): ``logging.getLogger("voicekit")`` sets the level of them all.
* The connection layer binds each call to the tasks that run it (:func:`bind_call`, a context
  variable: every task the call starts inherits it). :class:`CallFilter`, on a handler, gives
  each record a ``call_id`` attribute (``"-"`` outside a call) and renders its message and
  traceback with every remembered key (:func:`voicekit._secrets.redact`), every ``+`` phone
  number and the call's own caller and callee replaced (a number becomes ``<sha256:…>``, the
  same hash as :attr:`voicekit.Session.caller_hash`, so a caller can still be followed).
* :class:`JsonFormatter` writes one JSON object per line; :func:`log_config` is the
  :func:`logging.config.dictConfig` of ``voicekit serve`` (``--log-format text|json``).

>>> import logging, io
>>> out = io.StringIO()
>>> handler = logging.StreamHandler(out)
>>> handler.addFilter(CallFilter())
>>> handler.setFormatter(logging.Formatter("[%(call_id)s] %(message)s"))
>>> log = logging.getLogger("voicekit.doctest")
>>> log.addHandler(handler)
>>> with call_scope("CA42", "+15550001111"):
...     log.warning("caller %s said hello", "+15550001111")
>>> log.removeHandler(handler)
>>> out.getvalue()
'[CA42] caller <sha256:7a8e1bad42416f9a> said hello\\n'
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ._secrets import redact
from .session import hash_caller

__all__ = [
    "FORMATS",
    "LOGGER",
    "TEXT_FORMAT",
    "CallFilter",
    "JsonFormatter",
    "bind_call",
    "call_scope",
    "current_call_id",
    "log_config",
    "scrub",
    "unbind_call",
]

LOGGER = "voicekit"
"""The root of voicekit's loggers."""
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(call_id)s] %(message)s"
"""The line of ``--log-format text``."""

# a "+" (or "%2B", form-encoded as carriers post it) and 7 to 15 digits, with up to two spaces,
# dots, dashes or brackets between two digits
_PHONE = re.compile(r"(?:\+|%2[Bb])\d(?:[ .\-()]{0,2}\d){6,14}(?!\d)")
# credentials that were never remembered: "Bearer …", "sk-…" keys, "token=…" in a query
_SHAPES = re.compile(
    r"(?i)(?P<scheme>\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{8,}"
    r"|\bsk-[A-Za-z0-9_-]{16,}"
    r"|(?P<name>\b(?:api[_-]?key|access[_-]?token|token|secret|password|signature)=)[^&\s\"']+"
)


@dataclass(frozen=True, slots=True)
class _Call:
    call_id: str
    numbers: tuple[str, ...]


_current: contextvars.ContextVar[_Call | None] = contextvars.ContextVar(
    "voicekit_call", default=None
)


def bind_call(call_id: str, *numbers: str | None) -> contextvars.Token[_Call | None]:
    """From now on, in this task and the tasks it starts, log records name call ``call_id``
    and hide ``numbers`` (the caller's and callee's, as the carrier gave them). Returns the
    token to undo it with :func:`unbind_call`."""
    kept = tuple(n for n in numbers if n and n.strip())
    return _current.set(_Call(str(call_id), kept))


def unbind_call(token: contextvars.Token[_Call | None]) -> None:
    """Undo a :func:`bind_call`."""
    _current.reset(token)


@contextlib.contextmanager
def call_scope(call_id: str, *numbers: str | None) -> Iterator[None]:
    """:func:`bind_call` for the length of a ``with`` block."""
    token = bind_call(call_id, *numbers)
    try:
        yield
    finally:
        unbind_call(token)


def current_call_id() -> str | None:
    """The id of the call bound to this task (None outside a call)."""
    bound = _current.get()
    return bound.call_id if bound is not None else None


def _mask_phone(match: re.Match[str]) -> str:
    number = match.group(0)
    digits = re.sub(r"\D", "", number[3:] if number.startswith("%") else number)
    return f"<sha256:{hash_caller('+' + digits)}>"


def _mask_shape(match: re.Match[str]) -> str:
    prefix = match.group("scheme") or match.group("name") or "sk-"
    return prefix + "***"


def scrub(text: str, numbers: tuple[str, ...] = ()) -> str:
    """``text`` without keys and phone numbers: remembered secrets and credential-shaped
    strings become ``***``, ``numbers`` and ``+`` numbers (also ``%2B``-encoded) ``<sha256:…>``
    (the hash of the number as ``+`` and its digits: E.164, as carriers give it).

    >>> scrub("From=+1 555 000 1111&Authorization: Bearer abcdefghij12")
    'From=<sha256:7a8e1bad42416f9a>&Authorization: Bearer ***'
    """
    text = redact(text)
    for number in sorted(numbers, key=len, reverse=True):
        if number in text:
            text = text.replace(number, f"<sha256:{hash_caller(number)}>")
    if "+" in text or "%2" in text:
        text = _PHONE.sub(_mask_phone, text)
    return _SHAPES.sub(_mask_shape, text)


class CallFilter(logging.Filter):
    """Put it on a handler: each record gets ``call_id`` (the bound call's, ``"-"`` outside
    one) and its message, arguments and traceback are scrubbed (:func:`scrub`). It never drops
    a record. A record of ``uvicorn.access`` keeps its arguments (its formatter reads them),
    each scrubbed."""

    def filter(self, record: logging.LogRecord) -> bool:
        bound = _current.get()
        if bound is not None:
            record.__dict__["call_id"] = bound.call_id
        elif not getattr(record, "call_id", None):
            record.__dict__["call_id"] = "-"
        numbers = bound.numbers if bound is not None else ()
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            record.args = tuple(scrub(a, numbers) if isinstance(a, str) else a
                                for a in record.args)
        else:
            try:
                message = record.getMessage()
            except Exception:  # a bad format string: keep what there is, scrubbed
                message = f"{record.msg!r} % {record.args!r}"
            record.msg, record.args = scrub(message, numbers), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text, numbers)
            record.exc_info = None  # the formatters print exc_text; the raw one may hold keys
        if record.stack_info:
            record.stack_info = scrub(record.stack_info, numbers)
        return True


_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "call_id", "color_message", "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
    ``call_id`` (null outside a call), ``message``, ``exception`` when there is one, and the
    record's extra fields (``logger.info(..., extra={"turn": {...}})``). Strings are scrubbed
    again here (:func:`scrub`), so a record that bypassed :class:`CallFilter` is clean too.

    >>> record = logging.LogRecord("voicekit.x", logging.INFO, "", 0, "hi %s", ("+15550001111",),
    ...                            None)
    >>> record.created = 0.0
    >>> JsonFormatter().format(record)
    '{"time": "1970-01-01T00:00:00.000Z", "level": "INFO", "logger": "voicekit.x", \
"call_id": null, "message": "hi <sha256:7a8e1bad42416f9a>"}'
    """

    def format(self, record: logging.LogRecord) -> str:
        bound = _current.get()
        numbers = bound.numbers if bound is not None else ()
        call_id = getattr(record, "call_id", None)
        if not call_id or call_id == "-":
            call_id = bound.call_id if bound is not None else None
        seconds = time.gmtime(record.created)
        millis = int(record.created * 1000) % 1000
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{millis:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "call_id": call_id,
            "message": scrub(record.getMessage(), numbers),
        }
        trace = record.exc_text
        if record.exc_info and not trace:
            trace = self.formatException(record.exc_info)
        if trace:
            entry["exception"] = scrub(trace, numbers)
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in entry:
                entry[key] = _clean(value, numbers)
        return json.dumps(entry, ensure_ascii=False, default=lambda v: scrub(str(v), numbers))


def _clean(value: Any, numbers: tuple[str, ...]) -> Any:
    """A JSON-ready copy of an extra field, its strings scrubbed."""
    if isinstance(value, str):
        return scrub(value, numbers)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {str(k): _clean(v, numbers) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v, numbers) for v in value]
    return scrub(str(value), numbers)


FORMATS = ("text", "json")


def log_config(
    log_format: str = "text", level: str = "INFO", *, base: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` for a server: voicekit's records go to stderr
    through :class:`CallFilter`, as text lines (:data:`TEXT_FORMAT`) or JSON lines.

    ``base`` is another configuration to extend (uvicorn's ``LOGGING_CONFIG``): with
    ``"json"`` its loggers are sent to the same JSON handler (one format for the whole
    process), with ``"text"`` they keep their own handlers.

    >>> config = log_config("json")
    >>> config["loggers"]["voicekit"]["handlers"], config["handlers"]["voicekit"]["formatter"]
    (['voicekit'], 'json')
    """
    if log_format not in FORMATS:
        raise ValueError(f"log_config: log_format must be one of {', '.join(FORMATS)}, "
                         f"got {log_format!r}")
    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {},
        "formatters": {},
        "handlers": {},
        "loggers": {},
    }
    if base is not None:
        for key, value in base.items():
            config[key] = dict(value) if isinstance(value, dict) else value
        for key in ("filters", "formatters", "handlers", "loggers"):
            config.setdefault(key, {})
    config["filters"]["voicekit_call"] = {"()": f"{__name__}.CallFilter"}
    config["formatters"]["voicekit_text"] = {"format": TEXT_FORMAT}
    config["formatters"]["json"] = {"()": f"{__name__}.JsonFormatter"}
    handler = {
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
        "formatter": "json" if log_format == "json" else "voicekit_text",
        "filters": ["voicekit_call"],
    }
    config["handlers"]["voicekit"] = handler
    config["loggers"][LOGGER] = {"handlers": ["voicekit"], "level": level, "propagate": False}
    if log_format == "json":
        for name, logger in list(config["loggers"].items()):
            if name != LOGGER:
                kept = dict(logger)
                kept["handlers"] = ["voicekit"] if logger.get("handlers") else []
                config["loggers"][name] = kept
        config["root"] = {"handlers": ["voicekit"], "level": "WARNING"}
    return config
