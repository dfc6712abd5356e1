"""One AudioHook session on an accepted WebSocket: :func:`run_session`.

It answers the protocol itself (``opened``, ``pong``, ``closed``), hands the user's ``on_call``
an :class:`AudioHookCall` once ``open`` arrives (never for a connection probe), and ends the
session cleanly in every case:

* the client sends ``close``: we answer ``closed`` (with the output variables set), the
  inbound stream ends with ``CallEnded("hangup")``, the client closes the socket;
* ``on_call`` returns first (the agent is done): we send ``disconnect`` ``completed`` with the
  output variables, answer the client's ``close``, and close the socket;
* the client breaks a rule: we send ``disconnect`` ``error`` with an ``info`` naming the rule,
  answer the client's ``close`` (or give up after ``close_timeout``), and close;
* the socket drops: the pipeline gets ``grace`` seconds, then it is cancelled.

Every server text message goes out in ``seq`` order (one lock for encode-and-send); no task
or socket is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from .._errors import ProtocolError
from .._logging import bind_call
from .._secrets import redact
from ..events import CallEnded, CallStarted, HangUp, Interrupted, Mark, Played, TransferCall
from ..ops import Flow
from ..session import Session
from ._codec import Codec, WireMessage
from ._connection import (
    _Cell,
    _hand_over,
    _Inbound,
    _Outbound,
    _receive,
    _run_on_call,
    _Socket,
)
from .audiohook import AudioHookState, Disconnect, Outgoing, RateLimited, disconnect

__all__ = ["AudioHookCall", "run_session"]

_log = logging.getLogger("voicekit.transports")


class _OrderedSocket(_Socket):
    """A socket whose sends keep their call order (so server ``seq`` values go out in
    order), and which holds sends back while the client rate-limits us."""

    __slots__ = ("hold_until", "lock")

    def __init__(self, ws: Any) -> None:
        super().__init__(ws)
        self.lock = asyncio.Lock()
        self.hold_until = 0.0

    async def send(self, message: WireMessage) -> bool:
        async with self.lock:
            wait = self.hold_until - asyncio.get_running_loop().time()
            if wait > 0:
                await asyncio.sleep(wait)
            return await _Socket.send(self, message)


class _Packets(_Outbound):
    """The outbound side, in whole packets: never a short frame because the line runs dry (a
    sentence's end and the reply's end still go out, padded with silence by the codec).

    Genesys acknowledges no audio, and plays what it gets in real time: a
    :class:`~voicekit.Mark` comes back inbound as :class:`~voicekit.Played` when the audio
    before it has played by our send clock (``played`` stamps it with the stream's time); an
    ``Interrupted`` drops the marks still pending."""

    __slots__ = ("_marks", "_played")

    def __init__(self, codec: Codec[Any], state: _Cell, socket: _Socket, lead: float,
                 played: Callable[[Any], None]) -> None:
        super().__init__(codec, state, socket, lead)
        self._played = played
        self._marks: list[asyncio.TimerHandle] = []

    def _starving(self) -> bool:
        return False

    async def _emit(self, item: Any) -> None:
        if isinstance(item, Mark):
            loop = asyncio.get_running_loop()
            at = max(self._play_end, loop.time())
            self._marks.append(loop.call_at(at, self._played, Played(item.name, self.sent_audio)))
            return
        if isinstance(item, Interrupted):
            self.cancel_marks()
        await super()._emit(item)

    def cancel_marks(self) -> None:
        for handle in self._marks:
            handle.cancel()
        self._marks.clear()


@dataclass(frozen=True, slots=True)
class AudioHookCall:
    """One AudioHook session, as :func:`run_session` hands it to ``on_call``.

    ``inbound``: ``CallStarted``, the caller's audio (``external``) at the pipeline rate,
    :class:`~voicekit.transports.audiohook.ChannelAudio` for the ``internal`` channel (8 kHz),
    ``Dtmf``, ``Played`` (``playback_started``/``playback_completed``), last ``CallEnded``.
    ``outbound``: consumes the agent's output (audio sent as 1,600-byte PCMU packets, an
    ``Interrupted`` becomes a ``barge_in`` event; ``EventEntities``, ``Pause``, ``Resume``,
    ``SetOutputVariables`` and ``Disconnect`` items are sent as such). ``send(item)`` sends
    one such item now; ``disconnect(**output_variables)`` ends the session (``completed``).
    ``mode`` is ``"bot"`` or ``"monitor"``.
    """

    inbound: Flow[Any]
    outbound: Callable[[AsyncIterable[Any]], Awaitable[None]]
    session: Session
    started: CallStarted
    mode: str
    send: Callable[[Any], Awaitable[None]]

    async def disconnect(self, reason: str = "completed", info: str = "",
                         **output_variables: str) -> None:
        """End the session from our side with these output variables (strings)."""
        await self.send(Disconnect(reason, info, output_variables))

    def __repr__(self) -> str:
        return f"AudioHookCall({self.session!r}, mode={self.mode!r})"


class _Protocol:
    """The shared protocol state and its one send path."""

    __slots__ = ("cell", "closed", "codec", "socket")

    def __init__(self, codec: Codec[AudioHookState], socket: _OrderedSocket) -> None:
        self.codec = codec
        self.cell = _Cell(codec.initial())
        self.socket = socket
        self.closed = asyncio.Event()  # we sent `closed`: the client closes the socket next

    @property
    def state(self) -> AudioHookState:
        value: AudioHookState = self.cell.value
        return value

    async def send(self, item: Any) -> None:
        if not self.socket.usable():
            return
        self.cell.value, messages = self.codec.encode(self.cell.value, item)
        for message in messages:
            await self.socket.send(message)

    async def handle(self, message: WireMessage, deliver: Callable[[Any], None]) -> None:
        """Decode one message: replies go out, rate limits hold the socket, the rest is
        delivered. A broken rule is answered with ``disconnect`` ``error``."""
        try:
            self.cell.value, events = self.codec.decode(self.cell.value, message)
        except ProtocolError as exc:
            info = str(exc).removeprefix("audiohook: ")
            _log.warning("audiohook session %s: %s", self.state.session_id, redact(info))
            await self.fail(info)
            raise
        for event in events:
            if isinstance(event, Outgoing):
                await self.socket.send(event.message)
            elif isinstance(event, RateLimited):
                loop = asyncio.get_running_loop()
                self.socket.hold_until = max(self.socket.hold_until,
                                             loop.time() + event.retry_after)
            else:
                deliver(event)
        if self.state.phase == "closed":
            self.closed.set()

    async def fail(self, info: str) -> None:
        if self.state.phase == "closed":
            return
        self.cell.value, messages = disconnect(self.cell.value, "error", info)
        for text in messages:
            await self.socket.send(text)


def _actor(protocol: _Protocol) -> Callable[[Any], Awaitable[str]]:
    """Call control on AudioHook: a ``HangUp`` is a ``disconnect`` (``completed``) with its
    variables as ``outputVariables``; a ``TransferCall`` the same with ``action: transfer``
    and ``target`` (the Architect flow does the transfer); no DTMF can be sent."""

    async def act(item: Any) -> str:
        if isinstance(item, HangUp):
            variables = dict(item.variables)
        elif isinstance(item, TransferCall):
            variables = {**item.variables, "action": "transfer", "target": item.to}
        else:
            return "unsupported"
        await protocol.send(Disconnect("completed", "", variables))
        return "done"

    return act


async def _finish(protocol: _Protocol, websocket: Any, close_timeout: float) -> None:
    """After our ``disconnect``: answer the client's ``close`` (any order problems forgiven
    now), then close the socket; give up after ``close_timeout``."""
    with contextlib.suppress(TimeoutError, ProtocolError):
        async with asyncio.timeout(close_timeout):
            while protocol.state.phase != "closed" and protocol.socket.usable():
                message = await _receive(websocket)
                if message is None:
                    protocol.socket.gone = True
                    break
                if isinstance(message, str) and protocol.state.phase == "disconnecting":
                    protocol.cell.value, message = _forgive(protocol.state, message)
                await protocol.handle(message, lambda event: None)
    await protocol.socket.close()


def _forgive(state: AudioHookState, message: str) -> tuple[AudioHookState, str]:
    """A ``close`` after our ``disconnect`` is taken whatever its order problems: its own
    ``seq`` becomes the next expected one (so ``closed`` carries it as ``clientseq``), its
    ``serverseq`` and ``id`` are taken as ours."""
    try:
        data = json.loads(message)
    except ValueError:
        return state, message
    if not isinstance(data, dict) or data.get("type") != "close":
        return state, message
    seq = _num(data.get("seq"))
    if seq > 0:
        state = replace(state, clientseq=seq - 1)
    data.update(seq=state.clientseq + 1, id=state.session_id,
                serverseq=min(_num(data.get("serverseq")), state.seq))
    if not isinstance(data.get("parameters"), dict):
        data["parameters"] = {}
    return state, json.dumps(data)


def _num(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


async def run_session(
    websocket: Any,
    codec: Codec[AudioHookState],
    on_call: Callable[[AudioHookCall], Awaitable[Any]],
    *,
    rate: int = 16000,
    lead: float = 0.4,
    on_end: Callable[[Session], Any] | None = None,
    open_timeout: float = 10.0,
    close_timeout: float = 5.0,
    grace: float = 0.5,
    output_variables: Mapping[str, str] | None = None,
    resume: Callable[[CallStarted], Awaitable[Session | None]] | None = None,
    keep: Callable[[str, Session], None] | None = None,
) -> Session | None:
    """Run one AudioHook session on an accepted WebSocket until it ends; return the final
    Session (None for a probe, a refused session or a peer that left before ``open``).

    ``output_variables`` are sent with ``disconnect`` when ``on_call`` returns first (default
    ``{"action": "finished"}``). See the module docstring for the lifetime rules.

    Reconnects: ``await resume(started)`` may give the Session of the session this one continues
    (``open``'s ``continuedSessions``), which the call then goes on from; ``keep(session_id,
    final)`` is handed the final Session of a session that may be continued later (its socket
    dropped, or the client closed it with reason ``reconnect``). The selected language is in
    the Session's ``memory["language"]`` and in ``started.parameters["language"]``.
    """
    socket = _OrderedSocket(websocket)
    protocol = _Protocol(codec, socket)
    early: list[Any] = []
    started: CallStarted | None = None

    def collect(event: Any) -> None:
        nonlocal started
        if isinstance(event, CallStarted) and started is None:
            started = event
        else:
            early.append(event)

    try:
        async with asyncio.timeout(open_timeout):
            while started is None and protocol.state.phase != "closed":
                message = await _receive(websocket)
                if message is None:
                    return None
                await protocol.handle(message, collect)
    except TimeoutError:
        await protocol.fail("no 'open' in time")
        await _finish(protocol, websocket, close_timeout)
        return None
    except ProtocolError:
        await _finish(protocol, websocket, close_timeout)
        return None
    if started is None:  # a probe (or a close before open): answered, nothing to run
        await _finish(protocol, websocket, close_timeout)
        return None

    inbound = _Inbound(codec.rate, rate)
    inbound.put(started)
    for event in early:
        inbound.put(event)
    def played(event: Played) -> None:
        # on the stream's clock (where the caller's audio is), as the carriers' acks are: the
        # send clock's seconds of audio lag it by every pause before the agent spoke
        inbound.put(replace(event, t=protocol.state.samples / codec.rate))

    outbound = _Packets(codec, protocol.cell, socket, lead, played)
    outbound.act = _actor(protocol)
    language = {"language": started.parameters["language"]} \
        if started.parameters.get("language") else {}
    previous = await resume(started) if resume is not None else None
    if previous is not None:
        session = previous.remember(**language) if language else previous
    else:
        session = Session(call_id=started.call_id, caller=started.caller or None,
                          callee=started.callee or None, memory=language)
    call = AudioHookCall(Flow(inbound.items()), outbound.consume, session, started,
                         protocol.state.mode, protocol.send)
    broken = False
    reconnecting = False

    def deliver(event: Any) -> None:
        nonlocal reconnecting
        if isinstance(event, CallEnded) and event.detail == "reconnect":
            reconnecting = True  # the client goes on in a new session that continues this one
        inbound.put(event)

    async def receive() -> None:
        nonlocal broken
        bind_call(session.call_id, session.caller, session.callee)  # its records name the call
        try:
            while not inbound.ended and protocol.state.phase != "closed":
                message = await _receive(websocket)
                if message is None:
                    socket.gone = True  # the peer left without close
                    break
                await protocol.handle(message, deliver)
                if inbound.queue.qsize() > 4:
                    await asyncio.sleep(0)
        except ProtocolError as exc:
            broken = True
            inbound.end("error", str(exc))
        finally:
            if protocol.state.phase == "closed":
                inbound.end("hangup")
            elif socket.gone:
                inbound.end("dropped")
            elif not broken:
                inbound.end("closed")  # we ended it (the agent finished)

    receiving = asyncio.create_task(receive(), name=f"voicekit receive {session.call_id}")
    running = asyncio.create_task(
        _run_on_call(on_call, call), name=f"voicekit call {session.call_id}"
    )
    result: Any = None
    try:
        done, _ = await asyncio.wait({receiving, running}, return_when=asyncio.FIRST_COMPLETED)
        if running not in done:  # the client closed or left: let the pipeline finish briefly
            await asyncio.wait({running}, timeout=grace)
    finally:
        for task in (running, receiving):
            task.cancel()
        outcome = await asyncio.gather(running, receiving, return_exceptions=True)
        outbound.cancel_marks()
        result = outcome[0]
        if socket.usable() and protocol.state.phase in ("open", "paused"):
            variables = dict(output_variables or {"action": "finished"})
            await protocol.send(Disconnect("completed", "", variables))
        if socket.usable():
            await _finish(protocol, websocket, close_timeout)
        await socket.close()
    final = result if isinstance(result, Session) else outbound.session or session
    if keep is not None and (reconnecting or (socket.gone and not broken)):
        keep(protocol.state.session_id, final)
    await _hand_over(final, on_end)
    return final
