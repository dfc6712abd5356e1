"""Call recording: one stereo WAV (caller left, agent right) and one JSON transcript per call.

Opt-in, never on by default: ``run_call(..., record=recorder("calls/"))``,
``vk.serve.app(..., record_dir="calls/")`` or ``voicekit serve --record calls/``. The files are
named after the call id (``calls/CA123.wav``, ``calls/CA123.json``), never after a phone number,
and the transcript holds the caller's hash only.

**One clock.** Both channels are placed on the event loop's clock, from the moment the call
started. The caller's audio goes where its stream time says (the carrier's timestamp), anchored
by the earliest arrival seen in the first second (so one late frame does not shift the rest);
the agent's audio goes where the transport scheduled it to *play*: outbound audio is sent
``lead`` seconds ahead of real time, so a frame plays when the carrier's queue reaches it, not
when it was sent. **Only what was heard.** A ``clear`` (barge-in) drops what the carrier still
held: the agent's channel is cut at the instant of the clear, so the audio sent ahead and
discarded is not in the file. Placement is exact to the sample on that clock; what it cannot
know is the network's one-way delay to the carrier (a few ms on a good line).

The transcript (``.json``) lists, in time order (seconds from the call's start): the call's
start and end, the caller's turns (``user_started``, ``user`` with the text), the agent's
sentences as heard (``agent``: start, end, the mark that closed it, ``interrupted`` when a
clear cut it, ``played`` when the carrier acknowledged it), the marks sent and acknowledged, each
``clear`` with the words heard so far, keypad presses (not the digits: they may be a card
number), tool calls (name only) and hang-up/transfer requests (not the number). ``agent_audio``
holds the spans the agent's channel is heard in.

The pure pieces are plain functions (:func:`read_recording` reads one back); the recording
itself is the observer :class:`CallRecording`, one per call, fed by the connection layer.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import logging
import re
import wave
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from ._errors import ConfigError
from .events import (
    AudioChunk,
    CallEnded,
    CallStarted,
    Dtmf,
    HangUp,
    Interrupted,
    Mark,
    Played,
    SessionUpdated,
    ToolCall,
    TransferCall,
    TurnEnded,
    TurnStarted,
)
from .session import Session, hash_caller

__all__ = [
    "CallRecording", "LocalRecording", "Recorder", "Recording", "read_recording", "recorder",
]

_log = logging.getLogger("voicekit.recording")

ANCHOR_SECS = 1.0
"""The caller's audio is anchored by the earliest arrival among its first second."""
COMMIT_LAG = 2.0
"""Audio older than this (on the call's clock) is final: it is written out and freed."""
_SNAP = 2  # samples: a chunk this close to the end of the previous one continues it
_SPAN_GAP = 0.03  # seconds: agent audio closer than this to the previous span extends it
_INF = float("inf")

Clock = Callable[[], float]


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


def _safe_name(call_id: str) -> str:
    """A file name from a call id: letters, digits, ``.``, ``_`` and ``-`` only.

    >>> _safe_name("CA12/../x y")
    'CA12_.._x_y'
    """
    name = re.sub(r"[^A-Za-z0-9._-]", "_", call_id).strip(".") or "call"
    return name[:120]


