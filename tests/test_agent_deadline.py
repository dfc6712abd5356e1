"""Dead air is bounded: a first-audio deadline per reply, an overall deadline per LLM request,
and an optional filler — against real servers on 127.0.0.1 that send only keep-alives, trickle
tokens or never answer (issue 9 item 2)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
from servers.sse_server import Reply, SSEServer, chunk, stream_reply, text_reply

import voicekit as vk
from voicekit import agent
from voicekit.conversation import run_conversation, say
from voicekit.events import ReplyFailed, ReplyStarted, Sentence, Token
from voicekit.llm import NO_RETRY, chat, custom
from voicekit.tts import tones

SORRY = "Sorry, I am having trouble right now."


def endpoint(server: SSEServer, **options: Any) -> vk.llm.Endpoint:
    return custom(base_url=server.base_url, model="test-model", retry=NO_RETRY, **options)


def keep_alives(seconds: float, every: float = 0.2) -> Reply:
    """A 200 event stream that sends only SSE comments, ``every`` seconds, for ``seconds``."""
    parts: list[Any] = []
    for _ in range(round(seconds / every)):
        parts += [b": keep-alive\n\n", every]
    return stream_reply(parts, done=False, end="hang")


def trickle(texts: list[str], every: float) -> Reply:
    """Tokens one by one, ``every`` seconds apart, then the connection hangs."""
    items: list[Any] = [chunk("", role="assistant")]
    for text in texts:
        items += [chunk(text), every]
    return stream_reply(items, done=False, end="hang")


NEVER = Reply(delay=60.0)  # accepts the request, never sends even a status line


def bot(server: SSEServer, **options: Any) -> vk.Stage:
    options.setdefault("llm_error_message", SORRY)
    return agent(
        llm=endpoint(server, timeout=30.0),  # the endpoint's own timeout never fires here
        tts=tones(pass_text=True),
        session=vk.Session(call_id="dead-air"),
        **options,
    )


def waited(result: Any) -> float:
    """Seconds from the ReplyStarted to the ReplyFailed on the conversation's clock."""
    started = next(t for t, x in result.timeline if isinstance(x, ReplyStarted))
    failed = next(t for t, x in result.timeline if isinstance(x, ReplyFailed))
    return failed - started


@pytest.mark.parametrize(
    ("reply", "what"),
    [
        (keep_alives(20.0), "the LLM sent no text (nothing at all, or only keep-alives)"),
        (NEVER, "the LLM sent no text (nothing at all, or only keep-alives)"),
        (
            trickle(["one", " two", " three", " four", " five", " six", " seven"], 0.3),
            "but no whole sentence",
        ),
    ],
    ids=["keep-alives", "never-answers", "trickle"],
)
async def test_no_audio_within_the_first_audio_deadline_fails_and_speaks_the_fallback(
    sse_server: SSEServer, reply: Reply, what: str
) -> None:
    sse_server.enqueue(reply, text_reply(["Fine", " now."]))
    result = await run_conversation(
        bot(sse_server, first_audio_deadline=1.0), [say("hello?"), say("again?")]
    )
    [failed] = result.of(ReplyFailed)
    assert failed.source == "llm" and failed.fallback
    assert failed.error.startswith("ProviderTimeout: no audio within 1 s: ")
    assert what in failed.error
    assert 0.95 <= waited(result) < 3.0
    assert [s.text for s in result.of(Sentence)] == [SORRY, "Fine now."]
    # the abandoned request was closed, and nothing of it is in the Session
    disconnect = await sse_server.wait_disconnect(within=2.0)
    assert disconnect.after < 3.0
    assert result.transcript == [
        ("user", "hello?"),
        ("user", "again?"),
        ("assistant", "Fine now."),
    ]


async def test_the_trickle_error_says_how_much_text_came(sse_server: SSEServer) -> None:
    sse_server.enqueue(trickle(["one", " two", " three", " four", " five"], 0.3))
    result = await run_conversation(bot(sse_server, first_audio_deadline=1.0), [say("count")])
    [failed] = result.of(ReplyFailed)
    assert "the LLM sent" in failed.error and "'one two three" in failed.error


async def test_the_llm_deadline_ends_a_reply_that_trickles_after_its_first_sentence(
    sse_server: SSEServer,
) -> None:
    words = ["Hello there.", " And", " then", " some", " more", " words", " slowly"] + [" on"] * 20
    sse_server.enqueue(trickle(words, 0.25))
    result = await run_conversation(bot(sse_server, llm_deadline=1.5), [say("hi")])
    [failed] = result.of(ReplyFailed)
    assert failed.source == "llm" and not failed.fallback  # something was heard already
    assert "not finished within 1.5 s (llm_deadline)" in failed.error
    assert 1.4 <= waited(result) < 4.0
    assert [s.text for s in result.of(Sentence)] == ["Hello there."]
    assert result.transcript == [("user", "hi"), ("assistant", "Hello there.")]
    await sse_server.wait_disconnect(within=2.0)


async def test_a_late_first_token_gets_the_filler_which_is_not_recorded(
    sse_server: SSEServer,
) -> None:
    sse_server.enqueue(text_reply(["It is", " sunny."], delay=1.2))
    result = await run_conversation(
        bot(sse_server, filler="One moment.", filler_after=0.3), [say("weather?")]
    )
    assert not result.of(ReplyFailed)
    assert [s.text for s in result.of(Sentence)] == ["One moment.", "It is sunny."]
    assert result.transcript == [("user", "weather?"), ("assistant", "It is sunny.")]
    assert "One moment." not in json.dumps(result.session.messages_json())


