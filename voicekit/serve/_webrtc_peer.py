"""One WebRTC call on an aiortc peer connection, dressed as the WebSocket that
:func:`voicekit.transports.run_call` runs a call on (so the call is ``call.inbound | agent |
call.outbound`` exactly as on ``/ws``, with the same JSON messages).

* In: the microphone's Opus track, decoded after aiortc's jitter buffer, mixed to mono and
  resampled to 16 kHz, becomes the binary audio messages of the ``/ws`` protocol; the data
  channel's text messages (``start``, ``dtmf``, ``stop``) are passed on as they are.
* Out: the agent's audio goes into :class:`Speaker`, the outbound track, which aiortc pulls
  one 20 ms frame at a time; the track keeps real time itself (it sleeps to its own clock,
  like aiortc's ``AudioStreamTrack``) and sends silence when nothing is queued. Display
  messages go over the data channel.
* Played: the server decides what was heard. A ``mark`` waits in the track's queue behind
  the audio before it; when the track has handed that audio to the Opus encoder (at its
  real-time pace), the mark goes to the page over the data channel and a ``played`` comes back
  into the call, so the Session's heard history is what was sent on time. The browser plays
  it one network trip and its jitter buffer (tens of ms) later; a ``played`` from the page is
  ignored (the page's ``start`` is taken with ``"acks": true``).
* ``clear`` (a barge-in): everything queued in the track is dropped at once, its marks
  with it; the page gets ``{"type": "clear", "flushed": samples}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fractions
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from ..transports._resample import StreamResampler

__all__ = ["Peer", "Speaker", "answer"]

_log = logging.getLogger("voicekit.serve")

RATE = 16000
FRAME = RATE // 50  # 20 ms
_TIME_BASE = fractions.Fraction(1, RATE)
_CATCH_UP = 0.5  # a track this late (a stalled loop) restarts its clock rather than burst


@dataclass(frozen=True, slots=True)
class _Mark:
    name: str
    message: str  # the mark message for the page, as the codec encoded it


class Speaker(MediaStreamTrack):
    """The outbound audio track: 16 kHz int16 audio and marks queued by the call, taken out
    one 20 ms frame per ``recv`` at real-time pace. ``on_mark(mark)`` is called when the audio
    before a mark has been sent. ``sent`` counts the agent's samples sent, ``flushed`` the
    samples dropped by each :meth:`clear`."""

    kind = "audio"

    def __init__(self, on_mark: Callable[[_Mark], None]) -> None:
        super().__init__()
        self._queue: deque[npt.NDArray[np.int16] | _Mark] = deque()
        self._offset = 0  # samples of the head array already sent
        self._start: float | None = None
        self._frames = 0
        self._on_mark = on_mark
        self.sent = 0
        self.flushed: list[int] = []

    def play(self, samples: npt.NDArray[np.int16]) -> None:
        if samples.shape[0]:
            self._queue.append(samples)

    def mark(self, mark: _Mark) -> None:
        self._queue.append(mark)

    def queued(self) -> int:
        """Samples waiting to be sent."""
        held = sum(x.shape[0] for x in self._queue if not isinstance(x, _Mark))
        return held - self._offset

    def clear(self) -> int:
        """Drop everything queued (audio and marks) at once; the samples dropped."""
        dropped = self.queued()
        self._queue.clear()
        self._offset = 0
        self.flushed.append(dropped)
        return dropped

    def _marks(self) -> None:
        while self._queue and isinstance(self._queue[0], _Mark):
            mark = self._queue.popleft()
            assert isinstance(mark, _Mark)
            self._on_mark(mark)

    def _take(self) -> npt.NDArray[np.int16]:
        out = np.zeros(FRAME, np.int16)
        filled = 0
        self._marks()  # marks with nothing before them
        while filled < FRAME and self._queue:
            head = self._queue[0]
            if isinstance(head, _Mark):
                self._marks()
                continue
            n = min(FRAME - filled, head.shape[0] - self._offset)
            out[filled : filled + n] = head[self._offset : self._offset + n]
            filled += n
            self._offset += n
            self.sent += n
            if self._offset == head.shape[0]:
                self._queue.popleft()
                self._offset = 0
        self._marks()  # the audio before them is in this frame
        return out

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._start is None or now - (self._start + self._frames * FRAME / RATE) > _CATCH_UP:
            self._start = now - self._frames * FRAME / RATE
        wait = self._start + self._frames * FRAME / RATE - now
        if wait > 0:
            await asyncio.sleep(wait)
        samples = self._take()
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._frames * FRAME
        frame.time_base = _TIME_BASE
        self._frames += 1
        return frame


class _Phase(enum.Enum):
    CONNECTED = 1
    DISCONNECTED = 2


def _mono(frame: AudioFrame) -> npt.NDArray[np.int16]:
    """A decoded frame (any layout, s16) as mono int16 samples."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if channels > 1:
        if frame.format.is_planar:
            data = data.mean(axis=0)
        else:
            data = data.reshape(-1, channels).mean(axis=1)
    return np.asarray(data, np.float64).reshape(-1).round().astype(np.int16)