class _Tape:
    """Two int16 channels from absolute sample ``base`` on; what is older was written out."""

    __slots__ = ("base", "data", "late", "top")

    def __init__(self, rate: int) -> None:
        self.base = 0
        self.top = 0  # one past the last sample written (absolute)
        self.data: npt.NDArray[np.int16] = np.zeros((rate * 4, 2), dtype=np.int16)
        self.late = 0  # samples that came after their place was written out (dropped)

    def write(self, channel: int, pos: int, samples: npt.NDArray[np.int16]) -> None:
        if pos < self.base:
            cut = min(self.base - pos, samples.shape[0])
            self.late += cut
            samples, pos = samples[cut:], self.base
        if not samples.shape[0]:
            return
        start = pos - self.base
        end = start + samples.shape[0]
        if end > self.data.shape[0]:
            grown = np.zeros((max(end, 2 * self.data.shape[0]), 2), dtype=np.int16)
            grown[: self.data.shape[0]] = self.data
            self.data = grown
        self.data[start:end, channel] = samples
        self.top = max(self.top, pos + samples.shape[0])

    def silence(self, channel: int, start: int, stop: int) -> None:
        a, b = max(start, self.base) - self.base, min(stop, self.top) - self.base
        if b > a:
            self.data[a:b, channel] = 0

    def take(self, upto: int) -> npt.NDArray[np.int16]:
        """The rows from ``base`` to ``upto`` (absolute), which become final."""
        upto = min(upto, self.top)
        n = upto - self.base
        if n <= 0:
            return np.zeros((0, 2), dtype=np.int16)
        rows = self.data[:n].copy()
        rest = self.top - upto
        self.data[:rest] = self.data[n : n + rest]
        self.data[rest : rest + n] = 0
        self.base = upto
        return rows


