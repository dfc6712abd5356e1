"""The Responses API over a persistent WebSocket, against a real server on 127.0.0.1.

The server (tests/servers/responses_server.py) answers each request with
``You said: <last user text>. I know <n> items.``, ``n`` being the size of the context it
rebuilt from its connection cache plus what was sent — so a wrong incremental send shows up
as a wrong reply, and every test also compares the server's context with the client's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from servers.responses_server import Reply, ResponsesServer, comparable, echo_text

from voicekit import (
    ConfigError,
    Finish,
    ProviderConnectError,
    ProviderResponseError,
    ProviderStatusError,
    Session,
    Token,
    ToolCall,
)
from voicekit.llm import (
    CONTINUITY_KEY,
    ReconnectPolicy,
    ResponsesSocket,
    ResponsesState,
    Restarted,
    reply_text,
    responses_socket,
    responses_ws,
    update_session,
)
from voicekit.llm._responses_request import response_body
from voicekit.llm.endpoint import Endpoint

FAST = ReconnectPolicy(min_wait=0.01, max_wait=0.05, multiplier=0.01)


@pytest.fixture
async def server() -> AsyncIterator[ResponsesServer]:
    async with ResponsesServer(api_key="sk-test") as srv:
        yield srv
        assert not srv.problems, srv.problems  # every client event passed the openai types


def endpoint(server: ResponsesServer, **options: Any) -> Endpoint:
    return Endpoint(base_url=server.base_url, model="gpt-test", api_key="sk-test", **options)


def socket(server: ResponsesServer, **options: Any) -> ResponsesSocket:
    options.setdefault("reconnect", FAST)
    return ResponsesSocket(endpoint(server), **options)


def full_input(session: Session) -> list[dict[str, Any]]:
    return response_body(endpoint_stub, session.messages)["input"]


endpoint_stub = Endpoint(base_url="http://127.0.0.1:1/v1", model="m")


async def turn(
    server: ResponsesServer, sock: ResponsesSocket, session: Session, **options: Any
) -> tuple[list[Any], Session]:
    """One complete turn: the events, and the Session with the state and the reply added."""
    events = [e async for e in responses_ws(endpoint(server), session, socket=sock, **options)]
    return events, update_session(session, events).add_assistant(reply_text(events))


def input_json(body: dict[str, Any]) -> bytes:
    """The ``input`` field as sent (compact JSON, UTF-8)."""
    return json.dumps(body["input"], ensure_ascii=False, separators=(",", ":")).encode()


def state_of(events: list[Any]) -> ResponsesState:
    (state,) = [e for e in events if isinstance(e, ResponsesState)]
    return state


def check_context(server: ResponsesServer, session: Session) -> None:
    """The server's rebuilt context for the last request equals the client's full input."""
    assert comparable(server.creates[-1].context or []) == comparable(full_input(session))


# -- incremental context ------------------------------------------------------------------------


async def test_full_context_once_then_only_new_items(server: ResponsesServer) -> None:
    session = Session().add_user("hello")
    async with socket(server) as sock:
        for text in ("hello", "how are you", "bye"):
            if text != "hello":
                session = session.add_user(text)
            events, after = await turn(server, sock, session, system="Be brief.")
            assert reply_text(events) == echo_text(full_input(session))
            check_context(server, session)
            session = after
    first, second, third = server.creates
    assert "previous_response_id" not in first.body and len(first.body["input"]) == 1
    assert second.body["previous_response_id"] == "resp_0001"
    assert third.body["previous_response_id"] == "resp_0002"
    assert [len(r.body["input"]) for r in server.creates] == [1, 1, 1]
    assert all(r.body["instructions"] == "Be brief." for r in server.creates)
    assert all(r.body["store"] is False and "stream" not in r.body for r in server.creates)
    assert len(server.connections) == 1


async def test_events_end_with_state_then_finish(server: ResponsesServer) -> None:
    async with socket(server) as sock:
        events, session = await turn(server, sock, Session().add_user("hi"))
    assert isinstance(events[-2], ResponsesState) and events[-1] == Finish("stop", "resp_0001")
    assert events[-2].sent_items == 1 and not events[-2].incremental
    stored = session.continuity_for(CONTINUITY_KEY)
    assert stored["response_id"] == "resp_0001" and stored["input_length"] == 1
    assert stored["connection"] == sock.connection_id


async def test_handshake_carries_the_key_and_session_headers(server: ResponsesServer) -> None:
    ep = endpoint(server, session_id_header="X-Session-Id", session_id_prefix="call-")
    async with ResponsesSocket(ep, session=Session(call_id="CA7"), reconnect=FAST) as sock:
        assert sock.url == server.ws_url  # derived from base_url: http -> ws, + /responses
        assert "sk-test" not in repr(sock)
    headers = server.connections[0].headers
    assert headers["authorization"] == "Bearer sk-test"
    assert headers["x-session-id"] == "call-CA7"


async def test_tool_round_trip_sends_only_the_tool_result(server: ResponsesServer) -> None:
    server.enqueue(Reply(tool_calls=[("call_1", "get_weather", '{"city":"Rome"}')]))
    session = Session().add_user("weather in Rome?")
    async with socket(server) as sock:
        events = [e async for e in responses_ws(endpoint(server), session, socket=sock)]
        assert [e for e in events if isinstance(e, ToolCall)] == [
            ToolCall("call_1", "get_weather", '{"city":"Rome"}')
        ]
        session = update_session(session, events)
        session = session.add_tool_call("call_1", "get_weather", '{"city":"Rome"}')
        session = session.add_tool_result("call_1", {"temp": 21})
        events, _ = await turn(server, sock, session)
    sent = server.creates[-1].body
    assert sent["previous_response_id"] == "resp_0001"
    assert [i["type"] for i in sent["input"]] == ["function_call_output"]
    assert reply_text(events) == "You said: weather in Rome?. I know 3 items."
    check_context(server, session)


async def test_an_edited_history_falls_back_to_full_context(server: ResponsesServer) -> None:
    async with socket(server) as sock:
        _, session = await turn(server, sock, Session().add_user("hi"))
        edited = session.with_messages(
            [{"role": "user", "content": "hi!"}, *session.messages[1:]]
        ).add_user("next")
        events, _ = await turn(server, sock, edited)
    assert "previous_response_id" not in server.creates[-1].body
    assert len(server.creates[-1].body["input"]) == 3 and state_of(events).sent_items == 3


async def test_incremental_false_always_sends_full_context(server: ResponsesServer) -> None:
    session = Session().add_user("a")
    async with socket(server) as sock:
        for text in ("b", "c"):
            _, session = await turn(server, sock, session, incremental=False)
            session = session.add_user(text)
    assert [len(r.body["input"]) for r in server.creates] == [1, 3]
    assert all("previous_response_id" not in r.body for r in server.creates)


async def test_a_state_from_another_connection_is_not_trusted(server: ResponsesServer) -> None:
    async with socket(server) as sock:
        _, session = await turn(server, sock, Session().add_user("hi"))
    async with socket(server) as other:
        events, _ = await turn(server, other, session.add_user("again"))
    assert "previous_response_id" not in server.creates[-1].body
    assert state_of(events).attempts == 1  # known stale: no wasted round trip


async def test_one_response_at_a_time_per_socket(server: ResponsesServer) -> None:
    server.delay = 0.005  # slow enough for the two to overlap if nothing serialised them
    async with socket(server) as sock:
        (one, _), (two, _) = await asyncio.gather(
            turn(server, sock, Session().add_user("one")),
            turn(server, sock, Session().add_user("two")),
        )
    assert reply_text(one) == "You said: one. I know 1 items."
    assert reply_text(two) == "You said: two. I know 1 items."
    plain = Session()
    assert update_session(plain, [Token("no state here")]) is plain


# -- exactly one full-context retry ---------------------------------------------------------------


async def test_previous_response_not_found_retries_once_in_full(server: ResponsesServer) -> None:
    async with socket(server) as sock:
        _, session = await turn(server, sock, Session().add_user("hi"))
        server.forget()
        session = session.add_user("still there?")
        events, _ = await turn(server, sock, session)
    not_found, retry = server.creates[-2:]
    assert not_found.answered == "not_found" and not_found.body["previous_response_id"]
    assert "previous_response_id" not in retry.body and len(retry.body["input"]) == 3
    assert reply_text(events) == "You said: still there?. I know 3 items."
    assert not any(isinstance(e, Restarted) for e in events)  # nothing was yielded before
    assert state_of(events).attempts == 2
    check_context(server, session)


async def test_the_retry_is_not_retried(server: ResponsesServer) -> None:
    missing = ("previous_response_not_found", "gone")
    server.enqueue(Reply(error=missing), Reply(error=missing))
    async with socket(server) as sock:
        with pytest.raises(ProviderResponseError) as info:
            await turn(server, sock, Session().add_user("hi"))
    assert info.value.code == "previous_response_not_found"
    assert len(server.creates) == 2


async def test_other_errors_are_not_retried(server: ResponsesServer) -> None:
    server.enqueue(Reply(error=("server_error", "Internal server error")))
    async with socket(server) as sock:
        with pytest.raises(ProviderResponseError, match="Internal server error"):
            await turn(server, sock, Session().add_user("hi"))
        events, _ = await turn(server, sock, Session().add_user("ok"))  # socket still usable
    assert len(server.creates) == 2 and reply_text(events).startswith("You said: ok")


async def test_connection_limit_reconnects_and_retries_in_full(server: ResponsesServer) -> None:
    async with socket(server) as sock:
        _, session = await turn(server, sock, Session().add_user("hi"))
        server.enqueue(Reply(connection_limit=True))
        session = session.add_user("more")
        events, _ = await turn(server, sock, session)
    limited, retry = server.creates[-2:]
    assert limited.answered == "connection_limit" and limited.connection == 1
    assert retry.connection == 2 and "previous_response_id" not in retry.body
    assert reply_text(events) == "You said: more. I know 3 items."
    assert sock.stats.reconnects == 1


async def test_a_drop_mid_response_restarts_the_reply_once(server: ResponsesServer) -> None:
    async with socket(server) as sock:
        _, session = await turn(server, sock, Session().add_user("hi"))
        server.enqueue(Reply(drop_after=3))
        session = session.add_user("tell me")
        events, _ = await turn(server, sock, session)
    restarts = [i for i, e in enumerate(events) if isinstance(e, Restarted)]
    assert len(restarts) == 1
    assert len([e for e in events[: restarts[0]] if isinstance(e, Token)]) == 3
    assert reply_text(events) == "You said: tell me. I know 3 items."
    dropped, retry = server.creates[-2:]
    assert dropped.answered == "dropped" and retry.connection == 2
    assert "previous_response_id" not in retry.body and len(retry.body["input"]) == 3


async def test_a_drop_before_any_text_is_invisible(server: ResponsesServer) -> None:
    server.enqueue(Reply(drop_after=0))
    async with socket(server) as sock:
        events, _ = await turn(server, sock, Session().add_user("hi"))
    assert not any(isinstance(e, Restarted) for e in events)
    assert reply_text(events) == "You said: hi. I know 1 items."


async def test_two_drops_in_one_turn_are_an_error(server: ResponsesServer) -> None:
    server.enqueue(Reply(drop_after=1), Reply(drop_after=1))
    async with socket(server) as sock:
        with pytest.raises(ProviderConnectError, match="dropped"):
            await turn(server, sock, Session().add_user("hi"))
    assert len(server.creates) == 2


# -- connection lifecycle ----------------------------------------------------------------------


def test_backoff_defaults_and_custom_policies() -> None:
    assert [ReconnectPolicy().delay(n) for n in range(1, 6)] == [4, 4, 4, 8, 10]
    assert ReconnectPolicy().attempts == 3 and ReconnectPolicy().stable_after == 5
    assert [FAST.delay(n) for n in (1, 4, 9)] == [0.01, 0.05, 0.05]
    assert ReconnectPolicy(multiplier=1.0).delay(10_000) == 10
    with pytest.raises(ConfigError):
        ReconnectPolicy(attempts=0)
    with pytest.raises(ConfigError):
        ReconnectPolicy(min_wait=5, max_wait=1)


async def test_three_quick_deaths_stop_reconnecting_early(server: ResponsesServer) -> None:
    many = ReconnectPolicy(attempts=5, min_wait=0.01, max_wait=0.01)
    async with socket(server, reconnect=many) as sock:
        _, session = await turn(server, sock, Session().add_user("hi"))
        server.close_after_connect = 100
        server.drop_all()
        with pytest.raises(ProviderConnectError, match="3 times in a row") as info:
            await turn(server, sock, session.add_user("again"))
        assert "API key" in str(info.value)
        assert len(server.connections) == 3  # the first, then two that closed at once
        with pytest.raises(ProviderConnectError, match="3 times in a row"):
            await turn(server, sock, session.add_user("again"))  # it stays stopped
    assert len(server.connections) == 3


async def test_slow_deaths_use_all_attempts(server: ResponsesServer) -> None:
    patient = ReconnectPolicy(attempts=3, min_wait=0.01, max_wait=0.01, stable_after=0.0)
    async with socket(server, reconnect=patient) as sock:
        _, session = await turn(server, sock, Session().add_user("hi"))
        server.close_after_connect = 100
        server.drop_all()
        with pytest.raises(ProviderConnectError, match="after 3 attempts"):
            await turn(server, sock, session.add_user("again"))
    assert len(server.connections) == 1 + 3


async def test_reconnect_waits_between_attempts() -> None:
    async with ResponsesServer() as srv:
        waits = ReconnectPolicy(attempts=3, min_wait=0.1, max_wait=0.1)
        sock = ResponsesSocket(Endpoint(base_url=srv.base_url, model="m"), reconnect=waits)
        await sock.open()
        await srv.stop()  # nothing listens any more: every attempt is refused
        started = time.monotonic()
        with pytest.raises(ProviderConnectError, match=r"failed to reconnect .* after 3 attempts"):
            async for _ in responses_ws(
                sock.endpoint, [{"role": "user", "content": "x"}], socket=sock
            ):
                pass
        assert time.monotonic() - started >= 0.2  # two waits between three attempts
        await sock.close()


async def test_an_idle_drop_is_mended_before_the_next_request(server: ResponsesServer) -> None:
    async with socket(server) as sock:
        _, session = await turn(server, sock, Session().add_user("hi"))
        server.drop_all()
        await asyncio.sleep(0.05)
        events, _ = await turn(server, sock, session.add_user("back"))
    assert len(server.connections) == 2
    assert state_of(events).attempts == 1 and len(server.creates) == 2
    assert "previous_response_id" not in server.creates[-1].body  # a new connection holds nothing


async def test_an_intentional_close_never_reconnects(server: ResponsesServer) -> None:
    server.enqueue(Reply(text="x" * 200, delay=0.02))
    sock = socket(server)
    await sock.open()
    got_text = asyncio.Event()

    async def consume() -> None:
        async for event in responses_ws(
            endpoint(server), [{"role": "user", "content": "x"}], socket=sock
        ):
            if isinstance(event, Token):
                got_text.set()

    task = asyncio.create_task(consume())
    await got_text.wait()
    await sock.close()
    with pytest.raises(ProviderConnectError, match="closed"):
        await task
    with pytest.raises(ProviderConnectError, match="closed"):
        await turn(server, sock, Session().add_user("again"))
    await asyncio.sleep(0.05)
    assert len(server.connections) == 1 and sock.stats.reconnects == 0


async def test_a_refused_key_fails_at_open_without_showing_it(server: ResponsesServer) -> None:
    sock = ResponsesSocket(endpoint(server).replace(api_key="sk-wrong"), reconnect=FAST)
    with pytest.raises(ProviderStatusError, match=r"HTTP 401.*check the API key") as info:
        await sock.open()
    assert info.value.status_code == 401 and "sk-wrong" not in str(info.value)


async def test_a_session_refused_at_connect_says_so(server: ResponsesServer) -> None:
    server.close_after_connect = 1
    with pytest.raises(ProviderConnectError, match=r"right after connecting.*API key"):
        await socket(server).open()


async def test_the_socket_opens_on_first_use(server: ResponsesServer) -> None:
    sock = responses_socket(endpoint(server), reconnect=FAST)
    assert not sock.connected
    try:
        events, _ = await turn(server, sock, Session().add_user("hi"))
    finally:
        await sock.close()
    assert reply_text(events) == "You said: hi. I know 1 items."
    with pytest.raises(ConfigError):
        ResponsesSocket(endpoint(server), url="http://127.0.0.1:1/v1/responses")


# -- barge-in: cancel and drain ------------------------------------------------------------------

LONG = "Once upon a time there was a very long story that nobody heard to the end. " * 4


async def barge_in(
    server: ResponsesServer,
    sock: ResponsesSocket,
    session: Session,
    *,
    tokens: int = 2,
    **options: Any,
) -> tuple[str, Session]:
    """Cancel the consumer's task after ``tokens`` tokens; the heard text and next Session."""
    heard: list[str] = []
    enough = asyncio.Event()

    async def consume() -> None:
        async for event in responses_ws(endpoint(server), session, socket=sock, **options):
            if isinstance(event, Token):
                heard.append(event.text)
                if len(heard) >= tokens:
                    enough.set()

    task = asyncio.create_task(consume())
    await enough.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    text = "".join(heard)
    return text, session.add_assistant(text, interrupted=True)


