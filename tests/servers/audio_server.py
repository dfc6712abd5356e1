"""A real HTTP/1.1 audio service on 127.0.0.1: OpenAI-style STT and TTS, and xAI's TTS shape.

Built on :class:`servers.sse_server.SSEServer` (raw asyncio, every byte under the test's
control) with a router for three routes:

* ``POST .../audio/transcriptions`` — parses the multipart form itself, checks the uploaded
  file is a readable WAV, records both, and answers ``{"text": ...}`` from a script;
* ``POST .../audio/speech`` — OpenAI's body (``model``, ``input``, ``voice``,
  ``response_format: "pcm"``), answered with deterministic 24 kHz PCM for the text; or, for
  ``"wav"``, a streamed WAV at ``wav_rate`` (48 kHz, as Groq sends);
* ``POST .../tts`` — xAI's body (``text``, ``voice_id``, ``language``, ``output_format``),
  answered with PCM at the requested ``sample_rate``.

Audio is streamed in awkward chunk sizes — odd ones included, so samples are cut in half —
with a short pause between chunks so they also arrive separately. Faults are scripted per route
with :meth:`AudioServer.fail` (any :class:`~servers.sse_server.Reply`: an error status, a body
dropped mid-stream, a slow first byte, a body that never ends).

    async with AudioServer() as server:
        server.transcripts.append("hello")
        ...  # point an endpoint at server.base_url
        server.uploads[-1].fields["model"]
"""

from __future__ import annotations

import asyncio
import io
import struct
import wave
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .sse_server import Disconnect, Recorded, Reply, SSEServer, json_reply

__all__ = [
    "AWKWARD_SIZES",
    "AudioServer",
    "FilePart",
    "Upload",
    "WavInfo",
    "parse_multipart",
    "pcm_for",
    "pcm_reply",
    "wav_header",
]

AWKWARD_SIZES: tuple[int, ...] = (1, 3, 2, 4095, 7, 1001, 4, 2048, 333, 1)
"""Chunk sizes the audio is cut into, cycled (mostly odd: samples are split across chunks)."""

Route = Literal["transcriptions", "speech", "tts"]


# ---------------------------------------------------------------------------------------------
# Audio the server makes


def pcm_for(text: str, rate: int) -> bytes:
    """Deterministic mono s16le audio for ``text``: 50 ms + 10 ms per character of a tone whose
    pitch is a hash of the text, with a ramp so no two neighbouring samples are equal."""
    n = round(rate * (0.05 + 0.01 * len(text)))
    freq = 200 + zlib.crc32(text.encode()) % 600
    t = np.arange(n) / rate
    wave_ = 0.4 * np.sin(2 * np.pi * freq * t) + 0.1 * (np.arange(n) % 97) / 97
    return (np.rint(wave_ * 32767).astype("<i2")).tobytes()


def wav_header(rate: int, *, channels: int = 1, bits: int = 16, streaming: bool = True) -> bytes:
    """A WAV header as streaming services send it: sizes unknown (0xFFFFFFFF) and a ``LIST``
    chunk of odd length (so its pad byte matters) before ``data``."""
    unknown = 0xFFFFFFFF
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, bits)
    info = b"INFOISFTtest"[:11]  # 11 bytes: odd, padded to 12
    return b"".join(
        [
            b"RIFF",
            struct.pack("<I", unknown if streaming else 0),
            b"WAVE",
            b"fmt ",
            struct.pack("<I", len(fmt)),
            fmt,
            b"LIST",
            struct.pack("<I", len(info)),
            info + b"\0",
            b"data",
            struct.pack("<I", unknown if streaming else 0),
        ]
    )


def pcm_reply(
    pcm: bytes,
    *,
    sizes: Sequence[int] = AWKWARD_SIZES,
    pause: float = 0.001,
    end: Literal["done", "drop", "hang"] = "done",
    delay: float = 0.0,
    content_type: str = "audio/pcm",
    status: int = 200,
) -> Reply:
    """A chunked audio body cut into ``sizes`` (cycled), ``pause`` seconds between chunks."""
    parts: list[bytes | float] = []
    start, index = 0, 0
    while start < len(pcm):
        size = sizes[index % len(sizes)]
        parts.append(pcm[start : start + size])
        if pause:
            parts.append(pause)
        start += size
        index += 1
    return Reply(
        status=status,
        headers=[("Content-Type", content_type)],
        parts=parts,
        end=end,
        delay=delay,
    )


