"""The connection layer: one WebSocket, one :class:`Codec`, one call.

:func:`run_call` owns the socket from the first message to the last. It reads messages until the
carrier's call start (checking it with ``authorize`` before any audio is processed), then hands
the user's ``on_call`` a :class:`Call`:

* ``call.inbound`` — a :class:`~voicekit.Flow` of the call's events: ``CallStarted`` first, then
  the caller's audio resampled to the pipeline rate (as it arrives, a few ms of filter delay),
  ``Dtmf``, ``Played`` (a mark echoed by the carrier) and last ``CallEnded``. Iterate it once.
* ``call.outbound`` — consumes the agent's output: audio is resampled to the wire rate, cut
  into ``frame_ms`` frames and sent at most ``lead`` seconds ahead of real time (so the line
  never starves and a ``clear`` throws little away; when the carrier holds less than a frame,
  the samples ready are sent at once as a shorter frame rather than wait for the next chunk);
  a ``Mark`` is sent after the audio before it; an ``Interrupted`` sends the carrier's "clear"
  at once; ``SessionUpdated`` values are kept.
* ``call.session`` — the :class:`~voicekit.Session` of the call: ``call_id`` is the carrier's
  call id, ``caller``/``callee`` come from the start parameters (masked in every repr).

Lifetime rules: only the receive side declares that the peer is gone; "we closed" (``closing``)
is kept apart from "the socket is unusable" (``gone``); a failed send marks the socket gone, so
later sends are skipped without a log line each. When the caller hangs up (or the socket drops,
or the peer breaks the protocol), the inbound stream ends with ``CallEnded``; ``on_call`` gets
``grace`` seconds to finish, then it is cancelled. When ``on_call`` returns first, we close the
socket. Either way no task is left, and ``on_end`` receives the final Session.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._errors import ProtocolError
from .._frozen import FrozenDict
from .._logging import bind_call, call_scope
from .._secrets import redact
from ..events import (
    AudioChunk,
    CallEnded,
    CallStarted,
    HangUp,
    Interrupted,
    Mark,
    Played,
    SendDtmf,
    SessionUpdated,
    TransferCall,
)
from ..ops import Flow
from ..session import Session
from ._codec import Codec, WireMessage
from ._control import CallControl, perform
from ._resample import StreamResampler

__all__ = ["Call", "run_call"]

_log = logging.getLogger("voicekit.transports")

_END = object()
_BACKLOG = 4  # inbound items waiting before the receive side gives the pipeline a turn
TOKEN_PARAMETER = "token"
"""The start parameter that carries the stream token: seen by ``authorize`` only."""


@dataclass(frozen=True, slots=True)
class Call:
    """One call, as :func:`run_call` hands it to ``on_call``: ``await (call.inbound | agent |
    call.outbound)``. ``started`` is the carrier's :class:`~voicekit.CallStarted`."""

    inbound: Flow[Any]
    outbound: Callable[[AsyncIterable[Any]], Awaitable[None]]
    session: Session
    started: CallStarted

    def __repr__(self) -> str:
        return f"Call({self.session!r}, carrier={self.started.carrier!r})"


class _Socket:
    """A WebSocket's send side, with "we are closing" apart from "the peer is unusable"."""

    __slots__ = ("closing", "gone", "sent", "ws")

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.closing = False  # we decided to close
        self.gone = False  # the socket failed, or the receive side saw the peer leave
        self.sent = 0

    def usable(self) -> bool:
        state = getattr(self.ws, "application_state", None)
        return not self.closing and not self.gone and getattr(state, "name", "") == "CONNECTED"

    async def send(self, message: WireMessage) -> bool:
        if not self.usable():
            return False
        try:
            if isinstance(message, str):
                await self.ws.send_text(message)
            else:
                await self.ws.send_bytes(message)
        except Exception as exc:  # the peer went away mid-send: say it once, send no more
            self.gone = True
            _log.info("send failed (%s); later sends are skipped", type(exc).__name__)
            return False
        self.sent += 1
        return True

    async def close(self, code: int = 1000) -> None:
        if self.closing:
            return
        self.closing = True
        state = getattr(self.ws, "application_state", None)
        if self.gone or getattr(state, "name", "") != "CONNECTED":
            return
        with contextlib.suppress(Exception):  # already gone: nothing to close
            await self.ws.close(code)