class Peer:
    """A peer connection as ``run_call`` sees a WebSocket: ``receive()`` gives the data
    channel's text and the microphone's audio as ``/ws`` messages, ``send_text`` /
    ``send_bytes`` go to the data channel and the :class:`Speaker`, ``close()`` closes the
    peer connection."""

    def __init__(self, pc: RTCPeerConnection) -> None:
        self.pc = pc
        self.speaker = Speaker(self._played)
        self.channel: Any = None
        self.started = False
        self.closed = False
        self._phase = _Phase.CONNECTED
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def application_state(self) -> _Phase:
        return self._phase

    # -- in
    def gone(self) -> None:
        """The peer left (channel closed, connection failed or closed, track ended)."""
        if self._phase is _Phase.CONNECTED:
            self._phase = _Phase.DISCONNECTED
            self._queue.put_nowait({"type": "websocket.disconnect"})

    def attach(self, channel: Any) -> None:
        """The page's data channel."""
        self.channel = channel
        channel.on("message", self._message)
        channel.on("close", self.gone)

    def _message(self, message: Any) -> None:
        if not isinstance(message, str):
            _log.warning("webrtc: binary data channel message ignored (audio goes on the track)")
            return
        with contextlib.suppress(ValueError):
            data = json.loads(message)
            if isinstance(data, dict) and data.get("type") == "played":
                return  # the server decides what was played (see the module docstring)
            if isinstance(data, dict) and data.get("type") == "start" and not self.started:
                message = json.dumps({**data, "acks": True})
                self.started = True
        self._queue.put_nowait({"type": "websocket.receive", "text": message})

    def listen(self, track: Any) -> None:
        """The microphone's track: its audio goes to the call once it has started."""
        task = asyncio.create_task(self._pump(track), name="voicekit webrtc inbound")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pump(self, track: Any) -> None:
        resampler: StreamResampler | None = None
        try:
            while True:
                frame = await track.recv()
                if not self.started or self._phase is not _Phase.CONNECTED:
                    continue  # before the call's start message: not the call's audio yet
                if resampler is None or resampler.in_rate != frame.sample_rate:
                    resampler = StreamResampler(frame.sample_rate, RATE)
                out = resampler.push(_mono(frame))
                if out.shape[0]:
                    self._queue.put_nowait({"type": "websocket.receive",
                                            "bytes": out.astype("<i2").tobytes()})
        except MediaStreamError:
            self.gone()

    async def receive(self) -> dict[str, Any]:
        return await self._queue.get()

    # -- out
    def _send(self, text: str) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(text)

    def _played(self, mark: _Mark) -> None:
        self._send(mark.message)
        self._queue.put_nowait({"type": "websocket.receive",
                                "text": json.dumps({"type": "played", "name": mark.name})})

    async def send_text(self, text: str) -> None:
        data = json.loads(text)
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "mark":
            self.speaker.mark(_Mark(str(data.get("name", "")), text))
            return
        if kind == "clear":
            text = json.dumps({"type": "clear", "flushed": self.speaker.clear()})
        self._send(text)

    async def send_bytes(self, data: bytes) -> None:
        self.speaker.play(np.frombuffer(data, "<i2").astype(np.int16))

    async def close(self, code: int = 1000) -> None:
        """Close the peer connection and stop the inbound task."""
        if self.closed:
            return
        self.closed = True
        self._phase = _Phase.DISCONNECTED
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.speaker.stop()
        await self.pc.close()


def _ice_servers(servers: list[dict[str, str]]) -> list[RTCIceServer]:
    return [RTCIceServer(urls=s["urls"], username=s.get("username"),
                         credential=s.get("credential")) for s in servers]


async def answer(sdp: str, run: Callable[[Peer], Awaitable[Any]], servers: list[dict[str, str]],
                 peers: Any) -> str:
    """Answer the page's offer: a peer connection (host candidates only unless ``servers``
    names STUN/TURN servers) whose call ``run(peer)`` runs as a task in ``peers``; the answer's
    SDP. ``peers`` is the app's :class:`~voicekit.serve._webrtc.Peers`. A ValueError names what
    aiortc refused."""
    # iceServers=[] explicitly: aiortc's default would contact a public STUN server
    pc = RTCPeerConnection(RTCConfiguration(iceServers=_ice_servers(servers)))
    peer = Peer(pc)

    @pc.on("track")  # type: ignore[untyped-decorator,unused-ignore]
    def on_track(track: Any) -> None:
        if track.kind == "audio":
            peer.listen(track)

    @pc.on("datachannel")  # type: ignore[untyped-decorator,unused-ignore]
    def on_channel(channel: Any) -> None:
        peer.attach(channel)

    @pc.on("connectionstatechange")  # type: ignore[untyped-decorator,unused-ignore]
    def on_state() -> None:
        if pc.connectionState in ("failed", "closed"):
            peer.gone()

    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs
                if c.mimeType.lower() == "audio/opus"]
        for transceiver in pc.getTransceivers():
            if transceiver.kind == "audio":
                transceiver.setCodecPreferences(opus)
        pc.addTrack(peer.speaker)
        await pc.setLocalDescription(await pc.createAnswer())
    except Exception as exc:
        await peer.close()
        raise ValueError(str(exc) or type(exc).__name__) from exc
    peers.start(peer, run)
    return str(pc.localDescription.sdp)
