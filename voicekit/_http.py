"""The HTTP plumbing shared by the LLM, STT and TTS engines, in one place.

One client factory (:func:`new_client`), one timeout rule (:func:`http_timeout`), the request
headers of an endpoint (:func:`auth_headers`), bounded reads and quoting of error bodies
(:func:`read_capped`, :func:`quote`, :func:`error_message`), one way to turn a non-2xx answer
into a :class:`~voicekit.ProviderStatusError` (:func:`status_error`, which reads
``Retry-After``), the pause before a retry (:func:`retry_pause`), and one POST with retries
(:func:`open_response`) for the engines that are not event streams.

>>> parse_retry_after("3"), parse_retry_after("soon"), parse_retry_after("-1")
(3.0, None, None)
>>> quote("  short  ")
'short'
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import inspect
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx

from ._errors import (
    ConfigError,
    ProviderConnectError,
    ProviderNoResponse,
    ProviderStatusError,
    ProviderTimeout,
)
from .llm.endpoint import Endpoint, RetryPolicy

__all__ = [
    "BODY_QUOTE_LIMIT",
    "EndpointOption",
    "auth_headers",
    "error_message",
    "http_timeout",
    "new_client",
    "open_response",
    "parse_retry_after",
    "quote",
    "read_capped",
    "resolve_endpoint",
    "retry_pause",
    "status_error",
]

BODY_QUOTE_LIMIT = 500
"""How many characters of an error body are quoted in a :class:`ProviderStatusError`."""

EndpointOption = Endpoint | str | None
"""An :class:`~voicekit.llm.Endpoint`, a base URL (keyless), or None for the default service."""

_ssl_context: ssl.SSLContext | None = None


def _default_ssl() -> ssl.SSLContext:
    """One shared TLS context: building one costs milliseconds, so it is made once."""
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = httpx.create_ssl_context()
    return _ssl_context


def new_client() -> httpx.AsyncClient:
    """A client like the one the engines make when none is given (reuse it across calls)."""
    return httpx.AsyncClient(verify=_default_ssl(), follow_redirects=False)


def http_timeout(endpoint: Endpoint) -> httpx.Timeout:
    """The httpx timeout for an endpoint: ``timeout`` for read/write/pool, its connect budget."""
    return httpx.Timeout(endpoint.timeout, connect=endpoint.effective_connect_timeout)


def auth_headers(endpoint: Endpoint) -> dict[str, str]:
    """``User-Agent``, ``Authorization`` (only with a key) and the endpoint's own headers."""
    headers = {"User-Agent": endpoint.user_agent}
    if endpoint.api_key is not None:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    headers.update(endpoint.headers)
    return headers


def quote(text: str) -> str:
    """``text`` stripped and cut to :data:`BODY_QUOTE_LIMIT` characters (for error messages)."""
    text = text.strip()
    return text if len(text) <= BODY_QUOTE_LIMIT else text[:BODY_QUOTE_LIMIT] + "…"


async def read_capped(response: httpx.Response, limit: int = 65536) -> str:
    """Up to ``limit`` bytes of the body, decoded leniently."""
    data = bytearray()
    async for piece in response.aiter_bytes():
        data += piece
        if len(data) >= limit:
            break
    return bytes(data[:limit]).decode(response.encoding or "utf-8", errors="replace")


def error_message(body: str) -> str | None:
    """``error.message`` (or ``message``/``detail``) out of a JSON error body, if any.

    >>> error_message('{"error": {"message": "model not found"}}')
    'model not found'
    """
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, Mapping):
        return None
    error = data.get("error", data)
    if isinstance(error, str):
        return error
    if isinstance(error, Mapping):
        for key in ("message", "detail", "msg"):
            if isinstance(error.get(key), str):
                return str(error[key])
    return None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None.

    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:05 GMT", now=1445412480.0)
    5.0
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
        return max(0.0, seconds)
    return seconds if seconds >= 0 and seconds == seconds and seconds != float("inf") else None


def status_error(
    endpoint: Endpoint, url: str, response: httpx.Response, body: str
) -> ProviderStatusError:
    """A ProviderStatusError for a non-2xx answer, quoting the service's message or body, with
    the answer's ``Retry-After`` (seconds) as ``retry_after``."""
    quoted = quote(body)
    detail = error_message(body)
    reason = response.reason_phrase or ""
    message = f"{endpoint.name} ({url}) answered HTTP {response.status_code} {reason}".rstrip()
    message += f": {quote(detail)}" if detail else (f": {quoted}" if quoted else "")
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if retry_after is not None:
        message += f" (Retry-After: {retry_after:g} s)"
    return ProviderStatusError(
        message,
        status_code=response.status_code,
        body=quoted,
        provider=endpoint.name,
        retry_after=retry_after,
    )


