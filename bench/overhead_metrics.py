"""What do per-turn metrics and OpenTelemetry tracing cost a voice agent?

One call, measured in CPU time: ``--turns`` user turns go into ``vk.agent`` — each as the agent
would get it from ``vad | stt | turns``: speech markers, ``--speech`` seconds of the caller's
20 ms audio chunks, a final transcript, the turn's end — and each reply (three sentences, streamed
word by word with a Usage event, from a scripted LLM) is spoken by the tone TTS in 20 ms chunks.
The next turn starts when the reply's ``SessionUpdated`` is out. Nothing is paced: the run is as
fast as the CPU allows, so the figures are the agent's own CPU work per turn.

Four variants run interleaved ``--repeats`` times in one process (machine noise hits all alike):
``off`` (twice: the second run shows the noise floor), ``metrics=True``, ``tracer=`` an SDK
tracer (``SimpleSpanProcessor`` into an in-memory exporter, cleared each run), and both. It
prints the median CPU per turn, each variant's ratio to ``off`` (median of the per-repeat
ratios), and the extra CPU as a share of one core for a live call, where a turn lasts as long
as the caller's speech plus the reply's audio.

By default the engines are fakes that cost almost nothing (the tone TTS, a scripted LLM, no VAD
or STT model), so the ratio is a worst case. ``--tts piper`` speaks the replies with Piper (the
offline voice, 16 kHz), a real engine in the session: the same extra CPU is then a far smaller
share (with Whisper and Silero too it would be smaller still).

Run:  python bench/overhead_metrics.py [--turns 40] [--repeats 7] [--speech 2.0] [--tts piper]
Target (issue 15 item 6): off costs nothing; on, < 2 % CPU per session.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

import voicekit as vk
from voicekit.events import (
    AudioChunk,
    Finish,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    Token,
    Transcript,
    TurnEnded,
    TurnStarted,
    Usage,
)
from voicekit.tts import tones

REPLY = (
    "It is sunny in Rome today, with a light breeze from the sea. "
    "The temperature is twenty two degrees in the afternoon. "
    "Tomorrow looks much the same, so it is a good week for a walk."
)
QUESTION = "what is the weather like in Rome today?"


async def llm(messages: Any) -> AsyncIterator[Any]:
    for word in REPLY.split(" "):
        yield Token(word + " ")
    yield Usage(120 + 10 * len(messages), 40, 96)
    yield Finish("stop")


async def caller(turns: int, speech: float, replied: asyncio.Queue[None]) -> AsyncIterator[Any]:
    """The inbound stream of ``turns`` user turns; each after the previous reply is over."""
    silence = np.zeros(320, np.int16)
    t = 0.0
    for _ in range(turns):
        yield SpeechStarted(t, {"start_secs": 0.2})
        yield TurnStarted(t)
        for _ in range(int(speech * 50)):
            yield AudioChunk(silence, 16000, t)
            t += 0.02
        yield SpeechStopped(t, {"stop_secs": 0.2})
        yield Transcript(QUESTION, t=t)
        yield TurnEnded(QUESTION, t + 0.6)
        await replied.get()


def make_tracer() -> tuple[Any, Any]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("bench"), exporter


def make_tts(name: str) -> vk.Stage[Any, Any]:
    if name == "piper":
        return vk.tts.piper(rate=16000, chunk_ms=20)
    return tones(chunk_ms=20)


async def one_call(
    turns: int, speech: float, tts: vk.Stage[Any, Any], options: dict[str, Any]
) -> tuple[float, int, int, float]:
    """CPU seconds of one call; the TurnMetrics and replies seen; seconds of reply audio."""
    bot = vk.agent(llm=llm, tts=tts, session=vk.Session(call_id="bench"), **options)
    replied: asyncio.Queue[None] = asyncio.Queue()
    measured = replies = 0
    audio = 0.0
    start = time.process_time()
    async for item in caller(turns, speech, replied) | bot:
        if isinstance(item, AudioChunk):
            audio += item.duration
        elif isinstance(item, SessionUpdated):
            replies += 1
            replied.put_nowait(None)
        elif isinstance(item, vk.TurnMetrics):
            measured += 1
    return time.process_time() - start, measured, replies, audio


async def bench(turns: int, repeats: int, speech: float, engine: str) -> None:
    tracer, exporter = make_tracer()
    tts = make_tts(engine)
    variants: dict[str, dict[str, Any]] = {
        "off": {},
        "off (again)": {},
        "metrics=True": {"metrics": True},
        "tracer=SDK": {"tracer": tracer},
        "metrics + tracer": {"metrics": True, "tracer": tracer},
    }
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    spans: list[int] = []
    await one_call(3, speech, tts, {"metrics": True, "tracer": tracer})  # warm up every path
    exporter.clear()
    audio = 0.0
    for _ in range(repeats):
        for name, options in variants.items():
            seconds, measured, replies, audio = await one_call(turns, speech, tts, options)
            assert replies == turns, (name, replies)
            assert measured == (turns if options.get("metrics") else 0), (name, measured)
            cpu[name].append(seconds / turns)
            if "tracer" in options:
                spans.append(len(exporter.get_finished_spans()))
                exporter.clear()
    reply = audio / turns
    live = speech + reply  # how long a turn lasts in a live call
    base = statistics.median(cpu["off"])
    print(
        f"{turns} turns per call ({speech:g} s of caller audio in 20 ms chunks, a reply of "
        f"{reply:.1f} s in 20 ms chunks by {engine}), {repeats} interleaved repeats, CPU time"
    )
    print(f"spans per call with a tracer: {statistics.median(spans):.0f}")
    print(f"{'variant':<18}{'CPU/turn':>10}{'vs off':>9}{'extra CPU/turn':>16}{'of a core':>11}")
    for name, values in cpu.items():
        ratio = statistics.median(v / o for v, o in zip(values, cpu["off"], strict=True))
        extra = statistics.median(values) - base
        print(
            f"{name:<18}{statistics.median(values) * 1000:>8.2f} ms{ratio:>8.3f}×"
            f"{extra * 1000:>13.3f} ms{extra / live:>10.3%}"
        )
    print(
        f"('of a core': the extra CPU per turn over the {live:.1f} s a turn lasts in a live "
        "call — target < 2 %; 'vs off': the whole session's CPU, on against off)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--speech", type=float, default=2.0)
    parser.add_argument("--tts", choices=("tones", "piper"), default="tones")
    args = parser.parse_args()
    asyncio.run(bench(args.turns, args.repeats, args.speech, args.tts))


if __name__ == "__main__":
    main()
