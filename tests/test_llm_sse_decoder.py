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


def test_a_long_line_in_many_reads_is_linear_not_quadratic() -> None:
    """A 8 MB data line cut into 1 KB reads: the decoder must not re-join what it already holds
    on every read (that is quadratic: ~30 s for 32 MB before the fix)."""
    import time

    from voicekit.llm._sse import SSEDecoder

    def decode(size: int) -> float:
        decoder = SSEDecoder()
        body = b"data: " + b"x" * size + b"\n\n"
        start = time.perf_counter()
        events = []
        for i in range(0, len(body), 1024):
            events += decoder.feed(body[i : i + 1024])
        elapsed = time.perf_counter() - start
        assert events == [("message", b"x" * size)]
        return elapsed

    small, large = decode(1 << 20), decode(8 << 20)
    # Linear: 8× the bytes cost ~8× the time; quadratic would cost ~64×. The margin is wide.
    assert large < max(small, 0.005) * 24, (small, large)
    assert large < 2.0


def test_an_event_over_the_cap_is_a_clear_stream_error() -> None:
    from voicekit import EventTooLarge, ProviderStreamError
    from voicekit.llm._sse import SSEDecoder

    decoder = SSEDecoder(max_event_bytes=1000)
    decoder.feed(b"data: " + b"y" * 600 + b"\n")  # one data line, within the cap
    try:
        decoder.feed(b"data: " + b"y" * 600 + b"\n")  # the event's second line passes the cap
    except EventTooLarge as exc:
        assert isinstance(exc, ProviderStreamError) and "1000-byte cap" in str(exc)
    else:
        raise AssertionError("no EventTooLarge")
    endless = SSEDecoder(max_event_bytes=1000)
    endless.feed(b"data: " + b"z" * 900)
    try:
        endless.feed(b"z" * 200)  # a line without an end, growing past the cap
    except EventTooLarge:
        pass
    else:
        raise AssertionError("no EventTooLarge for an endless line")


async def test_chat_reports_an_over_long_event_naming_the_endpoint() -> None:
    """Against a real local server that streams one 17 MB line."""
    import asyncio

    import pytest

    from voicekit import EventTooLarge, Session, llm

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
        writer.write(b"data: " + b"a" * (17 << 20))
        await writer.drain()
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    endpoint = llm.Endpoint(base_url=f"http://127.0.0.1:{port}/v1", model="m", api_key="k")
    try:
        with pytest.raises(EventTooLarge, match="cap"):
            async for _ in llm.chat(endpoint, Session().add_user("hi")):
                pass
    finally:
        server.close()
        await server.wait_closed()
