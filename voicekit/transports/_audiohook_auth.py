"""AudioHook's handshake authentication: the ``X-API-KEY`` header and the HTTP message signature
(RFC 9421 style, as Genesys signs it) of the WebSocket upgrade request.

Genesys signs with label ``sig1``, algorithm ``hmac-sha256`` keyed with the base64-decoded client
secret, over ``@request-target``, ``@authority``, ``audiohook-organization-id``,
``audiohook-session-id``, ``audiohook-correlation-id`` and ``x-api-key``; the parameters are
``keyid`` (the API key), ``nonce``, ``alg``, ``created`` and ``expires``. The signed text is one
line per covered component, ``"<name>": <value>``, then
``"@signature-params": <the Signature-Input member as sent>``.

>>> keys = parse_keys("k1:c2VjcmV0")
>>> keys["k1"]
b'secret'
>>> parse_keys("k1:not base64!")
Traceback (most recent call last):
...
voicekit._errors.ConfigError: VOICEKIT_AUDIOHOOK_KEYS: the client secret of a key is not base64
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from .._errors import ConfigError

__all__ = ["REQUIRED", "Nonces", "parse_keys", "signature_base", "verify_handshake"]

REQUIRED = (
    "@request-target",
    "@authority",
    "audiohook-organization-id",
    "audiohook-session-id",
    "audiohook-correlation-id",
    "x-api-key",
)
"""The components a signature must cover."""
LABEL = "sig1"
SKEW = 3.0  # seconds of clock difference tolerated on created/expires
_MEMBER = re.compile(r'\s*([a-z*][a-z0-9_.*-]*)=(.*)')
_COMPONENT = re.compile(r'"([^"\\]*)"')
_PARAM = re.compile(r';([a-z*][a-z0-9_.*-]*)=("(?:[^"\\]|\\.)*"|-?\d+)')


def parse_keys(text: str) -> dict[str, bytes | None]:
    """``"apikey:base64secret,other:"`` -> ``{api key: secret bytes or None (unsigned)}``."""
    keys: dict[str, bytes | None] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key, _, secret = item.partition(":")
        if not key:
            raise ConfigError("VOICEKIT_AUDIOHOOK_KEYS: an entry has no API key")
        if not secret:
            keys[key] = None
            continue
        try:
            keys[key] = base64.b64decode(secret, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(
                "VOICEKIT_AUDIOHOOK_KEYS: the client secret of a key is not base64"
            ) from None
    return keys


@dataclass(slots=True)
class Nonces:
    """Nonces seen in the last ``ttl`` seconds: a replayed signature is refused."""

    ttl: float = 600.0
    seen: dict[str, float] = field(default_factory=dict)

    def fresh(self, nonce: str, now: float) -> bool:
        """True (and remembered) when ``nonce`` was not seen within ``ttl``."""
        for old in [n for n, t in self.seen.items() if now - t > self.ttl]:
            del self.seen[old]
        if nonce in self.seen:
            return False
        self.seen[nonce] = now
        return True


def _dictionary(value: str) -> dict[str, str]:
    """A structured-field dictionary, shallowly: label -> raw member value."""
    members: dict[str, str] = {}
    depth, start, quoted = 0, 0, False
    parts: list[str] = []
    for i, ch in enumerate(value):
        if ch == '"' and (i == 0 or value[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and depth == 0 and ch == ",":
            parts.append(value[start:i])
            start = i + 1
    parts.append(value[start:])
    for part in parts:
        match = _MEMBER.fullmatch(part.strip())
        if match:
            members[match.group(1)] = match.group(2).strip()
    return members


def signature_base(
    components: list[str], values: Mapping[str, str], params: str
) -> str:
    """The signed text: ``"name": value`` per component, then ``"@signature-params"``."""
    lines = [f'"{name}": {values[name]}' for name in components]
    lines.append(f'"@signature-params": {params}')
    return "\n".join(lines)


def verify_handshake(
    headers: Mapping[str, str],
    *,
    target: str,
    authority: str,
    keys: Mapping[str, bytes | None],
    nonces: Nonces,
    now: float | None = None,
    max_age: float = 300.0,
    organizations: frozenset[str] = frozenset(),
) -> str:
    """Check an upgrade request's API key and signature; return ``""`` when it passes, else
    the reason (never containing the key or the secret). ``headers`` are lower-case names;
    ``target`` is the path and query, ``authority`` the Host."""
    now = time.time() if now is None else now
    api_key = headers.get("x-api-key", "")
    if not api_key or api_key not in keys:
        return "unknown or missing X-API-KEY"
    for name in ("audiohook-organization-id", "audiohook-session-id",
                 "audiohook-correlation-id"):
        if not headers.get(name):
            return f"missing {name} header"
    if organizations and headers["audiohook-organization-id"] not in organizations:
        return "organization not allowed"
    secret = keys[api_key]
    given_input, given_signature = headers.get("signature-input"), headers.get("signature")
    if secret is None:
        return ""  # this key has no client secret: unsigned requests are accepted
    if not given_input or not given_signature:
        return "request is not signed"
    member = _dictionary(given_input).get(LABEL)
    sig_member = _dictionary(given_signature).get(LABEL)
    if member is None or sig_member is None:
        return f"no signature labelled {LABEL}"
    if not member.startswith("(") or ")" not in member:
        return "Signature-Input is not an inner list"
    inner, params_text = member[1 : member.index(")")], member[member.index(")") + 1 :]
    components = _COMPONENT.findall(inner)
    if len(components) != len(set(components)):
        return "a component is covered twice"
    params: dict[str, str | int] = {}
    for name, raw in _PARAM.findall(params_text):
        params[name] = raw[1:-1] if raw.startswith('"') else int(raw)
    if _PARAM.sub("", params_text).strip():
        return "Signature-Input parameters are malformed"
    missing = [c for c in REQUIRED if c not in components]
    if missing:
        return f"signature does not cover {', '.join(missing)}"
    if params.get("alg", "hmac-sha256") != "hmac-sha256":
        return "signature algorithm is not hmac-sha256"
    if params.get("keyid") != api_key:
        return "keyid is not the X-API-KEY"
    created, expires, nonce = params.get("created"), params.get("expires"), params.get("nonce")
    if not isinstance(created, int) or not isinstance(expires, int):
        return "signature has no integer created/expires"
    if not isinstance(nonce, str) or not nonce:
        return "signature has no nonce"
    if created > now + SKEW:
        return "signature created in the future"
    if expires < now - SKEW:
        return "signature expired"
    if created + max_age < now - SKEW:
        return "signature too old"
    if not (sig_member.startswith(":") and sig_member.endswith(":") and len(sig_member) > 2):
        return "Signature is not a byte sequence"
    try:
        given = base64.b64decode(sig_member[1:-1], validate=True)
    except (binascii.Error, ValueError):
        return "Signature is not base64"
    values = {"@request-target": target, "@authority": authority}
    for name in components:
        if name.startswith("@"):
            if name not in values:
                return f"unsupported derived component {name}"
        elif name in headers:
            values[name] = headers[name].strip()
        else:
            return f"covered header {name} is missing"
    base = signature_base(components, values, member)
    expected = hmac.new(secret, base.encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, given):
        return "signature does not match"
    if not nonces.fresh(nonce, now):
        return "nonce replayed"
    return ""
