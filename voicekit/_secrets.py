"""Keeping secrets out of what voicekit shows: messages, reprs and log records.

Every :class:`~voicekit.llm.Endpoint` remembers its own secrets (its API key, the password or
token in a ``user:pass@`` URL) when it is made; :func:`redact` replaces each remembered secret
with ``***`` in any text. voicekit applies it to every :class:`~voicekit.ProviderError` message
(so an error body that echoes the key, ``ReplyFailed.error``, the agent's log line and the
CLI's output are clean) and to the records of the loggers it hands to other libraries (the
WebSocket handshake logs its request headers at DEBUG). Secrets shorter than
:data:`MIN_SECRET` characters are not remembered: replacing a one-letter test key everywhere
would garble messages and protects nothing.

>>> remember("sk-test-0123456789")
>>> redact("the server said: bad key sk-test-0123456789")
'the server said: bad key ***'
>>> redact_url("https://me:hunter2hunter2@gw.example/v1")
'https://***@gw.example/v1'
"""

from __future__ import annotations

import logging
import re
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["MIN_SECRET", "RedactingLogger", "redact", "redact_url", "remember"]

MIN_SECRET = 6
"""Secrets shorter than this are not remembered (see the module docstring)."""

_known: set[str] = set()
_pattern: re.Pattern[str] | None = None
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def remember(*secrets: str | None) -> None:
    """Add ``secrets`` to what :func:`redact` hides (process-wide; idempotent)."""
    global _pattern
    new = {s for s in secrets if s and len(s) >= MIN_SECRET and s not in _known}
    if new:
        _known.update(new)
        ordered = sorted(_known, key=len, reverse=True)  # the longest first: no partial hits
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def redact_url(url: str) -> str:
    """``url`` without the ``user:pass@`` part (shown as ``***@``)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc="***@" + host))


def redact(text: str) -> str:
    """``text`` with every remembered secret, and any URL userinfo, replaced by ``***``."""
    if _pattern is not None:
        text = _pattern.sub("***", text)
    return _USERINFO.sub("***@", text) if "@" in text else text


class RedactingLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger to give other libraries (``websockets``): each record's text is redacted."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, {})

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return msg, kwargs

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            kwargs.setdefault("stacklevel", 2)
            self.logger.log(level, "%s", redact(text), **kwargs)
