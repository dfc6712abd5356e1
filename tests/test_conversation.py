"""The scripted-conversation helper: steps, timing, barge-ins, determinism, errors."""

from __future__ import annotations

import time

import numpy as np
import pytest

import voicekit as vk
from voicekit import agent
from voicekit.conversation import (
    ScriptError,
    audio,
    barge_in,
    run_conversation,
    say,
    scripted_llm,
    transcript,
    transcript_of,
    wait,
)
from voicekit.events import (
    AudioChunk,
    ReplyFailed,
    ReplyStarted,
    SessionUpdated,
    Token,
    ToolCall,
    Transcript,
    TurnEnded,
    TurnStarted,
)
from voicekit.tts import synthesize_tones, tones


def ms(text: str) -> float:
    samples, rate = synthesize_tones(text)
    return samples.shape[0] * 1000 / rate


def bot(*replies, **options):
    llm = scripted_llm(*replies)
    speech = tones(pass_text=True)
    return llm, agent(llm=llm, tts=speech, session=vk.Session(call_id="c"), **options)


SCRIPT_REPLIES = ("Hello there! How can I help?", "The sky is blue. The grass is green.", "Bye.")


async def play_once():
    _, pipeline = bot(*SCRIPT_REPLIES, first_message="Hi, this is the bot.")
    return await run_conversation(
        pipeline,
        [say("hi"), say("colours?"), barge_in("bye", after_audio_ms=ms("The sky is blue.") + 60)],
    )


async def test_same_script_same_events_transcript_and_session():
    first, second = await play_once(), await play_once()
    assert first.events == second.events
    assert first.transcript == second.transcript
    assert first.session == second.session
    # script time: the greeting and the first reply were listened to before each turn
    starts = [e.t for e in first.of(TurnStarted)]
    greeting = ms("Hi, this is the bot.")
    hello = ms("Hello there!") + ms("How can I help?")
    assert starts[0] == pytest.approx(greeting / 1000, abs=1e-6)
    assert starts[1] == pytest.approx((greeting + hello) / 1000, abs=1e-6)
    assert starts[2] == pytest.approx(starts[1] + (ms("The sky is blue.") + 60) / 1000, abs=0.021)


async def test_a_step_waits_for_the_greeting_and_the_previous_reply():
    _, pipeline = bot("One.", "Two.", first_message="Welcome.")
    result = await run_conversation(pipeline, [say("a"), say("b")])
    kinds = [type(e).__name__ for e in result.events]
    # no interruption anywhere: each turn came after the reply before it had finished
    assert "Interrupted" not in kinds
    assert kinds.count("SessionUpdated") == 3
    assert result.transcript == [
        ("assistant", "Welcome."),
        ("user", "a"),
        ("assistant", "One."),
        ("user", "b"),
        ("assistant", "Two."),
    ]


async def test_after_starts_a_step_on_time_without_waiting_for_the_reply():
    llm = scripted_llm(["Slow", 0.3, " answer."], "Quick.")
    pipeline = agent(llm=llm, tts=tones())
    began = time.monotonic()
    result = await run_conversation(pipeline, [say("one"), say("two", after=0.05)])
    assert time.monotonic() - began < 0.25  # it did not wait for the slow reply
    assert result.transcript == [("user", "one"), ("user", "two"), ("assistant", "Quick.")]
    assert [e.t for e in result.of(TurnEnded)] == [0.0, 0.05]


async def test_wait_pauses_in_real_and_script_time():
    _, pipeline = bot("One.", "Two.")
    began = time.monotonic()
    result = await run_conversation(pipeline, [say("a"), wait(0.1), say("b")])
    assert time.monotonic() - began >= 0.1
    second = result.of(TurnStarted)[1].t
    assert second == pytest.approx(ms("One.") / 1000 + 0.1, abs=1e-6)