def retry_pause(policy: RetryPolicy, error: ProviderStatusError) -> float | None:
    """How long to wait before trying again after ``error``, or None: do not retry.

    The server's ``Retry-After`` wins over the policy's ``backoff``; a ``Retry-After`` longer
    than ``policy.max_retry_after`` is not waited for (a caller on the line would sit in
    silence), so the error is raised at once.

    >>> from voicekit import ProviderStatusError
    >>> busy = ProviderStatusError("busy", status_code=429, retry_after=3.0)
    >>> retry_pause(RetryPolicy(status=1), busy), retry_pause(RetryPolicy(status=1,
    ...     max_retry_after=2.0), busy)
    (3.0, None)
    """
    if error.status_code not in policy.statuses:
        return None
    if error.retry_after is None:
        return policy.backoff
    return error.retry_after if error.retry_after <= policy.max_retry_after else None


def resolve_endpoint(endpoint: EndpointOption, *, preset: str, what: str, model: str) -> Endpoint:
    """The Endpoint to use: as given, built from a base URL, or the ``preset`` (keyed by env)."""
    from .llm.presets import PRESETS

    if isinstance(endpoint, Endpoint):
        return endpoint
    if isinstance(endpoint, str):
        return Endpoint(base_url=endpoint, model=model or "-", name=what)
    if endpoint is not None:
        raise ConfigError(
            f"{what}: endpoint must be an Endpoint, a base URL or None, got {endpoint!r}"
        )
    chosen = PRESETS[preset]()
    if not chosen.has_key:
        key_env = inspect.signature(PRESETS[preset]).parameters["api_key_env"].default
        raise ConfigError(
            f"{what}: no endpoint given and ${key_env} is not set; set it, or pass "
            f"endpoint=voicekit.llm.{preset}(api_key=...) or a local server's base URL"
        )
    return chosen


def no_response(endpoint: Endpoint, url: str, exc: BaseException) -> ProviderNoResponse:
    """The error for a request that connected but got no answer (never retried: it may have
    run on the server)."""
    return ProviderNoResponse(
        f"{endpoint.name} ({url}) accepted the connection but closed it without a response: "
        f"{exc or type(exc).__name__}",
        provider=endpoint.name,
    )


@contextlib.asynccontextmanager
async def open_response(
    http: httpx.AsyncClient,
    endpoint: Endpoint,
    url: str,
    *,
    on_open: Callable[[httpx.Response], None] | None = None,
    **request: Any,
) -> AsyncIterator[httpx.Response]:
    """``POST url`` and hold the streamed 2xx response open; httpx failures become ProviderErrors.

    ``request`` holds httpx's ``json=``/``data=``/``files=`` (a fresh request is built for each
    attempt). A connection that could not be made is retried ``endpoint.retry.connect`` times;
    the statuses in ``endpoint.retry.statuses`` ``endpoint.retry.status`` times, after the
    server's ``Retry-After`` (see :func:`retry_pause`); a connection that was accepted and then
    closed without an answer is never retried (:class:`~voicekit.ProviderNoResponse`).
    ``on_open`` sees the response as soon as its head arrives (to close it from outside). The
    response is closed on exit — also when the caller is cancelled — so its connection goes.
    """
    name = endpoint.name
    headers = auth_headers(endpoint)
    connect_left, status_left = endpoint.retry.connect, endpoint.retry.status
    timeout = http_timeout(endpoint)
    while True:
        try:
            response = await http.send(
                http.build_request("POST", url, headers=headers, timeout=timeout, **request),
                stream=True,
            )
        except httpx.TimeoutException as exc:
            phase = type(exc).__name__.replace("Timeout", "").lower() or "read"
            limit = endpoint.effective_connect_timeout if phase == "connect" else endpoint.timeout
            raise ProviderTimeout(
                f"{name} ({url}) timed out: no {phase} progress within {limit:g} s",
                provider=name,
            ) from exc
        except httpx.ConnectError as exc:
            if connect_left:
                connect_left -= 1
                await asyncio.sleep(endpoint.retry.backoff)
                continue
            raise ProviderConnectError(
                f"could not connect to {name} at {url}: {exc or type(exc).__name__}",
                provider=name,
            ) from exc
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise no_response(endpoint, url, exc) from exc
        except httpx.HTTPError as exc:
            raise ProviderConnectError(
                f"request to {name} ({url}) failed: {type(exc).__name__}: {exc}", provider=name
            ) from exc
        if on_open is not None:
            on_open(response)
        try:
            if not response.is_success:
                try:
                    body = await read_capped(response)
                except httpx.HTTPError:
                    body = ""
                error = status_error(endpoint, url, response, body)
                pause = retry_pause(endpoint.retry, error) if status_left else None
                if pause is not None:
                    status_left -= 1
                    await response.aclose()  # let the connection go while backing off
                    await asyncio.sleep(pause)
                    continue
                raise error
            try:
                yield response
            except httpx.TimeoutException as exc:
                raise ProviderTimeout(
                    f"{name} ({url}) stopped sending for more than {endpoint.timeout:g} s",
                    provider=name,
                ) from exc
            except httpx.HTTPError as exc:
                raise ProviderConnectError(
                    f"the connection to {name} ({url}) dropped mid-response: "
                    f"{exc or type(exc).__name__}",
                    provider=name,
                ) from exc
            return
        finally:
            await response.aclose()
