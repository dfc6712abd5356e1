"""Text that is not valid Unicode never poisons a Session, a request body or a TTS (issue 9 item 3).

An LLM stream can split an emoji into two JSON escapes, ``"\\ud83d"`` then ``"\\ude00"``, in two
deltas. Decoded one event at a time they are two lone surrogates, which no UTF-8 encoder takes.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from servers.sse_server import SSEServer, chunk, stream_reply, text_reply

import voicekit as vk
from voicekit import AudioChunk, ConfigError, ReplyFailed, Sentence, Session, Token, tts
from voicekit._unicode import frozen_valid, speakable, valid_unicode
from voicekit.conversation import run_conversation, say
from voicekit.llm import Endpoint, chat, custom

SMILE = "\U0001f600"
HIGH, LOW = "\ud83d", "\ude00"


def endpoint(server: SSEServer, **options: Any) -> Endpoint:
    return custom(base_url=server.base_url, model="m", **options)


# -- the pure functions --------------------------------------------------------------------------


def test_valid_unicode_joins_pairs_and_replaces_lone_surrogates() -> None:
    assert valid_unicode("a" + HIGH + LOW + "b") == "a" + SMILE + "b"
    assert valid_unicode(HIGH + " x " + LOW) == "\ufffd x \ufffd"
    assert valid_unicode(LOW + HIGH) == "\ufffd\ufffd"  # the wrong order is no pair
    plain = "déjà vu " + SMILE
    assert valid_unicode(plain) is plain


def test_frozen_valid_reaches_every_string_and_freezes() -> None:
    value = {"content": [{"text": HIGH + LOW}], "k" + HIGH: (LOW, 3, None)}
    frozen = frozen_valid(value)
    assert frozen == {"content": ({"text": SMILE},), "k\ufffd": ("\ufffd", 3, None)}
    assert isinstance(frozen, vk.FrozenDict) and isinstance(frozen["content"][0], vk.FrozenDict)
    json.dumps(frozen, ensure_ascii=False).encode()  # encodable


def test_speakable_drops_nul_and_control_characters() -> None:
    assert speakable("a\x00b\x07c\x1bd\x7f\te\nf\rg") == "abcd\te\nf\rg"
    assert speakable("ok " + HIGH) == "ok \ufffd"


# -- the Session -----------------------------------------------------------------------------------


def test_text_entering_a_session_is_valid_unicode() -> None:
    s = Session(call_id="CA1", messages=[{"role": "user", "content": "hi " + HIGH + LOW}])
    s = s.add_assistant(HIGH).add_user([{"type": "text", "text": LOW}])  # type: ignore[arg-type]
    s = s.add_tool_call("c1", "look" + HIGH, {"q": HIGH + LOW})
    s = s.add_tool_result("c1", {"found": LOW}).add_tool_result("c1", "raw " + HIGH)
    s = s.with_messages([*s.messages, {"role": "assistant", "content": "bye " + LOW}])
    contents = [m["content"] for m in s.messages]
    assert contents[0] == "hi " + SMILE
    assert contents[1] == "\ufffd"
    assert contents[2][0]["text"] == "\ufffd"
    call = s.messages[3]["tool_calls"][0]["function"]
    assert call["name"] == "look\ufffd" and json.loads(call["arguments"]) == {"q": SMILE}
    assert json.loads(contents[4]) == {"found": "\ufffd"} and contents[5] == "raw \ufffd"
    assert contents[6] == "bye \ufffd"
    json.dumps(s.messages_json(), ensure_ascii=False).encode("utf-8")  # never raises


# -- the LLM stream and the request body ---------------------------------------------------------


async def test_an_emoji_split_across_two_deltas_comes_out_whole(sse_server: SSEServer) -> None:
    sse_server.enqueue(text_reply(["Hi ", HIGH, LOW + " there."]))
    events = [e async for e in chat(endpoint(sse_server), [{"role": "user", "content": "x"}])]
    texts = [e.text for e in events if isinstance(e, Token)]
    assert "".join(texts) == "Hi " + SMILE + " there."
    assert all(t.encode("utf-8") for t in texts)  # no token holds half a character


async def test_a_high_surrogate_that_is_never_completed_is_replaced(sse_server: SSEServer) -> None:
    sse_server.enqueue(
        text_reply(["end " + HIGH]),
        stream_reply([chunk("cut " + HIGH)], done=True),  # no finish_reason: flushed at [DONE]
    )
    for _ in range(2):
        events = [e async for e in chat(endpoint(sse_server), [{"role": "user", "content": "x"}])]
        text = "".join(e.text for e in events if isinstance(e, Token))
        assert text.endswith(" \ufffd") and text.encode()


async def test_tool_arguments_split_inside_an_escape_pair_are_joined(
    sse_server: SSEServer,
) -> None:
    first = {"index": 0, "id": "c1", "type": "function", "function": {"name": "f"}}
    parts = ['{"q": "', HIGH, LOW + '"}']
    items: list[Any] = [chunk(tool_calls=[first])]
    items += [chunk(tool_calls=[{"index": 0, "function": {"arguments": p}}]) for p in parts]
    items.append(chunk(finish="tool_calls"))
    sse_server.enqueue(stream_reply(items))
    events = [e async for e in chat(endpoint(sse_server), [{"role": "user", "content": "x"}])]
    (call,) = [e for e in events if isinstance(e, vk.ToolCall)]
    assert json.loads(call.arguments) == {"q": SMILE}


async def test_lone_surrogates_in_given_messages_still_make_a_valid_body(
    sse_server: SSEServer,
) -> None:
    messages = [{"role": "user", "content": "a " + HIGH}, {"role": "assistant", "content": LOW}]
    events = [e async for e in chat(endpoint(sse_server), messages, system="sys " + HIGH + LOW)]
    assert events  # the request went out and was answered
    body = sse_server.requests[-1].body
    sent = json.loads(body.decode("utf-8"))["messages"]
    assert [m["content"] for m in sent] == ["sys " + SMILE, "a \ufffd", "\ufffd"]


async def test_what_cannot_be_encoded_is_a_voicekit_error(sse_server: SSEServer) -> None:
    bad = [{"role": "user", "content": b"bytes are not JSON"}]
    with pytest.raises(ConfigError, match="cannot be encoded as JSON"):
        [e async for e in chat(endpoint(sse_server), bad)]
    keyed = endpoint(sse_server, api_key="sk-caf\u00e9-secret")
    with pytest.raises(ConfigError, match=r"'Authorization' header .* not ASCII") as info:
        [e async for e in chat(keyed, [{"role": "user", "content": "x"}])]
    assert "secret" not in str(info.value)
    session = Session(call_id="caf\u00e9" + HIGH)
    with pytest.raises(vk.VoicekitError):
        [e async for e in chat(vk.llm.hermes(base_url=sse_server.base_url), session.add_user("x"))]
    assert sse_server.requests == []  # nothing half-encoded went out


# -- the agent, two turns over HTTP ------------------------------------------------------------


async def test_a_split_emoji_does_not_poison_the_next_turn(sse_server: SSEServer) -> None:
    sse_server.enqueue(text_reply(["Sure ", HIGH, LOW + " done."]), text_reply(["Fine."]))
    bot = vk.agent(llm=endpoint(sse_server), tts=tts.tones())
    result = await run_conversation(bot, [say("hello"), say("again")], time_limit=20)
    assert result.of(ReplyFailed) == []
    assert result.transcript == [
        ("user", "hello"),
        ("assistant", "Sure " + SMILE + " done."),
        ("user", "again"),
        ("assistant", "Fine."),
    ]
    second = sse_server.requests[1]
    assert SMILE.encode("utf-8") in second.body
    sent = json.loads(second.body.decode("utf-8"))["messages"]
    assert sent[1] == {"role": "assistant", "content": "Sure " + SMILE + " done."}


# -- the TTS -------------------------------------------------------------------------------------


async def test_piper_speaks_a_sentence_with_nul_and_control_characters() -> None:
    stage = tts.piper(deterministic=True, pass_text=True)
    text = "Hello\x00 there,\x07 friend " + HIGH + "."
    out = await ([Sentence(text)] | stage).list()
    audio = [item for item in out if isinstance(item, AudioChunk)]
    seconds = sum(c.duration for c in audio)
    assert 0.5 < seconds < 4.0
    samples = np.concatenate([c.samples for c in audio]).astype(float)
    assert np.sqrt(np.mean(samples**2)) > 500  # speech, not silence
    assert out[-1] == Sentence(text)  # the text passed on is the caller's, untouched


def test_piper_synthesize_takes_nul_too() -> None:
    samples, rate = tts.synthesize("Good\x00 morning.", deterministic=True)
    assert 0.4 < samples.shape[0] / rate < 3.0


async def test_an_agent_reply_with_nul_is_heard_through_piper(sse_server: SSEServer) -> None:
    sse_server.enqueue(text_reply(["It is\x00 sunny", " today."]))
    bot = vk.agent(llm=endpoint(sse_server), tts=tts.piper(deterministic=True))
    result = await run_conversation(bot, [say("weather?")], time_limit=60)
    assert result.of(ReplyFailed) == []
    assert result.audio_seconds > 0.5
