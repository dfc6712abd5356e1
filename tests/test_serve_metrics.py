"""Prometheus metrics of voicekit.serve at ``/metrics``: scraped from a real uvicorn server
during and after calls simulated by streamdouble (Twilio Media Streams with real pacing and mark
echo), parsed with prometheus_client's own parser; who may scrape; a registry per app; the
event-loop lag sampler living exactly as long as the app; and ``voicekit serve --metrics
--log-format json`` as a user runs it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
import websockets
from prometheus_client.parser import text_string_to_metric_families
from streamdouble import api
from streamdouble.scenario import parse
from streamdouble.session import SessionConfig

import voicekit as vk
import voicekit.serve
from voicekit.events import Usage
from voicekit.stt import fake
from voicekit.tts import tones
from voicekit.turns import speech_timeout, turns
from voicekit.vad import energy, vad

AUDIO = {"event": "audio", "timeout": 60}  # the agent's first audio; the machine may be loaded
CONFIG = SessionConfig(response_timeout_s=10.0, quiet_period_s=1.5, max_drain_s=15.0)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@contextlib.asynccontextmanager
async def serving(application: Any, *, lifespan: str = "on") -> AsyncIterator[str]:
    """Serve ``application`` with uvicorn on 127.0.0.1 in this loop, its lifespan run."""
    config = uvicorn.Config(application, host="127.0.0.1", port=0, log_level="warning",
                            lifespan=lifespan, ws="websockets-sansio")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for it
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def parsed(text: str) -> Samples:
    """The exposition as {(sample name, sorted labels): value}, read by prometheus_client."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(host: str, **headers: str) -> Samples:
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"http://{host}/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parsed(answer.text)


async def scrape_until(host: str, ready: Callable[[Samples], bool]) -> Samples:
    """Scrape until ``ready(samples)``: the state the test waits for is what /metrics shows."""
    async with asyncio.timeout(60):
        while True:
            samples = await scrape(host)
            if ready(samples):
                return samples
            await asyncio.sleep(0.05)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def write_wav(path: Path, seconds_on: float, seconds_off: float = 0.0, freq: float = 300) -> Path:
    """A caller "utterance": a loud tone (the energy VAD hears it as speech), then quiet."""
    rate = 8000
    on = np.sin(2 * np.pi * freq * np.arange(int(rate * seconds_on)) / rate) * 8000
    samples = np.concatenate((on, np.zeros(int(rate * seconds_off)))).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


class Agent:
    """An on_call running the whole agent offline (energy VAD, scripted STT, ``reply`` as the
    LLM, tones as the TTS) with ``metrics=True``; ``done`` is set by on_end."""

    def __init__(self, transcripts: list[str], reply: Callable[[Any], list[Any]],
                 apology: str | None = None) -> None:
        self.transcripts, self.reply, self.apology = transcripts, reply, apology
        self.ended: list[vk.Session] = []
        self.done = asyncio.Event()

    def agent(self, session: vk.Session) -> Any:
        async def llm(messages: Any) -> AsyncIterator[Any]:
            for part in self.reply(messages):
                yield part

        return vk.voice_agent(
            llm=llm, tts=tones(), stt=fake(transcripts=self.transcripts),
            vad=vad(detector=energy(), min_volume=0, stop_secs=0.2),
            turns=turns(stop=[speech_timeout(0.2)], pending=False),
            session=session, metrics=True, llm_error_message=self.apology,
        )

    async def on_call(self, call: Any) -> None:
        await (call.inbound | self.agent(call.session) | call.outbound)

    def on_end(self, session: vk.Session) -> None:
        self.ended.append(session)
        self.done.set()


# =============================================================================================
# scraped during a call


