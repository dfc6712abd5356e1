"""agent(tracer=...): OpenTelemetry spans of a call, checked with the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import voicekit as vk
from voicekit import agent, tool
from voicekit.conversation import barge_in, run_conversation, say, scripted_llm
from voicekit.events import (
    SpeechStarted,
    SpeechStopped,
    ToolCall,
    Transcript,
    TurnEnded,
    TurnStarted,
    Usage,
)
from voicekit.llm import custom
from voicekit.testing import ResponsesServer
from voicekit.tts import synthesize_tones, tones

CALLER = "+15551234567"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer(exporter: InMemorySpanExporter) -> Any:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test")


def session(call_id: str) -> vk.Session:
    return vk.Session(call_id=call_id, caller=CALLER)


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return sorted((s for s in spans if s.name == name), key=lambda s: s.start_time or 0)


def children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    span_id = parent.context.span_id
    found = [s for s in spans if s.parent is not None and s.parent.span_id == span_id]
    return sorted(found, key=lambda s: s.start_time or 0)


def inside(child: ReadableSpan, parent: ReadableSpan) -> bool:
    assert child.start_time is not None and child.end_time is not None
    assert parent.start_time is not None and parent.end_time is not None
    return parent.start_time <= child.start_time <= child.end_time <= parent.end_time


def no_secrets(spans: Sequence[ReadableSpan]) -> None:
    for span in spans:
        for value in (span.attributes or {}).values():
            assert CALLER not in str(value) and "5551234567" not in str(value)


def seconds(text: str) -> float:
    samples, rate = synthesize_tones(text)
    return samples.shape[0] / rate


async def user_turn(text: str) -> AsyncIterator[Any]:
    """A user turn as the VAD, the STT and the turn detector give it, after a pause."""
    await asyncio.sleep(0.3)
    yield SpeechStarted(0.0, {"start_secs": 0.2})
    yield TurnStarted(0.0)
    await asyncio.sleep(0.05)
    yield SpeechStopped(1.0, {"stop_secs": 0.2})
    await asyncio.sleep(0.1)
    yield Transcript(text, t=0.0)
    await asyncio.sleep(0.05)
    yield TurnEnded(text, 1.3)


async def test_a_scripted_conversation_gives_the_span_tree(tracer, exporter):
    @tool
    async def weather(city: str) -> dict:
        """The weather in a city."""
        await asyncio.sleep(0.1)
        return {"city": city, "sky": "sunny"}

    llm = scripted_llm(
        [0.1, "Let me check. ", ToolCall("c1", "weather", '{"city": "Rome"}'), Usage(20, 6, 4)],
        ["Sunny in Rome.", Usage(30, 5, 10)],
    )
    bot = agent(
        llm=llm,
        tts=tones(latency=0.05),
        session=session("CA-trace"),
        tools=[weather],
        first_message="Hello.",
        tracer=tracer,
        metrics=True,
    )
    out = await (user_turn("weather in Rome?") | bot).list()
    spans = exporter.get_finished_spans()

    (call,) = named(spans, "voicekit.call")
    assert call.parent is None and call.attributes["voicekit.call.id"] == "CA-trace"
    (turn,) = named(spans, "voicekit.turn")
    assert turn.parent.span_id == call.context.span_id
    assert turn.attributes["voicekit.call.id"] == "CA-trace"
    # the greeting's speech hangs from the call; the turn holds its LLM requests, tool, speech
    under_call = [s.name for s in children(spans, call)]
    assert under_call == ["tts", "voicekit.turn"]
    under_turn = [s.name for s in children(spans, turn)]
    assert under_turn == ["stt", "chat", "tts", "execute_tool weather", "chat", "tts"]
    assert all(inside(s, turn) for s in children(spans, turn))
    assert all(inside(s, call) for s in spans if s is not call)

    first, second = named(spans, "chat")
    (tool_span,) = named(spans, "execute_tool weather")
    assert first.end_time <= tool_span.start_time and tool_span.end_time <= second.start_time
    assert tool_span.end_time - tool_span.start_time >= 0.09e9
    assert tool_span.attributes["gen_ai.tool.name"] == "weather"
    for span, usage in ((first, Usage(20, 6, 4)), (second, Usage(30, 5, 10))):
        assert span.attributes["gen_ai.operation.name"] == "chat"
        assert span.attributes["gen_ai.usage.input_tokens"] == usage.prompt_tokens
        assert span.attributes["gen_ai.usage.output_tokens"] == usage.completion_tokens
        assert span.attributes["gen_ai.usage.cache_read.input_tokens"] == usage.cached_tokens
        (event,) = span.events
        assert event.name == "gen_ai.first_token"
        assert span.start_time <= event.timestamp <= span.end_time
    assert first.attributes["gen_ai.response.time_to_first_chunk"] >= 0.09  # slept 0.1 s
    for span in named(spans, "tts"):
        assert span.attributes["voicekit.tts.time_to_first_audio"] >= 0.045  # latency 0.05 s

    # the turn span says what TurnMetrics says, on the same clock
    (metrics,) = [item for item in out if isinstance(item, vk.TurnMetrics)]
    assert turn.attributes["gen_ai.usage.input_tokens"] == metrics.input_tokens == 50
    for name in ("vad_stop", "transcript", "turn_end", "llm_first_token", "first_audio"):
        assert turn.attributes[f"voicekit.latency.{name}"] == metrics.since_end(name), name
    assert turn.attributes["voicekit.latency.voice_to_voice"] == metrics.voice_to_voice > 0
    assert turn.attributes["voicekit.turn.interrupted"] is False
    assert turn.status.status_code is StatusCode.UNSET
    turn_seconds = (turn.end_time - turn.start_time) / 1e9
    assert turn_seconds == pytest.approx(metrics.reply_end - metrics.speech_start, abs=1e-6)
    (stt,) = named(spans, "stt")
    stt_seconds = (stt.end_time - stt.start_time) / 1e9
    assert stt_seconds == pytest.approx(metrics.transcript - metrics.vad_stop, abs=1e-6)
    assert stt_seconds >= 0.09  # the transcript came 0.1 s after the stop
    no_secrets(spans)


async def test_a_barge_in_cuts_the_turn_and_cancels_the_llm_request(tracer, exporter):
    llm = scripted_llm(["One two three. ", 5.0, "Four five six."], "Okay.")
    bot = agent(llm=llm, tts=tones(), session=session("CA-cut"), tracer=tracer)
    cut = seconds("One two three.") * 1000 / 2  # while the LLM waits before its next words
    result = await run_conversation(bot, [say("count"), barge_in("stop", after_audio_ms=cut)])
    assert not result.of(vk.TurnMetrics)  # tracing alone puts nothing in the stream
    spans = exporter.get_finished_spans()

    (call,) = named(spans, "voicekit.call")
    cut_turn, next_turn = named(spans, "voicekit.turn")
    assert cut_turn.parent.span_id == next_turn.parent.span_id == call.context.span_id
    assert cut_turn.attributes["voicekit.turn.interrupted"] is True
    assert [e.name for e in cut_turn.events] == ["barge-in"]
    assert next_turn.attributes["voicekit.turn.interrupted"] is False
    assert not next_turn.events
    assert cut_turn.end_time <= next_turn.end_time
    cut_llm = [s for s in children(spans, cut_turn) if s.name == "chat"]
    assert len(cut_llm) == 1 and cut_llm[0].attributes["voicekit.cancelled"] is True
    assert (cut_llm[0].end_time - cut_llm[0].start_time) / 1e9 < 4.0  # not the 5 s it slept
    next_llm = [s for s in children(spans, next_turn) if s.name == "chat"]
    assert len(next_llm) == 1 and "voicekit.cancelled" not in next_llm[0].attributes
    no_secrets(spans)


async def test_a_failure_marks_the_llm_span_and_the_turn(tracer, exporter):
    llm = scripted_llm([ConnectionError("refused")])
    bot = agent(
        llm=llm,
        tts=tones(),
        session=session("CA-fail"),
        llm_error_message="Sorry, try again.",
        tracer=tracer,
    )
    await run_conversation(bot, [say("hello")])
    spans = exporter.get_finished_spans()
    (turn,) = named(spans, "voicekit.turn")
    assert turn.status.status_code is StatusCode.ERROR
    assert turn.attributes["voicekit.turn.errors"] == ("llm",)
    (chat,) = named(spans, "chat")
    assert chat.status.status_code is StatusCode.ERROR
    assert "ConnectionError" in (chat.status.description or "")
    assert chat.parent.span_id == turn.context.span_id
    (apology,) = [s for s in children(spans, turn) if s.name == "tts"]
    assert apology.attributes["voicekit.tts.characters"] == len("Sorry, try again.")
    (call,) = named(spans, "voicekit.call")
    assert call.status.status_code is StatusCode.UNSET  # the call went on
    no_secrets(spans)


async def test_an_endpoint_gives_the_model_and_the_servers_token_counts(tracer, exporter):
    async with ResponsesServer() as server:
        endpoint = custom(base_url=server.base_url, model="demo")
        bot = agent(llm=endpoint, tts=tones(), session=session("CA-http"), tracer=tracer)
        result = await run_conversation(bot, [say("hello there")])
    (usage,) = result.of(Usage)
    (chat,) = named(exporter.get_finished_spans(), "chat demo")
    assert chat.attributes["gen_ai.request.model"] == "demo"
    assert chat.attributes["gen_ai.provider.name"] == endpoint.name
    assert chat.attributes["gen_ai.usage.input_tokens"] == usage.prompt_tokens > 0
    assert chat.attributes["gen_ai.usage.output_tokens"] == usage.completion_tokens > 0
    assert chat.attributes["gen_ai.response.finish_reasons"] == ("stop",)


async def test_the_global_provider_exports_nothing_unless_configured(exporter):
    # no SDK provider is installed globally: the API's default records nothing, costs little
    bot = agent(llm=scripted_llm("Hi."), tts=tones(), tracer=True)
    result = await run_conversation(bot, [say("hello")])
    assert result.transcript == [("user", "hello"), ("assistant", "Hi.")]
    assert exporter.get_finished_spans() == ()
    with pytest.raises(vk.ConfigError, match="tracer must be an OpenTelemetry Tracer"):
        agent(llm=scripted_llm("Hi."), tts=tones(), tracer="console")
