"""``voicekit talk``: talk to the voice agent through the microphone and the speaker.

Audio comes from a ``sounddevice.InputStream`` (16 kHz mono int16, 20 ms blocks): its callback,
on PortAudio's thread, hands each block to the event loop with ``loop.call_soon_threadsafe``;
the blocks become :class:`~voicekit.AudioChunk` s whose times count the samples heard, and go
through the same pipeline as ``voicekit demo`` (``vad | stt | turns | agent``). The reply audio
goes to a ``sounddevice.OutputStream`` through a small buffer: :meth:`Speaker.play` returns
once less than 0.1 s is waiting, so what the agent has handed on is what the user has heard (the
agent's history counts on it), and a barge-in (a new user turn) empties the buffer at once.

Without a usable audio device (no PortAudio library, no input or output device) the command
says so and exits with status 1. The device-independent parts (:class:`Microphone`,
:class:`Speaker`, :func:`talk`) take the ``sounddevice`` module as a value, so they run with a
stand-in in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import VoicekitError
from ..events import (
    AudioChunk,
    Interrupted,
    ReplyFailed,
    SessionUpdated,
    Transcript,
    TurnStarted,
)
from ._agent import (
    Engines,
    add_agent_options,
    build_engines,
    converse,
    prepare,
    reply_text,
    report_error,
)
from ._latency import LatencyProbe, TurnLatency
from ._llm import failure_hint

__all__ = [
    "FIRST_MESSAGE",
    "Microphone",
    "NoAudioDevice",
    "Speaker",
    "add_parser",
    "check_devices",
    "load_sounddevice",
    "run",
    "talk",
]

FIRST_MESSAGE = "Hello! I'm listening."
"""What the agent says first, unless ``--first-message`` says otherwise."""

RATE = 16000
BLOCK_MS = 20


class NoAudioDevice(Exception):
    """There is no microphone or speaker to talk through; the message says why."""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "talk",
        help="talk to the voice agent through the microphone and speaker",
        description=(
            "Talk to the voice agent live: microphone in, speaker out (needs an audio device "
            "and the sounddevice package). Stop with Ctrl-C."
        ),
    )
    parser.add_argument(
        "--first-message",
        default=FIRST_MESSAGE,
        metavar="TEXT",
        help=f"what the agent says first ('' for nothing; default {FIRST_MESSAGE!r})",
    )
    parser.add_argument("--input-device", metavar="DEV", help="microphone (index or name)")
    parser.add_argument("--output-device", metavar="DEV", help="speaker (index or name)")
    add_agent_options(parser)
    parser.set_defaults(func=run)


# ---------------------------------------------------------------------------------------------
# Devices


def load_sounddevice() -> Any:
    """The ``sounddevice`` module, or :class:`NoAudioDevice` saying why it cannot be used."""
    try:
        import sounddevice
    except ImportError:
        raise NoAudioDevice(
            "the sounddevice package is not installed: pip install 'voicekit[local]'"
        ) from None
    except OSError as exc:  # sounddevice imports, but finds no PortAudio library
        raise NoAudioDevice(
            f"the PortAudio library is missing ({exc}); on Debian or Ubuntu: "
            "apt-get install libportaudio2"
        ) from None
    return sounddevice


def _device(value: str | None) -> int | str | None:
    if value is None:
        return None
    return int(value) if value.strip().isdigit() else value


def check_devices(sd: Any, input_device: Any = None, output_device: Any = None) -> None:
    """Raise :class:`NoAudioDevice` unless there is a microphone and a speaker to use."""
    try:
        devices = list(sd.query_devices())
    except Exception as exc:
        raise NoAudioDevice(f"cannot list the audio devices: {exc}") from None
    if not any(d.get("max_input_channels", 0) > 0 for d in devices):
        raise NoAudioDevice("no microphone (no audio input device) was found")
    if not any(d.get("max_output_channels", 0) > 0 for d in devices):
        raise NoAudioDevice("no speaker (no audio output device) was found")
    try:
        sd.check_input_settings(device=input_device, channels=1, dtype="int16", samplerate=RATE)
    except Exception as exc:
        raise NoAudioDevice(f"the microphone cannot record 16 kHz mono: {exc}") from None
    try:
        sd.check_output_settings(device=output_device, channels=1, dtype="int16")
    except Exception as exc:
        raise NoAudioDevice(f"the speaker cannot play mono audio: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Microphone and speaker


class Microphone:
    """Blocks from a ``sounddevice.InputStream`` as a stream of :class:`AudioChunk` s.

    The callback runs on PortAudio's thread and only hands a copy of each block to the event
    loop. Chunk times count the samples received, so stream time is the microphone's time.
    """

    def __init__(
        self, sd: Any, *, device: Any = None, rate: int = RATE, block_ms: int = BLOCK_MS
    ) -> None:
        self.sd = sd
        self.device = device
        self.rate = rate
        self.block = rate * block_ms // 1000
        self.stream: Any = None
        self.queue: asyncio.Queue[npt.NDArray[np.int16] | None] = asyncio.Queue()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.overflows = 0

    def _callback(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        if status:
            self.overflows += 1
        block = np.array(indata, dtype=np.int16).reshape(frames, -1)[:, 0].copy()
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.queue.put_nowait, block)

    def open(self) -> None:
        """Start recording."""
        self.loop = asyncio.get_running_loop()
        self.stream = self.sd.InputStream(
            samplerate=self.rate,
            blocksize=self.block,
            channels=1,
            dtype="int16",
            device=self.device,
            callback=self._callback,
        )
        self.stream.start()

    def close(self) -> None:
        """Stop recording; the chunk stream ends."""
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.stop()
            stream.close()
        self.queue.put_nowait(None)

    async def chunks(self, probe: LatencyProbe | None = None) -> AsyncIterator[AudioChunk]:
        """The microphone's audio; sets ``probe.origin`` (wall time of stream time 0)."""
        t = 0.0
        while (block := await self.queue.get()) is not None:
            if probe is not None and probe.origin is None:
                probe.origin = probe.clock() - block.shape[0] / self.rate  # it ended just now
            yield AudioChunk(block, self.rate, t)
            t += block.shape[0] / self.rate