async def test_no_filler_when_the_first_token_is_in_time(sse_server: SSEServer) -> None:
    sse_server.enqueue(text_reply(["Quick", " answer."]))
    result = await run_conversation(
        bot(sse_server, filler="One moment.", filler_after=0.5), [say("hi")]
    )
    assert [s.text for s in result.of(Sentence)] == ["Quick answer."]


async def test_the_filler_does_not_stop_the_deadline(sse_server: SSEServer) -> None:
    sse_server.enqueue(NEVER)
    result = await run_conversation(
        bot(sse_server, filler="One moment.", filler_after=0.2, first_audio_deadline=1.0),
        [say("hello?")],
    )
    assert [s.text for s in result.of(Sentence)] == ["One moment.", SORRY]
    [failed] = result.of(ReplyFailed)
    assert failed.fallback and "no audio within 1 s" in failed.error
    assert result.transcript == [("user", "hello?")]


async def test_a_slow_tool_counts_against_the_first_audio_deadline() -> None:
    from voicekit.conversation import scripted_llm
    from voicekit.events import ToolCall

    async def lookup() -> str:
        await asyncio.sleep(30)
        return "late"

    llm = scripted_llm([ToolCall("c1", "lookup", "{}")], "Unused.")
    slow = agent(
        llm=llm,
        tts=tones(pass_text=True),
        tools=[lookup],
        first_audio_deadline=0.5,
        llm_error_message=SORRY,
    )
    result = await run_conversation(slow, [say("look it up")])
    [failed] = result.of(ReplyFailed)
    assert failed.source == "tool" and "the tool 'lookup' was still running" in failed.error
    messages = result.session.messages_json()
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert "cancelled" in messages[-1]["content"]


async def test_deadlines_can_be_turned_off_and_bad_values_are_refused(
    sse_server: SSEServer,
) -> None:
    sse_server.enqueue(text_reply(["Hi", "."], delay=0.3))
    result = await run_conversation(
        bot(sse_server, first_audio_deadline=None, llm_deadline=None), [say("hi")]
    )
    assert result.transcript[-1] == ("assistant", "Hi.")
    for bad in (0, -1, float("inf"), "5", True):
        with pytest.raises(vk.ConfigError, match="first_audio_deadline must be a positive"):
            agent(llm=endpoint(sse_server), tts=tones(), first_audio_deadline=bad)
    with pytest.raises(vk.ConfigError, match="filler_after must be a positive"):
        agent(llm=endpoint(sse_server), tts=tones(), filler_after=None)  # type: ignore[arg-type]


# -- chat(deadline=...) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [keep_alives(20.0), NEVER, trickle(["a"] * 100, 0.2)],
    ids=["keep-alives", "never-answers", "trickle"],
)
async def test_chat_deadline_bounds_the_whole_request(sse_server: SSEServer, reply: Reply) -> None:
    sse_server.enqueue(reply)
    loop = asyncio.get_running_loop()
    began = loop.time()
    tokens = []
    messages = [{"role": "user", "content": "hi"}]
    stream = chat(endpoint(sse_server, timeout=30.0), messages, deadline=1.0)
    with pytest.raises(vk.ProviderTimeout, match=r"did not finish within 1 s \(deadline\)"):
        async with contextlib.aclosing(stream) as events:
            async for event in events:
                if isinstance(event, Token):
                    tokens.append(event.text)
    assert 0.95 <= loop.time() - began < 2.5
    await sse_server.wait_disconnect(within=2.0)


async def test_chat_with_a_deadline_streams_a_normal_reply_unchanged(sse_server: SSEServer) -> None:
    sse_server.enqueue(text_reply(["Hel", "lo."]))
    messages = [{"role": "user", "content": "hi"}]
    events = [e async for e in chat(endpoint(sse_server), messages, deadline=5.0)]
    assert "".join(e.text for e in events if isinstance(e, Token)) == "Hello."
    with pytest.raises(vk.ConfigError, match="deadline must be a positive number"):
        [e async for e in chat(endpoint(sse_server), messages, deadline=0)]


async def test_a_prepared_reply_counts_its_deadline_from_the_end_of_the_turn() -> None:
    """The LLM starts at the TurnPending; the caller waits only from the TurnEnded."""
    from collections.abc import AsyncIterator

    from voicekit.events import AudioChunk, TurnEnded, TurnPending, TurnStarted

    async def llm(messages: Any) -> AsyncIterator[str]:
        await asyncio.sleep(1.5)  # from the request's start: 1.2 s of it hidden in the turn wait
        yield "Hello there."

    loop = asyncio.get_running_loop()
    ended: list[float] = []

    async def caller() -> AsyncIterator[Any]:
        yield TurnStarted(0.0)
        yield TurnPending("hi", 1.0)
        await asyncio.sleep(1.2)
        ended.append(loop.time())
        yield TurnEnded("hi", 2.2)

    prepared = agent(llm=llm, tts=tones(pass_text=True), first_audio_deadline=1.0)
    out = [(loop.time(), x) async for x in caller() | prepared]
    assert not [x for _, x in out if isinstance(x, ReplyFailed)]
    first = next(t for t, x in out if isinstance(x, AudioChunk))
    assert first - ended[0] < 1.0  # heard within the deadline, counted from the turn's end
    assert [x.text for _, x in out if isinstance(x, Sentence)] == ["Hello there."]
