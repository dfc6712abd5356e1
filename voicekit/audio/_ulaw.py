"""G.711 μ-law: int16 ↔ 8-bit codes, bit-exact with libsndfile's ``ULAW`` subtype.

Encoding and decoding are table look-ups: every int16 value has its code computed once, at import,
so converting a chunk is one numpy indexing operation.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .._errors import AudioError
from ..events import AudioChunk

__all__ = ["ulaw_decode", "ulaw_decode_bytes", "ulaw_encode", "ulaw_encode_chunk"]

TELEPHONE_RATE = 8000
_BIAS = 0x84  # added to the magnitude so that every segment starts on a power of two
_CLIP = 32635  # largest magnitude that still fits in the top segment after the bias


def _encoding_table() -> npt.NDArray[np.uint8]:
    """The μ-law code of every int16 value, indexed by the value's bits read as uint16."""
    values = np.arange(1 << 16, dtype=np.uint16).view(np.int16).astype(np.int32)
    sign = np.where(values < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(values), _CLIP) + _BIAS  # 132 ..= 32767
    _, exponent = np.frexp(magnitude)  # magnitude < 2**exponent: its top bit is exponent - 1
    segment = exponent - 8  # top bit 7 ..= 14 gives segment 0 ..= 7
    step = (magnitude >> (segment + 3)) & 0x0F  # the four bits after the top bit
    return (0xFF ^ (sign | (segment << 4) | step)).astype(np.uint8)


def _decoding_table() -> npt.NDArray[np.int16]:
    """The int16 value of every μ-law code: the middle of the code's quantisation step."""
    bits = np.arange(256, dtype=np.int32) ^ 0xFF
    segment = (bits >> 4) & 0x07
    step = bits & 0x0F
    magnitude = (((step << 3) + _BIAS) << segment) - _BIAS
    return np.where(bits & 0x80, -magnitude, magnitude).astype(np.int16)


_ENCODE = _encoding_table()
_DECODE = _decoding_table()


def ulaw_encode(samples: npt.NDArray[np.int16]) -> npt.NDArray[np.uint8]:
    """Encode int16 samples as μ-law codes (same shape, uint8).

    >>> ulaw_encode(np.array([0, 1000, -1000, 32767, -32768], dtype=np.int16))
    array([255, 206,  78, 128,   0], dtype=uint8)
    """
    array = np.asarray(samples)
    if array.dtype != np.int16:
        raise AudioError(
            f"ulaw_encode: samples must be int16, got {array.dtype}; convert with to_int16()"
        )
    return _ENCODE[array.view(np.uint16)]


def ulaw_decode(codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.int16]:
    """Decode μ-law codes (uint8) to int16 samples.

    >>> ulaw_decode(np.array([255, 206, 78, 128, 0], dtype=np.uint8))
    array([     0,    988,   -988,  32124, -32124], dtype=int16)
    """
    array = np.asarray(codes)
    if array.dtype != np.uint8:
        raise AudioError(
            f"ulaw_decode: codes must be uint8, got {array.dtype}; "
            "for bytes use ulaw_decode_bytes()"
        )
    return _DECODE[array]


def ulaw_encode_chunk(chunk: AudioChunk) -> bytes:
    """The 8 kHz μ-law payload of ``chunk``, one byte per sample, as telephony APIs expect it.

    The chunk must already be at 8000 Hz (pipe the stream through ``resample(rate=8000)``).

    >>> ulaw_encode_chunk(AudioChunk(np.zeros(4, dtype=np.int16), rate=8000))
    b'\\xff\\xff\\xff\\xff'
    """
    if not isinstance(chunk, AudioChunk):
        raise AudioError(f"ulaw_encode_chunk takes an AudioChunk, got {type(chunk).__name__}")
    if chunk.rate != TELEPHONE_RATE:
        raise AudioError(
            f"ulaw_encode_chunk: the chunk at t={chunk.t:.3f}s is at {chunk.rate} Hz, "
            f"μ-law payloads are {TELEPHONE_RATE} Hz; resample(rate={TELEPHONE_RATE}) first"
        )
    return _ENCODE[chunk.samples.view(np.uint16)].tobytes()


def ulaw_decode_bytes(
    data: bytes | bytearray | memoryview, *, rate: int = TELEPHONE_RATE, t: float = 0.0
) -> AudioChunk:
    """An :class:`AudioChunk` from a μ-law payload (one byte per sample), starting at ``t``.

    >>> ulaw_decode_bytes(b"\\xff\\x80", t=1.5)
    AudioChunk(2 samples, rate=8000, t=1.500, duration=0.2 ms)
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise AudioError(f"ulaw_decode_bytes takes bytes, got {type(data).__name__}")
    codes = np.frombuffer(data, dtype=np.uint8)
    return AudioChunk(_DECODE[codes], rate=rate, t=t)
