"""Benchmark: how fast voicekit parses a chat-completions SSE stream, and what it adds to TTFT.

A loopback server (in a child process, so it does not share this process's CPU) streams
``--chunks`` text deltas, one SSE event per HTTP chunk, as fast as it can. The same stream is read
by ``voicekit.llm.chat`` and by the ``openai`` package's ``AsyncOpenAI`` streaming client, in the
same run; both count the text deltas they parse. Then a one-token reply is fetched many times to
compare the time to first token through ``chat`` with a raw socket that sends the same request
and waits for the first token's bytes.

    python bench/sse.py                 # 50,000 chunks, 5 rounds, 300 TTFT samples
    python bench/sse.py --chunks 5000 --rounds 1 --ttft 50

Prints figures; it is not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import httpx
from servers.sse_server import Recorded, Reply, SSEServer, chunk, chunked_body, sse

from voicekit import Token
from voicekit.llm import chat, custom

MESSAGES = [{"role": "user", "content": "go"}]


def _stream_body(count: int) -> bytes:
    events = [sse(chunk("", role="assistant"))]
    events += [sse(chunk(f"tok{i} ")) for i in range(count)]
    events.append(sse(chunk(finish="stop")))
    events.append(
        sse(chunk(usage={"prompt_tokens": 1, "completion_tokens": count}, no_choices=True))
    )
    events.append(b"data: [DONE]\n\n")
    return chunked_body(events, per_chunk=1)


def _serve(count: int, conn: Connection) -> None:
    """Child process: serve the big stream on /bulk/v1, a one-token reply on /ttft/v1."""

    async def main() -> None:
        bulk = _stream_body(count)
        first = _stream_body(1)

        def route(request: Recorded) -> Reply:
            return Reply(raw=bulk if request.path.startswith("/bulk/") else first)

        server = await SSEServer(handler=route).start()
        conn.send(server.port)
        await asyncio.Event().wait()

    asyncio.run(main())


async def _rate(run: Callable[[], Awaitable[int]]) -> tuple[float, int]:
    """Deltas per second of one run, and the delta count."""
    started = time.perf_counter()
    count = await run()
    return count / (time.perf_counter() - started), count


async def throughput(port: int, rounds: int, deltas: int) -> dict[str, float]:
    from openai import AsyncOpenAI

    base = f"http://127.0.0.1:{port}/bulk/v1"
    endpoint = custom(base_url=base, model="bench")
    results: dict[str, float] = {}
    async with httpx.AsyncClient() as client:

        async def voicekit_run() -> int:
            n = 0
            async for event in chat(endpoint, MESSAGES, client=client):
                if type(event) is Token:
                    n += 1
            return n

        async def openai_run() -> int:
            n = 0
            stream = await sdk.chat.completions.create(
                model="bench", messages=MESSAGES, stream=True,  # type: ignore[arg-type]
                stream_options={"include_usage": True},
            )  # fmt: skip
            async for item in stream:
                if item.choices and item.choices[0].delta.content:
                    n += 1
            return n

        sdk = AsyncOpenAI(base_url=base, api_key="bench", max_retries=0)
        await voicekit_run()  # warm both up (imports, connection)
        await openai_run()
        runs = {"voicekit": voicekit_run, "openai": openai_run}
        best = dict.fromkeys(runs, 0.0)
        ratios = []
        for _ in range(rounds):  # interleaved, so both see the same machine load
            round_rates = {}
            for name, run in runs.items():
                rate, count = await _rate(run)
                assert count == deltas, (name, count)
                round_rates[name] = rate
                best[name] = max(best[name], rate)
            ratios.append(round_rates["voicekit"] / round_rates["openai"])
        for name, rate in best.items():
            print(f"  {name:<9} {rate:>12,.0f} text deltas/s   (best of {rounds} rounds)")
        print(
            f"  voicekit / openai per round: {', '.join(f'{r:.1f}x' for r in ratios)}; "
            f"median {statistics.median(ratios):.1f}x (target >= 4x)"
        )
        results.update(best)
        await sdk.close()
    return results


def _raw_request(port: int) -> bytes:
    body = b'{"model":"bench","messages":[{"role":"user","content":"go"}],"stream":true}'
    head = (
        f"POST /ttft/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _raw_first_token(port: int, reader_writer: tuple | None) -> tuple[float, tuple]:
    """Time from sending the request to reading the first token's bytes, on a raw socket."""
    if reader_writer is None:
        reader_writer = await asyncio.open_connection("127.0.0.1", port)
    reader, writer = reader_writer
    seen = b""
    started = time.perf_counter()
    writer.write(_raw_request(port))
    while b"tok0" not in seen:
        data = await reader.read(65536)
        if not data:
            raise RuntimeError("server closed early")
        seen += data
    elapsed = time.perf_counter() - started
    while not seen.endswith(b"0\r\n\r\n"):  # read the rest so the connection can be reused
        seen += await reader.read(65536)
    return elapsed, reader_writer


async def ttft(port: int, samples: int) -> dict[str, float]:
    endpoint = custom(base_url=f"http://127.0.0.1:{port}/ttft/v1", model="bench")

    async def voicekit_first(client: httpx.AsyncClient | None) -> float:
        started = time.perf_counter()
        elapsed = 0.0
        async for event in chat(endpoint, MESSAGES, client=client):
            if type(event) is Token and not elapsed:
                elapsed = time.perf_counter() - started
        return elapsed

    results: dict[str, float] = {}
    # warm: one kept-alive connection on each side
    connection = None
    raw_warm = []
    for _ in range(samples):
        elapsed, connection = await _raw_first_token(port, connection)
        raw_warm.append(elapsed)
    connection[1].close()
    async with httpx.AsyncClient() as client:
        await voicekit_first(client)
        vk_warm = [await voicekit_first(client) for _ in range(samples)]
    # cold: a new TCP connection (and, for voicekit, a new client) per request
    raw_cold = []
    for _ in range(samples):
        elapsed, connection = await _raw_first_token(port, None)
        connection[1].close()
        raw_cold.append(elapsed)
    raw_cold_connect = []
    for _ in range(samples):
        started = time.perf_counter()
        connection = await asyncio.open_connection("127.0.0.1", port)
        connect = time.perf_counter() - started
        elapsed, _ = await _raw_first_token(port, connection)
        connection[1].close()
        raw_cold_connect.append(connect + elapsed)
    vk_cold = [await voicekit_first(None) for _ in range(samples)]
    for label, raw, ours in (
        ("warm connection (shared client)", raw_warm, vk_warm),
        ("new connection per request (no client given)", raw_cold_connect, vk_cold),
    ):
        raw_ms, vk_ms = statistics.median(raw) * 1e3, statistics.median(ours) * 1e3
        results[label] = vk_ms - raw_ms
        print(
            f"  {label}: raw socket {raw_ms:.3f} ms, voicekit {vk_ms:.3f} ms, "
            f"added {vk_ms - raw_ms:+.3f} ms (medians of {samples})"
        )
    return results


async def main(args: argparse.Namespace) -> None:
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(target=_serve, args=(args.chunks, child), daemon=True)
    server.start()
    try:
        port = parent.recv()
        print(f"loopback SSE server: {args.chunks:,} chunks per reply, port {port}")
        print("throughput (text deltas parsed per second):")
        await throughput(port, args.rounds, args.chunks)
        print("added time to first token vs a raw socket read (target < 1 ms):")
        await ttft(port, args.ttft)
    finally:
        server.terminate()
        server.join()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ttft", type=int, default=300, help="TTFT samples per variant")
    asyncio.run(main(parser.parse_args()))
