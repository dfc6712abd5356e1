"""How much latency does voicekit add on the reply path, and what does a session cost?

(a) Reply-path latency. An agent talks to a loopback LLM server (a separate process on
    127.0.0.1) that streams a reply a token every 30 ms, and speaks through an instant fake TTS
    (one precomputed chunk per sentence). For each of N turns we take the moment the token that
    completes the first sentence arrives and the moment the agent yields its first audio chunk.
    Both figures start at the token that *completes* the first sentence (its full stop), not
    at the token after it, so any look-ahead of the sentence splitter counts (a splitter that
    waited for the next token to be sure would show the 30 ms token gap here):

      * from LLM token — the completing token leaves voicekit.llm.chat() → first audio chunk
        out of the agent: sentence splitting, the TTS stage and the conversation loop;
      * from the wire — the server wrote that token to its socket → first audio chunk: the
        above plus loopback TCP, HTTP and SSE decoding (both processes read CLOCK_MONOTONIC).

(b) CPU per session. K agents run side by side, each fed question.wav and 2 s of silence in a
    loop, paced in real time (20 ms chunks), through vad(energy) | stt.fake | turns | agent, each
    turn streaming a reply from the same loopback server. We report the CPU time of this process
    (the server's is not counted) per session, as a fraction of one core, and turns completed.

(c) Preemptive replies. Two sessions side by side, one ``agent(preemptive=True)``, one False,
    each hearing question.wav then 2.5 s of silence, N times, paced in real time (a chunk is
    released when its end has been "recorded"), through vad(energy) | stt.fake | turns | agent,
    from a loopback LLM whose first token comes 500 ms after the request. We report, per
    session, the true end of speech (last 10 ms frame above -50 dBFS) → first reply audio and
    the turn's end → first reply audio.

Run:  python bench/latency.py [--turns 50] [--sessions 1 10 50] [--seconds 10] [--preempt 6]
      (--turns 0 --sessions --preempt 6: part (c) alone)
Target (issue 12 item 6): from the completing token, median ≤ 2 ms, p99 ≤ 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, ClassVar

import httpx
import numpy as np

import voicekit as vk
from voicekit import agent, stt, vad
from voicekit.events import (
    AudioChunk,
    ReplyStarted,
    Sentence,
    SessionUpdated,
    Token,
    TurnEnded,
    TurnStarted,
)
from voicekit.llm import NO_RETRY, chat, custom
from voicekit.text import split_sentences
from voicekit.turns import turns

TOKEN_GAP = 0.030
SLOW_FIRST_TOKEN = 0.5  # the first token's delay for requests under /slow (part c)
REPLY = ["Sure", ",", " I", " can", " help", ".", " The", " weather", " is", " sunny", "."]


def completing_token(tokens: list[str]) -> int:
    """The index of the token that completes the first sentence of ``"".join(tokens)``."""
    first = split_sentences("".join(tokens))[0]
    text = ""
    for index, token in enumerate(tokens):
        text += token
        if len(text.strip()) >= len(first) and text.strip().startswith(first):
            return index
    raise ValueError(f"no token completes {first!r}")


FIRST_SENTENCE_TOKEN = completing_token(REPLY)  # "." after "help"


# -- the loopback LLM server (own process) ------------------------------------------------------


def _chunk(content: str | None = None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    data = {
        "id": "bench",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "bench",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def _framed(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


class _Server(asyncio.Protocol):
    """HTTP/1.1 keep-alive: POST .../chat/completions streams REPLY; GET /times gives the log."""

    log: ClassVar[list[list[float]]] = []  # per chat request: when each token was written

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buffer = bytearray()
        self.queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self.serve())

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            method, path, _ = head[0].split(" ", 2)
            self.queue.put_nowait((method, path))

    def connection_lost(self, exc: Exception | None) -> None:
        self.task.cancel()

    async def serve(self) -> None:
        while True:
            method, path = await self.queue.get()
            if method == "GET":
                body = json.dumps(_Server.log).encode()
                head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                head += f"Content-Length: {len(body)}\r\n\r\n"
                self.transport.write(head.encode() + body)
                continue
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n" + _framed(_chunk(""))
            )
            sent: list[float] = []
            _Server.log.append(sent)
            loop = asyncio.get_running_loop()
            start = loop.time()
            if path.startswith("/slow/"):
                start += SLOW_FIRST_TOKEN - TOKEN_GAP
            for index, token in enumerate(REPLY):
                await asyncio.sleep(max(0.0, start + (index + 1) * TOKEN_GAP - loop.time()))
                self.transport.write(_framed(_chunk(token)))
                sent.append(time.monotonic())
            self.transport.write(
                _framed(_chunk(finish="stop")) + _framed(b"data: [DONE]\n\n") + b"0\r\n\r\n"
            )


def _serve(port_out: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Server, "127.0.0.1", 0)
        port_out.send(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


# -- the agent's parts ----------------------------------------------------------------------------


_BEEP = AudioChunk(np.zeros(320, np.int16), 16000)


@vk.stage
async def instant_tts(source: AsyncIterable[Any], /) -> AsyncIterator[Any]:
    """A TTS that takes no time: one precomputed chunk per sentence, then the sentence."""
    async for item in source:
        if isinstance(item, Sentence):
            yield _BEEP
        yield item


def marking_llm(endpoint: vk.llm.Endpoint, marks: list[float]) -> Any:
    """chat() on ``endpoint``, noting when the token completing the first sentence leaves it
    (the token whose text ends the sentence, not a later one that tells a splitter so)."""

    async def llm(messages: Any, *, client: Any) -> AsyncIterator[Any]:
        index = 0
        async for event in chat(endpoint, messages, client=client):
            if isinstance(event, Token) and event.text:
                if index == FIRST_SENTENCE_TOKEN:
                    marks.append(time.monotonic())
                index += 1
            yield event

    return llm


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return (
        f"median {statistics.median(ordered):6.3f}  p90 {at(0.90):6.3f}  "
        f"p99 {at(0.99):6.3f}  max {ordered[-1]:6.3f} ms"
    )


# -- (a) -----------------------------------------------------------------------------------------


async def reply_latency(base_url: str, turns_count: int) -> None:
    endpoint = custom(base_url=base_url, model="bench", retry=NO_RETRY)
    marks: list[float] = []
    firsts: list[float] = []
    inbox: asyncio.Queue[Any] = asyncio.Queue()

    async def user() -> AsyncIterator[Any]:
        while (item := await inbox.get()) is not None:
            yield item

    bot = agent(llm=marking_llm(endpoint, marks), tts=instant_tts())
    waiting_first = False
    done = 0
    inbox.put_nowait(TurnStarted())
    inbox.put_nowait(TurnEnded("What is the weather?"))
    async with (user() | bot).open() as items:
        async for item in items:
            if isinstance(item, ReplyStarted):
                waiting_first = True
            elif isinstance(item, AudioChunk) and waiting_first:
                firsts.append(time.monotonic())
                waiting_first = False
            elif isinstance(item, SessionUpdated):
                done += 1
                if done == turns_count:
                    inbox.put_nowait(None)
                else:
                    inbox.put_nowait(TurnStarted())
                    inbox.put_nowait(TurnEnded("And tomorrow?"))
    async with httpx.AsyncClient() as client:
        log = (await client.get(base_url.removesuffix("/v1") + "/times")).json()
    wire = [sent[FIRST_SENTENCE_TOKEN] for sent in log[-turns_count:]]
    from_token = [(f - m) * 1000 for f, m in zip(firsts, marks, strict=True)]
    from_wire = [(f - w) * 1000 for f, w in zip(firsts, wire, strict=True)]
    print(f"(a) reply-path latency over {turns_count} turns, tokens every 30 ms, instant TTS:")
    print(f"    from LLM token to first audio:  {percentiles(from_token)}")
    print(f"    from the wire to first audio:   {percentiles(from_wire)}")


# -- (b) -----------------------------------------------------------------------------------------


async def one_session(
    base_url: str, client: httpx.AsyncClient, clip: Any, until: float, counts: list[int]
) -> None:
    rate = 16000
    loop = asyncio.get_running_loop()

    async def microphone() -> AsyncIterator[AudioChunk]:
        start = loop.time()
        t = 0.0
        while loop.time() < until:
            for i in range(0, clip.shape[0], 320):
                await asyncio.sleep(max(0.0, start + t - loop.time()))
                yield AudioChunk(clip[i : i + 320], rate, t)
                t += 0.02
                if loop.time() >= until:
                    return

    endpoint = custom(base_url=base_url, model="bench", retry=NO_RETRY)
    pipeline = (
        vad.vad(detector=vad.energy())
        | stt.fake(transcripts=lambda samples, rate: "what is the weather")
        | turns()
        | agent(llm=endpoint, tts=instant_tts(), client=client)
    )
    async for item in microphone() | pipeline:
        if isinstance(item, SessionUpdated):
            counts.append(1)


async def session_cpu(base_url: str, sessions: int, seconds: float) -> None:
    counts: list[int] = []
    speech, rate = vk.audio.load(vk.audio.sample_path(), rate=16000)
    clip = np.concatenate([speech, np.zeros(2 * rate, np.int16)])
    limits = httpx.Limits(max_connections=sessions + 10, max_keepalive_connections=sessions + 10)
    async with httpx.AsyncClient(limits=limits) as client:
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        cpu, wall = time.process_time(), time.monotonic()
        await asyncio.gather(
            *(one_session(base_url, client, clip, until, counts) for _ in range(sessions))
        )
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    per_session = cpu / wall / sessions
    print(
        f"    K={sessions:4d}: CPU per session {per_session * 100:6.2f} % of a core "
        f"({1 / per_session:6.0f} sessions/core), {len(counts)} turns answered in {wall:.1f} s"
    )


# -- (c) -----------------------------------------------------------------------------------------


def speech_end(samples: Any, rate: int) -> float:
    """The end of the last 10 ms frame above -50 dBFS, in seconds."""
    size = rate // 100
    frames = samples[: samples.shape[0] // size * size].reshape(-1, size).astype(np.float64)
    level = 20 * np.log10(np.sqrt(np.mean(frames * frames, axis=1)) / 32768 + 1e-12)
    loud = np.flatnonzero(level > -50)
    return float((loud[-1] + 1) * size / rate)


async def preempt_session(
    base_url: str, preemptive: bool, rounds: int, clip: Any, spoken: float, out: dict[str, Any]
) -> None:
    rate = 16000
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.1
    length = clip.shape[0] / rate

    async def microphone() -> AsyncIterator[AudioChunk]:
        for r in range(rounds):
            for i in range(0, clip.shape[0], 320):
                t = r * length + i / rate
                await asyncio.sleep(max(0.0, start + t + 0.02 - loop.time()))
                yield AudioChunk(clip[i : i + 320], rate, t)

    endpoint = custom(base_url=base_url.removesuffix("/v1") + "/slow/v1", model="bench",
                      retry=NO_RETRY)  # fmt: skip
    pipeline = (
        vad.vad(detector=vad.energy())
        | stt.fake(transcripts=lambda samples, rate: "what is the weather", pass_audio=True)
        | turns()
        | agent(llm=endpoint, tts=instant_tts(), preemptive=preemptive)
    )
    from_speech: list[float] = []
    from_turn: list[float] = []
    ended: float | None = None
    async for item in microphone() | pipeline:
        now = loop.time()
        if isinstance(item, TurnEnded) and item.text:
            ended = now
        elif isinstance(item, AudioChunk) and ended is not None:
            heard = start + len(from_speech) * length + spoken
            from_speech.append((now - heard) * 1000)
            from_turn.append((now - ended) * 1000)
            ended = None
    out[f"preemptive={preemptive}"] = (from_speech, from_turn)


async def preempt_latency(base_url: str, rounds: int) -> None:
    speech, rate = vk.audio.load(vk.audio.sample_path(), rate=16000)
    spoken = speech_end(speech, rate)
    clip = np.concatenate([speech, np.zeros(rate * 5 // 2, np.int16)])
    out: dict[str, Any] = {}
    await asyncio.gather(
        *(preempt_session(base_url, p, rounds, clip, spoken, out) for p in (True, False))
    )
    print(
        f"(c) preemptive replies, LLM first token after {SLOW_FIRST_TOKEN * 1000:.0f} ms, "
        f"{rounds} turns each, same run:"
    )
    for name in ("preemptive=True", "preemptive=False"):
        from_speech, from_turn = out[name]
        print(f"    {name:<17} end of speech → first audio: {percentiles(from_speech)}")
        print(f"    {'':<17} turn end      → first audio: {percentiles(from_turn)}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--sessions", type=int, nargs="*", default=[1, 10, 50])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--preempt", type=int, default=6, help="turns for part (c); 0: skip")
    args = parser.parse_args()

    receive, send = multiprocessing.Pipe(duplex=False)
    server = multiprocessing.Process(target=_serve, args=(send,), daemon=True)
    server.start()
    base_url = f"http://127.0.0.1:{receive.recv()}/v1"
    try:
        if args.turns:
            await reply_latency(base_url, args.turns)
        if args.sessions:
            print(f"(b) CPU per session, question.wav + 2 s silence on a loop, {args.seconds:g} s:")
            for k in args.sessions:
                await session_cpu(base_url, k, args.seconds)
        if args.preempt:
            await preempt_latency(base_url, args.preempt)
    finally:
        server.terminate()
        server.join()


if __name__ == "__main__":
    asyncio.run(main())
