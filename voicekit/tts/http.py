"""Speech synthesis over HTTP: OpenAI-compatible ``/audio/speech``, raw PCM streamed as it comes.

:func:`openai_tts` is a stage like :func:`~voicekit.tts.piper`: each
:class:`~voicekit.events.Sentence` (or ``str``) becomes one ``POST {base_url}/audio/speech`` with
``response_format: "pcm"`` (mono 16-bit little-endian at 24 kHz), and the audio is yielded in
even chunks while the body is still arriving. Works with OpenAI, Groq and local servers that
speak the same API. The xAI service is :func:`voicekit.tts.xai_tts`; both share
:func:`speak_http`.

Services cut the PCM body wherever they like, also in the middle of a sample; a
:class:`PcmJoiner` keeps the dangling byte and joins it to the next piece, so every chunk holds
whole samples.

Errors are :class:`~voicekit.ProviderError` s naming the endpoint (never its key): a non-2xx
answer is a :class:`~voicekit.ProviderStatusError` quoting the body, a refused connection a
:class:`~voicekit.ProviderConnectError` (also a connection dropped mid-body), silence beyond the
endpoint's timeout a :class:`~voicekit.ProviderTimeout`, a JSON or text answer where audio was
expected a :class:`~voicekit.ProviderStreamError`. Stopping the stream — ``break``, ``aclose()``,
cancelling the task at barge-in — closes the HTTP response at once, also before its first byte.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Mapping
from typing import Any, cast

import httpx
import numpy as np
import numpy.typing as npt

from .._errors import ConfigError, ProviderStreamError
from ..audio._convert import check_rate
from ..audio._resampler import Resampler
from ..llm.chat import _quote, _read_capped, new_client
from ..llm.endpoint import Endpoint
from ..ops import stage
from ..stt.http import EndpointOption, open_response, resolve_endpoint
from ._speak import check_chunk_ms, speak

__all__ = ["DEFAULT_TTS_MODEL", "OPENAI_PCM_RATE", "PcmJoiner", "openai_tts", "speak_http"]

log = logging.getLogger("voicekit.tts")

DEFAULT_TTS_MODEL = "gpt-4o-mini-tts"
"""OpenAI's default speech model here (``tts-1`` answers faster, with less control)."""

OPENAI_PCM_RATE = 24000
"""The rate of OpenAI's ``pcm`` response format (mono, 16-bit little-endian)."""


