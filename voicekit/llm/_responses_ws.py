"""Stream replies from the OpenAI Responses API over one persistent WebSocket per conversation.

:func:`responses_ws` yields the same events as :func:`voicekit.llm.responses` (Tokens, ToolCalls,
Usage, Finish) and, just before ``Finish``, a :class:`ResponsesState`: the continuity state for
the next turn, as a value. The caller keeps it in the Session — nothing is hidden in the
function or the socket::

    async with ResponsesSocket(endpoint) as sock:
        session = Session().add_user("Hi!")
        events = [e async for e in responses_ws(endpoint, session, socket=sock)]
        session = update_session(session, events).add_assistant(reply_text(events))
        session = session.add_user("And then?")   # next turn: only the new items are sent

**Incremental context.** With a state in the Session, a turn sends only the items after what
the server already holds, with ``previous_response_id``, when: the state was made on this very
connection; the new input is strictly longer than the input the state covered; that prefix has
the same sha256 (of canonical JSON); and the items after it start with the previous output
(messages match on role and text, function calls on ``call_id``; any other output type forces the
full context). Otherwise the full context is sent.

**Exactly one retry.** ``previous_response_not_found``, ``websocket_connection_limit_reached``
(after a reconnect) and a transparent reconnect (the connection dropped, or the server rejected a
cancel) each cause one retry with the full context. If text was already yielded, a
:class:`Restarted` event comes first: drop what came before it (:func:`reply_text` does).

**Barge-in.** Closing the generator or cancelling its task mid-response sends ``response.cancel``
and leaves the socket open; the next turn first reads away the rest of the cancelled response.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._errors import ProviderResponseError
from .._frozen import FrozenDict, freeze
from ..events import Finish, Token, ToolCall, Usage
from ..session import Session
from ._responses_context import Continuity, InputPlan, input_hash, plan_input
from ._responses_events import CONNECTION_LIMIT, PREVIOUS_NOT_FOUND, ResponseReader
from ._responses_request import conversation_of, response_body
from ._responses_socket import (
    Reconnected,
    ReconnectPolicy,
    ResponsesSocket,
    SocketStats,
    responses_socket,
)
from .endpoint import Endpoint
from .request import Messages

__all__ = [
    "CONTINUITY_KEY",
    "ReconnectPolicy",
    "Reconnected",
    "ResponsesSocket",
    "ResponsesState",
    "Restarted",
    "SocketStats",
    "reply_text",
    "responses_socket",
    "responses_ws",
    "update_session",
]

CONTINUITY_KEY = "responses"
"""Where :func:`responses_ws` keeps its state in ``Session.continuity``."""

_RETRIABLE = frozenset({PREVIOUS_NOT_FOUND, CONNECTION_LIMIT})


@dataclass(frozen=True, slots=True)
class ResponsesState:
    """The continuity state after a completed response, and what this turn sent.

    ``state`` is what the Session should store under ``key`` (see :meth:`apply`). The rest
    describes the turn: ``sent_items`` input items sent in the last request, ``input_bytes`` and
    ``message_bytes`` (JSON of the ``input`` field, and of whole ``response.create`` messages,
    summed over all attempts), ``attempts`` and whether the last request was ``incremental``.
    """

    state: Mapping[str, Any] = field(default_factory=FrozenDict)
    key: str = CONTINUITY_KEY
    sent_items: int = 0
    input_bytes: int = 0
    message_bytes: int = 0
    attempts: int = 1
    incremental: bool = False

    def apply(self, session: Session) -> Session:
        """The Session with this continuity state stored."""
        return session.with_continuity(self.key, self.state)

    def __repr__(self) -> str:
        return (
            f"ResponsesState(response_id={self.state.get('response_id')!r}, "
            f"sent_items={self.sent_items}, incremental={self.incremental}, "
            f"input_bytes={self.input_bytes}, attempts={self.attempts})"
        )


@dataclass(frozen=True, slots=True)
class Restarted:
    """The reply starts over (after a reconnect): text yielded before this was discarded."""

    reason: str


ResponsesWsEvent = Token | ToolCall | Usage | ResponsesState | Restarted | Finish


def update_session(session: Session, events: Iterable[Any]) -> Session:
    """``session`` with the continuity state of the last :class:`ResponsesState` in ``events``."""
    states = [e for e in events if isinstance(e, ResponsesState)]
    return states[-1].apply(session) if states else session


def reply_text(events: Iterable[Any]) -> str:
    """The text of a reply: the Tokens after the last :class:`Restarted`, joined.

    >>> reply_text([Token("Hel"), Restarted("drop"), Token("Hello"), Token("!")])
    'Hello!'
    """
    parts: list[str] = []
    for event in events:
        if isinstance(event, Restarted):
            parts.clear()
        elif isinstance(event, Token):
            parts.append(event.text)
    return "".join(parts)


def _continuity(
    reader: ResponseReader, full_input: Sequence[Mapping[str, Any]], connection: str | None
) -> Mapping[str, Any]:
    """The frozen continuity state after a completed response."""
    state = Continuity(
        response_id=reader.response_id or "",
        input_hash=input_hash(full_input),
        input_length=len(full_input),
        output=tuple(reader.output),
        connection=connection,
    )
    frozen: Mapping[str, Any] = freeze(state.to_mapping())
    return frozen


def _retry_reason(exc: Exception) -> str | None:
    if isinstance(exc, Reconnected):
        return str(exc)
    if isinstance(exc, ProviderResponseError) and exc.code in _RETRIABLE:
        return f"the server answered {exc.code}"
    return None


async def responses_ws(
    endpoint: Endpoint,
    messages: Messages,
    /,
    *,
    socket: ResponsesSocket,
    session: Session | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
    system: str | None = None,
    incremental: bool = True,
) -> AsyncIterator[ResponsesWsEvent]:
    """Stream one reply over ``socket``: Tokens, ToolCalls, Usage, ResponsesState, Finish.

    ``messages``: OpenAI-style dicts or a Session (then also the default ``session``). The
    ``session``'s continuity state (under :data:`CONTINUITY_KEY`) decides how much to send;
    ``incremental=False`` always sends the full context. ``tools`` and ``system`` as for
    :func:`voicekit.llm.chat`.
    """
    conversation, session = conversation_of(messages, session)
    body = response_body(endpoint, conversation, tools=tools, session=session, system=system)
    full_input = tuple(body.pop("input"))
    previous = (
        Continuity.from_mapping(session.continuity_for(CONTINUITY_KEY))
        if session is not None and incremental
        else None
    )
    async with socket.turn():
        plan = plan_input(previous, full_input, connection=socket.connection_id)
        attempts = input_bytes = message_bytes = 0
        yielded = False
        restart: str | None = None
        while True:
            if restart is not None and yielded:
                yield Restarted(restart)
            attempts += 1
            message: dict[str, Any] = {"type": "response.create", **body}
            message["input"] = list(plan.items)
            if plan.previous_response_id is not None:
                message["previous_response_id"] = plan.previous_response_id
            input_size = len(
                json.dumps(message["input"], ensure_ascii=False, separators=(",", ":")).encode()
            )
            reader = ResponseReader(endpoint.name)
            try:
                message_bytes += await socket.send(message)
                input_bytes += input_size
                while not reader.done:
                    event = await socket.recv(endpoint.timeout)
                    for item in reader.feed(event):
                        if isinstance(item, Finish):
                            yield ResponsesState(
                                state=_continuity(reader, full_input, socket.connection_id),
                                sent_items=len(plan.items),
                                input_bytes=input_bytes,
                                message_bytes=message_bytes,
                                attempts=attempts,
                                incremental=plan.incremental,
                            )
                        yield item
                        yielded = True
                return
            except (Reconnected, ProviderResponseError) as exc:
                restart = _retry_reason(exc)
                if restart is None or attempts > 1:
                    raise
                if isinstance(exc, ProviderResponseError) and exc.code == CONNECTION_LIMIT:
                    await socket.reconnect("the server's connection limit was reached")
                plan = InputPlan(full_input)
            except BaseException:
                await socket.abandon()
                raise