async def test_metrics_are_scraped_during_a_simulated_call(tmp_path):
    rec = Agent(["what time is it"], lambda messages: ["It is noon. ", Usage(25, 6, 4)])
    turns_seen: list[vk.TurnMetrics] = []
    application = vk.serve.app(rec.on_call, dev=True, metrics=True, on_end=rec.on_end,
                               on_turn=turns_seen.append)
    write_wav(tmp_path / "q.wav", 1.0, 0.3)
    scenario = parse(
        {"name": "question", "steps": [{"say": "q.wav"}, {"wait_for": AUDIO}, {"wait": 4}]},
        base_dir=tmp_path,
    )
    async with serving(application) as host:
        before = await scrape(host)
        call = asyncio.create_task(
            api.run_scenario(f"ws://{host}/twilio/media", scenario, config=CONFIG)
        )
        # mid-call: the turn was measured (its TurnMetrics passed), the caller is still on
        during = await scrape_until(
            host, lambda s: value(s, "voicekit_voice_to_voice_seconds_count") == 1
        )
        assert not call.done()
        report = await call
        await asyncio.wait_for(rec.done.wait(), 10)
        after = await scrape(host)
    assert report.violations == [] and report.spoke
    assert value(before, "voicekit_active_calls") == 0
    assert value(during, "voicekit_active_calls") == 1
    assert value(during, "voicekit_turns_total") == 1
    assert value(during, "voicekit_event_loop_lag_seconds_count") >= 1  # sampled as it runs
    assert value(after, "voicekit_active_calls") == 0
    assert value(after, "voicekit_calls_total", carrier="twilio", outcome="hangup") == 1
    assert sum(v for (name, _), v in after.items() if name == "voicekit_calls_total") == 1
    (measured,) = turns_seen
    for name, seconds in (
        ("voicekit_voice_to_voice_seconds", measured.voice_to_voice),
        ("voicekit_llm_first_token_seconds", measured.steps()[3][2]),
        ("voicekit_tts_first_audio_seconds", measured.steps()[5][2]),
    ):
        assert seconds is not None and seconds >= 0, name
        assert value(after, f"{name}_count") == 1
        assert value(after, f"{name}_sum") == pytest.approx(seconds)
        # the observation falls in its bucket and every bucket above it
        assert value(after, f"{name}_bucket", le="+Inf") == 1
        assert value(after, f"{name}_bucket", le="10.0") == (1 if seconds <= 10 else 0)
    assert 0.2 < measured.voice_to_voice < 10  # end of speech → first audio, a real wait
    assert value(after, "voicekit_llm_tokens_total", kind="input") == 25
    assert value(after, "voicekit_llm_tokens_total", kind="output") == 6
    assert value(after, "voicekit_llm_tokens_total", kind="cached") == 4
    assert not [k for k in after if k[0] == "voicekit_reply_failures_total"]
    assert value(after, "voicekit_barge_ins_total") == 0
    assert measured.call_id == report.result.identity.call_sid


async def test_barge_ins_and_reply_failures_are_counted(tmp_path):
    long = ["This is the first sentence of a long answer. "] + [
        f"Here comes sentence number {i} of it, which goes on for a while. " for i in range(2, 9)
    ]
    cut = Agent(["tell me everything", "stop"], lambda messages: long)

    def down(messages: Any) -> list[str]:
        raise ConnectionError("the LLM is down")

    failing = Agent(["what time is it"], down, apology="Sorry, the model is down.")
    agents = iter([cut, failing])

    async def on_call(call: Any) -> None:
        await next(agents).on_call(call)

    ended = asyncio.Event()
    application = vk.serve.app(on_call, dev=True, metrics=True,
                               on_end=lambda session: ended.set())
    write_wav(tmp_path / "q.wav", 1.0, 0.2)
    write_wav(tmp_path / "stop.wav", 0.8, 0.0, freq=400)
    barge_in = parse(
        {"name": "barge in", "steps": [
            {"say": "q.wav"}, {"wait_for": AUDIO}, {"wait": 2.0}, {"say": "stop.wav"},
            {"wait": 1.0}, {"expect": "clear"}, {"wait": 1.5},
        ]},
        base_dir=tmp_path,
    )
    question = parse(
        {"name": "question", "steps": [{"say": "q.wav"}, {"wait_for": AUDIO}, {"wait": 1}]},
        base_dir=tmp_path,
    )
    async with serving(application) as host:
        report = await api.run_scenario(f"ws://{host}/twilio/media", barge_in, config=CONFIG)
        await asyncio.wait_for(ended.wait(), 10)
        first = await scrape(host)
        ended.clear()
        await api.run_scenario(f"ws://{host}/twilio/media", question, config=CONFIG)
        await asyncio.wait_for(ended.wait(), 10)
        second = await scrape(host)
    assert report.result.failed_expectations == []
    assert value(first, "voicekit_barge_ins_total") == 1
    assert value(first, "voicekit_turns_total") == 2  # the question, then "stop"
    assert not [k for k in first if k[0] == "voicekit_reply_failures_total"]
    assert value(second, "voicekit_reply_failures_total", kind="llm") == 1
    assert value(second, "voicekit_barge_ins_total") == 1
    assert value(second, "voicekit_calls_total", carrier="twilio", outcome="hangup") == 2


