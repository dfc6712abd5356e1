"""Check an endpoint is up (and open a pooled connection to it) before the first turn.

:func:`warmup` asks ``GET {base_url}/models`` with a 5 s budget and returns a ``returns``
``Result`` instead of raising: ``Success`` with the model ids the service lists, or ``Failure``
with a one-line reason. Run it while the phone rings; with a shared ``client`` the connection it
opens is reused by the first :func:`~voicekit.llm.chat`.

    result = await warmup(ollama())
    match result:
        case Success(models): print("up:", models)
        case Failure(reason): print("down:", reason)
"""

from __future__ import annotations

import json

import httpx
from returns.result import Failure, Result, Success

from .._http import auth_headers, new_client, quote, read_capped
from .._secrets import redact
from .endpoint import Endpoint

__all__ = ["WARMUP_TIMEOUT", "warmup"]


def _failure(reason: str) -> Failure[str]:
    return Failure(redact(reason))

WARMUP_TIMEOUT = 5.0
"""Seconds :func:`warmup` waits, all phases together."""


async def warmup(
    endpoint: Endpoint, *, client: httpx.AsyncClient | None = None
) -> Result[list[str], str]:
    """``GET {base_url}/models``: Success(model ids) or Failure(reason). Never raises for I/O."""
    http = client if client is not None else new_client()
    where = f"{endpoint.name} ({endpoint.models_url})"
    try:
        response = await http.get(
            endpoint.models_url, headers=auth_headers(endpoint), timeout=WARMUP_TIMEOUT
        )
        if not response.is_success:
            body = quote(await read_capped(response, 4096))
            return _failure(f"{where} answered HTTP {response.status_code}: {body}".rstrip(": "))
        try:
            data = response.json()
        except (ValueError, json.JSONDecodeError):
            return _failure(f"{where} did not answer with JSON: {quote(response.text)[:200]!r}")
        items = data.get("data") if isinstance(data, dict) else data
        if not isinstance(items, list):
            return _failure(f"{where} answered without a model list")
        return Success([str(m.get("id")) if isinstance(m, dict) else str(m) for m in items])
    except httpx.TimeoutException:
        return _failure(f"{where} did not answer within {WARMUP_TIMEOUT:g} s")
    except httpx.ConnectError as exc:
        return _failure(f"could not connect to {where}: {exc or 'connection refused'}")
    except httpx.HTTPError as exc:
        return _failure(f"{where} failed: {type(exc).__name__}: {exc}")
    finally:
        if client is None:
            await http.aclose()
