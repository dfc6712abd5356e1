"""Stream a reply from any OpenAI-compatible ``/chat/completions`` endpoint.

:func:`chat` is an async generator: it sends one request and yields, as they arrive,
:class:`~voicekit.Token` (text deltas), complete :class:`~voicekit.ToolCall` s, one
:class:`~voicekit.Usage` and a final :class:`~voicekit.Finish`. It keeps no state between calls:
everything comes from the :class:`~voicekit.llm.Endpoint`, the messages and the optional
:class:`~voicekit.Session`.

    from voicekit.llm import chat, ollama
    async for event in chat(ollama(), [{"role": "user", "content": "hi"}]):
        print(event)

Failures are :class:`~voicekit.ProviderError` s with a message naming the endpoint (never the key):
:class:`~voicekit.ProviderConnectError` (could not connect — tried ``retry.connect`` more times —
or the connection dropped), :class:`~voicekit.ProviderTimeout`,
:class:`~voicekit.ProviderStatusError` (non-2xx; the body quoted, truncated),
:class:`~voicekit.ProviderStreamError` (wrong content type, malformed JSON, a stream cut off before
``[DONE]``) and :class:`~voicekit.ProviderResponseError` (an ``error`` object inside the stream).

Stopping early — ``break`` inside ``aclosing``, ``aclose()``, or cancelling the task (barge-in) —
closes the HTTP response at once, also while still waiting for the first byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, cast

import httpx
from httpx_sse import aconnect_sse
from returns.future import FutureResult
from returns.result import Failure, Result, Success

from .._errors import (
    ConfigError,
    EventTooLarge,
    ProviderConnectError,
    ProviderError,
    ProviderResponseError,
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
from .._unicode import split_trailing_surrogate, valid_unicode
from ..events import Finish, Token, ToolCall, Usage
from ..session import Session
from ._sse import SSEDecoder
from .endpoint import Endpoint
from .request import Messages, build_request

__all__ = ["LLMEvent", "chat", "complete"]

LLMEvent = Token | ToolCall | Usage | Finish
"""What :func:`chat` yields."""

_DRAIN_SECONDS = 0.25  # after [DONE]: read the (normally empty) rest so the connection is reused


def _feed(decoder: SSEDecoder, piece: bytes, name: str) -> list[tuple[str, bytes]]:
    """``decoder.feed(piece)``, with an over-long event named after the endpoint."""
    try:
        return decoder.feed(piece)
    except EventTooLarge as exc:
        raise EventTooLarge(f"{name}: {exc}", provider=name) from None


def _usage(data: Mapping[str, Any]) -> Usage:
    """Usage from an OpenAI-style ``usage`` object (cached and reasoning tokens if reported)."""
    prompt_details = data.get("prompt_tokens_details") or {}
    cached = prompt_details.get("cached_tokens") or data.get("prompt_cache_hit_tokens") or 0
    completion_details = data.get("completion_tokens_details") or {}
    return Usage(
        prompt_tokens=int(data.get("prompt_tokens") or 0),
        completion_tokens=int(data.get("completion_tokens") or 0),
        cached_tokens=int(cached),
        reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
    )


def _merge_tool_deltas(pending: dict[int, list[Any]], deltas: Sequence[Any]) -> None:
    """Accumulate tool-call fragments by index: id and name overwrite, arguments append."""
    for position, delta in enumerate(deltas):
        index = delta.get("index", position)
        entry = pending.get(index)
        if entry is None:
            entry = pending[index] = ["", "", []]
        if delta.get("id"):
            entry[0] = delta["id"]
        function = delta.get("function")
        if function:
            if function.get("name"):
                entry[1] = function["name"]
            arguments = function.get("arguments")
            if arguments:
                entry[2].append(arguments if isinstance(arguments, str) else json.dumps(arguments))


def _flush_tools(endpoint: Endpoint, pending: dict[int, list[Any]]) -> list[ToolCall]:
    """The accumulated tool calls, complete, in index order (and forget them)."""
    calls = []
    for index in sorted(pending):
        call_id, name, arguments = pending[index]
        if not name:
            raise ProviderStreamError(
                f"{endpoint.name} streamed tool call #{index} without a function name",
                provider=endpoint.name,
            )
        text = valid_unicode("".join(arguments)) or "{}"
        calls.append(ToolCall(valid_unicode(call_id) or f"call_{index}", valid_unicode(name), text))
    pending.clear()
    return calls


def _groq_usage(chunk: Mapping[str, Any]) -> Any:
    """Groq reports streamed usage under ``x_groq.usage``."""
    extra = chunk.get("x_groq")
    return extra.get("usage") if isinstance(extra, Mapping) else None


def _malformed(
    endpoint: Endpoint, number: int, data: bytes, what: str = "malformed JSON"
) -> ProviderStreamError:
    text = data.decode("utf-8", "replace")
    return ProviderStreamError(
        f"{endpoint.name} sent {what} in stream event #{number}: {quote(text)[:200]!r}",
        provider=endpoint.name,
    )


def _stream_error(endpoint: Endpoint, error: Any) -> ProviderResponseError:
    if isinstance(error, Mapping):
        message = str(error.get("message") or error.get("detail") or json.dumps(error))
        code = error.get("code") or error.get("type")
    else:
        message, code = str(error), None
    return ProviderResponseError(
        f"{endpoint.name} reported an error mid-stream: {quote(message)}",
        code=None if code is None else str(code),
        provider=endpoint.name,
    )


async def chat(
    endpoint: Endpoint,
    messages: Messages,
    /,
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
    session: Session | None = None,
    client: httpx.AsyncClient | None = None,
    system: str | None = None,
    deadline: float | None = None,
) -> AsyncGenerator[LLMEvent, None]:
    """Stream one reply: Tokens as they come, ToolCalls once complete, Usage, then Finish.

    ``messages``: OpenAI-style dicts, or a Session (its messages; also the default ``session``).
    ``tools``: function schemas. ``session``: where the session signals come from (call id,
    caller hash). ``client``: an ``httpx.AsyncClient`` to reuse (kept open); without one a
    client is made and closed for this call. ``system``: the system instruction.
    ``deadline``: seconds the whole request may take, from now to its last event (the
    endpoint's ``timeout`` only bounds the silence between bytes, so keep-alive comments or a
    slow trickle of tokens could hold it open for ever); past it the request is closed and
    :class:`~voicekit.ProviderTimeout` raised. None: no overall bound.

    Tool-call fragments are merged by index (id and name overwrite, arguments append) and each
    call is yielded whole when its choice finishes (``finish_reason``) or the stream ends.
    ``Finish.reason`` is the server's ``finish_reason`` (None if it never sent one).
    """
    stream = _chat(endpoint, messages, tools=tools, session=session, client=client, system=system)
    async with contextlib.aclosing(stream):
        if deadline is None:
            async for event in stream:
                yield event
            return
        if isinstance(deadline, bool) or not isinstance(deadline, int | float) or deadline <= 0:
            raise ConfigError(f"chat: deadline must be a positive number of seconds: {deadline!r}")
        ends = asyncio.get_running_loop().time() + deadline
        events = 0
        while True:
            limit = asyncio.timeout_at(ends)
            try:
                async with limit:
                    event = await anext(stream)
            except StopAsyncIteration:
                return
            except TimeoutError:
                if not limit.expired():
                    raise
                raise ProviderTimeout(
                    f"{endpoint.name} ({endpoint.base_url}) did not finish within {deadline:g} s "
                    f"(deadline), after {events} events",
                    provider=endpoint.name,
                ) from None
            events += 1
            yield event


async def _chat(
    endpoint: Endpoint,
    messages: Messages,
    /,
    *,
    tools: Sequence[Mapping[str, Any]] | None,
    session: Session | None,
    client: httpx.AsyncClient | None,
    system: str | None,
) -> AsyncGenerator[LLMEvent, None]:
    """:func:`chat` without its deadline."""
    request = build_request(endpoint, messages, tools=tools, session=session, system=system)
    content = request.content()
    timeout = http_timeout(endpoint)
    name = endpoint.name
    http = client if client is not None else new_client()
    connect_left, status_left = endpoint.retry.connect, endpoint.retry.status
    received = 0  # events parsed so far
    try:
        while True:
            started = False
            try:
                async with aconnect_sse(
                    http,
                    "POST",
                    request.url,
                    headers=request.fresh_headers(),
                    content=content,
                    timeout=timeout,
                ) as source:
                    started = True
                    response = source.response
                    if not response.is_success:
                        body = await read_capped(response)
                        error = status_error(endpoint, endpoint.chat_url, response, body)
                        pause = retry_pause(endpoint.retry, error) if status_left else None
                        if pause is not None:
                            status_left -= 1
                            await asyncio.sleep(pause)
                            continue
                        raise error
                    content_type = response.headers.get("content-type", "")
                    if "text/event-stream" not in content_type:
                        body = quote(await read_capped(response, 4096))
                        raise ProviderStreamError(
                            f"{name} answered with content type {content_type or 'none'!r}, "
                            f'not an event stream (does it support "stream": true?): {body}',
                            provider=name,
                        )
                    pending: dict[int, list[Any]] = {}
                    usage: Mapping[str, Any] | None = None
                    finish: str | None = None
                    response_id: str | None = None
                    carry = ""  # a high surrogate ending the last text delta: half an emoji
                    done = False
                    decoder = SSEDecoder()
                    pieces = cast(AsyncGenerator[bytes, None], response.aiter_bytes())
                    try:
                        async for piece in pieces:
                            for event, data in _feed(decoder, piece, name):
                                if data == b"[DONE]":
                                    done = True
                                    break
                                if not data:
                                    continue  # an empty keep-alive event
                                try:
                                    chunk = json.loads(data)
                                except ValueError:
                                    raise _malformed(endpoint, received + 1, data) from None
                                received += 1
                                if type(chunk) is not dict:
                                    if event == "error":
                                        raise _stream_error(endpoint, chunk)
                                    raise _malformed(endpoint, received, data, "a non-object")
                                if "error" in chunk or event == "error":
                                    raise _stream_error(endpoint, chunk.get("error", chunk))
                                choices = chunk.get("choices")
                                if choices:
                                    choice = choices[0]
                                    delta = choice.get("delta")
                                    if delta:
                                        text = delta.get("content")
                                        if text:
                                            if not isinstance(text, str):
                                                raise _malformed(
                                                    endpoint, received, data, "non-text content"
                                                )
                                            text, carry = split_trailing_surrogate(carry + text)
                                            if text:
                                                yield Token(valid_unicode(text))
                                        calls = delta.get("tool_calls")
                                        if calls:
                                            _merge_tool_deltas(pending, calls)
                                    reason = choice.get("finish_reason")
                                    if reason:
                                        finish = reason
                                        if carry:  # its low half never came
                                            yield Token(valid_unicode(carry))
                                            carry = ""
                                        for call in _flush_tools(endpoint, pending):
                                            yield call
                                found = chunk.get("usage") or _groq_usage(chunk)
                                if found:
                                    usage = found
                                if response_id is None:
                                    response_id = chunk.get("id")
                            if done:
                                break
                        if not done and finish is None:
                            raise ProviderStreamError(
                                f"{name}'s stream ended after {received} events without "
                                "[DONE] or a finish_reason: the reply was cut off",
                                provider=name,
                            )
                        if carry:
                            yield Token(valid_unicode(carry))
                        for call in _flush_tools(endpoint, pending):
                            yield call
                        if usage is not None:
                            yield _usage(usage)
                        yield Finish(finish, response_id)
                        if done:
                            with contextlib.suppress(TimeoutError, httpx.HTTPError):
                                async with asyncio.timeout(_DRAIN_SECONDS):
                                    async for _ in pieces:
                                        pass
                    finally:
                        await pieces.aclose()
                return
            except httpx.TimeoutException as exc:
                phase = type(exc).__name__.replace("Timeout", "").lower() or "read"
                limit = (
                    endpoint.effective_connect_timeout if phase == "connect" else endpoint.timeout
                )
                raise ProviderTimeout(
                    f"{name} ({endpoint.base_url}) timed out: no {phase} progress within "
                    f"{limit:g} s" + (f" after {received} events" if received else ""),
                    provider=name,
                ) from exc
            except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                if not started:  # it connected and sent the request: the model may have run
                    raise no_response(endpoint, endpoint.chat_url, exc) from exc
                raise ProviderConnectError(
                    f"the connection to {name} dropped mid-stream after {received} events: "
                    f"{exc or type(exc).__name__}",
                    provider=name,
                ) from exc
            except httpx.ConnectError as exc:
                if not started and connect_left:
                    connect_left -= 1
                    await asyncio.sleep(endpoint.retry.backoff)
                    continue
                what = (
                    f"could not connect to {name} at {endpoint.base_url}"
                    if not started
                    else f"the connection to {name} dropped mid-stream after {received} events"
                )
                raise ProviderConnectError(
                    f"{what}: {exc or type(exc).__name__}", provider=name
                ) from exc
            except httpx.HTTPError as exc:
                raise ProviderConnectError(
                    f"request to {name} ({endpoint.base_url}) failed: {type(exc).__name__}: {exc}",
                    provider=name,
                ) from exc
    finally:
        if client is None:
            await http.aclose()


def complete(
    endpoint: Endpoint,
    messages: Messages,
    /,
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
    session: Session | None = None,
    client: httpx.AsyncClient | None = None,
    system: str | None = None,
    deadline: float | None = None,
) -> FutureResult[str, ProviderError]:
    """The whole reply text, as a lazy ``FutureResult`` (Failure: the ProviderError).

    Nothing is sent until it is awaited; awaiting gives an ``IOResult``::

        result = await complete(ollama(), [{"role": "user", "content": "hi"}])
    """

    async def run() -> Result[str, ProviderError]:
        parts: list[str] = []
        stream = chat(
            endpoint,
            messages,
            tools=tools,
            session=session,
            client=client,
            system=system,
            deadline=deadline,
        )
        try:
            async with contextlib.aclosing(stream) as events:
                async for event in events:
                    if type(event) is Token:
                        parts.append(event.text)
        except ProviderError as exc:
            return Failure(exc)
        return Success("".join(parts))

    return FutureResult(run())