class PcmJoiner:
    """Turns bytes cut anywhere into whole little-endian int16 samples.

    A piece of odd length leaves one byte over; it is kept and put in front of the next piece.

    >>> joiner = PcmJoiner()
    >>> joiner.push(b"\\x01\\x00\\x02").tolist(), joiner.pending
    ([1], 1)
    >>> joiner.push(b"\\x00").tolist(), joiner.pending
    ([2], 0)
    """

    __slots__ = ("_rest",)

    def __init__(self) -> None:
        self._rest = b""

    @property
    def pending(self) -> int:
        """Bytes held back for the next piece (0 or 1)."""
        return len(self._rest)

    def push(self, data: bytes) -> npt.NDArray[np.int16]:
        """The whole samples ``data`` completes (possibly none)."""
        if self._rest:
            data = self._rest + data
        whole = len(data) - (len(data) & 1)
        self._rest = data[whole:]
        return np.frombuffer(data, dtype="<i2", count=whole // 2).astype(np.int16, copy=False)


def _check_audio_type(response: httpx.Response) -> str | None:
    """The content type if it says the body is not audio (JSON, text), else None."""
    content_type = response.headers.get("content-type", "").lower()
    if "json" in content_type or content_type.startswith("text/"):
        return content_type
    return None


async def speak_http(
    source: AsyncIterable[Any],
    *,
    endpoint: Endpoint,
    url: str,
    body: Callable[[str], Mapping[str, Any]],
    pcm_rate: int,
    rate: int | None,
    chunk_ms: float,
    pass_text: bool,
    client: httpx.AsyncClient | None,
) -> AsyncGenerator[Any, None]:
    """The body of an HTTP TTS stage: one ``POST url`` with JSON ``body(text)`` per sentence.

    The response is raw PCM at ``pcm_rate`` (mono s16le), streamed: its pieces are joined into
    whole samples, resampled to ``rate`` if that differs, and cut into chunks by
    :func:`~voicekit.tts._speak.speak` (times run on across sentences; other items pass through
    in order; ``pass_text`` puts each Sentence after its audio). Every response still open when
    the stage stops is closed right then, and the client too unless it was passed in.
    """
    out_rate = pcm_rate if rate is None else rate
    http = client if client is not None else new_client()
    live: set[httpx.Response] = set()

    async def synth(text: str) -> AsyncIterator[tuple[npt.NDArray[np.int16], int]]:
        joiner = PcmJoiner()
        resampler = Resampler(pcm_rate, out_rate) if out_rate != pcm_rate else None
        opened: list[httpx.Response] = []

        def track(response: httpx.Response) -> None:
            opened.append(response)
            live.add(response)

        try:
            async with open_response(
                http, endpoint, url, json=dict(body(text)), on_open=track
            ) as response:
                wrong = _check_audio_type(response)
                if wrong is not None:
                    answer = _quote(await _read_capped(response, 4096))
                    raise ProviderStreamError(
                        f"{endpoint.name} ({url}) answered with {wrong}, not audio: {answer}",
                        provider=endpoint.name,
                    )
                async for piece in response.aiter_bytes():
                    samples = joiner.push(piece)
                    if resampler is not None:
                        samples = resampler.push(samples)
                    if samples.shape[0]:
                        yield samples, out_rate
        finally:
            live.difference_update(opened)
        if resampler is not None:
            tail = resampler.push(np.zeros(0, np.int16), last=True)
            if tail.shape[0]:
                yield tail, out_rate
        if joiner.pending:
            log.debug("%s: the audio ended in half a sample; dropped the odd byte", endpoint.name)

    try:
        spoken = speak(source, synth, chunk_ms=chunk_ms, pass_text=pass_text)
        async with contextlib.aclosing(cast(AsyncGenerator[Any, None], spoken)) as items:
            async for item in items:
                yield item
    finally:
        for response in list(live):
            await response.aclose()
        if client is None:
            await http.aclose()


def _check_text_option(value: object, name: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{what}: {name} must be a non-empty string, got {value!r}")
    return value.strip()


@stage
async def openai_tts(
    source: AsyncIterable[Any],
    /,
    *,
    endpoint: EndpointOption = None,
    model: str = DEFAULT_TTS_MODEL,
    voice: str = "alloy",
    rate: int = OPENAI_PCM_RATE,
    instructions: str | None = None,
    speed: float | None = None,
    pcm_rate: int = OPENAI_PCM_RATE,
    chunk_ms: float = 20,
    pass_text: bool = False,
    options: Mapping[str, Any] | None = None,
    client: httpx.AsyncClient | None = None,
) -> AsyncIterator[Any]:
    """Speak each :class:`~voicekit.events.Sentence` (or ``str``) with ``/audio/speech``.

    The JSON body is ``{"model", "input", "voice", "response_format": "pcm"}`` plus
    ``instructions`` and ``speed`` when given and any further ``options``. The PCM (``pcm_rate``,
    24 kHz for OpenAI) is streamed as it arrives into :class:`AudioChunk` s of ``chunk_ms`` at
    ``rate`` (resampled when it differs from ``pcm_rate``), whose ``t`` runs on across sentences.
    Other items pass through in order; with ``pass_text`` each Sentence is passed on right after
    its last audio chunk — as in :func:`~voicekit.tts.piper`. One request per sentence, one
    sentence ahead of the consumer.

    ``endpoint``: an :class:`~voicekit.llm.Endpoint` (``llm.openai()``, ``llm.groq()`` with
    ``model="playai-tts"``…), a base URL for a keyless local server, or None for OpenAI with
    ``$OPENAI_API_KEY``. ``client``: an ``httpx.AsyncClient`` to share (kept open).
    """
    what = "openai_tts"
    model = _check_text_option(model, "model", what)
    voice = _check_text_option(voice, "voice", what)
    rate = check_rate(rate)
    pcm_rate = check_rate(pcm_rate, "pcm_rate")
    chunk_ms = check_chunk_ms(chunk_ms)
    if speed is not None and (
        isinstance(speed, bool) or not isinstance(speed, int | float) or not 0.25 <= speed <= 4
    ):
        raise ConfigError(f"{what}: speed must be a number from 0.25 to 4, got {speed!r}")
    resolved = resolve_endpoint(endpoint, preset="openai", what=what, model=model)
    extra = dict(options or {})

    def body(text: str) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": model,
            "input": text,
            "voice": voice,
            "response_format": "pcm",
        }
        if instructions:
            request["instructions"] = instructions
        if speed is not None:
            request["speed"] = speed
        request.update(extra)
        return request

    async with contextlib.aclosing(
        speak_http(
            source,
            endpoint=resolved,
            url=resolved.base_url + "/audio/speech",
            body=body,
            pcm_rate=pcm_rate,
            rate=rate,
            chunk_ms=chunk_ms,
            pass_text=pass_text,
            client=client,
        )
    ) as items:
        async for item in items:
            yield item