# ---------------------------------------------------------------------------------------------
# What the server parses


@dataclass
class FilePart:
    """One file field of a multipart form."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class WavInfo:
    """The uploaded file as a WAV reader saw it."""

    rate: int
    channels: int
    sample_width: int
    samples: np.ndarray

    @property
    def duration(self) -> float:
        return self.samples.shape[0] / self.rate


@dataclass
class Upload:
    """A transcription request: its text fields in order, its file and the file's audio."""

    fields: dict[str, str]
    files: list[FilePart]
    wav: WavInfo | None
    field_order: list[str]


def parse_multipart(content_type: str, body: bytes) -> tuple[list[tuple[str, str]], list[FilePart]]:
    """Split a ``multipart/form-data`` body into text fields and file parts (strictly)."""
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        raise ValueError(f"not multipart/form-data: {content_type!r}")
    boundary = None
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        raise ValueError("no boundary")
    delimiter = b"--" + boundary.encode()
    if not body.startswith(delimiter):
        raise ValueError("body does not start with the boundary")
    if not body.rstrip(b"\r\n").endswith(delimiter + b"--"):
        raise ValueError("body does not end with the closing boundary")
    fields: list[tuple[str, str]] = []
    files: list[FilePart] = []
    for raw in body.split(delimiter)[1:-1]:
        if not raw.startswith(b"\r\n") or not raw.endswith(b"\r\n"):
            raise ValueError("a part is not framed by CRLF")
        head, sep, data = raw[2:-2].partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("a part has no header/body separator")
        headers: dict[str, str] = {}
        for line in head.decode("utf-8").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        if not disposition.startswith("form-data"):
            raise ValueError(f"bad Content-Disposition {disposition!r}")
        attributes: dict[str, str] = {}
        for item in disposition.split(";")[1:]:
            key, _, value = item.strip().partition("=")
            attributes[key] = value.strip('"')
        if "filename" in attributes:
            files.append(
                FilePart(
                    attributes["name"], attributes["filename"], headers.get("content-type"), data
                )
            )
        else:
            fields.append((attributes["name"], data.decode("utf-8")))
    return fields, files


def _read_wav(data: bytes) -> WavInfo:
    with wave.open(io.BytesIO(data), "rb") as reader:
        frames = reader.readframes(reader.getnframes())
        return WavInfo(
            rate=reader.getframerate(),
            channels=reader.getnchannels(),
            sample_width=reader.getsampwidth(),
            samples=np.frombuffer(frames, dtype="<i2").astype(np.int16),
        )


# ---------------------------------------------------------------------------------------------
# The server