def cancels(server: ResponsesServer) -> list[dict[str, Any]]:
    return [m for c in server.connections for m in c.messages if m["type"] == "response.cancel"]


async def test_barge_in_cancels_keeps_the_socket_and_drains(server: ResponsesServer) -> None:
    async with socket(server) as sock:
        _, session = await turn(server, sock, Session().add_user("hi"))
        server.enqueue(Reply(text=LONG, delay=0.01))
        heard, session = await barge_in(server, sock, session.add_user("story please"))
        await asyncio.sleep(0.05)
        assert cancels(server) == [{"type": "response.cancel", "response_id": "resp_0002"}]
        assert sock.connected and sock.stats.cancels == 1
        events, _ = await turn(server, sock, session.add_user("stop. what time is it?"))
    reply = reply_text(events)
    assert reply == "You said: stop. what time is it?. I know 5 items."
    assert "Once" not in reply and heard.startswith("Once")
    assert server.creates[1].answered == "cancelled"
    assert len(server.connections) == 1 and sock.stats.drains == 1
    assert server.creates[-1].body["previous_response_id"] == "resp_0001"


async def test_breaking_out_of_the_loop_cancels_too(server: ResponsesServer) -> None:
    server.enqueue(Reply(text=LONG, delay=0.01))
    async with socket(server) as sock:
        stream = responses_ws(endpoint(server), [{"role": "user", "content": "x"}], socket=sock)
        async with contextlib.aclosing(stream) as events:
            async for event in events:
                if isinstance(event, Token):
                    break
        events2, _ = await turn(server, sock, Session().add_user("next"))
    assert len(cancels(server)) == 1
    assert reply_text(events2) == "You said: next. I know 1 items."


