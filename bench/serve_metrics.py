"""What does watching calls for ``/metrics`` cost ``voicekit serve``?

One simulated call, measured in CPU time: its inbound stream (``--seconds`` of the caller's 20 ms
audio chunks, then ``CallEnded``) and its outbound stream (``--turns`` replies, each
``ReplyStarted``, 3 s of 20 ms reply chunks with a ``Mark`` per second, ``SessionUpdated`` and the
agent's ``TurnMetrics``) run through an ``on_call`` that only drains them — so the figure is the
watch's own work, with no agent around it. Two variants run interleaved ``--repeats`` times:
``off`` (the app with ``metrics=False``: ``on_call`` as given) and ``on`` (``metrics=True``:
both streams tapped, the families counted, each turn observed). It prints the median and p90 CPU
per call of each, the extra CPU as a share of one core over the call's length, and how long the
registry takes to render for a scrape (median, p90) after the calls counted.

Run:  python bench/serve_metrics.py [--seconds 60] [--turns 10] [--repeats 15]
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
    CallEnded,
    CallStarted,
    Mark,
    ReplyStarted,
    SessionUpdated,
)
from voicekit.ops import Flow
from voicekit.serve._metrics import server_metrics, watched
from voicekit.transports import Call


def inbound(seconds: float) -> list[Any]:
    chunk = np.zeros(320, np.int16)
    frames = int(seconds * 50)
    items: list[Any] = [CallStarted("CA-bench", "twilio")]
    items += [AudioChunk(chunk, 16000, k * 0.02) for k in range(frames)]
    return [*items, CallEnded("hangup")]


def outbound(turns: int) -> list[Any]:
    chunk = np.zeros(320, np.int16)
    session = vk.Session(call_id="CA-bench")
    items: list[Any] = []
    for turn in range(turns):
        items.append(ReplyStarted(f"question {turn}"))
        for k in range(150):  # 3 s of reply audio
            items.append(AudioChunk(chunk, 16000))
            if k % 50 == 49:
                items.append(Mark(f"m{turn}-{k}"))
        items.append(SessionUpdated(session))
        items.append(vk.TurnMetrics(call_id="CA-bench", speech_end=1.0, turn_end=1.8,
                                    reply_start=1.8, llm_first_token=2.1, first_audio=2.3,
                                    input_tokens=120, output_tokens=30))
    return items


async def drain(on_call: Any, ins: list[Any], outs: list[Any]) -> None:
    async def sink(items: Any) -> None:
        async for _ in items:
            pass

    async def source(items: list[Any]) -> AsyncIterator[Any]:
        for item in items:
            yield item

    call = Call(Flow(source(ins)), sink, vk.Session(call_id="CA-bench"), ins[0])
    await on_call(call)


async def main(args: argparse.Namespace) -> None:
    ins, outs = inbound(args.seconds), outbound(args.turns)

    async def plain(call: Any) -> None:
        async for _ in call.inbound:
            pass
        await call.outbound(Flow(outs))

    metrics = server_metrics()
    variants = {"off": plain, "on": watched(plain, metrics)}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, on_call in variants.items():
            began = time.process_time()
            await drain(on_call, ins, outs)
            cpu[name].append(time.process_time() - began)
    renders = []
    for _ in range(200):
        began = time.perf_counter()
        metrics.exposition()
        renders.append(time.perf_counter() - began)

    def p90(values: list[float]) -> float:
        return float(np.percentile(values, 90))

    print(f"one call: {args.seconds:.0f} s of caller audio ({len(ins)} items in), {args.turns} "
          f"turns ({len(outs)} items out); {args.repeats} repeats, interleaved")
    for name, values in cpu.items():
        median = statistics.median(values) * 1000
        print(f"  metrics {name:<3}  CPU per call  median {median:7.2f} ms"
              f"   p90 {p90(values) * 1000:7.2f} ms")
    extra = statistics.median(cpu["on"]) - statistics.median(cpu["off"])
    print(f"  extra with metrics on: {extra * 1000:.2f} ms per call = "
          f"{extra / args.seconds * 100:.3f} % of one core over the call")
    print(f"  /metrics render: median {statistics.median(renders) * 1000:.2f} ms, "
          f"p90 {p90(renders) * 1000:.2f} ms ({args.repeats} calls counted)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=15)
    asyncio.run(main(parser.parse_args()))