class AudioServer:
    """OpenAI-style ``/audio/transcriptions`` and ``/audio/speech`` and xAI-style ``/tts``.

    ``transcripts``: texts for the next transcriptions, in order (default: the duration heard).
    ``uploads``: every parsed transcription request. ``sent``: the PCM bytes of every audio
    answer, in order. ``sizes``/``pause``: how audio bodies are cut.
    """

    def __init__(self) -> None:
        self.http = SSEServer(handler=self._handle)
        self.transcripts: deque[str] = deque()
        self.uploads: list[Upload] = []
        self.sent: list[bytes] = []
        self.sizes: Sequence[int] = AWKWARD_SIZES
        self.pause = 0.001
        self.models = ["test-model"]
        self.wav_rate = 48000  # the rate of WAV answers (Groq's)
        self._faults: dict[Route, deque[Reply]] = {
            "transcriptions": deque(),
            "speech": deque(),
            "tts": deque(),
        }

    # -- plumbing ----------------------------------------------------------------------------

    async def __aenter__(self) -> AudioServer:
        await self.http.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.stop()

    @property
    def port(self) -> int:
        return self.http.port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (no path)."""
        return f"http://127.0.0.1:{self.http.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``."""
        return self.http.base_url

    @property
    def requests(self) -> list[Recorded]:
        return self.http.requests

    @property
    def disconnects(self) -> list[Disconnect]:
        return self.http.disconnects

    async def wait_disconnect(self, within: float = 2.0) -> Disconnect:
        return await self.http.wait_disconnect(within)

    async def wait_requests(self, count: int, within: float = 2.0) -> None:
        await self.http.wait_requests(count, within)

    async def wait_idle(self, within: float = 1.0) -> bool:
        """Wait until no client connection is open; False if one still is after ``within``."""
        for _ in range(max(1, round(within / 0.01))):
            if not self.http._connections:
                return True
            await asyncio.sleep(0.01)
        return not self.http._connections

    def fail(self, route: Route, *replies: Reply) -> None:
        """Answer the next requests on ``route`` with these replies instead of the normal one."""
        self._faults[route].extend(replies)

    # -- routes ------------------------------------------------------------------------------

    def _handle(self, request: Recorded) -> Reply:
        path = request.path
        if request.method == "POST" and path.endswith("/audio/transcriptions"):
            return self._fault("transcriptions") or self._transcribe(request)
        if request.method == "POST" and path.endswith("/audio/speech"):
            return self._fault("speech") or self._speech(request)
        if request.method == "POST" and path.endswith("/tts"):
            return self._fault("tts") or self._xai(request)
        if request.method == "GET" and path.endswith("/models"):
            return json_reply(200, {"object": "list", "data": [{"id": m} for m in self.models]})
        return json_reply(404, {"error": {"message": f"no route for {request.method} {path}"}})

    def _fault(self, route: Route) -> Reply | None:
        queue = self._faults[route]
        return queue.popleft() if queue else None

    def _transcribe(self, request: Recorded) -> Reply:
        try:
            fields, files = parse_multipart(request.headers.get("content-type", ""), request.body)
        except (ValueError, KeyError) as exc:
            return json_reply(400, {"error": {"message": f"bad multipart body: {exc}"}})
        wav = None
        if len(files) == 1:
            try:
                wav = _read_wav(files[0].data)
            except (wave.Error, EOFError) as exc:
                return json_reply(400, {"error": {"message": f"file is not a WAV: {exc}"}})
        self.uploads.append(Upload(dict(fields), files, wav, [name for name, _ in fields]))
        if wav is None:
            return json_reply(400, {"error": {"message": "expected exactly one file"}})
        text = self.transcripts.popleft() if self.transcripts else f"{wav.duration:.2f} seconds"
        return json_reply(200, {"text": text})

    def _audio(self, pcm: bytes) -> Reply:
        self.sent.append(pcm)
        return pcm_reply(pcm, sizes=self.sizes, pause=self.pause)

    def _speech(self, request: Recorded) -> Reply:
        try:
            body: Any = request.json()
        except ValueError:
            return json_reply(400, {"error": {"message": "body is not JSON"}})
        if not isinstance(body, dict) or not isinstance(body.get("input"), str):
            return json_reply(400, {"error": {"message": "'input' is required"}})
        if body.get("response_format") == "wav":
            pcm = pcm_for(body["input"], self.wav_rate)
            self.sent.append(pcm)
            return pcm_reply(wav_header(self.wav_rate) + pcm, sizes=self.sizes, pause=self.pause)
        if body.get("response_format") != "pcm":
            return json_reply(400, {"error": {"message": "only pcm and wav are served here"}})
        return self._audio(pcm_for(body["input"], 24000))

    def _xai(self, request: Recorded) -> Reply:
        try:
            body: Any = request.json()
        except ValueError:
            return json_reply(400, {"error": "body is not JSON"})
        output = body.get("output_format") if isinstance(body, dict) else None
        if not isinstance(output, dict) or output.get("codec") != "pcm":
            return json_reply(400, {"error": "output_format.codec must be pcm here"})
        rate = output.get("sample_rate")
        if not isinstance(rate, int) or rate <= 0 or not isinstance(body.get("text"), str):
            return json_reply(400, {"error": "text and output_format.sample_rate are required"})
        return self._audio(pcm_for(body["text"], rate))