async def test_refused_and_busy_calls_are_counted():
    async def on_call(call: Any) -> None:
        async for _ in call.inbound:
            pass

    application = vk.serve.app(on_call, carrier=None, ws_token="ws-token-123456", metrics=True,
                               max_calls=1)
    async with serving(application) as host:
        async with websockets.connect(f"ws://{host}/ws") as ws:
            await ws.send(json.dumps({"type": "start", "call_id": "x", "token": "wrong"}))
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
        async with websockets.connect(f"ws://{host}/ws") as one:
            await one.send(json.dumps({"type": "start", "call_id": "y",
                                       "token": "ws-token-123456"}))
            await scrape_until(host, lambda s: value(s, "voicekit_active_calls") == 1)
            async with websockets.connect(f"ws://{host}/ws") as two:  # the server is full
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(two.recv(), 5)
                assert closed.value.rcvd.code == 1013
            await one.send(json.dumps({"type": "stop"}))
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(one.recv(), 5)
        samples = await scrape_until(host, lambda s: value(s, "voicekit_active_calls") == 0)
    assert value(samples, "voicekit_calls_total", carrier="ws", outcome="refused") == 1
    assert value(samples, "voicekit_calls_total", carrier="ws", outcome="busy") == 1
    assert value(samples, "voicekit_calls_total", carrier="ws", outcome="hangup") == 1


async def test_an_audiohook_session_is_counted_and_its_turn_measured(monkeypatch):
    """A Genesys-like client (tests/servers/audiohook_client.py) asks a question of an Audio
    Connector bot, waits for the answer, then closes the session."""
    import base64

    from servers.audiohook_client import AudioHookClient

    secret = b"a-client-secret-of-32-bytes-long"
    monkeypatch.setenv("VOICEKIT_AUDIOHOOK_KEYS",
                       f"test-key:{base64.b64encode(secret).decode()}")
    turns_seen: list[vk.TurnMetrics] = []
    rec = Agent(["what time is it"], lambda messages: ["It is noon. ", Usage(11, 3)])
    application = vk.serve.app(vk.transports.agent_call(rec.agent), carrier="audiohook",
                               metrics=True, on_end=rec.on_end, on_turn=turns_seen.append)
    rate = 8000
    question = (np.sin(2 * np.pi * 300 * np.arange(rate) / rate) * 8000).astype(np.int16)
    quiet = np.zeros(rate, np.int16)
    async with serving(application) as host:
        async with AudioHookClient(f"ws://{host}/audiohook", secret=secret) as client:
            await client.open()
            await client.stream(question, quiet)
            # the line goes on carrying (silent) audio, as Genesys's does, while the agent answers
            line = asyncio.create_task(client.stream(np.zeros(rate * 30, np.int16),
                                                     np.zeros(rate * 30, np.int16)))
            during = await scrape_until(
                host, lambda s: value(s, "voicekit_voice_to_voice_seconds_count") == 1
            )
            line.cancel()
            await asyncio.gather(line, return_exceptions=True)
            await client.close()
            await client.ended()
        await asyncio.wait_for(rec.done.wait(), 10)
        after = await scrape(host)
    assert value(during, "voicekit_active_calls") == 1
    assert value(after, "voicekit_active_calls") == 0
    assert value(after, "voicekit_calls_total", carrier="audiohook", outcome="hangup") == 1
    assert value(after, "voicekit_turns_total") == 1
    assert value(after, "voicekit_llm_tokens_total", kind="input") == 11
    (measured,) = turns_seen
    assert value(after, "voicekit_voice_to_voice_seconds_sum") == pytest.approx(
        measured.voice_to_voice)


