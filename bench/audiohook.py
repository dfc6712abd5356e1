"""AudioHook figures: the codec's cost per message, and ping -> pong through a real server on
loopback while N stereo sessions stream at real time (each session's agent echoes the caller's
audio back, so the outbound packet path runs too). With ``--first-audio N``: N calls to a real
``voicekit serve --carrier audiohook`` (offline models), each asking the bundled question;
the time from the end of the question to the agent's first packet.

    python bench/audiohook.py --sessions 20 --seconds 10
    python bench/audiohook.py --first-audio 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from servers.audiohook_client import AudioHookClient
from servers.serving import serving

import voicekit as vk
import voicekit.serve
from voicekit.events import AudioChunk, CallEnded
from voicekit.transports import audiohook as ah


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def codec_costs(n: int = 5000) -> dict[str, float]:
    state = ah.initial_state("s")
    state, _ = ah.decode(state, json.dumps(ah.open_message("s", 1)))
    frame = bytes(np.random.default_rng(0).integers(0, 256, 320, dtype=np.uint8))
    times: dict[str, list[float]] = {"decode 20 ms stereo frame": [], "decode ping": [],
                                     "encode 1600-byte packet": []}
    chunk = AudioChunk(np.zeros(1600, np.int16), 8000)
    for _ in range(n):
        t = time.perf_counter()
        state, _ = ah.decode(state, frame)
        times["decode 20 ms stereo frame"].append(time.perf_counter() - t)
        ping = json.dumps(ah.client_message(state, "ping", state.clientseq + 1))
        t = time.perf_counter()
        state, _ = ah.decode(state, ping)
        times["decode ping"].append(time.perf_counter() - t)
        t = time.perf_counter()
        state, _ = ah.encode(state, chunk)
        times["encode 1600-byte packet"].append(time.perf_counter() - t)
    return {k: statistics.median(v) * 1e6 for k, v in times.items()} | {
        f"{k} p90": pct(v, 0.9) * 1e6 for k, v in times.items()
    }


async def echo(call: Any) -> None:
    async def back() -> Any:
        async for item in call.inbound:
            if isinstance(item, AudioChunk):
                yield item
            elif isinstance(item, CallEnded):
                return

    await call.outbound(back())


async def session(host: str, seconds: float, rtts: list[float], packets: list[int]) -> None:
    client = AudioHookClient(f"ws://{host}/audiohook", api_key="bench")
    async with client:
        await client.open()
        tone = (4000 * np.sin(np.arange(int(seconds * 8000)) * 0.2)).astype(np.int16)
        streaming = asyncio.create_task(client.stream(tone, tone))
        loop = asyncio.get_running_loop()
        while not streaming.done():
            pong = client.expect("pong")
            t = loop.time()
            await client.send("ping")
            await asyncio.wait_for(pong, 10)
            rtts.append(loop.time() - t)
            await asyncio.sleep(0.5)
        await client.close()
        record = await client.ended()
        packets.append(len(record.audio))
        assert record.violations == [], record.violations


async def first_audio(calls: int) -> None:
    from test_transport_audiohook_cli import SECRET, question, serve, silence

    q = question()
    waits: list[float] = []
    async with serve() as (url, _):
        for _ in range(calls):
            client = AudioHookClient(url, api_key="genesys-key", secret=SECRET)
            async with client:
                await client.open()
                await client.stream(q, silence(q.shape[0] / 8000))
                end = asyncio.get_running_loop().time()
                quiet = asyncio.create_task(client.stream(silence(60), silence(60)))
                while not client.record.audio_at:  # noqa: ASYNC110 - frames, not an event
                    await asyncio.sleep(0.005)
                waits.append(client.record.audio_at[0] - end)
                quiet.cancel()
                await asyncio.gather(quiet, return_exceptions=True)
                await client.close()
                await client.ended()
    print(f"first audio after the end of the question, {calls} calls: median "
          f"{statistics.median(waits) * 1e3:.0f} ms, p90 {pct(waits, 0.9) * 1e3:.0f} ms, "
          f"all {[round(w * 1e3) for w in waits]}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--first-audio", type=int, default=0, metavar="CALLS")
    args = parser.parse_args()
    if args.first_audio:
        await first_audio(args.first_audio)
        return
    for name, us in codec_costs().items():
        print(f"{name:32s} {us:8.1f} us")
    os.environ["VOICEKIT_AUDIOHOOK_KEYS"] = "bench:"
    app = vk.serve.app(echo, carrier="audiohook", max_calls=args.sessions + 1)
    rtts: list[float] = []
    packets: list[int] = []
    cpu = time.process_time()
    began = time.perf_counter()
    async with serving(app) as host:
        await asyncio.gather(*(session(host, args.seconds, rtts, packets)
                               for _ in range(args.sessions)))
    wall = time.perf_counter() - began
    cpu = time.process_time() - cpu
    print(f"{args.sessions} stereo sessions x {args.seconds:.0f} s (client and server in one "
          f"process): ping->pong median {statistics.median(rtts) * 1e3:.1f} ms, "
          f"p90 {pct(rtts, 0.9) * 1e3:.1f} ms, max {max(rtts) * 1e3:.1f} ms over {len(rtts)}; "
          f"echoed packets per session median {statistics.median(packets):.0f} "
          f"(expected ~{args.seconds / 0.2:.0f}); CPU {cpu / wall * 100:.0f}% of one core")


if __name__ == "__main__":
    asyncio.run(main())
