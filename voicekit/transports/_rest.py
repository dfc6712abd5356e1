"""The carriers' REST APIs, as values: where to send (:class:`CarrierApi`), what to send
(:class:`RestRequest`, built by pure functions in :mod:`._control` and :mod:`voicekit.serve._dial`)
and one function that sends it (:func:`send`).

The seam for tests is :class:`CarrierApi`: its ``base_url`` (a local fake on 127.0.0.1) and
``transport`` (an ``httpx`` transport) replace the carrier's. Credentials come from the
environment (:func:`api_from_env`) and are never shown: ``repr`` hides them, and they are
remembered by :mod:`voicekit._secrets` so no message carries them.

>>> api = CarrierApi("twilio", account="AC123", secret="s3cr3t-token")
>>> api
CarrierApi('twilio', base_url='https://api.twilio.com', account='AC123')
>>> api.url(RestRequest("POST", "/2010-04-01/Accounts/AC123/Calls.json"))
'https://api.twilio.com/2010-04-01/Accounts/AC123/Calls.json'
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from .._errors import ConfigError, ProviderConnectError, ProviderStatusError, ProviderTimeout
from .._frozen import FrozenDict
from .._http import _default_ssl
from .._secrets import remember

__all__ = [
    "BASE_URLS",
    "ENV",
    "CarrierApi",
    "Reply",
    "RestRequest",
    "api_from_env",
    "send",
    "status_error",
]

BASE_URLS = {
    "twilio": "https://api.twilio.com",
    "telnyx": "https://api.telnyx.com",
    "plivo": "https://api.plivo.com",
}
"""Each carrier's REST API (``VOICEKIT_<CARRIER>_API_URL`` overrides it, for a local fake)."""

ENV = {
    "twilio": ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"),
    "telnyx": ("", "TELNYX_API_KEY"),
    "plivo": ("PLIVO_AUTH_ID", "PLIVO_AUTH_TOKEN"),
}
"""The environment variables of each carrier's REST credentials: (account, secret)."""


@dataclass(frozen=True, slots=True)
class RestRequest:
    """One REST call: ``method``, ``path`` (below the API's base URL), and a ``form`` (Twilio)
    or a ``json`` body (Telnyx, Plivo). ``action`` names it in errors (``"hangup"``)."""

    method: str
    path: str
    form: Mapping[str, str] | None = None
    json: Mapping[str, Any] | None = None
    action: str = ""


@dataclass(frozen=True, slots=True)
class Reply:
    """A carrier's answer: ``status`` and the JSON ``body`` (``{}`` when there is none)."""

    status: int
    body: Mapping[str, Any] = field(default_factory=FrozenDict)


@dataclass(frozen=True, slots=True)
class CarrierApi:
    """Where and how to reach one carrier's REST API. ``carrier``: ``"twilio"``, ``"telnyx"``
    or ``"plivo"``; ``account``: Twilio's account SID or Plivo's auth id (unused by Telnyx);
    ``secret``: the auth token (Twilio, Plivo: HTTP basic auth) or the API key (Telnyx: a
    bearer token); ``base_url`` and ``transport`` point it elsewhere (a local fake);
    ``timeout`` bounds each request (seconds)."""

    carrier: str
    account: str = ""
    secret: str = field(default="", repr=False)
    base_url: str = ""
    transport: httpx.AsyncBaseTransport | None = field(default=None, repr=False, compare=False)
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.carrier not in BASE_URLS:
            raise ConfigError(
                f"carrier API: carrier must be one of {', '.join(BASE_URLS)}, got {self.carrier!r}"
            )
        if not self.base_url:
            object.__setattr__(self, "base_url", BASE_URLS[self.carrier])
        if not self.base_url.startswith(("https://", "http://")):
            raise ConfigError(f"carrier API: base_url must be http(s)://…, got {self.base_url!r}")
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        if not (isinstance(self.timeout, int | float) and self.timeout > 0):
            raise ConfigError(f"carrier API: timeout must be > 0 seconds, got {self.timeout!r}")
        remember(self.secret)

    def __repr__(self) -> str:
        account = f", account={self.account!r}" if self.account else ""
        return f"CarrierApi({self.carrier!r}, base_url={self.base_url!r}{account})"

    def url(self, request: RestRequest) -> str:
        """The full URL of ``request``."""
        return self.base_url + request.path

    def check(self) -> None:
        """Raise :class:`~voicekit.ConfigError` naming the missing credential, if one is."""
        account_var, secret_var = ENV[self.carrier]
        if account_var and not self.account:
            raise ConfigError(f"{self.carrier} REST API: {account_var} is not set")
        if not self.secret:
            raise ConfigError(f"{self.carrier} REST API: {secret_var} is not set")