class CallRecording:
    """The recording of one call, fed by the connection layer (see
    :func:`voicekit.transports.run_call`'s ``record``):

    * ``inbound(item)`` — each item from the carrier as it arrives (the caller's audio at the
      wire rate, ``Played``, ``Dtmf``, ``CallEnded``);
    * ``played(samples, start)`` — a frame of the agent's audio sent at the wire rate, which the
      carrier plays from loop time ``start``;
    * ``outbound(item, play_end)`` — each item of the agent's output once handled (a ``Mark``
      after its audio was sent, an ``Interrupted`` after the clear went out); ``play_end`` is
      when the carrier will have played everything sent so far;
    * ``close(session)`` — the call is over: write the files.

    Writing never fails a call: an error is logged once and the recording stops.
    """

    def __init__(
        self,
        wav_path: Path,
        json_path: Path,
        started: CallStarted,
        rate: int,
        clock: Clock | None = None,
    ) -> None:
        self.wav_path, self.json_path, self.rate = wav_path, json_path, rate
        self._clock = clock or _loop_time
        self.origin = self._clock()
        self._wall = _dt.datetime.now(_dt.UTC)
        self._started = started
        self._tape = _Tape(rate)
        self._file: BinaryIO | None = None
        self._out: wave.Wave_write | None = None
        self._failed = False
        self._closed = False
        self._anchor: float | None = None  # loop time of the caller's stream time 0
        self._first_t: float | None = None
        self._first_arrival = 0.0
        self._fixed = False
        self._pending: list[tuple[float, npt.NDArray[np.int16]]] = []
        self._caller_end = 0  # absolute sample after the caller's last chunk
        self._agent_end = 0
        self._committed_at = 0.0  # call time of the last write-out
        self._sentence_start: float | None = None
        self._sentences: list[dict[str, Any]] = []
        self._spans: list[list[float]] = []
        self._events: list[dict[str, Any]] = [
            {"t": 0.0, "type": "call_started", "carrier": started.carrier}
        ]
        self._ended_at: float | None = None
        self._lag = COMMIT_LAG  # inf: everything stays in memory until close (local runs)

    # -- clock ---------------------------------------------------------------------------------

    def _now(self) -> float:
        return self._clock() - self.origin

    def _at(self, loop_time: float) -> float:
        return loop_time - self.origin

    def _index(self, t: float) -> int:
        return round(t * self.rate)

    def _stream(self, t: float) -> float:
        """Call time of stream time ``t`` on the inbound stream (the caller's clock)."""
        return self._at(self._anchor + t) if self._anchor is not None else self._now()

    def _event(self, t: float, kind: str, **detail: Any) -> None:
        self._events.append({"t": round(max(t, 0.0), 4), "type": kind, **detail})

    # -- the caller ----------------------------------------------------------------------------

    def inbound(self, item: Any) -> None:
        """One item from the carrier, as it arrives."""
        if self._closed or self._failed:
            return
        now = self._now()
        if isinstance(item, AudioChunk):
            self._caller(item)
        elif isinstance(item, Played):
            self._event(now, "played", name=item.name)
            for sentence in self._sentences:
                if sentence.get("mark") == item.name and not sentence.get("interrupted"):
                    sentence["played"] = round(now, 4)
        elif isinstance(item, Dtmf):
            self._event(now, "dtmf")  # not the digit: it may be part of a card number
        elif isinstance(item, CallEnded):
            self._end(now, item.reason)
        self._commit()

    def _caller(self, chunk: AudioChunk) -> None:
        if chunk.rate != self.rate:
            if not self._failed:
                _log.error("recording %s: caller audio at %d Hz, not %d Hz: recording stops",
                           self.wav_path.name, chunk.rate, self.rate)
            self._failed = True
            return
        arrival = self._clock()
        if self._first_t is None:
            self._first_t, self._first_arrival = chunk.t, arrival
        if not self._fixed:
            guess = arrival - chunk.t
            self._anchor = guess if self._anchor is None else min(self._anchor, guess)
            self._pending.append((chunk.t, chunk.samples))
            if chunk.end - self._first_t >= ANCHOR_SECS or arrival - self._first_arrival > 2:
                self._fix_anchor()
            return
        self._place_caller(chunk.t, chunk.samples)

    def _fix_anchor(self) -> None:
        self._fixed = True
        pending, self._pending = self._pending, []
        for t, samples in pending:
            self._place_caller(t, samples)

    def _place_caller(self, t: float, samples: npt.NDArray[np.int16]) -> None:
        pos = self._index(self._stream(t))
        if abs(pos - self._caller_end) <= _SNAP:
            pos = self._caller_end
        pos = max(pos, 0)
        self._tape.write(0, pos, samples)
        self._caller_end = pos + samples.shape[0]

    # -- the agent -----------------------------------------------------------------------------

    def played(self, samples: npt.NDArray[np.int16], start: float) -> None:
        """A frame of the agent's audio (at the recording's rate), played from ``start``."""
        if self._closed or self._failed:
            return
        t = self._at(start)
        pos = max(self._index(t), 0)
        if abs(pos - self._agent_end) <= _SNAP:
            pos = self._agent_end
        self._tape.write(1, pos, samples)
        self._agent_end = pos + samples.shape[0]
        begin, end = pos / self.rate, self._agent_end / self.rate
        if self._sentence_start is None:
            self._sentence_start = begin
        if self._spans and begin - self._spans[-1][1] < _SPAN_GAP:
            self._spans[-1][1] = end
        else:
            self._spans.append([begin, end])
        self._commit()

    def outbound(self, item: Any, play_end: float) -> None:
        """One item of the agent's output, after the transport handled it."""
        if self._closed or self._failed:
            return
        now = self._now()
        if isinstance(item, Mark):
            end = max(self._at(play_end), now)
            self._event(end, "mark", name=item.name, sent=round(now, 4))
            start = self._sentence_start if self._sentence_start is not None else end
            self._sentences.append(
                {"type": "agent", "text": item.text, "start": start, "end": end,
                 "mark": item.name}
            )
            self._sentence_start = None
        elif isinstance(item, Interrupted):
            self._clear(now, item.heard)
        elif isinstance(item, TurnStarted):
            self._event(self._stream(item.t), "user_started")
        elif isinstance(item, TurnEnded):
            self._event(self._stream(item.t), "user", text=item.text)
        elif isinstance(item, ToolCall):
            self._event(now, "tool_call", name=item.name)
        elif isinstance(item, HangUp):
            self._event(max(self._at(play_end), now), "hang_up", reason=item.reason)
        elif isinstance(item, TransferCall):
            self._event(max(self._at(play_end), now), "transfer")  # not the number
        elif isinstance(item, CallEnded):
            self._end(now, item.reason)
        self._commit()

    def _clear(self, now: float, heard: str) -> None:
        """The carrier dropped what it held: nothing the agent sent plays after ``now``."""
        self._cut(now)
        self._event(now, "clear", heard=heard)

    def _cut(self, now: float) -> None:
        """Nothing of the agent's audio plays after ``now`` (a clear, or the call's end)."""
        cut = self._index(now)
        self._tape.silence(1, cut, self._agent_end)
        self._agent_end = min(self._agent_end, cut)
        self._spans = [[a, min(b, now)] for a, b in self._spans if a < now]
        kept = []
        for sentence in self._sentences:
            if sentence["start"] >= now and sentence["end"] > now:
                continue  # queued, never heard
            if sentence["end"] > now:
                sentence["end"], sentence["interrupted"] = now, True
                sentence.pop("played", None)
            kept.append(sentence)
        self._sentences = kept
        self._sentence_start = None
        self._tape.top = max(self._tape.base, self._caller_end, self._agent_end)
        limit = round(now, 4)
        for event in self._events:
            if event["t"] <= limit:
                continue
            if event["type"] == "mark":  # its audio never played: placed when it was sent
                event["t"], event["dropped"] = min(event["sent"], limit), True
            elif event["type"] in ("hang_up", "transfer"):
                event["t"] = limit

    def _end(self, now: float, reason: str) -> None:
        if self._ended_at is None:
            self._ended_at = now
            self._event(now, "call_ended", reason=reason)

    # -- the files -----------------------------------------------------------------------------

    def _commit(self, final: bool = False) -> None:
        """Write out what can no longer change (older than COMMIT_LAG), or everything."""
        if self._failed:
            return
        now = self._now()
        if not final and (now - self._committed_at < 1.0 or self._pending or self._lag == _INF):
            return
        self._committed_at = now
        upto = self._tape.top if final else self._index(now - self._lag)
        rows = self._tape.take(upto)
        if not rows.shape[0] and not final:
            return
        try:
            if self._out is None:
                self._file = open(self.wav_path, "wb")  # noqa: SIM115 - open for the call
                self._out = wave.open(self._file, "wb")  # noqa: SIM115 - closed in close()
                self._out.setnchannels(2)
                self._out.setsampwidth(2)
                self._out.setframerate(self.rate)
            self._out.writeframes(rows.astype("<i2").tobytes())
        except OSError as exc:
            self._failed = True
            _log.error("recording %s failed: %s", self.wav_path.name, exc)

    def close(self, session: Session | None = None) -> Recording | None:
        """The call is over: write the rest of the WAV and the transcript. Returns the
        :class:`Recording` written (None when writing failed)."""
        if self._closed:
            return None
        if self._pending:
            self._fix_anchor()
        self._end(self._now(), "closed")
        # what was still queued when the call ended was never heard
        self._cut(self._ended_at if self._ended_at is not None else self._now())
        self._closed = True
        self._commit(final=True)
        if self._out is not None and self._file is not None:
            try:
                self._out.close()  # patches the header's lengths
                self._file.close()
            except OSError as exc:
                self._failed = True
                _log.error("recording %s failed: %s", self.wav_path.name, exc)
        if self._failed:
            return None
        info = self._transcript(session)
        try:
            self.json_path.write_text(json.dumps(info, indent=1, ensure_ascii=False) + "\n")
        except OSError as exc:
            _log.error("recording %s failed: %s", self.json_path.name, exc)
            return None
        return Recording(self.wav_path, self.json_path, info)

    def _events_end(self) -> float:
        ended = [e["t"] for e in self._events if e["type"] == "call_ended"]
        return ended[0] if ended else float("inf")

    def _transcript(self, session: Session | None) -> dict[str, Any]:
        sentences = [
            {**s, "start": round(s["start"], 4), "end": round(s["end"], 4),
             "t": round(s["start"], 4)}
            for s in self._sentences
        ]
        end = self._events_end()
        for event in self._events:  # nothing happens after the call's end
            event["t"] = min(event["t"], end)
        events = sorted(self._events + sentences,
                        key=lambda e: (e["t"], e["type"] == "call_ended"))
        caller = session.caller_hash if session is not None else hash_caller(
            self._started.caller or None)
        return {
            "call_id": session.call_id if session is not None else self._started.call_id,
            "carrier": self._started.carrier,
            "caller_hash": caller,
            "started_at": self._wall.isoformat(timespec="milliseconds"),
            "rate": self.rate,
            "channels": ["caller", "agent"],
            "duration": round(self._tape.base / self.rate, 4),
            "agent_audio": [[round(a, 4), round(b, 4)] for a, b in self._spans if b > a],
            "late_samples": self._tape.late,
            "events": events,
        }