async def test_cancel_before_response_created_is_sent_when_it_arrives(
    server: ResponsesServer,
) -> None:
    server.enqueue(Reply(text=LONG, delay=0.01, start_delay=0.2))
    async with socket(server) as sock:
        task = asyncio.create_task(
            anext(aiter(responses_ws(endpoint(server), Session().add_user("x"), socket=sock)))
        )
        await asyncio.sleep(0.05)  # sent, but response.created not here yet
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert cancels(server) == []
        events, _ = await turn(server, sock, Session().add_user("next"))
    assert cancels(server) == [{"type": "response.cancel", "response_id": "resp_0001"}]
    assert server.creates[0].answered == "cancelled"
    assert reply_text(events) == "You said: next. I know 1 items."


async def test_an_ignored_cancel_is_drained_on_the_same_connection(
    server: ResponsesServer,
) -> None:
    async with socket(server) as sock:
        server.enqueue(Reply(text=LONG, delay=0.002, ignore_cancel=True))
        _, session = await barge_in(server, sock, Session().add_user("story"))
        events, _ = await turn(server, sock, session.add_user("short please"))
    assert server.creates[0].answered == "completed"  # it ran to the end…
    assert "Once" not in reply_text(events)  # …and none of it leaked into the next reply
    assert reply_text(events) == "You said: short please. I know 3 items."
    assert len(server.connections) == 1