def api_from_env(
    carrier: str, environ: Mapping[str, str] | None = None, **overrides: Any
) -> CarrierApi:
    """The :class:`CarrierApi` of ``carrier`` from the environment (see :data:`ENV`;
    ``VOICEKIT_<CARRIER>_API_URL`` overrides the base URL). Missing credentials are not an
    error here: :meth:`CarrierApi.check` says which one is missing when a request is made.

    >>> api_from_env("plivo", {"PLIVO_AUTH_ID": "MA1", "PLIVO_AUTH_TOKEN": "tok123456"})
    CarrierApi('plivo', base_url='https://api.plivo.com', account='MA1')
    """
    env = os.environ if environ is None else environ
    if carrier not in ENV:
        raise ConfigError(f"carrier API: no REST API for carrier {carrier!r}")
    account_var, secret_var = ENV[carrier]
    values: dict[str, Any] = {
        "account": env.get(account_var, "") if account_var else "",
        "secret": env.get(secret_var, ""),
        "base_url": env.get(f"VOICEKIT_{carrier.upper()}_API_URL", ""),
    }
    values.update(overrides)
    return CarrierApi(carrier, **values)


def _body(response: httpx.Response) -> Mapping[str, Any]:
    try:
        data = json.loads(response.text) if response.content else {}
    except ValueError:
        return {"text": response.text[:300]}
    return data if isinstance(data, dict) else {"value": data}


def _detail(body: Mapping[str, Any]) -> str:
    """The carrier's own words from an error body (Twilio ``code``/``message``, Telnyx
    ``errors[0]``, Plivo ``error``)."""
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        return " ".join(str(first[k]) for k in ("code", "title", "detail") if first.get(k))
    parts = [str(body[k]) for k in ("code", "message", "error", "text") if body.get(k)]
    return " ".join(parts)[:300]


async def send(
    api: CarrierApi, request: RestRequest, *, client: httpx.AsyncClient | None = None
) -> Reply:
    """Send ``request`` to ``api``; return the :class:`Reply` (any status: the caller decides
    what a 404 means). Raises :class:`~voicekit.ProviderTimeout` when the API does not answer
    within ``api.timeout``, :class:`~voicekit.ProviderConnectError` when it cannot be reached,
    and :class:`~voicekit.ConfigError` when a credential is missing."""
    api.check()
    name = f"{api.carrier} REST API"
    what = f"{request.action or request.method} ({request.method} {request.path})"
    if api.carrier == "telnyx":
        auth: httpx.BasicAuth | None = None
        headers = {"Authorization": f"Bearer {api.secret}"}
    else:
        auth, headers = httpx.BasicAuth(api.account, api.secret), {}
    owned = client is None
    if client is None:
        # one shared TLS context: building one per request costs tens of milliseconds
        client = httpx.AsyncClient(transport=api.transport, follow_redirects=False,
                                   verify=_default_ssl())
    try:
        response = await client.request(
            request.method,
            api.url(request),
            data=dict(request.form) if request.form is not None else None,
            json=dict(request.json) if request.json is not None else None,
            headers=headers,
            auth=auth,
            timeout=api.timeout,
        )
    except httpx.TimeoutException:
        raise ProviderTimeout(
            f"{name} did not answer {what} within {api.timeout:g} s", provider=name
        ) from None
    except httpx.TransportError as exc:
        raise ProviderConnectError(
            f"{name} could not be reached for {what}: {type(exc).__name__} {exc}", provider=name
        ) from None
    finally:
        if owned:
            await client.aclose()
    return Reply(response.status_code, _body(response))


def status_error(api: CarrierApi, request: RestRequest, reply: Reply) -> ProviderStatusError:
    """The error for a reply the caller could not accept, with the carrier's own words."""
    name = f"{api.carrier} REST API"
    detail = _detail(reply.body)
    hint = " (check the credentials)" if reply.status in (401, 403) else ""
    message = (
        f"{name} refused {request.action or request.method} with HTTP {reply.status}{hint}"
        + (f": {detail}" if detail else "")
    )
    return ProviderStatusError(
        message, status_code=reply.status, body=detail, provider=name
    )
