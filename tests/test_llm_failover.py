"""LLM failover: switch on the active provider's own errors, before any output, and only then."""

from __future__ import annotations

import asyncio

import pytest
from servers.sse_server import json_reply, text_reply

import voicekit as vk
from voicekit.events import Switched, Token
from voicekit.llm import NO_RETRY, custom, failover, provider_name

HI = [{"role": "user", "content": "hi"}]


def answering(text: str, *, name: str = "good", log: list | None = None):
    async def llm(messages):
        if log is not None:
            log.append(name)
        for word in text.split(" "):
            yield Token(word + " ")

    llm.__name__ = name
    return llm


def failing(exc: Exception, *, name: str = "bad", after: list | None = None, log=None):
    async def llm(messages):
        if log is not None:
            log.append(name)
        for item in after or ():
            yield item
        raise exc

    llm.__name__ = name
    return llm


async def collect(llm, messages=HI, **context):
    return [e async for e in llm(messages, **context)]


async def test_switches_on_the_providers_own_error_before_any_output():
    log = []
    llm = failover(failing(ConnectionError("down"), log=log), answering("hello there", log=log))
    events = await collect(llm)
    assert events[0] == Switched("bad", "good", "ConnectionError: down")
    assert "".join(e.text for e in events[1:]) == "hello there "
    assert log == ["bad", "good"]
    assert llm.__name__ == "failover(bad, good)"


async def test_moves_down_the_list_and_raises_the_last_error():
    llm = failover(
        failing(ConnectionError("one"), name="a"),
        failing(TimeoutError("two"), name="b"),
        failing(ValueError("three"), name="c"),
    )
    with pytest.raises(ValueError, match="three"):
        await collect(llm)
    seen = []
    with pytest.raises(ValueError):
        async for event in llm(HI):
            seen.append(event)
    assert [(s.from_name, s.to_name) for s in seen] == [("a", "b"), ("b", "c")]


async def test_no_switch_once_the_provider_has_yielded():
    log = []
    llm = failover(
        failing(ConnectionError("cut"), after=[Token("Hello ")], log=log),
        answering("again", log=log),
    )
    seen = []
    with pytest.raises(ConnectionError, match="cut"):
        async for event in llm(HI):
            seen.append(event)
    assert seen == [Token("Hello ")]  # nothing said twice
    assert log == ["bad"]


async def test_an_error_thrown_in_by_the_consumer_passes_through():
    log = []
    llm = failover(answering("one two three", log=log), answering("backup", log=log))
    stream = llm(HI)
    assert await anext(stream) == Token("one ")
    with pytest.raises(KeyError):
        await stream.athrow(KeyError("from the consumer"))
    assert log == ["good"]


async def test_an_error_caused_by_cancelling_the_consumer_does_not_switch():
    log = []

    async def slow(messages):
        log.append("slow")
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:  # a client whose read fails when it is torn down
            raise vk.ProviderConnectError("connection closed") from None
        yield Token("late")

    llm = failover(slow, answering("backup", log=log))
    task = asyncio.ensure_future(collect(llm))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises((asyncio.CancelledError, vk.ProviderConnectError)):
        await task
    assert log == ["slow"]


async def test_cancellation_itself_never_switches():
    log = []

    async def hang(messages):
        log.append("hang")
        await asyncio.sleep(30)
        yield Token("late")

    llm = failover(hang, answering("backup", log=log))
    task = asyncio.ensure_future(collect(llm))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log == ["hang"]


async def test_when_narrows_which_errors_switch():
    llm = failover(
        failing(TypeError("a bug, not an outage")),
        answering("backup"),
        when=lambda exc: isinstance(exc, vk.ProviderError | ConnectionError),
    )
    with pytest.raises(TypeError):
        await collect(llm)
    llm = failover(failing(vk.ProviderTimeout("slow")), answering("backup"), when=lambda e: True)
    assert isinstance((await collect(llm))[0], Switched)


async def test_announce_false_leaves_the_event_out():
    llm = failover(failing(ConnectionError("x")), answering("ok"), announce=False)
    assert await collect(llm) == [Token("ok ")]


async def test_a_provider_that_cannot_be_called_fails_over():
    async def not_a_generator(messages):  # returns a coroutine: a TypeError from call_llm
        return "hi"

    llm = failover(not_a_generator, answering("ok"))
    events = await collect(llm)
    assert events[0].from_name == "not_a_generator"
    assert "TypeError" in events[0].error


async def test_context_goes_to_each_provider_as_it_declares():
    seen = {}

    async def first(messages, *, session):
        seen["first"] = session
        raise ConnectionError("down")
        yield

    async def second(messages, *, tools, caller):
        seen["second"] = (tools, caller)
        yield Token("ok")

    async def third(messages, **context):
        yield Token("unused")

    llm = failover(first, second, third)
    session = vk.Session(call_id="c", caller="+15550001111")
    await collect(llm, session=session, tools=[{"name": "t"}], caller="+15550001111")
    assert seen["first"] is session
    assert seen["second"] == ([{"name": "t"}], "+15550001111")