class Speaker:
    """Plays :class:`AudioChunk` s through a ``sounddevice.OutputStream``, paced.

    :meth:`play` returns once less than ``ahead`` seconds are waiting to be played, so the
    caller runs about as fast as the audio is heard. :meth:`flush` drops what is waiting (a
    barge-in). The stream opens at the first chunk's rate, and again if the rate changes.
    """

    def __init__(self, sd: Any, *, device: Any = None, ahead: float = 0.1) -> None:
        self.sd = sd
        self.device = device
        self.ahead = ahead
        self.rate = 0
        self.stream: Any = None
        self.pending: deque[npt.NDArray[np.int16]] = deque()
        self.waiting = 0  # samples waiting
        self.played = 0  # samples handed to the device
        self.lock = threading.Lock()

    def _callback(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        out = np.zeros(frames, np.int16)
        filled = 0
        with self.lock:
            while filled < frames and self.pending:
                head = self.pending[0]
                take = min(frames - filled, head.shape[0])
                out[filled : filled + take] = head[:take]
                filled += take
                if take == head.shape[0]:
                    self.pending.popleft()
                else:
                    self.pending[0] = head[take:]
            self.waiting -= filled
            self.played += filled
        outdata[:] = out.reshape(-1, 1)

    def _open(self, rate: int) -> None:
        self.close()
        self.rate = rate
        self.stream = self.sd.OutputStream(
            samplerate=rate, channels=1, dtype="int16", device=self.device, callback=self._callback
        )
        self.stream.start()

    async def play(self, chunk: AudioChunk) -> None:
        """Queue ``chunk`` for playing; wait while more than ``ahead`` seconds are queued."""
        if self.stream is None or chunk.rate != self.rate:
            self._open(chunk.rate)
        with self.lock:
            self.pending.append(chunk.samples)
            self.waiting += chunk.samples.shape[0]
        excess = self.waiting - self.ahead * self.rate
        if excess > 0:  # the time it takes the device to play the excess
            await asyncio.sleep(excess / self.rate)

    def flush(self) -> None:
        """Drop the audio waiting to be played."""
        with self.lock:
            self.pending.clear()
            self.waiting = 0

    def close(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.stop()
            stream.close()
        self.flush()


# ---------------------------------------------------------------------------------------------
# The conversation


async def talk(
    engines: Engines,
    sd: Any,
    *,
    first_message: str | None = FIRST_MESSAGE,
    input_device: Any = None,
    output_device: Any = None,
    say: Callable[[str], Any] = print,
    until: asyncio.Event | None = None,
    hint: Callable[[str], str] | None = None,
    failed: list[ReplyFailed] | None = None,
) -> None:
    """Talk through the devices of ``sd`` until ``until`` is set (or the task is cancelled).

    A failed reply is said (``error`` and, if ``hint`` gives one for its source, ``hint``) and
    appended to ``failed``.
    """
    probe = LatencyProbe(on_turn=lambda turn: say(_latency_line(turn)))
    microphone = Microphone(sd, device=input_device)
    speaker = Speaker(sd, device=output_device)

    async def on_item(item: Any) -> None:
        if isinstance(item, AudioChunk):
            await speaker.play(item)
        elif isinstance(item, TurnStarted | Interrupted):
            speaker.flush()  # the user speaks: stop talking at once
        elif isinstance(item, Transcript) and item.final:
            say(f"you    {item.text}")
        elif isinstance(item, ReplyFailed):
            say(f"error  the reply failed ({item.source}): {item.error}")
            if hint is not None:
                say(f"hint   {hint(item.source)}")
            if failed is not None:
                failed.append(item)
        elif isinstance(item, SessionUpdated):
            said = reply_text(item.session)
            if said:
                say(f"agent  {said}")

    async def stop_when_told() -> None:
        if until is not None:
            await until.wait()
            microphone.close()

    microphone.open()
    stopper = asyncio.ensure_future(stop_when_told())
    try:
        await converse(
            engines,
            microphone.chunks(probe),
            probe,
            first_message=first_message or None,
            on_item=on_item,
        )
    finally:
        stopper.cancel()
        microphone.close()
        speaker.close()


def _latency_line(turn: TurnLatency) -> str:
    total = "–" if turn.total is None else f"{turn.total:.2f} s"
    return f"       (end of your speech → first reply audio: {total})"


def run(args: argparse.Namespace) -> int:
    """``voicekit talk``: 0 on Ctrl-C after a good conversation, 1 without a usable audio
    device or when a reply failed, 2 for bad options."""
    input_device, output_device = _device(args.input_device), _device(args.output_device)
    try:
        sd = load_sounddevice()
        check_devices(sd, input_device, output_device)
    except NoAudioDevice as exc:
        print(
            f"voicekit talk: no audio device to talk through: {exc}.\n"
            "Without a microphone, try `voicekit demo` (a recorded question) or "
            "`voicekit run FILE.wav`.",
            file=sys.stderr,
        )
        return 1
    failed: list[ReplyFailed] = []
    try:
        asyncio.run(_talk(args, sd, input_device, output_device, failed))
    except VoicekitError as exc:
        return report_error("talk", exc, args)
    except KeyboardInterrupt:
        print("\nbye", file=sys.stderr)
    if failed:
        print(f"voicekit talk: {len(failed)} repl{'y' if len(failed) == 1 else 'ies'} failed",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


async def _talk(
    args: argparse.Namespace,
    sd: Any,
    input_device: Any,
    output_device: Any,
    failed: list[ReplyFailed],
) -> None:
    engines = await build_engines(args)
    for line in engines.about:
        print(line, flush=True)
    await prepare(engines)
    print("talk now (Ctrl-C to stop)", flush=True)
    await talk(
        engines,
        sd,
        first_message=args.first_message,
        input_device=input_device,
        output_device=output_device,
        hint=lambda source: failure_hint(args, source),
        failed=failed,
    )
