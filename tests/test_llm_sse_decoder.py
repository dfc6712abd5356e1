"""The byte-level SSE decoder chat() uses: any split of the bytes gives the same events, and
the events match httpx-sse's reading of the same stream."""

from __future__ import annotations

import asyncio
import itertools

import httpx
from httpx_sse import EventSource
from hypothesis import given, settings
from hypothesis import strategies as st

from voicekit.llm._sse import SSEDecoder

TEXT = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=12
)
EVENT = st.tuples(
    st.sampled_from([None, "message", "error", "ping"]),  # event: line
    st.lists(TEXT, min_size=1, max_size=3),  # data: lines
    st.booleans(),  # a comment line before it
    st.sampled_from(["\n", "\r\n"]),  # line ending
    st.booleans(),  # a space after "data:"
)


def render(events: list[tuple[str | None, list[str], bool, str, bool]]) -> bytes:
    out = []
    for name, lines, comment, eol, space in events:
        if comment:
            out.append(f": keep-alive{eol}")
        if name is not None:
            out.append(f"event: {name}{eol}")
        for line in lines:
            out.append(f"data:{' ' if space else ''}{line}{eol}")
        out.append("id: 7" + eol)
        out.append(eol)
    return "".join(out).encode()


def decode(pieces: list[bytes]) -> list[tuple[str, bytes]]:
    decoder = SSEDecoder()
    out: list[tuple[str, bytes]] = []
    for piece in pieces:
        out += decoder.feed(piece)
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted({c % (len(data) + 1) for c in cuts}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def httpx_sse_reading(data: bytes) -> list[tuple[str, bytes]]:
    async def read() -> list[tuple[str, bytes]]:
        response = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=data)
        return [(e.event, e.data.encode()) async for e in EventSource(response).aiter_sse()]

    return asyncio.run(read())


@settings(max_examples=150, deadline=None)
@given(st.lists(EVENT, max_size=6), st.lists(st.integers(min_value=0), max_size=8))
def test_any_split_gives_the_same_events_as_httpx_sse(
    events: list[tuple[str | None, list[str], bool, str, bool]], cuts: list[int]
) -> None:
    data = render(events)
    whole = decode([data])
    assert decode(split(data, cuts)) == whole
    assert whole == httpx_sse_reading(data)
    assert len(whole) == len(events)


def test_unfinished_event_is_pending_and_dropped() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: one\n\ndata: tw") == [("message", b"one")]
    assert decoder.pending
    assert decoder.feed(b"o\n") == [] and decoder.pending


def test_field_edge_cases() -> None:
    assert decode([b"data\n\n"]) == [("message", b"")]
    assert decode([b"data:  two spaces\n\n"]) == [("message", b" two spaces")]
    assert decode([b"event:\ndata: x\n\n"]) == [("message", b"x")]
    assert decode([b"retry: 10\nunknown: y\ndata: z\n\n"]) == [("message", b"z")]
    assert decode([b"event: error\n\ndata: after\n\n"]) == [("message", b"after")]
