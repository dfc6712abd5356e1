"""Stream a reply from the OpenAI Responses API over HTTP (``POST {base_url}/responses``).

:func:`responses` has the shape of :func:`voicekit.llm.chat` and yields the same events:
:class:`~voicekit.Token` s as text arrives, complete :class:`~voicekit.ToolCall` s, one
:class:`~voicekit.Usage` (with cached and reasoning tokens) and a final :class:`~voicekit.Finish`
carrying the response id. Every request carries the full context with ``store: false``: over
HTTP a ``previous_response_id`` would need the server to store the conversation. For sending only
the new turn, use the WebSocket variant, :func:`voicekit.llm.responses_ws`.

    async for event in responses(openai(), [{"role": "user", "content": "hi"}]):
        print(event)

:func:`respond` is the one-shot, non-streaming call: a lazy ``returns`` ``FutureResult`` of the
output text.

Errors: :class:`~voicekit.ProviderConnectError`, :class:`~voicekit.ProviderTimeout`,
:class:`~voicekit.ProviderStatusError` (non-2xx, checked before the stream is read),
:class:`~voicekit.ProviderStreamError` (not an event stream, malformed JSON, cut off before a
terminal event) and :class:`~voicekit.ProviderResponseError` (``response.failed``,
``response.incomplete`` or an ``error`` event, with the server's message). Cancelling the task or
closing the generator closes the HTTP response at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import httpx
from httpx_sse import SSEError, aconnect_sse
from returns.future import FutureResult
from returns.result import Failure, Result, Success

from .._errors import (
    ProviderConnectError,
    ProviderError,
    ProviderResponseError,
    ProviderStatusError,
    ProviderStreamError,
    ProviderTimeout,
)
from .._http import (
    http_timeout,
    new_client,
    no_response,
    quote,
    read_capped,
    retry_pause,
    status_error,
)
from ..events import Finish, Token, ToolCall, Usage
from ..session import Session
from ._responses_events import ResponseReader, failure_details
from ._responses_request import conversation_of, response_body, responses_url
from .endpoint import Endpoint
from .request import Messages, request_headers

__all__ = ["respond", "responses"]

ResponsesEvent = Token | ToolCall | Usage | Finish


async def _status_error(endpoint: Endpoint, response: httpx.Response) -> ProviderStatusError:
    return status_error(endpoint, responses_url(endpoint), response, await read_capped(response))


def _request(
    endpoint: Endpoint,
    messages: Messages,
    tools: Sequence[Mapping[str, Any]] | None,
    session: Session | None,
    system: str | None,
    *,
    stream: bool,
) -> tuple[dict[str, str], bytes]:
    conversation, session = conversation_of(messages, session)
    body = response_body(endpoint, conversation, tools=tools, session=session, system=system)
    body["stream"] = stream
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    headers = request_headers(endpoint, session)
    headers["Content-Type"] = "application/json"
    return headers, content


def _transport_error(endpoint: Endpoint, exc: httpx.HTTPError, started: bool) -> ProviderError:
    name = endpoint.name
    if isinstance(exc, httpx.TimeoutException):
        return ProviderTimeout(
            f"{name} ({responses_url(endpoint)}) did not answer within {endpoint.timeout:g} s",
            provider=name,
        )
    if not started and isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return no_response(endpoint, responses_url(endpoint), exc)
    what = "the connection dropped mid-stream" if started else "could not connect"
    return ProviderConnectError(
        f"{name} ({endpoint.base_url}): {what}: {type(exc).__name__}: {exc}", provider=name
    )


async def responses(
    endpoint: Endpoint,
    messages: Messages,
    /,
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
    session: Session | None = None,
    client: httpx.AsyncClient | None = None,
    system: str | None = None,
) -> AsyncIterator[ResponsesEvent]:
    """Stream one reply over HTTP: Tokens, then ToolCalls, Usage and Finish.

    Arguments as for :func:`voicekit.llm.chat`: ``messages`` are OpenAI-style dicts or a
    Session; ``tools`` are chat-style function schemas; ``session`` supplies the session
    signals; ``client`` is an ``httpx.AsyncClient`` to reuse (left open); ``system`` is the
    system instruction (sent as ``instructions``).
    """
    headers, content = _request(endpoint, messages, tools, session, system, stream=True)
    http = client if client is not None else new_client()
    connect_left, status_left = endpoint.retry.connect, endpoint.retry.status
    reader = ResponseReader(endpoint.name)
    try:
        while True:
            started = False
            try:
                async with aconnect_sse(
                    http,
                    "POST",
                    responses_url(endpoint),
                    headers=dict(headers),
                    content=content,
                    timeout=http_timeout(endpoint),
                ) as source:
                    started = True
                    if not source.response.is_success:
                        error = await _status_error(endpoint, source.response)
                        pause = retry_pause(endpoint.retry, error) if status_left else None
                        if pause is not None:
                            status_left -= 1
                            await asyncio.sleep(pause)
                            continue
                        raise error
                    async with contextlib.aclosing(source.aiter_sse()) as events:
                        async for sse in events:
                            if not sse.data or sse.data == "[DONE]":
                                continue
                            try:
                                data = json.loads(sse.data)
                            except ValueError:
                                raise ProviderStreamError(
                                    f"{endpoint.name} sent malformed JSON: {sse.data[:200]!r}",
                                    provider=endpoint.name,
                                ) from None
                            if isinstance(data, dict) and "type" not in data and sse.event:
                                data["type"] = sse.event
                            for event in reader.feed(data):
                                yield event
                            if reader.done:
                                return
                    raise ProviderStreamError(
                        f"{endpoint.name}'s stream ended before response.completed: "
                        "the reply was cut off",
                        provider=endpoint.name,
                    )
            except SSEError as exc:
                raise ProviderStreamError(
                    f"{endpoint.name} did not answer with an event stream: {exc}",
                    provider=endpoint.name,
                ) from exc
            except httpx.HTTPError as exc:
                retry = not started and connect_left > 0 and isinstance(exc, httpx.ConnectError)
                if not retry:
                    raise _transport_error(endpoint, exc, started) from exc
                connect_left -= 1
                await asyncio.sleep(endpoint.retry.backoff)
    finally:
        if client is None:
            await http.aclose()


def _output_text(data: Any, provider: str) -> str:
    if not isinstance(data, Mapping):
        raise ProviderStreamError(f"{provider} answered with a non-object body", provider=provider)
    status = data.get("status")
    if status in ("failed", "incomplete", "cancelled"):
        message, code = failure_details(data, f"response.{status}")
        raise ProviderResponseError(message, code=code, provider=provider)
    texts = []
    for item in data.get("output") or ():
        if isinstance(item, Mapping) and item.get("type") == "message":
            for part in item.get("content") or ():
                if isinstance(part, Mapping) and part.get("type") == "output_text":
                    texts.append(str(part.get("text", "")))
    return "".join(texts)


def respond(
    endpoint: Endpoint,
    messages: Messages,
    /,
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
    session: Session | None = None,
    client: httpx.AsyncClient | None = None,
    system: str | None = None,
) -> FutureResult[str, ProviderError]:
    """The output text of one non-streaming Responses call, as a lazy ``FutureResult``.

    Nothing is sent until it is awaited; awaiting gives an ``IOResult`` (Failure: the
    ProviderError)::

        result = await respond(openai(), [{"role": "user", "content": "hi"}])
    """

    async def run() -> Result[str, ProviderError]:
        http = client if client is not None else new_client()
        try:
            headers, content = _request(endpoint, messages, tools, session, system, stream=False)
            try:
                response = await http.post(
                    responses_url(endpoint),
                    headers=headers,
                    content=content,
                    timeout=http_timeout(endpoint),
                )
            except httpx.HTTPError as exc:
                raise _transport_error(endpoint, exc, False) from exc
            if not response.is_success:
                raise await _status_error(endpoint, response)
            try:
                data = response.json()
            except ValueError as exc:
                raise ProviderStreamError(
                    f"{endpoint.name} answered with malformed JSON: {quote(response.text)}",
                    provider=endpoint.name,
                ) from exc
            return Success(_output_text(data, endpoint.name))
        except ProviderError as exc:
            return Failure(exc)
        finally:
            if client is None:
                await http.aclose()

    return FutureResult(run())