@dataclass(frozen=True, slots=True)
class Recorder:
    """Records every call into ``directory``: give it to
    :func:`voicekit.transports.run_call` as ``record=`` (``vk.serve.app(record_dir=...)`` does
    it for you). Calling it starts one call's :class:`CallRecording`."""

    directory: Path

    def local(self, call_id: str = "local", *, rate: int = 16000) -> LocalRecording:
        """Record a run without a carrier (a script, a notebook): see :class:`LocalRecording`.

        >>> import tempfile, voicekit as vk
        >>> rec = vk.recorder(tempfile.mkdtemp()).local("demo-1")
        >>> flow = [vk.AudioChunk(np.zeros(1600, np.int16), 16000)] | rec.caller | rec.agent
        >>> _ = asyncio.run(vk.collect(flow))
        >>> rec.result.wav.name, rec.result.samples()[2]
        ('demo-1.wav', 16000)
        """
        return LocalRecording(self, call_id, rate)

    def paths(self, call_id: str) -> tuple[Path, Path]:
        """The WAV and JSON paths for ``call_id`` (a free name: ``-2``, ``-3``… when taken)."""
        stem = _safe_name(call_id)
        for n in range(1, 10_000):
            name = stem if n == 1 else f"{stem}-{n}"
            wav, js = self.directory / f"{name}.wav", self.directory / f"{name}.json"
            if not wav.exists() and not js.exists():
                return wav, js
        raise ConfigError(f"recording: no free file name for call {call_id!r} in "
                          f"{self.directory}")

    def __call__(
        self, started: CallStarted, rate: int, clock: Clock | None = None
    ) -> CallRecording:
        wav, js = self.paths(started.call_id)
        recording = CallRecording(wav, js, started, rate, clock)
        try:
            wav.touch()  # claim the name (two calls with one id)
        except OSError as exc:  # the call goes on, unrecorded
            _log.error("recording %s failed: %s", wav.name, exc)
            recording._failed = True
        return recording


