"""HTTP speech recognition against a real local server: wire, utterances, failures, cancel."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
from servers.audio_server import AudioServer
from servers.sse_server import Reply, json_reply

from voicekit import (
    AudioChunk,
    ConfigError,
    ProviderConnectError,
    ProviderStatusError,
    ProviderStreamError,
    ProviderTimeout,
    SpeechStarted,
    SpeechStopped,
    Transcript,
    llm,
    stt,
)
from voicekit.audio import sample_path

RATE = 16000


@pytest.fixture
async def server() -> AsyncIterator[AudioServer]:
    async with AudioServer() as running:
        yield running


def signal(seconds: float, rate: int = RATE) -> np.ndarray:
    """Deterministic noise, so a WAV that is cut or shifted by one sample is told apart."""
    rng = np.random.default_rng(7)
    return rng.integers(-8000, 8000, round(seconds * rate)).astype(np.int16)


def marked(samples: np.ndarray, marks: list[Any], rate: int = RATE, chunk_ms: int = 20) -> list:
    """20 ms chunks, each marker placed after the chunk in which its time falls."""
    size = rate * chunk_ms // 1000
    items: list[Any] = []
    pending = sorted(marks, key=lambda m: m.t)
    for start in range(0, samples.shape[0], size):
        chunk = AudioChunk(samples[start : start + size], rate, start / rate)
        items.append(chunk)
        while pending and pending[0].t <= chunk.end + 1e-9:
            items.append(pending.pop(0))
    return items + pending


def endpoint(server: AudioServer, **options: Any) -> llm.Endpoint:
    return llm.custom(base_url=server.base_url, model="chat-model", api_key="sk-test", **options)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


TWO_UTTERANCES = [SpeechStarted(0.2), SpeechStopped(0.8), SpeechStarted(1.2), SpeechStopped(1.8)]


# ---------------------------------------------------------------------------------------------
# The stage


async def test_each_utterance_is_posted_as_a_wav_and_becomes_a_final_transcript(
    server: AudioServer,
) -> None:
    samples = signal(2.0)
    server.transcripts.extend(["hello there", "second one"])
    items = marked(samples, TWO_UTTERANCES)

    out = await stt.openai_stt(items, endpoint=endpoint(server)).list()

    transcripts = [x for x in out if isinstance(x, Transcript)]
    assert transcripts == [
        Transcript("hello there", final=True, t=0.2),
        Transcript("second one", final=True, t=1.2),
    ]
    markers = [x for x in out if isinstance(x, SpeechStarted | SpeechStopped)]
    assert markers == TWO_UTTERANCES
    assert not any(isinstance(x, AudioChunk) for x in out)
    # each transcript comes after the SpeechStopped that closed its utterance
    assert out.index(transcripts[0]) > out.index(TWO_UTTERANCES[1])
    assert out.index(transcripts[1]) > out.index(TWO_UTTERANCES[3])

    assert len(server.requests) == 2
    for request in server.requests:
        assert (request.method, request.path) == ("POST", "/v1/audio/transcriptions")
        headers = request.headers
        assert headers["authorization"] == "Bearer sk-test"
        assert headers["user-agent"].startswith("voicekit/")
        assert headers["content-type"].startswith("multipart/form-data; boundary=")
    first, second = server.uploads
    for upload in (first, second):
        assert upload.fields == {"model": "whisper-1", "response_format": "json"}
        (part,) = upload.files
        assert (part.name, part.filename, part.content_type) == ("file", "audio.wav", "audio/wav")
        assert upload.wav is not None
        assert (upload.wav.rate, upload.wav.channels, upload.wav.sample_width) == (RATE, 1, 2)
    # utterance 1: from the stream start (pre-roll 0.5 s before 0.2) to 0.8 s; utterance 2 from
    # the end of the first (the pre-roll never reaches back into it) to 1.8 s — sample-exact
    assert first.wav is not None and second.wav is not None
    np.testing.assert_array_equal(first.wav.samples, samples[: int(0.8 * RATE)])
    np.testing.assert_array_equal(second.wav.samples, samples[int(0.8 * RATE) : int(1.8 * RATE)])


async def test_form_fields_language_prompt_temperature_and_options(server: AudioServer) -> None:
    items = marked(signal(1.0), [SpeechStarted(0.1), SpeechStopped(0.5)])
    await stt.openai_stt(
        items,
        endpoint=endpoint(server),
        model="gpt-4o-transcribe",
        language="fr",
        prompt="Names: Zoë",
        temperature=0.2,
        options={"timestamp_granularities[]": "segment"},
    ).list()
    (upload,) = server.uploads
    assert upload.fields == {
        "model": "gpt-4o-transcribe",
        "response_format": "json",
        "language": "fr",
        "prompt": "Names: Zoë",
        "temperature": "0.2",
        "timestamp_granularities[]": "segment",
    }


async def test_a_base_url_string_is_keyless_and_groq_paths_work(server: AudioServer) -> None:
    items = marked(signal(0.6), [SpeechStarted(0.1), SpeechStopped(0.4)])
    server.transcripts.append("local")
    out = await stt.openai_stt(items, endpoint=server.base_url).list()
    assert [x.text for x in out if isinstance(x, Transcript)] == ["local"]
    assert "authorization" not in server.requests[-1].headers

    groq = llm.groq(api_key="gsk-test", base_url=server.url + "/openai/v1")
    server.transcripts.append("from groq")
    await stt.openai_stt(items, endpoint=groq, model="whisper-large-v3-turbo").list()
    request = server.requests[-1]
    assert request.path == "/openai/v1/audio/transcriptions"
    assert request.headers["authorization"] == "Bearer gsk-test"
    assert server.uploads[-1].fields["model"] == "whisper-large-v3-turbo"


async def test_extra_endpoint_headers_are_sent(server: AudioServer) -> None:
    items = marked(signal(0.6), [SpeechStarted(0.1), SpeechStopped(0.4)])
    await stt.openai_stt(items, endpoint=endpoint(server, headers={"X-Org": "acme"})).list()
    assert server.requests[-1].headers["x-org"] == "acme"


async def test_pass_audio_and_empty_transcripts(server: AudioServer) -> None:
    items = marked(signal(1.0), [SpeechStarted(0.1), SpeechStopped(0.5)])
    server.transcripts.append("   ")
    out = await stt.openai_stt(items, endpoint=endpoint(server), pass_audio=True).list()
    assert not any(isinstance(x, Transcript) for x in out)  # whitespace is no words
    chunks = [x for x in out if isinstance(x, AudioChunk)]
    assert len(chunks) == 50 and len(server.requests) == 1


async def test_a_stream_without_markers_is_never_sent(server: AudioServer) -> None:
    server.transcripts.append("noise heard as words")
    out = await stt.openai_stt(marked(signal(5.0), []), endpoint=endpoint(server)).list()
    assert out == [] and server.requests == []  # no VAD said "speech": nothing to transcribe


async def test_a_shared_client_is_used_and_kept_open(server: AudioServer) -> None:
    items = marked(signal(0.6), [SpeechStarted(0.1), SpeechStopped(0.4)])
    async with httpx.AsyncClient() as client:
        await stt.openai_stt(items, endpoint=endpoint(server), client=client).list()
        await stt.openai_stt(items, endpoint=endpoint(server), client=client).list()
        assert not client.is_closed
    assert len(server.requests) == 2
    assert server.http.connections == 1  # the second stage reused the pooled connection


# ---------------------------------------------------------------------------------------------
# Failures


ONE = [SpeechStarted(0.1), SpeechStopped(0.4)]


async def test_an_error_status_quotes_the_service_message(server: AudioServer) -> None:
    server.fail("transcriptions", json_reply(401, {"error": {"message": "Invalid API key"}}))
    with pytest.raises(ProviderStatusError) as caught:
        await stt.openai_stt(marked(signal(0.6), ONE), endpoint=endpoint(server)).list()
    error = caught.value
    assert error.status_code == 401
    assert "Invalid API key" in str(error) and "Invalid API key" in error.body
    assert "/v1/audio/transcriptions" in str(error)
    assert "sk-test" not in str(error)


async def test_a_plain_text_error_body_is_quoted(server: AudioServer) -> None:
    server.fail(
        "transcriptions",
        Reply(status=413, headers=[("Content-Type", "text/plain")], body=b"file too large"),
    )
    with pytest.raises(ProviderStatusError, match=r"413.*file too large"):
        await stt.openai_stt(marked(signal(0.6), ONE), endpoint=endpoint(server)).list()


async def test_statuses_are_retried_only_when_the_endpoint_says_so(server: AudioServer) -> None:
    busy = json_reply(503, {"error": {"message": "busy"}})
    server.fail("transcriptions", busy)
    server.transcripts.append("after a retry")
    retrying = endpoint(server, retry=llm.RetryPolicy(status=1, backoff=0))
    out = await stt.openai_stt(marked(signal(0.6), ONE), endpoint=retrying).list()
    assert [x.text for x in out if isinstance(x, Transcript)] == ["after a retry"]
    assert len(server.requests) == 2

    server.fail("transcriptions", busy)
    with pytest.raises(ProviderStatusError, match="503"):
        await stt.openai_stt(marked(signal(0.6), ONE), endpoint=endpoint(server)).list()
    assert len(server.requests) == 3


async def test_a_refused_connection_is_a_connect_error_after_the_retry_budget() -> None:
    port = closed_port()
    ep = llm.custom(
        base_url=f"http://127.0.0.1:{port}/v1",
        model="m",
        api_key="sk-secret",
        retry=llm.RetryPolicy(connect=1, backoff=0),
    )
    with pytest.raises(ProviderConnectError, match="could not connect") as caught:
        await stt.openai_stt(marked(signal(0.6), ONE), endpoint=ep).list()
    assert "sk-secret" not in str(caught.value)


async def test_a_slow_first_byte_times_out(server: AudioServer) -> None:
    server.fail("transcriptions", json_reply(200, {"text": "late"}, delay=2.0))
    started = time.monotonic()
    with pytest.raises(ProviderTimeout, match="timed out"):
        await stt.openai_stt(
            marked(signal(0.6), ONE), endpoint=endpoint(server, timeout=0.2)
        ).list()
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(headers=[("Content-Type", "text/html")], body=b"<html>hi</html>"), "not answer"),
        (json_reply(200, {"transcript": "wrong key"}), "without a 'text' field"),
    ],
)
async def test_an_answer_without_text_is_a_stream_error(
    server: AudioServer, reply: Reply, message: str
) -> None:
    server.fail("transcriptions", reply)
    with pytest.raises(ProviderStreamError, match=message):
        await stt.openai_stt(marked(signal(0.6), ONE), endpoint=endpoint(server)).list()


async def test_a_connection_dropped_mid_answer_is_a_connect_error(server: AudioServer) -> None:
    server.fail(
        "transcriptions",
        Reply(headers=[("Content-Type", "application/json")], parts=[b'{"te'], end="drop"),
    )
    with pytest.raises(ProviderConnectError, match="dropped"):
        await stt.openai_stt(
            marked(signal(0.6), ONE), endpoint=endpoint(server, retry=llm.NO_RETRY)
        ).list()


async def test_stopping_the_stream_cancels_a_transcription_in_flight(server: AudioServer) -> None:
    server.fail("transcriptions", json_reply(200, {"text": "never"}, delay=10.0))

    async def live() -> AsyncIterator[Any]:
        for item in marked(signal(0.6), ONE):
            yield item
        await asyncio.sleep(30)  # the caller keeps listening

    flow = stt.openai_stt(live(), endpoint=endpoint(server))
    seen = []
    async with contextlib.aclosing(flow.__aiter__()) as items:
        async for item in items:
            seen.append(item)
            if isinstance(item, SpeechStopped):
                await server.wait_requests(1)
                break
    stopped = time.monotonic()
    gone = await server.wait_disconnect(within=1.0)
    assert gone.phase == "before-first-byte" and gone.path == "/v1/audio/transcriptions"
    assert time.monotonic() - stopped < 0.5
    assert not any(isinstance(x, Transcript) for x in seen)


def test_no_endpoint_and_no_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        asyncio.run(stt.openai_stt([], endpoint=None).list())
    with pytest.raises(ConfigError, match="model"):
        asyncio.run(stt.openai_stt([], endpoint="http://127.0.0.1:1/v1", model=" ").list())


async def test_the_default_endpoint_is_openai_with_the_env_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from voicekit.stt.http import resolve_endpoint

    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    chosen = resolve_endpoint(None, preset="openai", what="openai_stt", model="whisper-1")
    assert chosen.base_url == "https://api.openai.com/v1" and chosen.api_key == "sk-from-env"


# ---------------------------------------------------------------------------------------------
# One shot


async def test_transcribe_http_resamples_any_input_to_a_16k_wav(server: AudioServer) -> None:
    server.transcripts.extend(["from samples", "from a file"])
    samples = signal(0.5, rate=8000)
    text = await stt.transcribe_http((samples, 8000), endpoint=endpoint(server), language="en")
    assert text == "from samples"
    upload = server.uploads[0]
    assert upload.fields == {"model": "whisper-1", "response_format": "json", "language": "en"}
    assert upload.wav is not None and upload.wav.rate == RATE
    assert upload.wav.samples.shape[0] == 8000  # 0.5 s at 16 kHz

    text = await stt.transcribe_http(sample_path(), endpoint=endpoint(server))
    assert text == "from a file"
    assert server.uploads[1].wav is not None
    assert 2.5 < server.uploads[1].wav.duration < 3.5  # the bundled question, about 2.9 s


async def test_transcribe_http_of_nothing_sends_nothing(server: AudioServer) -> None:
    text = await stt.transcribe_http(np.zeros(0, np.int16), 16000, endpoint=endpoint(server))
    assert text == "" and server.requests == []


async def test_transcribe_http_errors_are_provider_errors(server: AudioServer) -> None:
    server.fail("transcriptions", json_reply(500, {"error": {"message": "boom"}}))
    with pytest.raises(ProviderStatusError, match="boom"):
        await stt.transcribe_http((signal(0.2), RATE), endpoint=endpoint(server))


async def test_the_stage_closes_its_own_client_and_so_its_connection(server: AudioServer) -> None:
    items = marked(signal(0.6), ONE)
    flow = stt.openai_stt(items, endpoint=endpoint(server))
    kept = []
    async with contextlib.aclosing(flow.__aiter__()) as out:
        async for item in out:
            kept.append(item)  # hold every reference, so only an explicit close ends the socket
    assert await server.wait_idle(within=1.0)
