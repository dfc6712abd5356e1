"""An incremental Server-Sent Events decoder over raw bytes, built for throughput.

Network reads arrive in arbitrary pieces; :meth:`SSEDecoder.feed` takes each piece and returns the
events it completed, as ``(event_name, data)`` pairs with ``data`` as bytes (``json.loads`` reads
bytes directly, so no text decoding happens here). It follows the SSE rules that matter for LLM
streams: ``data:`` lines of one event are joined with ``\\n``; one space after the colon is
dropped; ``:`` comment lines (keep-alives) are ignored; ``event:`` names the event; ``id:`` and
``retry:`` are ignored; a blank line ends an event; lines end with ``\\n`` or ``\\r\\n``. An event
still open when the stream ends is dropped, as the spec says.

Time is linear in the bytes fed, however the stream is cut into reads (an incomplete line is
kept as a list of pieces, joined once when its end arrives), and one event may hold at most
``max_event_bytes`` (:data:`MAX_EVENT_BYTES`, 16 MiB): a longer line or event raises
:class:`EventTooLarge` instead of growing without bound.

It does per network read what httpx-sse does per line, which is most of why it is faster.

>>> decoder = SSEDecoder()
>>> decoder.feed(b'data: {"a"')
[]
>>> decoder.feed(b': 1}\\n\\n: keep-alive\\n\\nevent: error\\r\\ndata: x\\r\\ndata: y\\r\\n\\r\\n')
[('message', b'{"a": 1}'), ('error', b'x\\ny')]
"""

from __future__ import annotations

from .._errors import EventTooLarge

__all__ = ["MAX_EVENT_BYTES", "SSEDecoder"]

MAX_EVENT_BYTES = 16 * 1024 * 1024
"""The largest SSE event (its data lines and any line in progress) a decoder accepts."""


class SSEDecoder:
    """Feed bytes in, get complete ``(event, data)`` pairs out.

    >>> SSEDecoder(max_event_bytes=8).feed(b"data: " + b"x" * 20)
    Traceback (most recent call last):
    ...
    voicekit._errors.EventTooLarge: SSE event over the 8-byte cap (a line of 26 bytes so far)
    """

    __slots__ = ("_data", "_data_bytes", "_event", "_max", "_rest", "_rest_bytes")

    def __init__(self, *, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._rest: list[bytes] = []  # the pieces of an incomplete line, carried over
        self._rest_bytes = 0
        self._data: list[bytes] = []  # data lines of the event being read
        self._data_bytes = 0
        self._event = "message"
        self._max = max_event_bytes

    def _too_large(self, what: str) -> EventTooLarge:
        return EventTooLarge(f"SSE event over the {self._max}-byte cap ({what})")

    def feed(self, piece: bytes) -> list[tuple[str, bytes]]:
        """The events completed by ``piece``."""
        end = piece.rfind(b"\n")
        if end < 0:  # no line ends here: keep the piece, joined later (linear, not quadratic)
            if piece:
                self._rest.append(piece)
                self._rest_bytes += len(piece)
                if self._rest_bytes + self._data_bytes > self._max:
                    raise self._too_large(f"a line of {self._rest_bytes} bytes so far")
            return []
        if self._rest:
            self._rest.append(piece[: end + 1])
            complete = b"".join(self._rest)
        else:
            complete = piece[: end + 1]
        tail = piece[end + 1 :]
        self._rest = [tail] if tail else []
        self._rest_bytes = len(tail)
        lines = complete.split(b"\n")
        lines.pop()  # the empty string after the last newline
        out: list[tuple[str, bytes]] = []
        data = self._data
        for line in lines:
            if line[-1:] == b"\r":
                line = line[:-1]
            if not line:
                if data:
                    out.append((self._event, data[0] if len(data) == 1 else b"\n".join(data)))
                    data = self._data = []
                    self._data_bytes = 0
                self._event = "message"
            elif line[:5] == b"data:":
                value = line[6:] if line[5:6] == b" " else line[5:]
                data.append(value)
                self._data_bytes += len(value) + 1
                if self._data_bytes > self._max:
                    raise self._too_large(f"{self._data_bytes} bytes of data so far")
            elif line[:1] == b":":
                continue
            elif line == b"data":
                data.append(b"")
            elif line[:6] == b"event:":
                self._event = line[6:].strip().decode("utf-8", "replace") or "message"
        if self._rest_bytes + self._data_bytes > self._max:
            raise self._too_large(f"a line of {self._rest_bytes} bytes so far")
        return out

    @property
    def pending(self) -> bool:
        """True when an event has started but not ended (useful at end of stream)."""
        return bool(self._data or b"".join(self._rest).strip())
