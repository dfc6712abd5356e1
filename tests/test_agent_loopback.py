"""The agent with a real LLM over HTTP: the scripted SSE server on 127.0.0.1."""

from __future__ import annotations

import asyncio

from servers.sse_server import Reply, text_reply

import voicekit as vk
from voicekit import agent
from voicekit.conversation import barge_in, run_conversation, say
from voicekit.events import ReplyFailed, Sentence
from voicekit.llm import INTERRUPTED_MARKER, NO_RETRY, custom
from voicekit.tts import synthesize_tones, tones

SORRY = "Sorry, something went wrong."


def endpoint(server, **options):
    return custom(base_url=server.base_url, model="test-model", retry=NO_RETRY, **options)


async def tasks_left() -> set[asyncio.Task]:
    """The tasks still running once the server has seen the client hang up (give it 1 s)."""
    me = asyncio.current_task()
    for _ in range(100):
        left = {t for t in asyncio.all_tasks() if t is not me and not t.done()}
        if not left:
            break
        await asyncio.sleep(0.01)
    return left


async def test_a_streamed_reply_from_a_server(sse_server):
    sse_server.enqueue(
        text_reply(["Hel", "lo there", ". How can", " I help", "?"]),
        text_reply(["Goodbye", "!"]),
    )
    bot = agent(
        llm=endpoint(sse_server),
        tts=tones(pass_text=True),
        session=vk.Session(call_id="loop"),
        system="Be brief.",
    )
    result = await run_conversation(bot, [say("hi"), say("bye")])
    assert result.transcript == [
        ("user", "hi"),
        ("assistant", "Hello there. How can I help?"),
        ("user", "bye"),
        ("assistant", "Goodbye!"),
    ]
    assert [s.text for s in result.of(Sentence)] == ["Hello there.", "How can I help?", "Goodbye!"]
    second = sse_server.requests[1].json()
    assert second["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello there. How can I help?"},
        {"role": "user", "content": "bye"},
    ]
    # one HTTP client for the whole call: the connection is reused
    assert sse_server.connections == 1
    assert not await tasks_left()


async def test_barge_in_before_the_first_byte_hangs_up_and_marks_history(sse_server):
    sse_server.enqueue(
        text_reply(["The first sentence is quite long. ", "The second one too."]),
        Reply(delay=30),  # never answers in time
        text_reply(["Okay."]),
    )
    bot = agent(llm=endpoint(sse_server), tts=tones(pass_text=True), llm_error_message=SORRY)
    samples, rate = synthesize_tones("The first sentence is quite long.")
    cut = samples.shape[0] * 1000 / rate + 200  # during the second sentence
    result = await asyncio.wait_for(
        run_conversation(
            bot,
            [
                say("tell me"),
                barge_in("wait", after_audio_ms=cut),
                say("hello?", after=0.1),  # cuts in while the request waits for its first byte
            ],
        ),
        10,
    )
    disconnect = await sse_server.wait_disconnect()
    assert disconnect.phase == "before-first-byte"
    assert not result.of(ReplyFailed)
    assert SORRY not in [s.text for s in result.of(Sentence)]
    third = sse_server.requests[2].json()["messages"]
    assert third[1] == {
        "role": "assistant",
        "content": f"The first sentence is quite long. {INTERRUPTED_MARKER}",
    }
    assert [m["content"] for m in third[2:]] == ["wait", "hello?"]
    assert result.transcript[-1] == ("assistant", "Okay.")
    assert not await tasks_left()


async def test_a_server_error_before_audio_speaks_the_fallback(sse_server):
    sse_server.enqueue(Reply(status=500, body=b'{"error": {"message": "boom"}}'))
    bot = agent(llm=endpoint(sse_server), tts=tones(pass_text=True), llm_error_message=SORRY)
    result = await run_conversation(bot, [say("hi")])
    failed = result.of(ReplyFailed)
    assert len(failed) == 1 and failed[0].fallback
    assert isinstance(failed[0].exception, vk.ProviderStatusError)
    assert [s.text for s in result.of(Sentence)] == [SORRY]
    assert result.transcript == [("user", "hi")]