# =============================================================================================
# who may scrape


async def test_metrics_need_the_bearer_token_when_one_is_set():
    application = vk.serve.app(lambda call: asyncio.sleep(0), carrier=None, metrics=True,
                               metrics_token="scrape-token-123")
    async with serving(application) as host, httpx.AsyncClient() as http:
        url = f"http://{host}/metrics"
        none = await http.get(url)
        wrong = await http.get(url, headers={"Authorization": "Bearer scrape-token-124"})
        right = await http.get(url, headers={"Authorization": "Bearer scrape-token-123"})
    assert none.status_code == wrong.status_code == 401
    assert none.headers["www-authenticate"].startswith("Bearer")
    assert "voicekit_" not in none.text + wrong.text
    assert right.status_code == 200 and "voicekit_calls_total" in right.text


async def test_without_a_token_metrics_are_for_loopback_clients_only(monkeypatch):
    monkeypatch.delenv("VOICEKIT_METRICS_TOKEN", raising=False)
    application = vk.serve.app(lambda call: asyncio.sleep(0), carrier=None, metrics=True)
    remote = httpx.ASGITransport(app=application, client=("203.0.113.7", 40000))
    local = httpx.ASGITransport(app=application, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=remote, base_url="http://server") as http:
        refused = await http.get("/metrics")
    async with httpx.AsyncClient(transport=local, base_url="http://server") as http:
        served = await http.get("/metrics")
    assert refused.status_code == 403 and "voicekit_" not in refused.text
    assert served.status_code == 200 and "voicekit_active_calls 0.0" in served.text


def test_metrics_off_loopback_need_a_token(monkeypatch):
    monkeypatch.delenv("VOICEKIT_METRICS_TOKEN", raising=False)
    with pytest.raises(vk.ConfigError, match="VOICEKIT_METRICS_TOKEN"):
        vk.serve.app(lambda call: asyncio.sleep(0), carrier=None, metrics=True, host="0.0.0.0")
    monkeypatch.setenv("VOICEKIT_METRICS_TOKEN", "from-the-environment")
    application = vk.serve.app(lambda call: asyncio.sleep(0), carrier=None, metrics=True,
                               host="0.0.0.0")
    assert "/metrics" in {route.path for route in application.routes}


def test_metrics_are_off_unless_asked_for():
    application = vk.serve.app(lambda call: asyncio.sleep(0), carrier=None)
    assert "/metrics" not in {route.path for route in application.routes}
    assert application.state.metrics is None


# =============================================================================================
# one registry per app, one sampler per running app


async def test_each_app_counts_into_a_registry_of_its_own():
    first = vk.serve.app(lambda call: asyncio.sleep(0), carrier=None, metrics=True,
                         ws_token="ws-token-123456")
    second = vk.serve.app(lambda call: asyncio.sleep(0), carrier=None, metrics=True,
                          ws_token="ws-token-123456")
    assert first.state.metrics.registry is not second.state.metrics.registry
    async with serving(first) as one, serving(second) as two:
        async with websockets.connect(f"ws://{one}/ws") as ws:
            await ws.send(json.dumps({"type": "start", "token": "wrong"}))
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
        counted = await scrape_until(
            one, lambda s: value(s, "voicekit_calls_total", carrier="ws", outcome="refused") == 1
        )
        other = await scrape(two)
    assert value(counted, "voicekit_calls_total", carrier="ws", outcome="refused") == 1
    assert not [k for k in other if k[0] == "voicekit_calls_total"]


def lag_samplers() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "voicekit metrics loop lag"]


