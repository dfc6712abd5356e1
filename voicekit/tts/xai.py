"""Speech synthesis with xAI: ``POST https://api.x.ai/v1/tts``, raw PCM streamed as it comes.

xAI cuts its PCM at arbitrary byte boundaries, also in the middle of a sample; the dangling
byte is re-joined to the next piece (see :class:`~voicekit.tts.http.PcmJoiner`), so every audio
chunk holds whole samples.

Languages are given as elsewhere in voicekit (ISO codes such as ``"en"``, ``"pt-BR"``; ``_`` and
any case accepted) and sent as xAI's codes by :func:`xai_language`::

    >>> xai_language("es"), xai_language("PT_BR"), xai_language("en-US")
    ('es-ES', 'pt-BR', 'en')
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterable, AsyncIterator
from types import MappingProxyType
from typing import Any

import httpx

from .._errors import ConfigError
from .._http import EndpointOption, resolve_endpoint
from ..audio._convert import check_rate
from ..ops import stage
from ._speak import check_chunk_ms
from .http import speak_http

__all__ = ["XAI_LANGUAGES", "xai_language", "xai_tts"]

log = logging.getLogger("voicekit.tts")

XAI_LANGUAGES = MappingProxyType(
    {
        "ar": "ar-EG",
        "ar-eg": "ar-EG",
        "ar-sa": "ar-SA",
        "ar-ae": "ar-AE",
        "bn": "bn",
        "de": "de",
        "en": "en",
        "es": "es-ES",
        "es-es": "es-ES",
        "es-mx": "es-MX",
        "fr": "fr",
        "hi": "hi",
        "id": "id",
        "it": "it",
        "ja": "ja",
        "ko": "ko",
        "pt": "pt-PT",
        "pt-br": "pt-BR",
        "pt-pt": "pt-PT",
        "ru": "ru",
        "tr": "tr",
        "vi": "vi",
        "zh": "zh",
    }
)
"""Language values (lower case, ``-`` separated) → the codes xAI's TTS knows."""

_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")
_unverified: set[str] = set()


def xai_language(language: str) -> str:
    """The xAI code for a language value.

    Values in :data:`XAI_LANGUAGES` map to their code; any other value falls back to its base
    code (the part before the first ``-``, lower-cased), logged once as not verified.

    >>> xai_language("ar"), xai_language("es_MX"), xai_language("nl-BE")
    ('ar-EG', 'es-MX', 'nl')
    """
    if not isinstance(language, str) or not _LANGUAGE.match(language.strip()):
        raise ConfigError(
            f"xai_tts: language must be a code such as 'en' or 'pt-BR', got {language!r}"
        )
    key = language.strip().replace("_", "-").lower()
    code = XAI_LANGUAGES.get(key)
    if code is not None:
        return code
    base = key.split("-", 1)[0]
    if key not in _unverified:
        _unverified.add(key)
        log.info("xai_tts: language %r is not verified for xAI; using base code %r", language, base)
    return base


@stage
async def xai_tts(
    source: AsyncIterable[Any],
    /,
    *,
    endpoint: EndpointOption = None,
    voice: str = "eve",
    language: str | None = "en",
    rate: int = 24000,
    chunk_ms: float = 20,
    pass_text: bool = False,
    client: httpx.AsyncClient | None = None,
) -> AsyncIterator[Any]:
    """Speak each :class:`~voicekit.events.Sentence` (or ``str``) with xAI's ``/tts``.

    One request per sentence with the JSON body ``{"text", "voice_id": voice, "language":
    xai_language(language), "output_format": {"codec": "pcm", "sample_rate": rate}}``
    (``language=None`` leaves it out). The PCM is streamed as it arrives into
    :class:`AudioChunk` s of ``chunk_ms`` at ``rate``, their ``t`` running on across sentences;
    other items pass through; ``pass_text`` as in :func:`~voicekit.tts.piper`.

    ``endpoint``: an :class:`~voicekit.llm.Endpoint` whose base URL is ``https://api.x.ai/v1``
    (``voicekit.llm.xai()`` reads ``$XAI_API_KEY``; None means that), or a base URL string.
    Sent with ``Authorization: Bearer <key>`` when the endpoint has a key.
    """
    what = "xai_tts"
    if not isinstance(voice, str) or not voice.strip():
        raise ConfigError(f"{what}: voice must be a voice id such as 'eve', got {voice!r}")
    code = None if language is None else xai_language(language)
    rate = check_rate(rate)
    chunk_ms = check_chunk_ms(chunk_ms)
    resolved = resolve_endpoint(endpoint, preset="xai", what=what, model="tts")
    output_format = {"codec": "pcm", "sample_rate": rate}

    def body(text: str) -> dict[str, Any]:
        request: dict[str, Any] = {"text": text, "voice_id": voice}
        if code is not None:
            request["language"] = code
        request["output_format"] = dict(output_format)
        return request

    async with contextlib.aclosing(
        speak_http(
            source,
            endpoint=resolved,
            url=resolved.base_url + "/tts",
            body=body,
            pcm_rate=rate,
            rate=rate,
            chunk_ms=chunk_ms,
            pass_text=pass_text,
            client=client,
        )
    ) as items:
        async for item in items:
            yield item
