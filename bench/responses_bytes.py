"""Benchmark: input bytes sent per turn by the Responses WebSocket variant, with and without
incremental context.

Runs the same conversation twice against the local test server (tests/servers/responses_server.py,
on 127.0.0.1): once sending only the new items with ``previous_response_id``, once sending the
full context every turn. Counts what went over the wire, as the server received it: the JSON of
the ``input`` field and the whole ``response.create`` message.

    python bench/responses_bytes.py              # 5 turns
    python bench/responses_bytes.py --turns 20

Prints figures; it is not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from servers.responses_server import ResponsesServer

from voicekit import Session
from voicekit.llm import ResponsesSocket, reply_text, responses_ws, update_session
from voicekit.llm.endpoint import Endpoint

SYSTEM = "You are a helpful phone agent for an online shop. Keep answers short and friendly."
LINES = [
    "Hi, I ordered a pair of running shoes last week and they have not arrived yet.",
    "The order number is 55-1234-9876, placed on Monday.",
    "Yes, the address is 12 Harbour Road, Portsmouth.",
    "Can you tell me when it will arrive?",
    "Great, and can I change the size from 42 to 43?",
]


async def conversation(turns: int, *, incremental: bool) -> list[tuple[int, int, int]]:
    """(input items sent, input bytes, message bytes) per turn."""
    async with ResponsesServer() as server:
        endpoint = Endpoint(base_url=server.base_url, model="gpt-4.1", api_key="sk-bench")
        session = Session(call_id="bench")
        async with ResponsesSocket(endpoint) as sock:
            for number in range(turns):
                session = session.add_user(LINES[number % len(LINES)])
                events = [
                    e
                    async for e in responses_ws(
                        endpoint, session, socket=sock, system=SYSTEM, incremental=incremental
                    )
                ]
                session = update_session(session, events).add_assistant(reply_text(events))
        figures = []
        for request in server.creates:
            items = request.body["input"]
            sent = json.dumps(items, ensure_ascii=False, separators=(",", ":")).encode()
            figures.append((len(items), len(sent), request.size))
        return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=5)
    turns = parser.parse_args().turns
    on = await conversation(turns, incremental=True)
    off = await conversation(turns, incremental=False)
    print(f"Responses over WebSocket, {turns} turns: input items / input bytes / message bytes")
    print(f"{'turn':>4}  {'incremental':>22}  {'full context':>22}")
    for number, (a, b) in enumerate(zip(on, off, strict=True), 1):
        print(f"{number:>4}  {a[0]:>4} {a[1]:>8} {a[2]:>8}  {b[0]:>4} {b[1]:>8} {b[2]:>8}")
    total_on = sum(f[1] for f in on)
    total_off = sum(f[1] for f in off)
    print(
        f"total input bytes: incremental {total_on}, full context {total_off} "
        f"({100 * (1 - total_on / total_off):.0f}% less)"
    )


if __name__ == "__main__":
    asyncio.run(main())