class _Manual:
    """A clock a local recording moves by hand, to stream time."""

    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class LocalRecording:
    """A call run without a carrier, recorded on stream time: put ``caller`` after the caller's
    audio and ``agent`` after the agent (``source | rec.caller | bot | rec.agent``). Both
    channels are resampled to ``rate``; the agent's audio goes where its stamps (``t``) put it,
    cut at each ``Interrupted`` (its ``t``: what a real-time player such as
    :func:`voicekit.audio.paced` would have played). Every audio chunk after the agent counts
    as the agent's (:func:`voicekit.voice_agent` does not pass the caller's on). The files are
    written when the agent's stream ends; ``result`` is then the :class:`Recording`."""

    def __init__(self, recorder: Recorder, call_id: str, rate: int) -> None:
        from .ops import Stage

        self.rate = rate
        self._clock = _Manual()
        self._recording = recorder(CallStarted(call_id, carrier="local"), rate, self._clock)
        self._recording._anchor, self._recording._fixed = 0.0, True  # stream time is the clock
        self._recording._lag = _INF  # the two stages run apart: write out only at the end
        self._resamplers: dict[tuple[str, int], Any] = {}
        self._session: Session | None = None
        self.result: Recording | None = None
        self.caller: Stage[Any, Any] = Stage.of(self._caller, "record_caller")
        self.agent: Stage[Any, Any] = Stage.of(self._agent, "record_agent")

    def _resampled(self, side: str, chunk: AudioChunk) -> npt.NDArray[np.int16]:
        from .transports._resample import StreamResampler

        key = (side, chunk.rate)
        if key not in self._resamplers:
            self._resamplers[key] = StreamResampler(chunk.rate, self.rate)
        out: npt.NDArray[np.int16] = self._resamplers[key].push(chunk.samples)
        return out

    async def _caller(self, source: Any) -> Any:
        async for item in source:
            if isinstance(item, AudioChunk):
                self._clock.now = item.t
                self._recording.inbound(AudioChunk(self._resampled("caller", item), self.rate,
                                                   item.t))
            elif isinstance(item, Dtmf | CallEnded):
                self._recording.inbound(item)
            yield item

    async def _agent(self, source: Any) -> Any:
        end = 0.0  # stream time the agent's audio so far plays until
        try:
            async for item in source:
                if isinstance(item, AudioChunk):
                    self._recording.played(self._resampled("agent", item), item.t)
                    end = max(end, item.end)
                elif isinstance(item, SessionUpdated) and isinstance(item.session, Session):
                    self._session = item.session
                else:
                    self._clock.now = float(getattr(item, "t", end) or end)
                    self._recording.outbound(item, end)
                yield item
        finally:
            self._clock.now = max(end, self._clock.now)
            self.result = self._recording.close(self._session)


