"""Parallel branches: a transcript (caption) branch beside the audio branch, in pipeline order."""

from __future__ import annotations

import asyncio

import voicekit as vk
from voicekit import agent
from voicekit.conversation import barge_in, run_conversation, say, scripted_llm
from voicekit.events import AudioChunk, Sentence, Token
from voicekit.ops import Flow, parallel
from voicekit.text import sentences
from voicekit.tts import synthesize_tones, tones


@vk.stage
async def captions(source, /, *, delay: float = 0.02):
    """A slow transcript branch: one caption line per sentence (nothing else comes out)."""
    async for item in source:
        if isinstance(item, Sentence):
            await asyncio.sleep(delay)  # e.g. a translation service
            yield f"caption: {item.text}"


def shape(items) -> list[str]:
    """Captions as they are, runs of audio as one "audio" each."""
    out: list[str] = []
    for item in items:
        if isinstance(item, AudioChunk):
            if not out or out[-1] != "audio":
                out.append("audio")
        elif isinstance(item, str):
            out.append(item)
    return out


TOKENS = [Token("Hello there. "), Token("How are you? "), Token("Bye.")]


async def test_pipeline_order_puts_each_caption_before_its_audio():
    branches = parallel(captions(), tones(), order="pipeline")
    out = await (Flow(TOKENS) | sentences() | branches).list()
    assert shape(out) == [
        "caption: Hello there.",
        "audio",
        "caption: How are you?",
        "audio",
        "caption: Bye.",
        "audio",
    ]


async def test_arrival_order_lets_the_slow_caption_fall_behind_its_audio():
    branches = parallel(captions(), tones(), order="arrival")
    out = await (Flow(TOKENS) | sentences() | branches).list()
    assert shape(out) == [
        "audio",
        "caption: Hello there.",
        "audio",
        "caption: How are you?",
        "audio",
        "caption: Bye.",
    ]


async def test_captions_beside_the_agents_voice():
    speech = parallel(captions(), tones(pass_text=True), order="pipeline")
    llm = scripted_llm("Hello there. How are you today?", "Okay.")
    bot = agent(llm=llm, tts=speech, session=vk.Session(call_id="captions"))
    samples, rate = synthesize_tones("Hello there.")
    cut = samples.shape[0] * 1000 / rate + 100
    result = await run_conversation(bot, [say("hi"), barge_in("stop", after_audio_ms=cut)])
    items = [item for _, item in result.timeline]
    first_reply = items[: items.index("caption: Okay.")]
    assert shape(first_reply) == [
        "caption: Hello there.",
        "audio",
        "caption: How are you today?",  # shown, but its audio was cut off
        "audio",
    ]
    # the history holds what was heard, not what was captioned
    assert result.session.messages_json()[1] == {
        "role": "assistant",
        "content": "Hello there.",
        "interrupted": True,
    }
    assert result.transcript[-1] == ("assistant", "Okay.")


@vk.stage
async def passthrough(source, /):
    """A branch that passes every item on, as stages do with what they do not handle."""
    async for item in source:
        yield item


async def test_items_passed_on_by_two_branches_count_once():
    runs = []

    def lookup(code: str) -> str:
        runs.append(code)
        return "found"

    speech = parallel(passthrough(), tones(pass_text=True), order="pipeline")
    llm = scripted_llm(
        ["One moment. ", vk.ToolCall("c1", "lookup", '{"code": "A1"}')],
        "Found it.",
    )
    bot = agent(llm=llm, tts=speech, tools=[lookup], session=vk.Session(call_id="dup"))
    result = await run_conversation(bot, [say("look up A1")])
    assert runs == ["A1"]
    assert result.transcript == [
        ("user", "look up A1"),
        ("assistant", "One moment."),
        ("assistant", "Found it."),
    ]
