"""Stream tokens: the answer route signs one per call, the media socket checks it on ``start``.

A token is ``"<expiry>.<nonce>.<mac>"``: the HMAC-SHA256, under a server key, of the call id,
the expiry (Unix seconds) and a random nonce. It is good for one call id, until it expires, and
— with a :class:`Spent` set — once.

>>> key = b"k" * 32
>>> token = make_token(key, "CA1", now=1000.0, ttl=60)
>>> check_token(key, token, "CA1", now=1010.0)
>>> check_token(key, token, "CA2", now=1010.0)
Traceback (most recent call last):
...
voicekit._errors.ProtocolError: stream token is not valid for this call
>>> check_token(key, token, "CA1", now=2000.0)
Traceback (most recent call last):
...
voicekit._errors.ProtocolError: stream token has expired
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

from .._errors import ProtocolError

__all__ = ["Spent", "check_token", "derive_key", "make_token"]


def derive_key(secret: str, purpose: str = "voicekit stream token") -> bytes:
    """A token key derived from a carrier secret (so every worker and host agrees on it)."""
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).digest()


def _mac(key: bytes, call_id: str, expiry: int, nonce: str) -> str:
    digest = hmac.new(key, f"{call_id}\n{expiry}\n{nonce}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def make_token(key: bytes, call_id: str, *, now: float | None = None, ttl: float = 300) -> str:
    """A token for ``call_id``, valid ``ttl`` seconds from ``now`` (the clock by default)."""
    expiry = int((time.time() if now is None else now) + ttl)
    nonce = secrets.token_urlsafe(12)
    return f"{expiry}.{nonce}.{_mac(key, call_id, expiry, nonce)}"


def check_token(key: bytes, token: str, call_id: str, *, now: float | None = None) -> None:
    """Raise :class:`~voicekit.ProtocolError` unless ``token`` was made for ``call_id`` with
    ``key`` and has not expired."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3 or not parts[0].isdigit():
        raise ProtocolError("stream token is missing or malformed")
    expiry, nonce, mac = int(parts[0]), parts[1], parts[2]
    if not hmac.compare_digest(_mac(key, call_id, expiry, nonce), mac):
        raise ProtocolError("stream token is not valid for this call")
    if (time.time() if now is None else now) > expiry:
        raise ProtocolError("stream token has expired")


class Spent:
    """The tokens already used, until they expire: a token is accepted once."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def use(self, token: str, *, now: float | None = None) -> None:
        """Record ``token`` as used; raise :class:`~voicekit.ProtocolError` if it already was."""
        clock = time.time() if now is None else now
        self._seen = {t: e for t, e in self._seen.items() if e >= clock}
        if token in self._seen:
            raise ProtocolError("stream token was already used")
        self._seen[token] = int(token.split(".", 1)[0])
