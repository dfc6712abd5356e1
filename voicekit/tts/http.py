"""Speech synthesis over HTTP: OpenAI-compatible ``/audio/speech``, raw PCM streamed as it comes.

:func:`openai_tts` is a stage like :func:`~voicekit.tts.piper`: each
:class:`~voicekit.events.Sentence` (or ``str``) becomes one ``POST {base_url}/audio/speech`` with
``response_format: "pcm"`` (mono 16-bit little-endian at 24 kHz) — or ``"wav"``, read as a
stream, for services without raw PCM such as Groq — and the audio is yielded in even chunks
while the body is still arriving. Works with OpenAI, Groq and local servers that speak the same
API. The xAI service is :func:`voicekit.tts.xai_tts`; both share
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
from typing import Any, Literal

import httpx
import numpy as np
import numpy.typing as npt

from .._errors import ConfigError, ProviderStreamError
from .._http import EndpointOption, new_client, open_response, quote, read_capped, resolve_endpoint
from ..audio._convert import check_rate
from ..audio._resampler import Resampler
from ..llm.endpoint import Endpoint
from ..ops import stage
from ._speak import check_chunk_ms, speak

__all__ = [
    "DEFAULT_TTS_MODEL",
    "OPENAI_PCM_RATE",
    "PcmJoiner",
    "WavHeader",
    "openai_tts",
    "speak_http",
]

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


class WavHeader:
    """Reads a WAV header off the front of a byte stream, then hands on the bytes after it.

    The header may arrive in any number of pieces; chunks before ``data`` (``LIST``, ``fact``…)
    are skipped and a streaming ``data`` size (0 or 0xFFFFFFFF) is fine. Only mono 16-bit PCM
    is accepted. ``rate`` is known once :attr:`done`.

    >>> import io, wave
    >>> out = io.BytesIO()
    >>> with wave.open(out, "wb") as w:
    ...     w.setnchannels(1); w.setsampwidth(2); w.setframerate(48000); w.writeframes(b"\\1\\0")
    >>> header, data = WavHeader(), out.getvalue()
    >>> header.push(data[:30]), header.done
    (b'', False)
    >>> header.push(data[30:]), header.rate
    (b'\\x01\\x00', 48000)
    """

    __slots__ = ("_buffer", "done", "rate")

    LIMIT = 65536  # bytes of header before giving up

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.done = False
        self.rate = 0

    def push(self, data: bytes) -> bytes:
        """The audio bytes in ``data`` (none until the header is complete)."""
        if self.done:
            return data
        self._buffer += data
        buffer = self._buffer
        if len(buffer) < 12:
            return b""
        if buffer[:4] != b"RIFF" or buffer[8:12] != b"WAVE":
            raise ValueError("the audio is not a WAV file (no RIFF/WAVE header)")
        position, channels, bits = 12, 0, 0
        while len(buffer) >= position + 8:
            kind = bytes(buffer[position : position + 4])
            size = int.from_bytes(buffer[position + 4 : position + 8], "little")
            if kind == b"data":
                if not self.rate:
                    raise ValueError("the WAV data came before its fmt chunk")
                if channels != 1 or bits != 16:
                    raise ValueError(
                        f"the WAV is {channels}-channel {bits}-bit; only mono 16-bit PCM is used"
                    )
                self.done = True
                rest = bytes(buffer[position + 8 :])
                self._buffer = bytearray()
                return rest
            end = position + 8 + size + (size & 1)
            if kind == b"fmt ":
                if len(buffer) < position + 24:
                    break
                fmt = int.from_bytes(buffer[position + 8 : position + 10], "little")
                channels = int.from_bytes(buffer[position + 10 : position + 12], "little")
                self.rate = int.from_bytes(buffer[position + 12 : position + 16], "little")
                bits = int.from_bytes(buffer[position + 22 : position + 24], "little")
                if fmt not in (1, 0xFFFE) or not self.rate:
                    raise ValueError(f"the WAV is not plain PCM (format {fmt:#x})")
            if len(buffer) < end:
                break
            position = end
        if len(buffer) > self.LIMIT:
            raise ValueError(f"no WAV data chunk within the first {self.LIMIT} bytes")
        return b""


class _Decoder:
    """One response body → int16 samples at the output rate (WAV header, odd cuts, resampling)."""

    __slots__ = ("joiner", "out_rate", "pcm_rate", "resampler", "wav")

    def __init__(self, container: str, pcm_rate: int, out_rate: int) -> None:
        self.wav = WavHeader() if container == "wav" else None
        self.joiner = PcmJoiner()
        self.pcm_rate = pcm_rate
        self.out_rate = out_rate
        self.resampler: Resampler | None = None

    def push(self, data: bytes) -> npt.NDArray[np.int16]:
        if self.wav is not None and not self.wav.done:
            data = self.wav.push(data)
            if not self.wav.done:
                return np.zeros(0, np.int16)
            self.pcm_rate = self.wav.rate
        if self.pcm_rate != self.out_rate and self.resampler is None:
            self.resampler = Resampler(self.pcm_rate, self.out_rate)
        samples = self.joiner.push(data)
        return samples if self.resampler is None else self.resampler.push(samples)

    def finish(self) -> npt.NDArray[np.int16]:
        if self.wav is not None and not self.wav.done:
            raise ValueError("the WAV header was cut off")
        if self.resampler is None:
            return np.zeros(0, np.int16)
        return self.resampler.push(np.zeros(0, np.int16), last=True)


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
    container: Literal["pcm", "wav"] = "pcm",
) -> AsyncGenerator[Any, None]:
    """The body of an HTTP TTS stage: one ``POST url`` with JSON ``body(text)`` per sentence.

    The response is raw PCM at ``pcm_rate`` (mono s16le) — or, with ``container="wav"``, a WAV
    stream whose header gives the rate — streamed: its pieces are joined into whole samples,
    resampled to ``rate`` if that differs, and cut into chunks by
    :func:`~voicekit.tts._speak.speak` (times run on across sentences; other items pass through
    in order; ``pass_text`` puts each Sentence after its audio). Every response still open when
    the stage stops is closed right then, and the client too unless it was passed in.
    """
    out_rate = pcm_rate if rate is None else rate
    http = client if client is not None else new_client()
    live: set[httpx.Response] = set()
    name = endpoint.name

    async def synth(text: str) -> AsyncIterator[tuple[npt.NDArray[np.int16], int]]:
        decoder = _Decoder(container, pcm_rate, out_rate)
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
                    answer = quote(await read_capped(response, 4096))
                    raise ProviderStreamError(
                        f"{name} ({url}) answered with {wrong}, not audio: {answer}",
                        provider=name,
                    )
                try:
                    async for piece in response.aiter_bytes():
                        samples = decoder.push(piece)
                        if samples.shape[0]:
                            yield samples, out_rate
                    tail = decoder.finish()
                except ValueError as exc:
                    raise ProviderStreamError(f"{name} ({url}): {exc}", provider=name) from None
        finally:
            live.difference_update(opened)
        if tail.shape[0]:
            yield tail, out_rate
        if decoder.joiner.pending:
            log.debug("%s: the audio ended in half a sample; dropped the odd byte", name)

    try:
        spoken = speak(source, synth, chunk_ms=chunk_ms, pass_text=pass_text)
        async with contextlib.aclosing(spoken) as items:
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
    response_format: Literal["pcm", "wav"] = "pcm",
    pcm_rate: int = OPENAI_PCM_RATE,
    chunk_ms: float = 20,
    pass_text: bool = False,
    options: Mapping[str, Any] | None = None,
    client: httpx.AsyncClient | None = None,
) -> AsyncIterator[Any]:
    """Speak each :class:`~voicekit.events.Sentence` (or ``str``) with ``/audio/speech``.

    The JSON body is ``{"model", "input", "voice", "response_format"}`` plus ``instructions``
    and ``speed`` when given and any further ``options``. The audio is streamed as it arrives
    into :class:`AudioChunk` s of ``chunk_ms`` at ``rate``, whose ``t`` runs on across sentences:
    raw PCM at ``pcm_rate`` (24 kHz for OpenAI) with ``response_format="pcm"``, or a streamed WAV
    (mono 16-bit; the rate read from its header) with ``"wav"`` — for services that do not send
    raw PCM, such as Groq (48 kHz WAV). Audio at another rate than ``rate`` is resampled. Other
    items pass through in order; with ``pass_text`` each Sentence is passed on right after its
    last audio chunk — as in :func:`~voicekit.tts.piper`. One request per sentence, one sentence
    ahead of the consumer.

    ``endpoint``: an :class:`~voicekit.llm.Endpoint` (``llm.openai()``; ``llm.groq()`` with one
    of Groq's speech models and ``response_format="wav"``), a base URL for a keyless local
    server, or None for OpenAI with ``$OPENAI_API_KEY``. ``client``: an ``httpx.AsyncClient`` to
    share (kept open).
    """
    what = "openai_tts"
    model = _check_text_option(model, "model", what)
    voice = _check_text_option(voice, "voice", what)
    rate = check_rate(rate)
    pcm_rate = check_rate(pcm_rate, "pcm_rate")
    chunk_ms = check_chunk_ms(chunk_ms)
    if response_format not in ("pcm", "wav"):
        raise ConfigError(
            f"{what}: response_format must be 'pcm' or 'wav' (audio voicekit can stream), "
            f"got {response_format!r}"
        )
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
            "response_format": response_format,
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
            container=response_format,
        )
    ) as items:
        async for item in items:
            yield item
