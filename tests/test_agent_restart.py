"""An LLM that starts its reply over (Responses WebSocket reconnect) is never spoken twice."""

from __future__ import annotations

import json

import voicekit as vk
from voicekit import agent
from voicekit.conversation import run_conversation, say
from voicekit.events import Sentence, Token, ToolCall, ToolResult
from voicekit.llm import Restarted
from voicekit.tts import tones


def restarting_llm(before: list[str], after: list[str], *, calls: list | None = None):
    """Yields ``before``, then a Restarted, then ``after`` (a full new reply)."""

    async def llm(messages):
        if messages[-1]["role"] == "tool":
            for piece in ["It is ", "sunny."]:
                yield Token(piece)
            return
        for piece in before:
            yield Token(piece) if isinstance(piece, str) else piece
        yield Restarted("connection dropped")
        for piece in after:
            yield Token(piece) if isinstance(piece, str) else piece

    return llm


async def reply_of(llm, **options):
    bot = agent(llm=llm, tts=tones(pass_text=True), session=vk.Session(call_id="r"), **options)
    return await run_conversation(bot, [say("hi")])


async def test_the_repeated_prefix_is_skipped_and_the_rest_spoken_once():
    llm = restarting_llm(["Hello there. How"], ["Hello", " there.", " How are", " you?"])
    result = await reply_of(llm)
    assert [s.text for s in result.of(Sentence)] == ["Hello there.", "How are you?"]
    assert result.transcript[-1] == ("assistant", "Hello there. How are you?")
    assert len(result.of(Restarted)) == 1


async def test_a_restart_that_diverges_goes_on_from_where_it_differs():
    llm = restarting_llm(["Good morning."], ["Good evening. Welcome back."])
    result = await reply_of(llm)
    spoken = " ".join(s.text for s in result.of(Sentence))
    assert spoken.count("Good") == 1
    assert result.transcript[-1][1] == spoken


async def test_a_restart_before_any_text_changes_nothing():
    llm = restarting_llm([], ["Fresh start."])
    result = await reply_of(llm)
    assert [s.text for s in result.of(Sentence)] == ["Fresh start."]


async def test_a_tool_call_repeated_after_a_restart_runs_once():
    ran: list[str] = []

    def weather(city: str) -> dict:
        """Weather in a city."""
        ran.append(city)
        return {"city": city}

    call = ToolCall("call_1", "weather", json.dumps({"city": "Rome"}))
    again = ToolCall("call_1b", "weather", json.dumps({"city": "Rome"}))
    llm = restarting_llm([call], [again])
    result = await reply_of(llm, tools=[weather])
    assert ran == ["Rome"]
    assert [r.call_id for r in result.of(ToolResult)] == ["call_1"]
    assert result.transcript[-1] == ("assistant", "It is sunny.")


async def test_a_websocket_drop_mid_reply_is_not_spoken_twice():
    """The real thing: Responses over a WebSocket that the server drops after 4 deltas."""
    import functools

    from servers.responses_server import Reply, ResponsesServer

    from voicekit.llm import Endpoint, ReconnectPolicy, ResponsesSocket, responses_ws

    text = "Hello there. How are you today?"
    async with ResponsesServer(api_key="sk-test") as server:
        server.enqueue(Reply(text=text, chunk=4, drop_after=4), Reply(text=text, chunk=4))
        endpoint = Endpoint(base_url=server.base_url, model="gpt-test", api_key="sk-test")
        fast = ReconnectPolicy(min_wait=0.01, max_wait=0.05, multiplier=0.01)
        async with ResponsesSocket(endpoint, reconnect=fast) as sock:
            llm = functools.partial(responses_ws, endpoint, socket=sock)
            result = await reply_of(llm)
        assert not server.problems, server.problems
    assert len(result.of(Restarted)) == 1
    assert [s.text for s in result.of(Sentence)] == ["Hello there.", "How are you today?"]
    assert result.transcript[-1] == ("assistant", text)
    assert result.session.continuity_for("responses")  # the state of the retried response