async def test_a_slow_drain_gets_a_fresh_connection(server: ResponsesServer) -> None:
    async with socket(server, drain_timeout=0.2) as sock:
        server.enqueue(Reply(text=LONG, delay=0.01, cancel_delay=1.0))
        _, session = await barge_in(server, sock, Session().add_user("story"))
        started = time.monotonic()
        events, _ = await turn(server, sock, session.add_user("next"))
        assert time.monotonic() - started < 0.9
    assert sock.stats.drain_reconnects == 1 and len(server.connections) == 2
    assert reply_text(events) == "You said: next. I know 3 items."


async def test_a_rejected_cancel_gets_a_fresh_connection(server: ResponsesServer) -> None:
    async with socket(server) as sock:
        server.enqueue(Reply(text=LONG, delay=0.01, reject_cancel=True))
        _, session = await barge_in(server, sock, Session().add_user("story"))
        events, _ = await turn(server, sock, session.add_user("next"))
    assert sock.stats.drain_reconnects == 1 and len(server.connections) == 2
    assert reply_text(events) == "You said: next. I know 3 items."


async def test_a_cancel_rejected_after_the_end_is_not_taken_for_the_next_reply(
    server: ResponsesServer,
) -> None:
    """The response ends before the cancel arrives; the rejection comes after its terminal
    event, ahead of the next request's events: a fresh connection and one full retry."""
    server.reject_all_cancels = True
    async with socket(server) as sock:
        server.enqueue(Reply(text=LONG))  # all of it is sent at once
        stream = responses_ws(endpoint(server), Session().add_user("story"), socket=sock)
        async with contextlib.aclosing(stream) as events:
            async for event in events:
                if isinstance(event, Token):
                    break
        reply, _ = await turn(server, sock, Session().add_user("next"))
    assert reply_text(reply) == "You said: next. I know 1 items."
    assert state_of(reply).attempts == 2 and len(server.connections) == 2