def test_names_and_arguments():
    endpoint = custom(base_url="http://127.0.0.1:9/v1", model="m", name="primary")
    assert provider_name(endpoint) == "primary"
    with pytest.raises(vk.ConfigError):
        failover()
    with pytest.raises(vk.ConfigError):
        failover(42)


async def test_endpoints_fail_over_on_a_real_server(sse_server):
    sse_server.enqueue(
        json_reply(503, {"error": {"message": "overloaded"}}),
        text_reply(["Hello", " from the backup."]),
    )
    primary = custom(base_url=sse_server.base_url, model="a", name="primary", retry=NO_RETRY)
    backup = custom(base_url=sse_server.base_url, model="b", name="backup", retry=NO_RETRY)
    events = await collect(failover(primary, backup))
    assert events[0].from_name == "primary" and events[0].to_name == "backup"
    assert "503" in events[0].error
    assert "".join(e.text for e in events if isinstance(e, Token)) == "Hello from the backup."
    assert [r.json()["model"] for r in sse_server.requests] == ["a", "b"]


# -- cool-down, remembered in the Session -----------------------------------------------------


def flaky(name: str, log: list, *, up: list[bool]):
    """Fails while ``up[0]`` is False, answers once it is True."""

    async def llm(messages):
        log.append(name)
        if not up[0]:
            raise ConnectionError(f"{name} is down")
        yield Token(f"{name} here")

    llm.__name__ = name
    return llm


def apply(session: vk.Session, events: list) -> vk.Session:
    for event in events:
        if isinstance(event, vk.Continuity):
            session = event.apply(session)
    return session


async def test_a_failed_provider_cools_down_in_the_session_then_is_tried_again():
    log: list[str] = []
    up = [False]
    now = [1000.0]
    llm = failover(
        flaky("primary", log, up=up),
        answering("backup here", name="backup", log=log),
        cooldown=30.0,
        clock=lambda: now[0],
    )
    session = vk.Session(call_id="c1")

    events = await collect(llm, session=session)
    assert log == ["primary", "backup"]
    assert any(isinstance(e, Switched) for e in events)
    session = apply(session, events)
    (key,) = session.continuity
    assert session.continuity[key]["down_until"] == {"0:primary": 1030.0}

    log.clear()  # within the cool-down: the backup first, the primary is not even called
    now[0] = 1010.0
    events = await collect(llm, session=session)
    assert log == ["backup"] and not any(isinstance(e, Switched) for e in events)
    session = apply(session, events)

    log.clear()  # after it: the primary again, and it is forgotten once it answers
    now[0] = 1031.0
    up[0] = True
    events = await collect(llm, session=session)
    assert log == ["primary"]
    assert "".join(e.text for e in events if isinstance(e, Token)) == "primary here"
    assert apply(session, events).continuity == {}


async def test_without_a_session_or_with_cooldown_zero_nothing_is_remembered():
    log: list[str] = []
    for llm, context in (
        (failover(flaky("p", log, up=[False]), answering("b", log=log)), {}),
        (
            failover(flaky("p", log, up=[False]), answering("b", log=log), cooldown=0),
            {"session": vk.Session()},
        ),
    ):
        events = await collect(llm, **context)
        assert not any(isinstance(e, vk.Continuity) for e in events)
    with pytest.raises(vk.ConfigError, match="cooldown"):
        failover(answering("x"), cooldown=-1)


async def test_when_every_provider_is_cooling_down_they_are_tried_in_order():
    log: list[str] = []
    now = [0.0]
    llm = failover(flaky("a", log, up=[False]), flaky("b", log, up=[True]), clock=lambda: now[0])
    session = vk.Session().with_continuity(
        "failover(a, b)", {"down_until": {"0:a": 50.0, "1:b": 50.0}}
    )
    events = await collect(llm, session=session)
    assert log == ["a", "b"]
    assert "".join(e.text for e in events if isinstance(e, Token)) == "b here"


async def test_the_agent_keeps_the_cooldown_across_turns():
    from voicekit import agent
    from voicekit.conversation import run_conversation, say
    from voicekit.tts import tones

    log: list[str] = []
    llm = failover(flaky("primary", log, up=[False]), answering("Backup here.", name="b", log=log))
    bot = agent(llm=llm, tts=tones(pass_text=True), session=vk.Session(call_id="c"))
    result = await run_conversation(bot, [say("one"), say("two"), say("three")])
    assert log == ["primary", "b", "b", "b"]  # the dead primary cost one try, not three
    assert len(result.of(Switched)) == 1
    assert [text for role, text in result.transcript if role == "assistant"] == ["Backup here."] * 3
