"""Reading and writing audio files with libsndfile (through soundfile).

:func:`read` streams a file as :class:`AudioChunk` s, lazily; :func:`write` is an async sink that
records a stream to a file; :func:`load`, :func:`info` and :func:`to_wav_bytes` are plain helpers.
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, overload

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from .._errors import AudioError
from ..events import AudioChunk
from ..ops import Flow, Source, Stage
from ._convert import (
    cancellation,
    channel_in_range,
    check_channel,
    check_finite,
    check_rate,
    downmix,
    energies,
    frames_first,
    frames_per,
    to_int16,
    warn,
)
from ._framer import Framer
from ._resampler import QUALITY, Resampler
from ._riff import wav_shortfall

__all__ = ["AudioInfo", "info", "load", "read", "to_wav_bytes", "write"]

T = TypeVar("T")
F = TypeVar("F", bound=BinaryIO)

AudioInput = str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO
"""A path, the bytes of an audio file, or a binary file object."""

THREAD_ABOVE = 1 << 20
"""Files holding more samples than this (all channels) are read in a worker thread."""

BLOCK_SECONDS = 0.25
"""How much of the file one read takes."""

LOAD_BLOCK = 1 << 18
"""Frames one read of :func:`load` takes."""

Block = npt.NDArray[np.float32]
"""Samples read from a file: float32, (frames, channels)."""

FILE_RATES = (1000, 768000)
"""The sample rates (Hz) a file may declare; any other is taken for a corrupt header."""

HEAD_BYTES = 1 << 16
"""How much of a WAV file is searched for its ``data`` chunk, to tell if the file is truncated."""

_EXTENSIONS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "oga": "OGG", "mp3": "MP3"}


def source_flow(fn: Callable[..., AsyncIterator[T]], name: str, **params: Any) -> Flow[T]:
    """A Flow whose items all come from ``fn(_, **params)``; errors in it are named ``name``."""
    return Stage.of(fn, name, **params)(())


# ---------------------------------------------------------------------------------------------
# Opening


class _Input:
    """One audio input, which can be opened again for every iteration, and its name for messages."""

    __slots__ = ("_data", "_file", "_path", "_start", "label")

    def __init__(self, file: AudioInput) -> None:
        self._path: Path | None = None
        self._data: bytes | None = None
        self._file: BinaryIO | None = None
        self._start: int | None = None
        if isinstance(file, str | os.PathLike):
            self._path = Path(file)
            self.label = str(self._path)
            self._check_path()
        elif isinstance(file, bytes | bytearray | memoryview):
            self._data = bytes(file)
            self.label = f"<{len(self._data)} bytes>"
        elif hasattr(file, "read"):
            self._file = file
            self._start = file.tell() if _seekable(file) else None
            self.label = str(getattr(file, "name", None) or f"<{type(file).__name__}>")
        else:
            raise TypeError(
                f"expected a path, bytes or a binary file object, got {type(file).__name__}"
            )

    def _check_path(self) -> None:
        path = self._path
        assert path is not None
        if not path.exists():
            raise AudioError(f"no such file: {path}")
        if not path.is_file():
            raise AudioError(f"not a file: {path}")
        if path.stat().st_size == 0:
            raise AudioError(f"{path} is empty (0 bytes)")

    def open(self) -> sf.SoundFile:
        """Open for reading; raise :class:`AudioError` unless it is audio with some frames."""
        try:
            if self._path is not None:
                self._check_path()
                snd = sf.SoundFile(self._path)
            elif self._data is not None:
                snd = sf.SoundFile(io.BytesIO(self._data))
            else:
                assert self._file is not None
                if self._start is not None:
                    self._file.seek(self._start)
                snd = sf.SoundFile(self._file)
        except sf.LibsndfileError as exc:
            raise AudioError(f"cannot read {self.label}: {_reason(exc)}") from exc
        except (RuntimeError, TypeError, OSError) as exc:
            raise AudioError(f"cannot read {self.label}: {exc}") from exc
        if snd.frames == 0:
            snd.close()
            raise AudioError(f"{self.label} holds no audio (0 frames)")
        if not FILE_RATES[0] <= snd.samplerate <= FILE_RATES[1]:
            snd.close()
            raise AudioError(
                f"{self.label} says its sample rate is {snd.samplerate} Hz, outside "
                f"{FILE_RATES[0]}–{FILE_RATES[1]} Hz (a corrupt header?)"
            )
        if snd.format in ("WAV", "WAVEX"):
            self._check_wav_length()
        return snd

    def _head(self) -> tuple[bytes, int] | None:
        """The first :data:`HEAD_BYTES` of the input and its size; ``None`` if it cannot tell
        (a file object that cannot seek)."""
        if self._path is not None:
            with self._path.open("rb") as handle:
                return handle.read(HEAD_BYTES), self._path.stat().st_size
        if self._data is not None:
            return self._data[:HEAD_BYTES], len(self._data)
        file, start = self._file, self._start
        if file is None or start is None:
            return None
        here = file.tell()
        try:
            file.seek(start)
            head = file.read(HEAD_BYTES)
            file.seek(0, io.SEEK_END)
            size = file.tell() - start
        finally:
            file.seek(here)
        return bytes(head), size

    def _check_wav_length(self) -> None:
        """Warn if the WAV file is shorter than its header says: libsndfile reads what is there
        without a word."""
        try:
            head = self._head()
        except (OSError, ValueError):
            return
        short = wav_shortfall(*head) if head is not None else None
        if short is None:
            return
        said, held = f"{short.declared} bytes", f"{short.present} bytes"
        if short.byte_rate:
            said = f"{short.declared / short.byte_rate:.3f} s ({said})"
            held = f"{short.present / short.byte_rate:.3f} s ({held})"
        warn(
            f"{self.label} is truncated: its header says {said} of audio, it holds {held}; "
            "reading what is there"
        )


def _check_length(snd: sf.SoundFile, audio: _Input, position: int) -> None:
    """Warn if fewer frames could be read than the header declared (a cut MP3, for one)."""
    if position < snd.frames:
        rate = snd.samplerate
        warn(
            f"{audio.label} is truncated: its header says {snd.frames} frames "
            f"({snd.frames / rate:.3f} s), only {position} ({position / rate:.3f} s) could be read"
        )


def _seekable(file: Any) -> bool:
    try:
        return bool(file.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _reason(exc: sf.LibsndfileError) -> str:
    reason = str(exc.error_string).rstrip(".")
    # libsndfile says "does not exist" of a file that exists but fails its decoder (random bytes
    # that begin like an MP3 frame): the path was checked just before, so that is what it means
    if reason == "Format not recognised" or reason.startswith("File does not exist"):
        reason = "Format not recognised (corrupt, or not a format libsndfile can read)"
    return reason


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in a worker thread. If cancelled, wait for it before re-raising, so the
    caller never closes a file that the thread is still reading."""
    future = asyncio.get_running_loop().run_in_executor(None, fn, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        raise


# ---------------------------------------------------------------------------------------------
# read, load, info


def _read_block(snd: sf.SoundFile, audio: _Input, position: int, frames: int) -> Block:
    """The next ``frames`` frames of ``snd`` (fewer at the end) as float32 (frames, channels);
    ``position`` is the frame they start at, for messages. NaN or infinite samples raise
    :class:`AudioError` naming the file and their true position in it."""
    try:
        data = snd.read(frames, dtype="float32", always_2d=True)
    except sf.LibsndfileError as exc:
        raise AudioError(f"cannot read {audio.label} at frame {position}: {_reason(exc)}") from exc
    check_finite(data, audio.label, offset=position, rate=snd.samplerate)
    return data


def _check_mix(audio: _Input, channels: float, mix: float, frames: int) -> None:
    """Warn if averaging the file's channels nearly silenced it."""
    problem = cancellation(channels, mix, frames)
    if problem:
        warn(f"{audio.label}: {problem}; pass channel= to read one channel")


async def _read_chunks(
    _: Source[Any], /, *, audio: _Input, rate: int | None, chunk_ms: float, channel: int | None
) -> AsyncIterator[AudioChunk]:
    snd = audio.open()
    try:
        channel_in_range(channel, snd.channels, audio.label)
        mixing = channel is None and snd.channels > 1
        loud = mixed = 0.0  # energies of the channels and of their mean, when mixing
        out_rate = rate or snd.samplerate
        framer = Framer(frames_per(chunk_ms, out_rate), out_rate)
        resampler = Resampler(snd.samplerate, out_rate) if snd.samplerate != out_rate else None
        block = max(1, round(snd.samplerate * BLOCK_SECONDS))
        threaded = snd.frames * snd.channels > THREAD_ABOVE
        position = 0
        while True:
            if threaded:
                data = await _in_thread(_read_block, snd, audio, position, block)
            else:
                data = _read_block(snd, audio, position, block)
            position += data.shape[0]
            last = data.shape[0] < block
            mono = downmix(data, channel)
            if mixing:
                more, more_mixed = energies(data, mono)
                loud, mixed = loud + more, mixed + more_mixed
            samples = resampler.push(mono, last=last) if resampler else to_int16(mono)
            for chunk in framer.push(samples):
                yield chunk
            if last:
                break
        if position == 0:
            raise AudioError(f"{audio.label} holds no audio (0 frames)")
        _check_length(snd, audio, position)
        if mixing:
            _check_mix(audio, loud, mixed, position)
        for chunk in framer.flush():
            yield chunk
    finally:
        snd.close()


def read(
    file: AudioInput, *, rate: int | None = 16000, chunk_ms: float = 20, channel: int | None = None
) -> Flow[AudioChunk]:
    """Stream an audio file as mono int16 :class:`AudioChunk` s of ``chunk_ms`` at ``rate`` Hz.

    ``file`` is a path, a file's bytes, or a binary file object, in any format libsndfile reads
    (WAV, FLAC, OGG, MP3, …). The rate is converted with a streaming soxr resampler
    (``rate=None`` keeps the file's rate). Every chunk lasts ``chunk_ms`` except perhaps the last;
    ``t`` is each chunk's start time in seconds.

    Channels are averaged — the mean, sample by sample — unless ``channel`` picks one (0 is the
    first, the left of a stereo file). The mean of channels in antiphase is silence: a stereo file
    whose right channel is its left one inverted reads as all zeros. When averaging makes the
    audio over 30 dB quieter than its channels, an :class:`~voicekit.AudioWarning` says so and
    suggests ``channel=``.

    Nothing is opened until the Flow is iterated, and every iteration reads the file again. The
    file is read in blocks (in a worker thread when it is large) and closed as soon as the
    iteration ends or is abandoned — use ``async with flow.open()`` to close it at once on
    ``break``. A file object is read from the position it had when ``read`` was called.

    Bad audio is an :class:`~voicekit.AudioError` naming the file: a corrupt or empty file, a NaN
    or infinite sample (with its frame and time in the file). A file shorter than its header says
    (a WAV whose ``data`` chunk was cut, a cut MP3) is read as far as it goes, with an
    :class:`~voicekit.AudioWarning` naming the file and both lengths.

    >>> import asyncio
    >>> from voicekit.audio import sample_path
    >>> chunks = asyncio.run(read(sample_path(), rate=8000, chunk_ms=100).list())
    >>> chunks[0], chunks[1].t
    (AudioChunk(800 samples, rate=8000, t=0.000, duration=100.0 ms), 0.1)
    """
    if rate is not None:
        rate = check_rate(rate)
    frames_per(chunk_ms, rate or 48000)  # check it now rather than at the first iteration
    channel = check_channel(channel)
    return source_flow(
        _read_chunks, "read", audio=_Input(file), rate=rate, chunk_ms=chunk_ms, channel=channel
    )


def load(
    file: AudioInput, *, rate: int | None = None, channel: int | None = None
) -> tuple[npt.NDArray[np.int16], int]:
    """Read a whole audio file into mono int16 samples; return them and their rate.

    ``rate=None`` keeps the file's rate; otherwise the samples are resampled to ``rate``.
    Channels (``channel=``), bad and truncated files are handled as by :func:`read`.

    >>> from voicekit.audio import sample_path
    >>> samples, rate = load(sample_path())
    >>> samples.dtype, rate
    (dtype('int16'), 16000)
    """
    if rate is not None:
        rate = check_rate(rate)
    channel = check_channel(channel)
    audio = _Input(file)
    with audio.open() as snd:
        channel_in_range(channel, snd.channels, audio.label)
        file_rate = snd.samplerate
        # in blocks: a corrupt header may claim far more frames than the file holds
        blocks: list[Block] = []
        position = 0
        while True:
            data = _read_block(snd, audio, position, LOAD_BLOCK)
            blocks.append(data)
            position += data.shape[0]
            if data.shape[0] < LOAD_BLOCK:
                break
        if position:
            _check_length(snd, audio, position)
    if position == 0:
        raise AudioError(f"{audio.label} holds no audio (0 frames)")
    data = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    mono = downmix(data, channel)
    if channel is None and data.shape[1] > 1:
        _check_mix(audio, *energies(data, mono), position)
    if rate is None or rate == file_rate:
        return to_int16(mono), file_rate
    return to_int16(soxr.resample(mono, file_rate, rate, QUALITY)), rate


@dataclass(frozen=True, slots=True)
class AudioInfo:
    """What an audio file holds, without reading its samples."""

    rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.rate


def info(file: AudioInput) -> AudioInfo:
    """Rate, channels, length and format of an audio file.

    >>> from voicekit.audio import sample_path
    >>> info(sample_path())
    AudioInfo(rate=16000, channels=1, frames=46536, format='WAV', subtype='PCM_16')
    """
    with _Input(file).open() as snd:
        return AudioInfo(snd.samplerate, snd.channels, snd.frames, snd.format, snd.subtype)


# ---------------------------------------------------------------------------------------------
# write, to_wav_bytes


def _format_for(file: Any, format: str | None, subtype: str | None) -> tuple[str, str | None]:
    """The libsndfile format and subtype to write ``file`` with; raise if they cannot work."""
    if format is None:
        if isinstance(file, str | os.PathLike):
            extension = Path(file).suffix.lower().lstrip(".")
            format = _EXTENSIONS.get(extension, extension.upper())
            if format not in sf.available_formats():
                raise AudioError(
                    f"cannot tell the audio format from the extension of {file!s}; "
                    "use .wav, .flac or .ogg, or pass format="
                )
        else:
            format = "WAV"
    format = format.upper()
    if format not in sf.available_formats():
        raise AudioError(
            f"unsupported audio format {format!r}; libsndfile writes "
            + ", ".join(sorted(sf.available_formats()))
        )
    if subtype is not None:
        subtype = subtype.upper()
        if not sf.check_format(format, subtype):
            raise AudioError(
                f"format {format} cannot hold subtype {subtype!r}; it can hold "
                + ", ".join(sorted(sf.available_subtypes(format)))
            )
    return format, subtype


@overload
async def write(
    source: Source[Any],
    file: str | os.PathLike[str],
    *,
    format: str | None = None,
    subtype: str | None = None,
) -> Path: ...
@overload
async def write(
    source: Source[Any], file: F, *, format: str | None = None, subtype: str | None = None
) -> F: ...
async def write(
    source: Source[Any],
    file: str | os.PathLike[str] | BinaryIO,
    *,
    format: str | None = None,
    subtype: str | None = None,
) -> Path | BinaryIO:
    """Record a stream of :class:`AudioChunk` s to a file, chunk by chunk; return where it went.

    ``file`` is a path (the format comes from its extension: .wav, .flac, .ogg…) or a binary file
    object (WAV unless ``format`` says otherwise). ``subtype`` defaults to libsndfile's choice for
    the format (16-bit PCM for WAV and FLAC, Vorbis for OGG). Items that are not AudioChunks are
    skipped. All chunks must share one rate. The source is closed when writing ends, even on error;
    a path is returned as a :class:`~pathlib.Path`, a file object as itself.

    >>> import asyncio
    >>> from voicekit.audio import sample_path
    >>> buffer = asyncio.run(write(read(sample_path()), io.BytesIO()))
    >>> info(io.BytesIO(buffer.getvalue())).frames
    46536
    """
    format, subtype = _format_for(file, format, subtype)
    target = Path(file) if isinstance(file, str | os.PathLike) else file
    snd: sf.SoundFile | None = None
    count = skipped = 0
    try:
        flow: Flow[Any] = Flow(source)
        async with flow.open() as items:
            async for item in items:
                if not isinstance(item, AudioChunk):
                    skipped += 1
                    continue
                if snd is None:
                    snd = sf.SoundFile(target, "w", item.rate, 1, subtype=subtype, format=format)
                elif item.rate != snd.samplerate:
                    raise AudioError(
                        f"write: chunk {count} (t={item.t:.3f}s) is at {item.rate} Hz but the "
                        f"stream began at {snd.samplerate} Hz; one file holds one rate — "
                        "pipe the stream through resample() first"
                    )
                snd.write(item.samples)
                count += 1
    except sf.LibsndfileError as exc:
        raise AudioError(f"cannot write {target}: {_reason(exc)}") from exc
    finally:
        if snd is not None:
            snd.close()
    if snd is None:
        raise AudioError(
            f"write: the source yielded no AudioChunk ({skipped} other items), nothing to write"
        )
    return target


def to_wav_bytes(samples: npt.ArrayLike, rate: int) -> bytes:
    """The bytes of a 16-bit PCM WAV file holding ``samples`` (int16 or float, any channels).

    2-D samples may be (frames, channels) or (channels, frames), as :func:`from_array` tells them.

    >>> data = to_wav_bytes(np.zeros(160, dtype=np.int16), 16000)
    >>> data[:4], len(data)
    (b'RIFF', 364)
    """
    rate = check_rate(rate)
    pcm = to_int16(samples)
    if pcm.ndim != 1 and not (pcm.ndim == 2 and pcm.size == 0):
        pcm = frames_first(pcm, "to_wav_bytes")[0]
    buffer = io.BytesIO()
    sf.write(buffer, pcm, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
