"""What does composing stages with voicekit cost?

(a) Items per second through 5 composed pass-through voicekit stages, against the same 5 stages
    hand-chained as plain async generators, measured in the same run (CPU time, best of N).
(b) "Sessions per core": K concurrent sessions, each fed one 20 ms audio chunk every 20 ms
    (paced against an absolute clock) through 5 composed stages. Prints the CPU fraction of one
    core per session, the implied sessions per core, and the worst lag of any chunk.

Run:  python bench/overhead.py [--items 200000] [--sessions 1000] [--seconds 10]
Targets (issue 2): composed ≤ 3× the CPU of hand-chained; ≥ 1,000 sessions per core.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterable, AsyncIterator

import numpy as np

import voicekit as vk
from voicekit.audio import from_array, paced

# -- (a) throughput ---------------------------------------------------------------------------


async def numbers(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


async def hand_stage(source: AsyncIterable[int]) -> AsyncIterator[int]:
    async for x in source:
        yield x


@vk.stage
async def passthrough(source: AsyncIterable[int], /) -> AsyncIterator[int]:
    async for x in source:
        yield x


async def run_hand(n: int) -> float:
    chain = numbers(n)
    for _ in range(5):
        chain = hand_stage(chain)
    start = time.process_time()
    async for _ in chain:
        pass
    return time.process_time() - start


async def run_composed(n: int) -> float:
    flow = numbers(n)
    for _ in range(5):
        flow = flow | passthrough()
    start = time.process_time()
    async for _ in flow:
        pass
    return time.process_time() - start


async def throughput(n: int, repeats: int) -> None:
    hand, composed = [], []
    for _ in range(repeats):  # interleave so machine noise hits both alike
        hand.append(await run_hand(n))
        composed.append(await run_composed(n))
    h, c = min(hand), min(composed)
    print(f"(a) {n:,} items through 5 pass-through stages, best of {repeats} (CPU time)")
    for label, cpu in (("hand-chained async generators", h), ("voicekit composed stages", c)):
        print(f"    {label:<30}: {n / cpu:>12,.0f} items/s  ({cpu / n * 1e6:.2f} µs/item)")
    print(f"    composed / hand-chained CPU   : {c / h:.2f}×   (target ≤ 3×)")


# -- (b) sessions per core ---------------------------------------------------------------------


async def session(samples: np.ndarray, rate: int, go: asyncio.Event, lags: list[float]) -> int:
    loop = asyncio.get_running_loop()
    flow = (
        from_array(samples, rate, chunk_ms=20)
        | paced()
        | passthrough()
        | passthrough()
        | passthrough()
        | passthrough()
    )
    await go.wait()  # all sessions start together, after every one is built
    count = 0
    start = loop.time()
    worst = 0.0
    async for chunk in flow:
        # paced() releases a chunk at start + chunk.t; lateness beyond that is lag
        worst = max(worst, loop.time() - (start + chunk.t))
        count += 1
    lags.append(worst)
    return count


async def sessions_per_core(k: int, seconds: float) -> None:
    rate = 16000
    noise = np.random.default_rng(0).standard_normal(int(rate * seconds)) * 1000
    samples = noise.astype(np.int16)  # one shared recording: sessions read views of it
    lags: list[float] = []
    go = asyncio.Event()
    tasks = [asyncio.ensure_future(session(samples, rate, go, lags)) for _ in range(k)]
    await asyncio.sleep(0.1)  # let every session build its flow and wait at the start line
    wall0, cpu0 = time.perf_counter(), time.process_time()
    go.set()
    counts = await asyncio.gather(*tasks)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    per_session = cpu / wall / k
    print(f"(b) {k:,} sessions × {seconds:g} s of 20 ms chunks through 5 composed stages")
    expected = k * int(seconds * 50)
    print(f"    chunks delivered              : {sum(counts):,} (expected {expected:,})")
    print(f"    wall {wall:.2f} s, CPU {cpu:.2f} s → {cpu / wall:.1%} of one core in all")
    print(f"    CPU per session               : {per_session:.4%} of one core")
    print(f"    sessions per core             : {1 / per_session:,.0f}   (target ≥ 1,000)")
    print(
        f"    lag: worst {max(lags) * 1000:.1f} ms, median of per-session worst "
        f"{statistics.median(lags) * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    asyncio.run(throughput(args.items, args.repeats))
    asyncio.run(sessions_per_core(args.sessions, args.seconds))


if __name__ == "__main__":
    main()