def recorder(directory: str | Path) -> Recorder:
    """A :class:`Recorder` writing into ``directory`` (created if needed).

    >>> import tempfile
    >>> rec = recorder(tempfile.mkdtemp())
    >>> [p.name for p in rec.paths("CA42")]
    ['CA42.wav', 'CA42.json']
    """
    if not isinstance(directory, str | Path) or not str(directory):
        raise ConfigError(f"recording: directory must be a path, got {directory!r}")
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"recording: cannot create {path}: {exc}") from exc
    if not path.is_dir():
        raise ConfigError(f"recording: {path} is not a directory")
    return Recorder(path)


@dataclass(frozen=True, slots=True)
class Recording:
    """A call's recording: ``wav`` (stereo, caller left, agent right) and ``transcript``
    (``info``, the JSON as a dict). :func:`read_recording` loads one."""

    wav: Path
    transcript: Path
    info: Mapping[str, Any]

    @property
    def events(self) -> list[dict[str, Any]]:
        return list(self.info.get("events", []))

    def samples(self) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.int16], int]:
        """``(caller, agent, rate)``: the two channels as int16 arrays."""
        with wave.open(str(self.wav), "rb") as f:
            rate, frames = f.getframerate(), f.readframes(f.getnframes())
        both = np.frombuffer(frames, dtype="<i2").reshape(-1, 2).astype(np.int16)
        return both[:, 0].copy(), both[:, 1].copy(), rate


def read_recording(path: str | Path) -> Recording:
    """The recording at ``path`` (its ``.wav`` or ``.json``, or the path without suffix)."""
    base = Path(path)
    if base.suffix in (".wav", ".json"):
        base = base.with_suffix("")
    wav, js = base.with_suffix(".wav"), base.with_suffix(".json")
    if not wav.exists() or not js.exists():
        raise ConfigError(f"recording: {wav.name} and {js.name} are not both in {base.parent}")
    return Recording(wav, js, json.loads(js.read_text()))
