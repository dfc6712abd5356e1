"""HTTP speech synthesis against a real local server: OpenAI /audio/speech and xAI /tts."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
from servers.audio_server import AudioServer, pcm_for, pcm_reply, wav_header
from servers.sse_server import Reply, json_reply

from voicekit import (
    AudioChunk,
    ConfigError,
    ProviderConnectError,
    ProviderStatusError,
    ProviderStreamError,
    ProviderTimeout,
    Sentence,
    TurnStarted,
    llm,
    tts,
)
from voicekit.tts.http import PcmJoiner, WavHeader


@pytest.fixture
async def server() -> AsyncIterator[AudioServer]:
    async with AudioServer() as running:
        yield running


def endpoint(server: AudioServer, **options: Any) -> llm.Endpoint:
    return llm.custom(base_url=server.base_url, model="chat-model", api_key="sk-test", **options)


def xai_endpoint(server: AudioServer, **options: Any) -> llm.Endpoint:
    return llm.xai(api_key="xai-test", base_url=server.base_url, **options)


def samples_of(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.int16)


def joined(chunks: list[AudioChunk]) -> np.ndarray:
    return np.concatenate([c.samples for c in chunks])


def check_timeline(chunks: list[AudioChunk], rate: int, chunk_ms: float = 20) -> None:
    """Chunks at ``rate``, none longer than ``chunk_ms``, times running on without gaps."""
    assert chunks and all(c.rate == rate for c in chunks)
    assert all(c.frames <= round(rate * chunk_ms / 1000) for c in chunks)
    assert chunks[0].t == 0.0
    for before, after in itertools.pairwise(chunks):
        assert after.t == pytest.approx(before.end, abs=1e-9)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# Joining PCM cut anywhere


def test_pcm_joiner_rejoins_samples_split_at_any_byte() -> None:
    pcm = pcm_for("some text to cut up", 24000)
    rng = random.Random(3)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(pcm)), 40))
        joiner = PcmJoiner()
        pieces = [joiner.push(pcm[a:b]) for a, b in itertools.pairwise([0, *cuts, len(pcm)])]
        assert joiner.pending == 0
        assert all(p.dtype == np.int16 for p in pieces)
        np.testing.assert_array_equal(np.concatenate(pieces), samples_of(pcm))


def test_pcm_joiner_keeps_a_dangling_byte_for_the_next_piece() -> None:
    joiner = PcmJoiner()
    assert joiner.push(b"\x34").tolist() == [] and joiner.pending == 1
    assert joiner.push(b"\x12\xff").tolist() == [0x1234] and joiner.pending == 1
    assert joiner.push(b"\xff").tolist() == [-1] and joiner.pending == 0


# ---------------------------------------------------------------------------------------------
# OpenAI /audio/speech


async def test_openai_tts_streams_each_sentence_sample_exact(server: AudioServer) -> None:
    texts = ["Hello there.", "How can I help you today?"]
    out = await tts.openai_tts([Sentence(t) for t in texts], endpoint=endpoint(server)).list()

    assert all(isinstance(x, AudioChunk) for x in out)
    check_timeline(out, 24000)
    expected = np.concatenate([samples_of(pcm_for(t, 24000)) for t in texts])
    np.testing.assert_array_equal(joined(out), expected)  # odd cuts re-joined, nothing lost

    assert [r.json() for r in server.requests] == [
        {"model": "gpt-4o-mini-tts", "input": t, "voice": "alloy", "response_format": "pcm"}
        for t in texts
    ]
    for request in server.requests:
        assert (request.method, request.path) == ("POST", "/v1/audio/speech")
        assert request.headers["authorization"] == "Bearer sk-test"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"].startswith("voicekit/")


async def test_audio_is_yielded_while_the_body_is_still_arriving(server: AudioServer) -> None:
    pcm = pcm_for("A long sentence.", 24000)  # 10080 bytes: two parts, 0.3 s apart
    server.fail("speech", pcm_reply(pcm, sizes=[4801, 5279], pause=0.3))
    flow = tts.openai_tts(["A long sentence."], endpoint=endpoint(server))
    started = time.monotonic()
    async with contextlib.aclosing(flow.__aiter__()) as items:
        first = await anext(items)
        first_at = time.monotonic() - started
        rest = [x async for x in items]
    total = time.monotonic() - started
    assert isinstance(first, AudioChunk)
    assert first_at < 0.25 and total > 0.55  # first audio long before the body ended
    np.testing.assert_array_equal(joined([first, *rest]), samples_of(pcm))


async def test_pass_text_and_other_items_keep_their_order(server: AudioServer) -> None:
    source = [Sentence("One."), TurnStarted(1.0), "Two words.", Sentence("   ")]
    out = await tts.openai_tts(source, endpoint=endpoint(server), pass_text=True).list()
    kinds = ["audio" if isinstance(x, AudioChunk) else x for x in out]
    collapsed = [k for k, _ in itertools.groupby(kinds)]
    assert collapsed == ["audio", Sentence("One."), TurnStarted(1.0), "audio", "Two words.",
                         Sentence("   ")]  # fmt: skip
    assert len(server.requests) == 2  # a blank sentence is not sent

    out = await tts.openai_tts(source, endpoint=endpoint(server)).list()
    assert [x for x in out if not isinstance(x, AudioChunk)] == [TurnStarted(1.0)]


async def test_options_reach_the_body(server: AudioServer) -> None:
    await tts.openai_tts(
        ["Hi."],
        endpoint=endpoint(server),
        model="tts-1",
        voice="nova",
        instructions="Speak warmly.",
        speed=1.25,
        options={"stream_format": "audio"},
    ).list()
    assert server.requests[0].json() == {
        "model": "tts-1",
        "input": "Hi.",
        "voice": "nova",
        "response_format": "pcm",
        "instructions": "Speak warmly.",
        "speed": 1.25,
        "stream_format": "audio",
    }


async def test_another_rate_is_resampled_seamlessly(server: AudioServer) -> None:
    texts = ["Resample me please.", "And me."]
    out = await tts.openai_tts(texts, endpoint=endpoint(server), rate=16000).list()
    check_timeline(out, 16000)
    expected = sum(len(samples_of(pcm_for(t, 24000))) * 2 // 3 for t in texts)
    assert abs(joined(out).shape[0] - expected) <= 2
    assert np.abs(joined(out)).max() > 5000  # real audio, not silence


async def test_a_keyless_base_url_and_a_groq_endpoint(server: AudioServer) -> None:
    await tts.openai_tts(["Hi."], endpoint=server.base_url).list()
    assert "authorization" not in server.requests[-1].headers

    groq = llm.groq(api_key="gsk-test", base_url=server.url + "/openai/v1")
    await tts.openai_tts(["Hi."], endpoint=groq, model="playai-tts", voice="Fritz-PlayAI").list()
    request = server.requests[-1]
    assert request.path == "/openai/v1/audio/speech"
    assert request.headers["authorization"] == "Bearer gsk-test"


# ---------------------------------------------------------------------------------------------
# WAV answers (Groq, servers without raw PCM)


def test_wav_header_is_read_byte_by_byte() -> None:
    pcm = pcm_for("header", 48000)
    data = wav_header(48000) + pcm
    header = WavHeader()
    out = b"".join(header.push(data[i : i + 1]) for i in range(len(data)))
    assert header.done and header.rate == 48000 and out == pcm


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"ID3\x04" + bytes(40), "not a WAV"),
        (wav_header(24000, channels=2), "mono 16-bit"),
        (wav_header(24000, bits=8), "mono 16-bit"),
        (b"RIFF\0\0\0\0WAVEdata\0\0\0\0", "before its fmt"),
    ],
)
def test_wav_header_rejects_what_cannot_be_streamed(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WavHeader().push(data)


async def test_a_wav_answer_is_streamed_at_its_own_rate(server: AudioServer) -> None:
    groq = llm.groq(api_key="gsk-test", base_url=server.url + "/openai/v1")
    texts = ["Groq sends WAV.", "At 48 kHz."]
    out = await tts.openai_tts(
        texts, endpoint=groq, model="playai-tts", response_format="wav", rate=48000
    ).list()
    assert server.requests[0].json()["response_format"] == "wav"
    check_timeline(out, 48000)
    expected = np.concatenate([samples_of(pcm_for(t, 48000)) for t in texts])
    np.testing.assert_array_equal(joined(out), expected)  # header and odd cuts handled


async def test_a_wav_answer_is_resampled_to_the_stage_rate(server: AudioServer) -> None:
    out = await tts.openai_tts(
        ["Resampled."], endpoint=server.base_url, response_format="wav"
    ).list()
    check_timeline(out, 24000)
    assert abs(joined(out).shape[0] - len(pcm_for("Resampled.", 48000)) // 4) <= 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (pcm_for("raw", 24000), "not a WAV"),
        (wav_header(24000)[:30], "cut off"),
        (wav_header(24000, channels=2) + bytes(400), "mono"),
    ],
)
async def test_a_bad_wav_answer_is_a_stream_error(
    server: AudioServer, body: bytes, message: str
) -> None:
    server.fail("speech", pcm_reply(body, content_type="audio/wav"))
    with pytest.raises(ProviderStreamError, match=message):
        await tts.openai_tts(["Hi."], endpoint=server.base_url, response_format="wav").list()


# ---------------------------------------------------------------------------------------------
# xAI /v1/tts


async def test_xai_tts_wire_request_and_audio(server: AudioServer) -> None:
    out = await tts.xai_tts([Sentence("Hello from xAI.")], endpoint=xai_endpoint(server)).list()

    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/v1/tts")
    assert request.headers["authorization"] == "Bearer xai-test"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "text": "Hello from xAI.",
        "voice_id": "eve",
        "language": "en",
        "output_format": {"codec": "pcm", "sample_rate": 24000},
    }
    check_timeline(out, 24000)
    np.testing.assert_array_equal(joined(out), samples_of(pcm_for("Hello from xAI.", 24000)))


async def test_xai_tts_language_voice_and_rate(server: AudioServer) -> None:
    ep = xai_endpoint(server)
    out = await tts.xai_tts(["Hola."], endpoint=ep, voice="ara", language="es", rate=16000).list()
    assert server.requests[-1].json() == {
        "text": "Hola.",
        "voice_id": "ara",
        "language": "es-ES",
        "output_format": {"codec": "pcm", "sample_rate": 16000},
    }
    check_timeline(out, 16000)
    np.testing.assert_array_equal(joined(out), samples_of(pcm_for("Hola.", 16000)))

    await tts.xai_tts(["Hi."], endpoint=ep, language=None).list()
    assert "language" not in server.requests[-1].json()


async def test_xai_cuts_at_odd_bytes_are_rejoined(server: AudioServer) -> None:
    pcm = pcm_for("Odd cuts everywhere.", 24000)
    server.fail("tts", pcm_reply(pcm, sizes=[1, 1, 3, 5, 7, 9, 11, 1001], pause=0.0))
    out = await tts.xai_tts(["Odd cuts everywhere."], endpoint=xai_endpoint(server)).list()
    assert all(c.samples.dtype == np.int16 for c in out)
    np.testing.assert_array_equal(joined(out), samples_of(pcm))


def test_xai_language_map() -> None:
    table = {
        "ar": "ar-EG", "ar-EG": "ar-EG", "ar-SA": "ar-SA", "ar-AE": "ar-AE", "bn": "bn",
        "de": "de", "en": "en", "es": "es-ES", "es-ES": "es-ES", "es-MX": "es-MX", "fr": "fr",
        "hi": "hi", "id": "id", "it": "it", "ja": "ja", "ko": "ko", "pt": "pt-PT",
        "pt-BR": "pt-BR", "pt-PT": "pt-PT", "ru": "ru", "tr": "tr", "vi": "vi", "zh": "zh",
    }  # fmt: skip
    for value, code in table.items():
        assert tts.xai_language(value) == code
        assert tts.xai_language(value.upper().replace("-", "_")) == code
    # not in the map: the base code
    assert tts.xai_language("en-GB") == "en"
    assert tts.xai_language("nl-BE") == "nl"
    assert tts.xai_language("zh-Hans-CN") == "zh"
    for bad in ("", "e", "english!", "12"):
        with pytest.raises(ConfigError):
            tts.xai_language(bad)


# ---------------------------------------------------------------------------------------------
# Failures


@pytest.mark.parametrize("stage", ["openai", "xai"])
async def test_an_error_status_quotes_the_body(server: AudioServer, stage: str) -> None:
    route, flow = _stage(server, stage)
    server.fail(route, json_reply(400, {"error": {"message": "voice 'zzz' is not known"}}))
    with pytest.raises(ProviderStatusError) as caught:
        await flow(["Hi."]).list()
    assert caught.value.status_code == 400
    assert "voice 'zzz' is not known" in str(caught.value)
    assert "test" not in str(caught.value).split("answered")[0].split("(")[0]  # no key


async def test_a_text_error_body_is_quoted(server: AudioServer) -> None:
    server.fail("tts", Reply(status=502, headers=[("Content-Type", "text/plain")], body=b"bad gw"))
    with pytest.raises(ProviderStatusError, match=r"502.*bad gw"):
        await tts.xai_tts(["Hi."], endpoint=xai_endpoint(server)).list()


def _stage(server: AudioServer, which: str, **options: Any) -> tuple[Any, Any]:
    if which == "openai":
        ep = endpoint(server, **options)
        return "speech", lambda source: tts.openai_tts(source, endpoint=ep)
    ep = xai_endpoint(server, **options)
    return "tts", lambda source: tts.xai_tts(source, endpoint=ep)


@pytest.mark.parametrize("stage", ["openai", "xai"])
async def test_a_drop_mid_body_is_a_connect_error_after_the_audio_so_far(
    server: AudioServer, stage: str
) -> None:
    route, flow = _stage(server, stage, retry=llm.NO_RETRY)
    pcm = pcm_for("Cut short.", 24000)
    server.fail(route, pcm_reply(pcm[:4801], sizes=[4801], end="drop"))
    got: list[AudioChunk] = []
    with pytest.raises(ProviderConnectError, match="dropped"):
        async for item in flow(["Cut short."]):
            got.append(item)
    np.testing.assert_array_equal(joined(got), samples_of(pcm[:4800]))  # whole samples only


async def test_a_refused_connection_is_a_connect_error() -> None:
    ep = llm.custom(
        base_url=f"http://127.0.0.1:{closed_port()}/v1",
        model="m",
        api_key="sk-secret",
        retry=llm.RetryPolicy(connect=1, backoff=0),
    )
    with pytest.raises(ProviderConnectError, match="could not connect") as caught:
        await tts.openai_tts(["Hi."], endpoint=ep).list()
    assert "sk-secret" not in str(caught.value)


async def test_a_slow_first_byte_times_out(server: AudioServer) -> None:
    server.fail("speech", pcm_reply(pcm_for("Hi.", 24000), delay=2.0))
    started = time.monotonic()
    with pytest.raises(ProviderTimeout):
        await tts.openai_tts(["Hi."], endpoint=endpoint(server, timeout=0.2)).list()
    assert time.monotonic() - started < 1.5


async def test_a_stall_mid_body_times_out(server: AudioServer) -> None:
    pcm = pcm_for("Stalls.", 24000)
    server.fail("speech", Reply(headers=[("Content-Type", "audio/pcm")], parts=[pcm[:960], 2.0]))
    with pytest.raises(ProviderTimeout, match="stopped sending"):
        await tts.openai_tts(["Stalls."], endpoint=endpoint(server, timeout=0.2)).list()


async def test_json_where_audio_was_expected_is_a_stream_error(server: AudioServer) -> None:
    server.fail("speech", json_reply(200, {"audio": "base64..."}))
    with pytest.raises(ProviderStreamError, match="not audio"):
        await tts.openai_tts(["Hi."], endpoint=endpoint(server)).list()


async def test_a_retryable_status_is_retried_when_the_endpoint_allows(server: AudioServer) -> None:
    server.fail("speech", json_reply(429, {"error": {"message": "slow down"}}))
    ep = endpoint(server, retry=llm.RetryPolicy(status=1, backoff=0))
    out = await tts.openai_tts(["Hi."], endpoint=ep).list()
    np.testing.assert_array_equal(joined(out), samples_of(pcm_for("Hi.", 24000)))
    assert len(server.requests) == 2


def test_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("XAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        asyncio.run(tts.openai_tts(["Hi."]).list())
    with pytest.raises(ConfigError, match="XAI_API_KEY"):
        asyncio.run(tts.xai_tts(["Hi."]).list())
    with pytest.raises(ConfigError, match="speed"):
        asyncio.run(tts.openai_tts(["Hi."], endpoint="http://127.0.0.1:1/v1", speed=9).list())
    with pytest.raises(ConfigError, match="voice"):
        asyncio.run(tts.xai_tts(["Hi."], endpoint="http://127.0.0.1:1/v1", voice="").list())
    with pytest.raises(ConfigError, match="response_format"):
        mp3: Any = "mp3"
        asyncio.run(
            tts.openai_tts(["Hi."], endpoint="http://127.0.0.1:1/v1", response_format=mp3).list()
        )


# ---------------------------------------------------------------------------------------------
# Cancellation closes the response at once


def _endless_body(server: AudioServer, route: Any) -> None:
    """Some audio at once, then a body that never ends."""
    pcm = pcm_for("A sentence that takes a long time to arrive.", 24000)
    parts: list[bytes | float] = [pcm[:961], pcm[961:2001], pcm[2001:3001], pcm[3001:4001]]
    server.fail(route, Reply(headers=[("Content-Type", "audio/pcm")], parts=parts, end="hang"))


@pytest.mark.parametrize("slow_consumer", [False, True])
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("stage", ["openai", "xai"])
async def test_breaking_out_mid_body_closes_the_response_at_once(
    server: AudioServer, stage: str, shared: bool, slow_consumer: bool
) -> None:
    """Also when synthesis has run ahead and waits to hand over audio (a slow consumer)."""
    route, _ = _stage(server, stage)
    _endless_body(server, route)
    responses: list[httpx.Response] = []

    async def note(response: httpx.Response) -> None:
        responses.append(response)

    async with httpx.AsyncClient(event_hooks={"response": [note]}) as client:
        options = {"client": client} if shared else {}
        if stage == "openai":
            flow = tts.openai_tts(["Slow."], endpoint=endpoint(server), **options)
        else:
            flow = tts.xai_tts(["Slow."], endpoint=xai_endpoint(server), **options)
        async with contextlib.aclosing(flow.__aiter__()) as items:
            first = await anext(items)
            assert isinstance(first, AudioChunk)
            if slow_consumer:
                await asyncio.sleep(0.1)  # the producer fills the hand-over queue and waits
        if shared:  # closed by the time the stage is, not later by a finalizer
            assert len(responses) == 1 and responses[0].is_closed
        stopped = time.monotonic()
        gone = await server.wait_disconnect(within=1.0)
        assert gone.phase == "mid-body"
        assert time.monotonic() - stopped < 0.3
        if shared:
            assert not client.is_closed


async def test_cancelling_the_task_before_the_first_byte_hangs_up(server: AudioServer) -> None:
    server.fail("speech", pcm_reply(pcm_for("Late.", 24000), delay=10.0))

    async def consume() -> list[Any]:
        return await tts.openai_tts(["Late."], endpoint=endpoint(server)).list()

    task = asyncio.ensure_future(consume())
    await server.wait_requests(1)
    task.cancel()
    cancelled_at = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await task
    gone = await server.wait_disconnect(within=1.0)
    assert gone.phase == "before-first-byte" and gone.path == "/v1/audio/speech"
    assert time.monotonic() - cancelled_at < 0.3


async def test_the_stage_closes_its_own_client(server: AudioServer) -> None:
    kept = await tts.openai_tts(["Hi."], endpoint=endpoint(server)).list()
    assert kept and await server.wait_idle(within=1.0)


def test_server_pcm_is_deterministic() -> None:
    """The fixture's audio is what the assertions above compare against: stable and non-trivial."""
    a, b = pcm_for("Hello.", 24000), pcm_for("Hello.", 24000)
    assert a == b and len(a) == 2 * round(24000 * 0.11)
    assert pcm_for("Hello.", 24000) != pcm_for("Hello!", 24000)
    assert json.dumps(len(set(samples_of(a).tolist()))) != "1"
