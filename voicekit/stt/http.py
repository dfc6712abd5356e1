"""Speech recognition over HTTP: any service speaking OpenAI's ``/audio/transcriptions``.

:func:`openai_stt` is a stage like :func:`~voicekit.stt.whisper`: it cuts the audio into
utterances at the speech markers of :func:`voicekit.vad.vad`, posts each one as a 16 kHz WAV
file and yields one final :class:`~voicekit.events.Transcript` per utterance.
:func:`transcribe_http` sends one recording and returns its text.

The service is an :class:`~voicekit.llm.Endpoint` (base URL, key, timeouts, headers, retry
budget), so the LLM presets double as STT endpoints, or a base URL string for a keyless local
server::

    from voicekit import llm, stt

    stt.openai_stt(endpoint=llm.openai())                               # $OPENAI_API_KEY
    stt.openai_stt(endpoint=llm.groq(), model="whisper-large-v3-turbo")  # $GROQ_API_KEY
    stt.openai_stt(endpoint="http://127.0.0.1:8000/v1", model="Systran/faster-whisper-small")

The endpoint's ``model`` is not used (that is the LLM model); ``model=`` names the STT model.

Failures are :class:`~voicekit.ProviderError` s naming the endpoint, never its key: a non-2xx
answer is a :class:`~voicekit.ProviderStatusError` quoting the body, an unreachable service a
:class:`~voicekit.ProviderConnectError`, silence beyond the endpoint's timeout a
:class:`~voicekit.ProviderTimeout`, an answer without text a :class:`~voicekit.ProviderStreamError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Mapping
from typing import Any, cast

import httpx
import numpy as np
import numpy.typing as npt

from .._errors import (
    ConfigError,
    ProviderStreamError,
)
from .._http import (
    EndpointOption,
    new_client,
    open_response,
    quote,
    read_capped,
    resolve_endpoint,
)
from ..audio import AudioInput, to_wav_bytes
from ..events import AudioChunk
from ..ops import stage
from ._utterances import (
    MAX_UTTERANCE,
    RATE,
    check_max_utterance,
    check_pre_roll,
    recognize_utterances,
)
from ._whisper import _as_pcm16k

__all__ = ["DEFAULT_STT_MODEL", "EndpointOption", "openai_stt", "transcribe_http"]

DEFAULT_STT_MODEL = "whisper-1"
"""OpenAI's Whisper model name (Groq: ``whisper-large-v3-turbo``; ``gpt-4o-transcribe`` too)."""

_MAX_ANSWER = 1 << 20  # bytes of a transcription answer read at most


# ---------------------------------------------------------------------------------------------
# Transcription


def _form(
    model: str,
    language: str | None,
    prompt: str | None,
    temperature: float | None,
    options: Mapping[str, Any] | None,
) -> dict[str, str]:
    fields = {"model": model, "response_format": "json"}
    if language:
        fields["language"] = language
    if prompt:
        fields["prompt"] = prompt
    if temperature is not None:
        fields["temperature"] = f"{temperature:g}"
    for key, value in (options or {}).items():
        fields[str(key)] = value if isinstance(value, str) else json.dumps(value)
    return fields


def _check_model(model: object, what: str) -> str:
    if not isinstance(model, str) or not model.strip():
        raise ConfigError(f"{what}: model must be a non-empty model name, got {model!r}")
    return model.strip()


class _Transcriber:
    """Posts utterances to one endpoint with fixed form fields."""

    __slots__ = ("endpoint", "fields", "url")

    def __init__(
        self,
        endpoint: EndpointOption,
        *,
        model: str,
        language: str | None,
        prompt: str | None,
        temperature: float | None,
        options: Mapping[str, Any] | None,
        what: str,
    ) -> None:
        model = _check_model(model, what)
        if language is not None and (not isinstance(language, str) or not language.strip()):
            raise ConfigError(f"{what}: language must be a code such as 'en' or None")
        self.endpoint = resolve_endpoint(endpoint, preset="openai", what=what, model=model)
        self.url = self.endpoint.base_url + "/audio/transcriptions"
        self.fields = _form(model, language, prompt, temperature, options)

    async def __call__(self, http: httpx.AsyncClient, pcm: npt.NDArray[np.int16]) -> str:
        """The text of one utterance (16 kHz int16); "" for no samples."""
        if pcm.shape[0] == 0:
            return ""
        files = {"file": ("audio.wav", to_wav_bytes(pcm, RATE), "audio/wav")}
        async with open_response(
            http, self.endpoint, self.url, data=self.fields, files=files
        ) as response:
            body = await read_capped(response, _MAX_ANSWER)
        name = self.endpoint.name
        try:
            data = json.loads(body)
        except ValueError:
            raise ProviderStreamError(
                f"{name} ({self.url}) did not answer with JSON: {quote(body)[:200]!r}",
                provider=name,
            ) from None
        text = data.get("text") if isinstance(data, dict) else None
        if not isinstance(text, str):
            raise ProviderStreamError(
                f"{name} ({self.url}) answered without a 'text' field: {quote(body)[:200]!r}",
                provider=name,
            )
        return text.strip()


