"""What do the Telnyx and Plivo transports add to a frame's way out?

(a) The codecs alone: the CPU time to encode one 20 ms outbound frame and to decode one inbound
    media message (median and p90 over many runs).
(b) Through the whole server: ``voicekit.serve.app(carrier=...)`` run by uvicorn on 127.0.0.1,
    called by the fake Telnyx / Plivo peers of the test suite; the agent side yields a 20 ms
    chunk every 50 ms; the time from the yield to the frame's arrival at the peer (same clock,
    same process). At a pipeline rate of 8000 Hz nothing is resampled; at 16000 Hz the stream
    resampler holds a few samples back, so a frame it leaves short waits for the next chunk.

Run:  python bench/carriers.py [--calls 40] [--rate 8000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import voicekit as vk
import voicekit.serve
from voicekit.events import AudioChunk, CallStarted
from voicekit.transports import Codec, plivo, telnyx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from servers.fake_plivo import PlivoCall
from servers.fake_telnyx import TelnyxCall
from servers.serving import serving


def quantiles(values: list[float]) -> str:
    values = sorted(values)
    return f"median {statistics.median(values):.2f}, p90 {values[int(len(values) * 0.9)]:.2f}"


def codec_cost(name: str, codec: Codec[Any], start: str, media: str, runs: int) -> None:
    """``media`` has a ``{n}`` where its chunk number goes (each message is a new frame)."""
    state, _ = codec.decode(codec.initial(), start)
    messages = [media.replace("{n}", str(n + 1)) for n in range(runs)]
    chunk = AudioChunk((np.sin(np.arange(160) / 3) * 8000).astype(np.int16), 8000)
    encode: list[float] = []
    decode: list[float] = []
    for message in messages:
        t0 = time.perf_counter_ns()
        codec.encode(state, chunk)
        encode.append((time.perf_counter_ns() - t0) / 1000)
        t0 = time.perf_counter_ns()
        state, events = codec.decode(state, message)
        assert events, "every message is a new frame"
        decode.append((time.perf_counter_ns() - t0) / 1000)
    print(f"(a) {name:6s} encode a 20 ms frame (µs): {quantiles(encode)}; "
          f"decode a media message (µs): {quantiles(decode)}")


async def through_the_server(carrier: str, peer: type[Any], calls: int, rate: int) -> None:
    latencies: list[float] = []
    yields: list[float] = []

    async def on_call(call: Any) -> None:
        async def out() -> Any:
            async for item in call.inbound:
                if isinstance(item, CallStarted):
                    for k in range(10):
                        yields.append(time.monotonic())
                        yield AudioChunk(np.full(rate // 50, 2000, np.int16), rate, k * 0.02)
                        await asyncio.sleep(0.05)
                    return

        await call.outbound(out())

    application = vk.serve.app(on_call, carrier=carrier, dev=True, rate=rate)
    async with serving(application) as host:
        for _ in range(calls):
            yields.clear()
            caller = peer(f"ws://{host}/{carrier}/media")
            record = await caller.call(hangup_at=0.8)
            for got in record.received:
                if got.event in ("media", "playAudio"):
                    arrived = caller._t0 + got.t
                    before = [y for y in yields if y <= arrived]
                    if before:
                        latencies.append((arrived - before[-1]) * 1000)
    print(f"(b) {carrier:6s} at {rate} Hz, chunk yielded -> frame at the peer (ms), "
          f"{len(latencies)} frames: {quantiles(latencies)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--rate", type=int, default=8000)
    parser.add_argument("--runs", type=int, default=20000)
    args = parser.parse_args()
    payload = base64.b64encode(bytes(range(160))).decode()
    codec_cost(
        "telnyx", telnyx.codec(),
        json.dumps({"event": "start", "stream_id": "s",
                    "start": {"call_control_id": "c", "from": "+1", "to": "+2"}}),
        json.dumps({"event": "media", "sequence_number": "5", "stream_id": "s",
                    "media": {"track": "inbound", "chunk": "{n}", "timestamp": "80",
                              "payload": payload}}),
        args.runs,
    )
    codec_cost(
        "plivo", plivo.codec(),
        json.dumps({"event": "start", "start": {"callId": "c", "streamId": "s", "mediaFormat": {
            "encoding": "audio/x-mulaw", "sampleRate": 8000}}}),
        json.dumps({"event": "media", "sequenceNumber": 5, "streamId": "s",
                    "media": {"track": "inbound", "chunk": "{n}", "timestamp": "80",
                              "payload": payload}}),
        args.runs,
    )
    asyncio.run(through_the_server("telnyx", TelnyxCall, args.calls, args.rate))
    asyncio.run(through_the_server("plivo", PlivoCall, args.calls, args.rate))


if __name__ == "__main__":
    main()