async def _receive(ws: Any) -> WireMessage | None:
    """The next message, or None once the peer has disconnected."""
    message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        return None
    if message.get("text") is not None:
        text: str = message["text"]
        return text
    if message.get("bytes") is not None:
        data: bytes = message["bytes"]
        return data
    return None


class _Inbound:
    """Decoded events -> the pipeline: audio resampled to ``rate`` as it comes, in chunks of at
    least ``chunk`` samples (the samples ready are handed on at once when ``chunk`` is 0)."""

    __slots__ = (
        "_made", "_pending", "_resampler", "_t0", "chunk", "ended", "queue", "rate", "tap",
    )

    def __init__(self, wire_rate: int, rate: int, chunk: int = 0) -> None:
        self.rate = rate
        self.chunk = chunk
        self._resampler = StreamResampler(wire_rate, rate)
        self._t0: float | None = None
        self._made = 0
        self._pending: list[np.ndarray[Any, Any]] = []
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.ended = False
        self.tap: Any = None  # a call recording's observer (record=), sees each item as it comes

    def _release(self) -> None:
        if not self._pending:
            return
        samples = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        self._pending = []
        t0 = self._t0 if self._t0 is not None else 0.0
        self.queue.put_nowait(AudioChunk(samples, self.rate, t0 + self._made / self.rate))
        self._made += samples.shape[0]

    def put(self, event: Any) -> None:
        if self.ended:
            return
        if self.tap is not None:
            self.tap.inbound(event)
        if isinstance(event, AudioChunk):
            if self._t0 is None:
                self._t0 = event.t
            out = self._resampler.push(event.samples)
            if out.shape[0]:
                self._pending.append(out)
                if sum(p.shape[0] for p in self._pending) >= self.chunk:
                    self._release()
            return
        self._release()  # audio first: the stream keeps its order
        self.queue.put_nowait(event)
        if isinstance(event, CallEnded):
            self.end()

    def end(self, reason: str = "", detail: str = "", t: float = 0.0) -> None:
        if self.ended:
            return
        self._release()
        if reason:
            self.queue.put_nowait(CallEnded(reason, detail, t))
        self.ended = True
        self.queue.put_nowait(_END)

    def items(self) -> _Items:
        return _Items(self.queue)


class _Items:
    """The inbound queue as an async iterator. Not a generator: closing the pipeline while a
    stage's task waits on it must not fail ("aclose(): generator already running")."""

    __slots__ = ("_queue",)

    def __init__(self, queue: asyncio.Queue[Any]) -> None:
        self._queue = queue

    def __aiter__(self) -> _Items:
        return self

    async def __anext__(self) -> Any:
        item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)  # stays ended
            raise StopAsyncIteration
        return item


