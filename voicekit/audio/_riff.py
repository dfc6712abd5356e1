"""What a WAV file's header says about its length: enough to tell a truncated file.

libsndfile quietly shortens a WAV whose ``data`` chunk runs past the end of the file to the bytes
that are there, so the header has to be read again to notice.
"""

from __future__ import annotations

from typing import NamedTuple

UNKNOWN_SIZES = (0, 0xFFFFFFFF)
"""``data`` sizes that mean "not known": streaming recorders write them before the length is."""


class Shortfall(NamedTuple):
    """A WAV ``data`` chunk longer than the file: bytes declared, bytes there, and bytes per
    second (0 if the header has no ``fmt`` chunk before ``data``)."""

    declared: int
    present: int
    byte_rate: int


def _u32(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 4], "little")


def wav_shortfall(head: bytes, size: int) -> Shortfall | None:
    """If ``head`` (the first bytes of a file of ``size`` bytes) is a RIFF WAVE header whose
    ``data`` chunk claims more bytes than the file holds after it, say by how much.

    >>> import io, numpy as np, soundfile as sf
    >>> buffer = io.BytesIO()
    >>> sf.write(buffer, np.zeros(1000, dtype=np.int16), 8000, format="WAV")
    >>> data = buffer.getvalue()
    >>> wav_shortfall(data, len(data)) is None
    True
    >>> wav_shortfall(data[:1044], 1044)
    Shortfall(declared=2000, present=1000, byte_rate=16000)
    """
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    at, byte_rate = 12, 0
    while at + 8 <= len(head):
        kind, length, body = head[at : at + 4], _u32(head, at + 4), at + 8
        if kind == b"fmt " and body + 12 <= len(head):
            byte_rate = _u32(head, body + 8)
        elif kind == b"data":
            present = max(0, size - body)
            if length in UNKNOWN_SIZES or length <= present:
                return None
            return Shortfall(length, present, byte_rate)
        at = body + length + (length & 1)  # chunks are padded to an even length
    return None