async def test_a_barge_in_that_finds_no_reply_to_cut_is_an_error():
    _, pipeline = bot("Short.", "Fine.")
    with pytest.raises(ScriptError, match="after_audio_ms=5000"):
        await run_conversation(pipeline, [say("hi"), barge_in("more", after_audio_ms=5000)])


async def test_a_conversation_that_does_not_finish_names_the_step():
    llm = scripted_llm([30.0, "Late."])
    pipeline = agent(llm=llm, tts=tones())
    with pytest.raises(TimeoutError, match=r"step 2, Say\(text='two'"):
        await run_conversation(pipeline, [say("one"), say("two")], time_limit=0.2)


async def test_a_scripted_llm_out_of_replies_shows_as_a_failed_reply():
    _, pipeline = bot("Only one.")
    result = await run_conversation(pipeline, [say("a"), say("b")])
    failed = result.of(ReplyFailed)
    assert len(failed) == 1 and "no reply scripted for call 2" in failed[0].error


async def test_transcript_steps_without_a_reply_do_not_wait():
    seen = []

    @vk.stage
    async def recorder(source, /):
        async for item in source:
            seen.append(item)
            yield item

    result = await run_conversation(
        recorder(), [transcript("one", reply=False), transcript("two", reply=False)]
    )
    assert [x.text for x in seen if isinstance(x, Transcript)] == ["one", "two"]
    assert result.session is None and result.transcript == []


async def test_audio_steps_run_on_and_realtime_paces_them(tmp_path):
    tone = (np.sin(np.arange(4800) / 3) * 8000).astype(np.int16)  # 0.3 s at 16 kHz
    wav = tmp_path / "tone.wav"
    await vk.audio.write([AudioChunk(tone, 16000)], wav)

    @vk.stage
    async def echo_audio(source, /):
        async for item in source:
            yield item

    began = time.monotonic()
    result = await run_conversation(
        echo_audio(),
        [audio(wav, reply=False, silence=0.1), audio(wav, reply=False, realtime=True, silence=0)],
    )
    assert time.monotonic() - began >= 0.28
    chunks = result.of(AudioChunk)
    assert len(chunks) == 15 + 5 + 15
    times = [round(c.t, 3) for c in chunks]
    assert times == sorted(times) and times[-1] == pytest.approx(0.68)


async def test_result_helpers():
    llm, pipeline = bot(["Let me see. ", ToolCall("c1", "f", "{}")], "Done.")

    def f() -> str:
        return "ok"

    pipeline = agent(llm=llm, tts=tones(pass_text=True), tools=[f])
    result = await run_conversation(pipeline, [say("go")])
    assert isinstance(result.events[0], TurnStarted)
    assert [type(e).__name__ for e in result.of(ReplyStarted, SessionUpdated)] == [
        "ReplyStarted",
        "SessionUpdated",
    ]
    text = result.describe()
    assert "audio " in text and "ToolCall(id='c1'" in text and "SessionUpdated(...)" in text
    assert result.audio_seconds * 1000 == pytest.approx(ms("Let me see.") + ms("Done."))
    assert transcript_of(result.session) == result.transcript
    assert result.transcript == [
        ("user", "go"),
        ("assistant", "Let me see."),
        ("assistant", "Done."),
    ]


async def test_scripted_llm_steps_and_records():
    llm = scripted_llm(["a", 0.01, Token("b"), ValueError("boom")], "x y")
    events = []
    with pytest.raises(ValueError):
        async for e in llm([{"role": "user", "content": "q"}], tools=[{"name": "t"}]):
            events.append(e)
    assert events == [Token("a"), Token("b")]
    assert [e async for e in llm([])] == [Token("x "), Token("y")]
    assert llm.completed == [False, True]
    assert llm.tools == [[{"name": "t"}], None]
    with pytest.raises(ScriptError):
        [e async for e in llm([])]


async def test_steps_must_be_steps():
    with pytest.raises(TypeError):
        await run_conversation(agent(llm=scripted_llm(), tts=tones()), ["hello"])