class _Cell:
    """The codec's protocol state, one value shared by the receive and the send side."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class _Outbound:
    """The agent's output -> wire messages, paced ``lead`` seconds ahead of real time."""

    __slots__ = (
        "_codec",
        "_frame",
        "_pending",
        "_play_end",
        "_resampler",
        "_socket",
        "_unplayed",
        "_wake",
        "ack_slack",
        "act",
        "lead",
        "sent_audio",
        "session",
        "state",
        "tap",
    )

    def __init__(self, codec: Codec[Any], state: _Cell, socket: _Socket, lead: float) -> None:
        self._codec = codec
        self.state = state
        self._socket = socket
        self.lead = lead
        self._frame = codec.rate * codec.frame_ms // 1000
        self._pending = np.zeros(0, dtype=np.int16)
        self._resampler: StreamResampler | None = None
        self._play_end = 0.0  # loop time when the carrier will have played all we sent
        self.session: Session | None = None
        self.sent_audio = 0.0  # seconds of audio sent
        # call control: the marks sent and not acknowledged yet, woken by Played/clear/gone
        self._unplayed: set[str] = set()
        self._wake = asyncio.Event()
        self.ack_slack = 5.0  # how long past our play-out clock a carrier's ack may lag
        self.act: Callable[[Any], Awaitable[str]] | None = None
        self.tap: Any = None  # a call recording's observer (record=): what plays when

    async def _emit(self, item: Any) -> None:
        if not self._socket.usable():
            return  # the call is over (or we closed): nothing to encode, nothing to send
        self.state.value, messages = self._codec.encode(self.state.value, item)
        for message in messages:
            await self._socket.send(message)

    async def _send_frame(self, samples: np.ndarray[Any, Any]) -> None:
        loop = asyncio.get_running_loop()
        if not self._socket.usable():
            return  # nobody listens: no pacing, no sending
        now = loop.time()
        self._play_end = max(self._play_end, now)
        ahead = self._play_end - now
        if ahead > self.lead:
            await asyncio.sleep(ahead - self.lead)
        duration = samples.shape[0] / self._codec.rate
        await self._emit(AudioChunk(samples, self._codec.rate, self.sent_audio))
        if self.tap is not None:
            self.tap.played(samples, self._play_end)  # the carrier plays it from _play_end
        self._play_end += duration
        self.sent_audio += duration

    async def audio(self, chunk: AudioChunk) -> None:
        if self._resampler is None or self._resampler.in_rate != chunk.rate:
            self._resampler = StreamResampler(chunk.rate, self._codec.rate)
        out = self._resampler.push(chunk.samples)
        data = np.concatenate((self._pending, out)) if self._pending.shape[0] else out
        whole = data.shape[0] - data.shape[0] % self._frame
        for i in range(0, whole, self._frame):
            await self._send_frame(data[i : i + self._frame])
        self._pending = data[whole:]
        if self._pending.shape[0] >= self._frame // 2 and self._starving():
            await self.flush_frame()  # the line runs dry before the next chunk: send it now

    def _starving(self) -> bool:
        """True when the carrier holds less than one frame of our audio."""
        ahead = self._play_end - asyncio.get_running_loop().time()
        return ahead < self._codec.frame_ms / 1000

    async def flush_frame(self) -> None:
        """Send the pending samples as a shorter frame."""
        if self._pending.shape[0]:
            pending, self._pending = self._pending, np.zeros(0, dtype=np.int16)
            await self._send_frame(pending)

    async def flush(self) -> None:
        """Send what the resampler holds and the last, shorter frame (before a mark, at the
        end)."""
        if self._resampler is not None:
            tail = self._resampler.flush()
            if tail.shape[0]:
                self._pending = np.concatenate((self._pending, tail))
        await self.flush_frame()

    async def clear(self, item: Interrupted) -> None:
        self._pending = np.zeros(0, dtype=np.int16)
        if self._resampler is not None:
            self._resampler.reset()
        self._play_end = asyncio.get_running_loop().time()
        self._unplayed.clear()  # thrown away: nothing of it will be played, nothing to wait for
        self.wake()
        await self._emit(item)

    def played(self, name: str) -> None:
        """The carrier acknowledged mark ``name`` (from the receive side)."""
        self._unplayed.discard(name)
        self.wake()

    def wake(self) -> None:
        """Something a waiting call-control item depends on changed."""
        self._wake.set()

    async def played_out(self) -> bool:
        """Wait until everything sent so far has been played: every mark acknowledged (where
        the carrier acknowledges; at most ``ack_slack`` seconds past our play-out clock), then
        our play-out clock for the audio after the last mark. False when the call ended
        meanwhile."""
        await self.flush()
        loop = asyncio.get_running_loop()
        give_up = max(self._play_end, loop.time()) + self.ack_slack
        while self._unplayed and self._socket.usable():
            self._wake.clear()
            left = give_up - loop.time()
            if left <= 0:
                _log.warning("%s: %d mark(s) not acknowledged in time; acting anyway",
                             self._codec.name, len(self._unplayed))
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)
        while self._socket.usable() and (left := self._play_end - loop.time()) > 0:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)
        return self._socket.usable()

    async def control(self, item: Any) -> bool:
        """Act on a call-control item once what came before it has been played. True when the
        call is over for us (a hang-up or a transfer was carried out, or the call had ended)."""
        if not await self.played_out():
            return True
        if self.act is None:  # no carrier API (the generic socket): a hang-up closes it
            if isinstance(item, HangUp):
                await self._socket.close()
                return True
            _log.warning("%s: %s is not supported here; ignored",
                         self._codec.name, type(item).__name__)
            return False
        result = await self.act(item)
        if result == "unsupported":
            _log.warning("%s: %s is not supported here; ignored",
                         self._codec.name, type(item).__name__)
            return False
        return result == "ended" or not isinstance(item, SendDtmf)

    async def consume(self, items: AsyncIterable[Any]) -> None:
        iterator = aiter(items)
        over = False  # a hang-up or transfer was carried out, or the call ended meanwhile
        async for item in iterator:
            if isinstance(item, AudioChunk):
                await self.audio(item)
            elif isinstance(item, Interrupted):
                await self.clear(item)
            elif isinstance(item, Mark):
                await self.flush()
                if self._codec.acknowledges:
                    self._unplayed.add(item.name)
                await self._emit(item)
            elif isinstance(item, HangUp | TransferCall | SendDtmf):
                over = await self.control(item)
            elif isinstance(item, SessionUpdated):
                if isinstance(item.session, Session):
                    self.session = item.session
            else:
                await self._emit(item)
            if self.tap is not None:
                self.tap.outbound(item, self._play_end)
            if over:  # the call is handed over or ended: the agent stops, nothing more goes out
                aclose = getattr(iterator, "aclose", None)
                if aclose is not None:
                    await aclose()
                return
        await self.flush()