@stage
async def openai_stt(
    source: AsyncIterable[Any],
    /,
    *,
    endpoint: EndpointOption = None,
    model: str = DEFAULT_STT_MODEL,
    language: str | None = None,
    prompt: str | None = None,
    temperature: float | None = None,
    pre_roll: float = 0.5,
    pass_audio: bool = False,
    options: Mapping[str, Any] | None = None,
    client: httpx.AsyncClient | None = None,
    max_utterance: float = MAX_UTTERANCE,
) -> AsyncIterator[Any]:
    """Transcribe each utterance between speech markers over ``/audio/transcriptions``.

    Consumes :class:`AudioChunk` s (any rate) and the :class:`SpeechStarted` /
    :class:`SpeechStopped` markers, exactly like :func:`~voicekit.stt.whisper`: each utterance
    (from ``pre_roll`` seconds before its onset) is sent, while the stream goes on, as a 16 kHz
    mono WAV in a multipart form with ``model``, ``response_format=json`` and, when given,
    ``language`` (ISO 639-1, e.g. ``"en"``; None lets the service detect it), ``prompt``,
    ``temperature`` and any further ``options``. Each answer becomes a
    ``Transcript(text, final=True, t=onset)``, in utterance order; an empty text yields a
    :class:`~voicekit.events.NoWords` instead.
    Markers and other items pass through; audio only with ``pass_audio``. An utterance longer
    than ``max_utterance`` seconds is sent in pieces; audio the VAD never called speech (a
    stream without markers included) is never sent.

    ``endpoint``: an :class:`~voicekit.llm.Endpoint` (``llm.openai()``, ``llm.groq()``, …), a base
    URL for a keyless local server, or None for OpenAI with ``$OPENAI_API_KEY``. ``client``: an
    ``httpx.AsyncClient`` to share (kept open); otherwise one is made for the stage and closed
    with it. Stopping the stream cancels a transcription in flight and closes its connection.
    """
    transcriber = _Transcriber(
        endpoint,
        model=model,
        language=language,
        prompt=prompt,
        temperature=temperature,
        options=options,
        what="openai_stt",
    )
    pre_roll = check_pre_roll(pre_roll)
    max_utterance = check_max_utterance(max_utterance)
    http = client if client is not None else new_client()

    async def recognize(pcm: npt.NDArray[np.int16], source_rate: int) -> str:
        return await transcriber(http, pcm)

    try:
        utterances = recognize_utterances(
            source,
            recognize,
            pre_roll=pre_roll,
            pass_audio=pass_audio,
            max_utterance=max_utterance,
        )
        async with contextlib.aclosing(cast(AsyncGenerator[Any, None], utterances)) as items:
            async for item in items:
                yield item
    finally:
        if client is None:
            await http.aclose()


async def transcribe_http(
    audio: AudioInput | AudioChunk | npt.NDArray[Any] | tuple[npt.NDArray[Any], int],
    rate: int | None = None,
    *,
    endpoint: EndpointOption = None,
    model: str = DEFAULT_STT_MODEL,
    language: str | None = None,
    prompt: str | None = None,
    temperature: float | None = None,
    options: Mapping[str, Any] | None = None,
    client: httpx.AsyncClient | None = None,
) -> str:
    """Transcribe a whole recording with one ``POST {base_url}/audio/transcriptions``.

    ``audio``: a file, an :class:`AudioChunk`, a ``(samples, rate)`` pair, or a numpy array with
    its ``rate`` (as :func:`~voicekit.stt.transcribe` takes). It is sent as a 16 kHz mono WAV.
    Options as in :func:`openai_stt`. Returns the text (``""`` for silence).

        text = await transcribe_http("question.wav", endpoint=llm.groq(),
                                     model="whisper-large-v3-turbo")
    """
    transcriber = _Transcriber(
        endpoint,
        model=model,
        language=language,
        prompt=prompt,
        temperature=temperature,
        options=options,
        what="transcribe_http",
    )
    pcm, _ = await asyncio.to_thread(_as_pcm16k, audio, rate)
    http = client if client is not None else new_client()
    try:
        return await transcriber(http, pcm)
    finally:
        if client is None:
            await http.aclose()