# -- done when: five turns, a drop in turn 3, a barge-in in turn 4 --------------------------------


async def five_turns(server: ResponsesServer, *, incremental: bool) -> list[ResponsesState]:
    """The scripted conversation; returns each completed turn's state (turn 4 has none)."""
    states: list[ResponsesState] = []
    session = Session(call_id="CA-five")
    async with socket(server) as sock:
        for number, text in enumerate(
            ["Hi, I need help with my order.", "It is order 1234.", "It never arrived."], 1
        ):
            session = session.add_user(text)
            if number == 3:
                server.enqueue(Reply(drop_after=4))  # a server-side drop mid-reply
            events, after = await turn(server, sock, session, incremental=incremental)
            assert reply_text(events) == echo_text(full_input(session))
            check_context(server, session)
            states.append(state_of(events))
            session = after
        server.enqueue(Reply(text=LONG, delay=0.01))  # turn 4: the user barges in
        heard, session = await barge_in(
            server, sock, session.add_user("Can you explain?"), incremental=incremental
        )
        session = session.add_user("Actually, just refund me.")
        events, _ = await turn(server, sock, session, incremental=incremental)
        reply = reply_text(events)
        assert reply == "You said: Actually, just refund me.. I know 9 items."
        assert heard and heard not in reply and "Once" not in reply
        check_context(server, session)
        states.append(state_of(events))
    return states


