"""How many phone calls does one ``voicekit.serve`` process carry, and what does the transport add?

(a) Load. One server process (uvicorn, ``voicekit.serve.app``, Twilio route, dev mode) runs
    ``vad(energy) | stt.fake | turns | agent(tones TTS)`` per call. This process places N
    simulated Twilio calls at once over loopback WebSockets (a light client: ``connected``,
    ``start``, a 20 ms μ-law ``media`` frame every 20 ms on an absolute clock, marks echoed when
    their audio would have played, ``stop`` at the end). Each caller says a 1 s tone (the fake
    STT "hears" a question) then stays quiet 5 s, over and over, for S seconds. Reported: calls
    completed (every turn answered, no error), errors, first audio after the end of the caller's
    utterance (p50/p99: includes the VAD's 0.2 s stop and the turn end's 0.2 s wait), the
    server's event-loop lag (a 50 ms timer's lateness, p50/p99/max), the server's CPU per call
    (fraction of one core) and RSS per call (peak minus idle, divided by N).

(b) Transport-added latency. In this process: the app under uvicorn, an ``on_call`` that yields
    16 kHz 20 ms chunks, a raw WebSocket client. For each chunk we take the moment it is yielded
    to ``call.outbound`` and the moment the 8 kHz frame holding its first sample arrives at the
    client: resampling, framing, μ-law, JSON, the socket. Two ways of yielding: *paced* (a chunk
    every 20 ms, as a real-time TTS would) and *burst* (a reply's chunks as fast as accepted, the
    first chunk's latency only; later ones wait for the lead, on purpose).

Run:  python bench/serve.py [--calls 100] [--seconds 60] [--lead 0.2] [--inbound-ms 20]
      [--skip-load]

Figures on a quiet machine (2026-12-08, 2 cores, nothing else running; before the VAD and STT
stages stopped making a task per item, commit 2993d1f):

  calls  seconds  completed  first audio p50 / p99   loop lag p50 / p99   server CPU  RSS/call
     1     20        1/1        204 /  206 ms          0.8 /  2.3 ms       0.06 cores
    10     20       10/10       206 /  210 ms          0.7 /  4.0 ms       0.20 cores   258 KiB
    50     40       50/50       213 /  342 ms          1.4 / 11.7 ms       0.68 cores   333 KiB
    70     40       21/70       838 / 4571 ms          8.1 / 27.7 ms       0.98 cores   394 KiB
   100     60        0/100     2763 / 4959 ms         13.9 / 51.1 ms       0.97 cores  1303 KiB

A call costs about 1.4 % of a core (μ-law, resampling, VAD, framing, the agent's loop and the
socket), all on the one event loop: one process carries about 50 calls in real time, and past
~60 the loop saturates and replies queue for seconds. More calls: ``voicekit serve --workers N``
(one process per core; see docs/deploy.md). Transport-added latency (b): 0.71 ms median, 0.83 ms
p90 per paced chunk; 1.8 ms for the first chunk of a burst.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np
import psutil
import uvicorn
import websockets
from starlette.requests import Request
from starlette.responses import JSONResponse

import voicekit as vk
import voicekit.serve
from voicekit.audio import ulaw_encode
from voicekit.events import CallEnded, CallStarted
from voicekit.stt import fake
from voicekit.tts import tones
from voicekit.turns import speech_timeout, turns
from voicekit.vad import energy, vad

SPEAK_S, QUIET_S = 1.0, 5.0
FRAME = 160


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# -- (a) the server process -----------------------------------------------------------------


def server_main(port: int, calls: int, lead: float, inbound_ms: float) -> None:
    profiler = None
    if os.environ.get("BENCH_PROFILE"):  # a cProfile of the server, dumped at the end
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    lags: list[float] = []
    ended: list[int] = []

    async def llm(messages: Any) -> Any:
        yield "Sure. "
        yield "Here is a short answer to that."

    async def on_call(call: Any) -> None:
        bot = vk.voice_agent(
            llm=llm,
            tts=tones(),
            stt=fake(transcripts=lambda samples, rate: "what is the weather"),
            vad=vad(detector=energy(), min_volume=0, stop_secs=0.2),
            turns=turns(stop=[speech_timeout(0.2)], pending=False),
            session=call.session,
        )
        await (call.inbound | bot | call.outbound)

    application = vk.serve.app(
        on_call, dev=True, max_calls=calls + 10, lead=lead, on_end=lambda s: ended.append(1),
        inbound_ms=inbound_ms,
    )

    async def stats(request: Request) -> JSONResponse:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        body = {
            "cpu": usage.ru_utime + usage.ru_stime,
            "rss": psutil.Process().memory_info().rss,
            "lag": list(lags),
            "ended": len(ended),
            "calls": application.state.voicekit.calls,
        }
        if request.query_params.get("reset"):
            lags.clear()
        if profiler is not None and request.query_params.get("dump"):
            profiler.dump_stats(os.environ["BENCH_PROFILE"])
        return JSONResponse(body)

    application.add_route("/bench/stats", stats)

    async def lag_monitor() -> None:
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            await asyncio.sleep(0.05)
            lags.append(loop.time() - began - 0.05)

    async def main() -> None:
        monitor = asyncio.create_task(lag_monitor())
        # no keepalive pings: the callers run on the same (shared) machine, and a starved
        # caller answering a ping late is not what this measures
        config = uvicorn.Config(application, host="127.0.0.1", port=port, log_level="error",
                                ws="websockets-sansio", lifespan="off", backlog=4096,
                                ws_ping_interval=None)
        await uvicorn.Server(config).serve()
        monitor.cancel()

    asyncio.run(main())


# -- (a) the callers ------------------------------------------------------------------------


class Caller:
    def __init__(self, n: int, url: str, seconds: float) -> None:
        self.n, self.url, self.seconds = n, url, seconds
        self.first_audio: list[float] = []
        self.turns = 0
        self.error = ""
        self.speech_end: float | None = None
        self.waiting = False
        self.speaking = False
        self.tainted = False
        self.answered = 0
        self.play_end = 0.0
        self.marks: list[tuple[float, str]] = []

    async def run(self, start_at: float) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, start_at - loop.time()))
        tone = (np.sin(2 * np.pi * 300 * np.arange(FRAME) / 8000) * 8000).astype(np.int16)
        loud = base64.b64encode(ulaw_encode(tone).tobytes()).decode()
        quiet = base64.b64encode(b"\xff" * FRAME).decode()
        sid = f"MZbench{self.n}"
        try:
            async with websockets.connect(self.url, max_queue=None, ping_interval=None,
                                          compression=None) as ws:
                await ws.send(json.dumps({"event": "connected", "protocol": "Call"}))
                await ws.send(json.dumps({"event": "start", "sequenceNumber": "1",
                                          "streamSid": sid, "start": {
                                              "streamSid": sid, "callSid": f"CAbench{self.n}",
                                              "customParameters": {}}}))
                reader = asyncio.create_task(self.read(ws, sid))
                t0 = loop.time()
                frames = int(self.seconds * 50)
                cycle = int((SPEAK_S + QUIET_S) * 50)
                for i in range(frames):
                    await asyncio.sleep(max(0.0, t0 + i * 0.02 - loop.time()))
                    speaking = i % cycle < SPEAK_S * 50
                    if i % cycle == 0:
                        self.speaking, self.tainted = True, self.waiting
                    if not speaking and i % cycle == SPEAK_S * 50:
                        self.speaking = False
                        self.speech_end, self.waiting = loop.time(), True
                        self.turns += 1
                    await ws.send(json.dumps({"event": "media", "sequenceNumber": str(i + 2),
                                              "streamSid": sid, "media": {
                                                  "track": "inbound", "chunk": str(i + 1),
                                                  "timestamp": str(i * 20),
                                                  "payload": loud if speaking else quiet}}))
                    await self.echo_marks(ws, sid, loop.time())
                await ws.send(json.dumps({"event": "stop", "streamSid": sid,
                                          "sequenceNumber": str(frames + 2), "stop": {}}))
                reader.cancel()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"

    async def echo_marks(self, ws: Any, sid: str, now: float) -> None:
        while self.marks and self.marks[0][0] <= now:
            _, name = self.marks.pop(0)
            await ws.send(json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": name}}))

    async def read(self, ws: Any, sid: str) -> None:
        try:
            await self._read(ws, sid)
        except websockets.ConnectionClosed as exc:
            self.error = self.error or f"{type(exc).__name__}: {exc}"

    async def _read(self, ws: Any, sid: str) -> None:
        loop = asyncio.get_running_loop()
        async for message in ws:
            data = json.loads(message)
            now = loop.time()
            if data["event"] == "media":
                if self.speaking:  # an earlier reply still arriving: this turn can't be timed
                    self.tainted = True
                if self.waiting and self.speech_end is not None:
                    if not self.tainted:
                        self.first_audio.append(now - self.speech_end)
                    self.answered += 1
                    self.waiting = False
                size = len(base64.b64decode(data["media"]["payload"]))
                self.play_end = max(self.play_end, now) + size / 8000
            elif data["event"] == "mark":
                self.marks.append((max(self.play_end, now), data["mark"]["name"]))
            elif data["event"] == "clear":
                self.marks.clear()
                self.play_end = now


async def load(calls: int, seconds: float, lead: float, inbound_ms: float = 20) -> None:
    port = 18000 + os.getpid() % 1000
    server = subprocess.Popen(  # noqa: ASYNC220 - started once, before the clock runs
        [sys.executable, __file__, "--serve", str(port), "--calls", str(calls), "--lead",
         str(lead), "--inbound-ms", str(inbound_ms)]
    )
    try:
        import httpx

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            for _ in range(200):
                try:
                    await http.get("/healthz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            idle = (await http.get("/bench/stats?reset=1")).json()
            loop = asyncio.get_running_loop()
            start = loop.time() + 0.5
            callers = [Caller(n, f"ws://127.0.0.1:{port}/twilio/media", seconds)
                       for n in range(calls)]
            client_cpu = time.process_time()
            tasks = [asyncio.create_task(c.run(start + 3.0 * c.n / calls)) for c in callers]
            await asyncio.sleep(seconds * 0.8)
            peak = (await http.get("/bench/stats")).json()
            await asyncio.gather(*tasks)
            for _ in range(100):
                after = (await http.get("/bench/stats")).json()
                if after["ended"] >= calls:
                    break
                await asyncio.sleep(0.1)
            client_cpu = time.process_time() - client_cpu
            await http.get("/bench/stats?dump=1", timeout=60)
    finally:
        server.terminate()
        server.wait()
    window = seconds + 3.0
    firsts = [x for c in callers for x in c.first_audio]
    complete = [c for c in callers if not c.error and c.answered == c.turns > 0]
    errors = [c.error for c in callers if c.error]
    lag = after["lag"]
    print(f"(a) load: {calls} simulated Twilio calls for {seconds:.0f} s, one server process, "
          f"lead {lead * 1000:.0f} ms, inbound chunks {inbound_ms:.0f} ms, "
          f"{psutil.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} at the end (the machine is shared)")
    print(f"    calls completed   {len(complete)}/{calls} (every turn answered), errors "
          f"{len(errors)}{': ' + errors[0] if errors else ''}; calls ended on the server "
          f"{after['ended']}")
    print(f"    turns             {sum(c.turns for c in callers)} asked, "
          f"{sum(c.answered for c in callers)} answered, {len(firsts)} timed (a turn is not timed "
          "when an earlier reply was still arriving as the caller spoke)")
    print(f"    first audio       p50 {pct(firsts, 50) * 1000:.0f} ms, p99 "
          f"{pct(firsts, 99) * 1000:.0f} ms after the end of the caller's utterance "
          "(includes 0.2 s VAD stop + 0.2 s turn wait)")
    print(f"    event-loop lag    p50 {pct(lag, 50) * 1000:.1f} ms, p99 {pct(lag, 99) * 1000:.1f}"
          f" ms, max {max(lag) * 1000:.1f} ms (50 ms timer, n={len(lag)})")
    cpu = after["cpu"] - idle["cpu"]
    print(f"    server CPU        {cpu / window:.2f} cores in all, {cpu / window / calls * 100:.2f}"
          f" % of a core per call; client (this process) {client_cpu / window:.2f} cores")
    rss = peak["rss"] - idle["rss"]
    print(f"    server RSS        idle {idle['rss'] / 2**20:.0f} MiB, peak "
          f"{peak['rss'] / 2**20:.0f} MiB: {rss / calls / 2**10:.0f} KiB per call")


# -- (b) transport-added latency ------------------------------------------------------------


async def transport_latency(lead: float, replies: int = 20, chunks: int = 25) -> None:
    yielded: dict[str, list[float]] = {"paced": [], "burst": []}
    ready = asyncio.Event()
    mode = {"now": "paced"}

    async def on_call(call: Any) -> None:
        loop = asyncio.get_running_loop()

        async def speak() -> Any:
            async for item in call.inbound:
                if isinstance(item, CallStarted):
                    break
            for kind in ("paced", "burst"):
                mode["now"] = kind
                for _ in range(replies):
                    t0 = loop.time()
                    for k in range(chunks):
                        if kind == "paced":
                            await asyncio.sleep(max(0.0, t0 + k * 0.02 - loop.time()))
                        yielded[kind].append(loop.time())
                        yield vk.AudioChunk(np.full(320, 2000, np.int16), 16000, k * 0.02)
                    yield vk.Mark(f"{kind}")
                    await asyncio.sleep(chunks * 0.02 + lead + 0.3)  # let the line drain
            ready.set()
            async for item in call.inbound:
                if isinstance(item, CallEnded):
                    return

        await call.outbound(speak())

    application = vk.serve.app(on_call, dev=True, lead=lead)
    config = uvicorn.Config(application, host="127.0.0.1", port=0, log_level="error",
                            ws="websockets-sansio", lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for it
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    arrived: dict[str, list[tuple[float, int]]] = {"paced": [], "burst": []}
    loop = asyncio.get_running_loop()
    async with websockets.connect(f"ws://127.0.0.1:{port}/twilio/media") as ws:
        await ws.send(json.dumps({"event": "start", "streamSid": "MZ1",
                                  "start": {"streamSid": "MZ1", "callSid": "CA1"}}))

        async def read() -> None:
            async for message in ws:
                data = json.loads(message)
                if data["event"] == "media":
                    size = len(base64.b64decode(data["media"]["payload"]))
                    arrived[mode["now"]].append((loop.time(), size))

        reader = asyncio.create_task(read())
        await ready.wait()
        await asyncio.sleep(0.3)
        reader.cancel()
        await ws.send(json.dumps({"event": "stop", "streamSid": "MZ1", "stop": {}}))
    server.should_exit = True
    await serving
    paced = delays(arrived["paced"], yielded["paced"])
    burst = delays(arrived["burst"], yielded["burst"])[::chunks]
    frames = len(arrived["paced"]) + len(arrived["burst"])
    print(f"(b) transport-added latency, agent chunk yielded -> its 8 kHz frame at the client "
          f"(lead {lead * 1000:.0f} ms; {frames} frames)")
    print(f"    paced chunks      median {statistics.median(paced) * 1000:.2f} ms, p90 "
          f"{pct(paced, 90) * 1000:.2f} ms (n={len(paced)})")
    print(f"    first of a burst  median {statistics.median(burst) * 1000:.2f} ms, p90 "
          f"{pct(burst, 90) * 1000:.2f} ms (n={len(burst)})")


def delays(frames: list[tuple[float, int]], yielded: list[float]) -> list[float]:
    """For each 20 ms chunk k (its first sample is 8 kHz sample 160 k), the arrival of the frame
    holding that sample minus the moment the chunk was yielded."""
    ends = np.cumsum([size for _, size in frames])
    out = []
    for k, at in enumerate(yielded):
        i = int(np.searchsorted(ends, 160 * k, side="right"))
        if i < len(frames):
            out.append(frames[i][0] - at)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--lead", type=float, default=0.2)
    parser.add_argument("--inbound-ms", type=float, default=20)
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--serve", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        server_main(args.serve, args.calls, args.lead, args.inbound_ms)
        return
    asyncio.run(transport_latency(args.lead))
    if not args.skip_load:
        asyncio.run(load(args.calls, args.seconds, args.lead, args.inbound_ms))


if __name__ == "__main__":
    main()