def _session_of(started: CallStarted) -> Session:
    return Session(
        call_id=started.call_id, caller=started.caller or None, callee=started.callee or None
    )


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def run_call(
    websocket: Any,
    codec: Codec[Any],
    on_call: Callable[[Call], Awaitable[Any]],
    *,
    rate: int = 16000,
    lead: float = 0.2,
    inbound_ms: float = 20,
    authorize: Callable[[CallStarted], Any] | None = None,
    on_end: Callable[[Session], Any] | None = None,
    start_timeout: float = 10.0,
    grace: float = 0.5,
    record: Callable[[CallStarted, int], Any] | None = None,
    control: CallControl | None = None,
    resume: Callable[[CallStarted], Awaitable[Session | None]] | None = None,
) -> Session | None:
    """Run one call on an accepted WebSocket (Starlette's, or anything with ``receive``,
    ``send_text``, ``send_bytes``, ``close`` and ``application_state``) until it ends; return
    the final Session (None when no call started: the peer left, timed out or was refused).

    ``rate`` is the pipeline's sample rate; ``inbound_ms`` gathers the caller's audio into
    chunks of that length (20 ms: as it comes; 40-60 ms halves the pipeline's per-call CPU, at
    the cost of that much delay); ``lead`` bounds how far the reply runs ahead of real time.
    ``authorize(started)`` may raise :class:`~voicekit.ProtocolError` to refuse the call
    (before any audio is processed). ``on_call(call)`` may return the final Session; otherwise
    the last ``SessionUpdated`` seen on the outbound stream (or the call's first Session) is
    final. ``record`` (e.g. :func:`voicekit.recorder`) is called with the call start and the
    wire rate and returns the call's observer (see :class:`voicekit.CallRecording`); it is
    closed with the final Session, before ``on_end``. See the module docstring for the
    lifetime rules.

    ``HangUp``, ``TransferCall`` and ``SendDtmf`` on the outbound stream are carried out once
    everything sent before them has been played (see :mod:`voicekit.transports._control`),
    through the carrier's REST API described by ``control`` (default: credentials from the
    environment). A hang-up or transfer ends the outbound stream; a carrier error is raised
    from ``call.outbound`` (the call then ends: the socket is closed). ``await
    resume(started)`` may give the Session a call goes on from (a Twilio stream that comes back
    after ``SendDtmf``); otherwise the call starts a new one.
    """
    socket = _Socket(websocket)
    state = codec.initial()
    early: list[Any] = []
    started: CallStarted | None = None
    try:
        async with asyncio.timeout(start_timeout):
            while started is None:
                message = await _receive(websocket)
                if message is None:
                    return None
                state, events = codec.decode(state, message)
                for event in events:
                    if isinstance(event, CallStarted) and started is None:
                        started = event
                    else:
                        early.append(event)
        if authorize is not None:
            await _maybe_await(authorize(started))
        kept = {k: v for k, v in started.parameters.items() if k != TOKEN_PARAMETER}
        started = dataclasses.replace(started, parameters=FrozenDict(kept))
    except (ProtocolError, TimeoutError) as exc:
        reason = "no call start in time" if isinstance(exc, TimeoutError) else str(exc)
        _log.warning("%s call refused: %s", codec.name, redact(reason))
        await socket.close(1008)
        return None

    inbound = _Inbound(codec.rate, rate, int(rate * inbound_ms / 1000) if inbound_ms > 20 else 0)
    observer = record(started, codec.rate) if record is not None else None
    inbound.tap = observer
    inbound.put(started)
    for event in early:
        inbound.put(event)
    cell = _Cell(state)
    outbound = _Outbound(codec, cell, socket, lead)
    if started.carrier in _REST_CARRIERS:
        outbound.act = _actor(control or CallControl(), started, socket)
    outbound.tap = observer
    previous = await resume(started) if resume is not None else None
    session = previous if previous is not None else _session_of(started)
    call = Call(Flow(inbound.items()), outbound.consume, session, started)

    async def receive() -> None:
        bind_call(session.call_id, session.caller, session.callee)  # its records name the call
        try:
            while not inbound.ended:
                message = await _receive(websocket)
                if message is None:
                    break
                cell.value, events = codec.decode(cell.value, message)
                for event in events:
                    if isinstance(event, Played):
                        outbound.played(event.name)
                    inbound.put(event)
                if inbound.queue.qsize() > _BACKLOG:  # the pipeline lags: let it run first
                    await asyncio.sleep(0)
        except ProtocolError as exc:
            _log.warning("%s call %s: %s", codec.name, session.call_id, exc)
            inbound.end("error", str(exc))
            await socket.close(1008)
        finally:
            socket.gone = True  # only this side declares the peer gone
            inbound.end("closed" if socket.closing else "dropped")
            outbound.wake()

    result: Any = None
    receiving = asyncio.create_task(receive(), name=f"voicekit receive {session.call_id}")
    running = asyncio.create_task(
        _run_on_call(on_call, call), name=f"voicekit call {session.call_id}"
    )
    try:
        done, _ = await asyncio.wait({receiving, running}, return_when=asyncio.FIRST_COMPLETED)
        if running not in done:  # the caller left: let the pipeline record the call, briefly
            await asyncio.wait({running}, timeout=grace)
        else:
            await socket.close()
    finally:
        for task in (running, receiving):
            task.cancel()
        outcome = await asyncio.gather(running, receiving, return_exceptions=True)
        await socket.close()
        result = outcome[0]
    final = result if isinstance(result, Session) else outbound.session or session
    if observer is not None:
        observer.close(final)
    await _hand_over(final, on_end)
    return final


_REST_CARRIERS = ("twilio", "telnyx", "plivo")


def _actor(
    control: CallControl, started: CallStarted, socket: _Socket
) -> Callable[[Any], Awaitable[str]]:
    async def act(item: Any) -> str:
        return await perform(control, started, item, socket.send)

    return act


async def _hand_over(final: Session, on_end: Callable[[Session], Any] | None) -> None:
    """Give the call's final Session to ``on_end`` (sync or async); its failure is logged.
    Its log records name the call (:mod:`voicekit._logging`)."""
    if on_end is None:
        return
    with call_scope(final.call_id, final.caller, final.callee):
        try:
            await _maybe_await(on_end(final))
        except Exception as exc:
            _log.error("on_end failed for call %s: %s", final.call_id, redact(repr(exc)))


async def _run_on_call(on_call: Callable[[Any], Awaitable[Any]], call: Any) -> Any:
    """Run the user's ``on_call``; a failure ends only this call, logged (redacted). The log
    records of the call, in this task and the tasks it starts, name it (:mod:`voicekit._logging`).
    """
    session = call.session
    with call_scope(session.call_id, session.caller, session.callee):
        try:
            return await on_call(call)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _log.error("call %s failed: %s", session.call_id, redact(repr(exc)))
            return None