async def test_five_turns_with_a_drop_and_a_barge_in(server: ResponsesServer) -> None:
    states = await five_turns(server, incremental=True)
    creates = server.creates
    assert [
        (r.connection, "previous_response_id" in r.body, len(r.body["input"]), r.answered)
        for r in creates
    ] == [
        (1, False, 1, "completed"),  # turn 1: the full context, once
        (1, True, 1, "completed"),  # turn 2: only the new user message
        (1, True, 1, "dropped"),  # turn 3: new item only… then the server drops
        (2, False, 5, "completed"),  # turn 3: the one full-context retry, new connection
        (2, True, 1, "cancelled"),  # turn 4: new item only; the user barges in
        (2, True, 3, "completed"),  # turn 5: interrupted reply + 2 user turns; after a drain
    ]
    assert creates[-1].body["previous_response_id"] == states[2].state["response_id"]
    assert [s.incremental for s in states] == [False, True, False, True]
    assert len(cancels(server)) == 1 and len(server.connections) == 2


async def test_input_bytes_per_turn_with_and_without_incremental_mode(
    capsys: pytest.CaptureFixture[str],
) -> None:
    figures = {}
    for incremental in (True, False):
        async with ResponsesServer(api_key="sk-test") as srv:
            await five_turns(srv, incremental=incremental)
            figures[incremental] = [len(input_json(r.body)) for r in srv.creates]
            assert not srv.problems
    with capsys.disabled():
        print("\ninput bytes per response.create (5 turns; turn 3 drops once, turn 4 is cut off)")
        print("  incremental:", figures[True], "total", sum(figures[True]))
        print("  full context:", figures[False], "total", sum(figures[False]))
    assert sum(figures[True]) < sum(figures[False])
    assert figures[True][-1] < figures[False][-1]