async def test_the_event_loop_lag_sampler_runs_only_while_the_app_runs():
    application = vk.serve.app(lambda call: asyncio.sleep(0), carrier=None, metrics=True)
    assert lag_samplers() == []
    async with serving(application) as host:
        assert len(lag_samplers()) == 1
        samples = await scrape_until(
            host, lambda s: value(s, "voicekit_event_loop_lag_seconds_count") >= 2
        )
    assert lag_samplers() == []
    assert value(samples, "voicekit_event_loop_lag_seconds_sum") >= 0
    # served without its lifespan (mounted elsewhere), the app starts no task of its own
    async with serving(application, lifespan="off"):
        assert lag_samplers() == []


# =============================================================================================
# voicekit serve --metrics --log-format json, as a user runs it


DATA = Path(__file__).parent.parent / "voicekit" / "data"
CALLER = "+15550001111"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_voicekit_serve_logs_json_lines_with_one_per_turn_and_serves_metrics():
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicekit.cli", "serve", "--dev", "--port", str(port),
        "--metrics", "--log-format", "json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    lines: list[str] = []
    printed: list[str] = []

    async def read(stream: Any, into: list[str]) -> None:
        async for line in stream:
            into.append(line.decode(errors="replace"))

    def parsed_lines() -> tuple[list[dict[str, Any]], list[str]]:
        records, other = [], []
        for line in lines:
            try:
                records.append(json.loads(line))
            except ValueError:
                other.append(line)
        return records, other

    async def logged(text: str, timeout: float = 60) -> dict[str, Any]:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                while True:
                    found = [r for r in parsed_lines()[0] if text in r["message"]]
                    if found:
                        return dict(found[0])
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"no {text!r} in {''.join(lines)}") from None

    readers = [asyncio.create_task(read(process.stderr, lines)),
               asyncio.create_task(read(process.stdout, printed))]
    question = parse(
        {"name": "question", "steps": [
            {"say": "question.wav"}, {"wait_for": AUDIO}, {"wait": 4},
        ]},
        base_dir=DATA,
    )
    config = SessionConfig(response_timeout_s=30, quiet_period_s=1.5, max_drain_s=20,
                           custom_parameters={"caller": CALLER, "callee": "+15550002222"})
    try:
        await logged("Application startup complete", timeout=120)
        report = await api.run_scenario(f"ws://127.0.0.1:{port}/twilio/media", question,
                                        config=config)
        turn = await logged("turn: voice-to-voice")
        ended = await logged("ended: 1 turn(s)")
        samples = await scrape(f"127.0.0.1:{port}")
    finally:
        process.kill()
        await process.wait()
        await asyncio.gather(*readers)
    assert report.spoke, "".join(lines)
    call_id = report.result.identity.call_sid
    assert turn["call_id"] == ended["call_id"] == call_id
    assert turn["level"] == "INFO" and turn["logger"] == "voicekit.serve"
    fields = turn["turn"]
    assert 0 < fields["voice_to_voice"] < 30
    assert set(fields) >= {"llm_first_token", "tts_first_audio", "input_tokens",
                           "output_tokens", "interrupted", "errors"}
    assert value(samples, "voicekit_calls_total", carrier="twilio", outcome="hangup") == 1
    assert value(samples, "voicekit_turns_total") == 1
    assert value(samples, "voicekit_event_loop_lag_seconds_count") >= 1  # the app's lifespan ran
    assert value(samples, "voicekit_voice_to_voice_seconds_sum") == pytest.approx(
        fields["voice_to_voice"], abs=1e-6)
    records, other = parsed_lines()
    assert other == []  # every line of the log is a JSON record
    assert {"uvicorn.error", "voicekit.serve"} <= {r["logger"] for r in records}
    everything = "".join(lines + printed)
    assert "15550001111" not in everything and "15550002222" not in everything
    assert printed == []  # nothing but JSON, and on stderr


@pytest.mark.parametrize(("options", "says"), [
    (["--workers", "2"], b"--metrics counts per process"),
    (["--carrier", "none", "--host", "0.0.0.0"], b"needs VOICEKIT_METRICS_TOKEN"),
])
async def test_voicekit_serve_refuses_metrics_it_cannot_serve_safely(options, says):
    env = {k: v for k, v in os.environ.items() if k != "VOICEKIT_METRICS_TOKEN"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicekit.cli", "serve", "--metrics", *options, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert says in err
