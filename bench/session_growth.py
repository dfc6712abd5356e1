"""What a long conversation costs per turn, and what a history window saves (issue 9 item 13).

A Session of ``--messages`` messages (user and assistant turns, a tool round every tenth turn)
is built once. Then, best of ``--reps`` each:

* the Session updates of one turn: ``add_user``, ``add_assistant``, ``with_continuity``;
* ``messages_json()`` (the plain copy the agent hands to the LLM function);
* ``build_request`` and ``content()`` (the JSON body) for the whole conversation and for a window;

(CPU time of this process, so that the other work of a busy machine does not count)

and ``--turns`` real turns through ``agent`` with an Endpoint over HTTP to a local SSE server (in
a child process, so its parsing does not share this process's CPU), from ``TurnEnded`` to the
turn's ``SessionUpdated``: median and p90, without a window and with one.

    python bench/session_growth.py                      # 50,000 messages, 10 turns
    python bench/session_growth.py --messages 10000 --turns 20

Runs on older trees too (the rows that need a history window are left out). Prints figures; it
is not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # measure the tree this script is in
sys.path.insert(0, str(ROOT / "tests"))

from servers.sse_server import Recorded, Reply, SSEServer, text_reply  # noqa: E402

import voicekit as vk  # noqa: E402
from voicekit.events import SessionUpdated, TurnEnded, TurnStarted  # noqa: E402
from voicekit.llm import custom  # noqa: E402
from voicekit.llm.request import build_request  # noqa: E402

HistoryWindow = getattr(vk, "HistoryWindow", None)


def build_session(count: int) -> vk.Session:
    """About ``count`` messages: turns of user + assistant, a tool round every tenth turn."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a phone agent."}]
    turn = 0
    while len(messages) < count:
        messages.append({"role": "user", "content": f"Question {turn}: is the weather fine?"})
        if turn % 10 == 0:
            call = {"id": f"c{turn}", "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Rome"}'}}
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            messages.append({"role": "tool", "tool_call_id": f"c{turn}",
                             "content": '{"conditions": "foggy", "temperature_c": 22}'})
        messages.append({"role": "assistant", "content": f"Answer {turn}: foggy, 22 degrees."})
        turn += 1
    return vk.Session(call_id="bench", messages=messages)


def best_ms(run: Callable[[], Any], reps: int) -> float:
    """CPU milliseconds of ``run``, best of ``reps`` (CPU time: other processes on a busy
    machine do not count)."""
    times = []
    for _ in range(reps):
        started = time.process_time()
        run()
        times.append(time.process_time() - started)
    return min(times) * 1000


def _serve(conn: Connection) -> None:
    """Child process: answer every chat request with a short reply, keep no request."""

    async def main() -> None:
        server: SSEServer

        def route(request: Recorded) -> Reply:
            server.requests.clear()
            return text_reply(["Fine."])

        server = await SSEServer(handler=route).start()
        conn.send(server.port)
        await asyncio.Event().wait()

    asyncio.run(main())


async def http_turns(
    session: vk.Session, port: int, turns: int, history: Any
) -> tuple[list[float], float]:
    """Seconds from each TurnEnded to its SessionUpdated, over ``turns`` turns (after one
    warm-up turn), and this process's CPU seconds per turn."""
    options = {} if history is None else {"history": history}
    bot = vk.agent(
        llm=custom(base_url=f"http://127.0.0.1:{port}/v1", model="m"),
        tts=vk.tts.tones(),
        session=session,
        preemptive=False,
        **options,
    )
    feed: asyncio.Queue[Any] = asyncio.Queue()

    async def source() -> AsyncIterator[Any]:
        while (item := await feed.get()) is not None:
            yield item

    times: list[float] = []
    started = 0.0

    def ask(n: int) -> None:
        nonlocal started
        feed.put_nowait(TurnStarted())
        feed.put_nowait(TurnEnded(f"turn {n}: and tomorrow?"))
        started = time.perf_counter()

    ask(0)
    cpu = 0.0
    async for item in source() | bot:
        if isinstance(item, SessionUpdated):
            times.append(time.perf_counter() - started)
            if len(times) == 1:
                cpu = time.process_time()
            if len(times) > turns:
                feed.put_nowait(None)
            else:
                ask(len(times))
    return times[1:], (time.process_time() - cpu) / turns


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--turns", type=int, default=10, help="timed HTTP turns per case")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--window-turns", type=int, default=20)
    parser.add_argument("--window-tokens", type=int, default=4000)
    args = parser.parse_args()

    started = time.perf_counter()
    session = build_session(args.messages)
    print(f"voicekit from {Path(vk.__file__).parent.parent}")
    print(f"a Session of {len(session.messages)} messages, built in "
          f"{time.perf_counter() - started:.2f} s\n")
    endpoint = custom(base_url="http://127.0.0.1:9/v1", model="m")

    def one_turn_updates() -> None:
        session.add_user("and tomorrow?").add_assistant("Sunny.").with_continuity(
            "responses", {"previous_response_id": "resp_1"}
        )

    plain = session.messages_json()
    request = build_request(endpoint, plain, session=session)
    rows = [
        ("Session updates of one turn (3 calls)", best_ms(one_turn_updates, args.reps)),
        ("messages_json(), all", best_ms(session.messages_json, args.reps)),
        ("build_request, all", best_ms(lambda: build_request(endpoint, plain), args.reps)),
        ("content() (JSON body), all", best_ms(request.content, args.reps)),
    ]
    windows: list[tuple[str, Any]] = [("no window", None)]
    if HistoryWindow is not None:
        for label, window in (
            (f"turns={args.window_turns}", HistoryWindow(turns=args.window_turns)),
            (f"tokens={args.window_tokens}", HistoryWindow(tokens=args.window_tokens)),
        ):
            windows.append((label, window))
            part = session.messages_json(window)

            def send_window(part: list[dict[str, Any]] = part, window: Any = window) -> None:
                session.messages_json(window)
                build_request(endpoint, part).content()

            rows.append((f"window {label} ({len(part)} msgs): select + build + encode",
                         best_ms(send_window, args.reps)))
    for label, ms in rows:
        print(f"  {label:58s} {ms:9.2f} ms")

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(child,), daemon=True)
    server.start()
    try:
        port = parent.recv()
        print(f"\na turn over HTTP through agent (TurnEnded → SessionUpdated), {args.turns} turns:")
        for label, window in windows:
            times, cpu = await http_turns(session, port, args.turns, window)
            print(f"  {label:14s} median {statistics.median(times) * 1000:8.1f} ms   "
                  f"p90 {p90(times) * 1000:8.1f} ms   (client CPU {cpu * 1000:6.1f} ms a turn)")
    finally:
        server.terminate()
        server.join(5)


if __name__ == "__main__":
    asyncio.run(main())
