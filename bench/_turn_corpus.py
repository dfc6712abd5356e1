"""A turn-taking corpus made on the spot: finished utterances and utterances with a pause inside.

Two voices: Piper (voicekit.tts.piper, ``deterministic=True``) and espeak-ng (/usr/bin/espeak-ng,
en-us, 160 wpm). Each item is 16 kHz mono int16: 0.5 s of quiet, the speech, 4 s of quiet, with
a seeded noise floor at -60 dBFS everywhere (a microphone is never digitally silent).

* ``complete``: a finished question or statement.
* ``paused``: a sentence with a pause of 0.4-1.2 s in the middle ("I'd like to book a table
  for … four people"). espeak-ng makes the pause itself (SSML ``<break>``); Piper speaks the
  sentence with a comma at that point and the comma's gap is widened to the pause.

The truth (``pause``, ``speech_end``) is measured on the audio: frames of 10 ms whose peak is
above 2 % of full scale are speech. Built items are cached in a directory as one ``.npz`` each.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from voicekit.events import SpeechStarted, SpeechStopped, Transcript, TurnEnded, TurnStarted
from voicekit.ops import Stage

RATE = 16000
LEAD = 0.5
TAIL = 4.0
NOISE_DB = -60.0
_FRAME = 160  # 10 ms
_SPEECH = 0.02 * 32768  # a frame peak above this is speech

COMPLETE = (
    "What time is it?",
    "Can you tell me how to get to the nearest train station?",
    "Do you have a table for two tonight?",
    "How much does the large pizza cost?",
    "I'd like to book a table for four people.",
    "My account number is four five six seven.",
    "The weather is nice today.",
    "I need eggs, milk, and bread.",
)

PAUSED = (
    ("I'd like to book a table for", "four people tonight."),
    ("My account number is", "four five six seven."),
    ("Um", "I want to cancel my order."),
    ("I need eggs, milk,", "and bread."),
    ("Can you tell me how to get to", "the nearest train station?"),
    ("Please schedule a meeting with", "the design team."),
)

PAUSES = (0.4, 0.8, 1.2)

Voice = Literal["piper", "espeak"]


@dataclass(frozen=True)
class Item:
    """One utterance with its truth (times in seconds from the start of ``samples``)."""

    name: str
    voice: Voice
    kind: Literal["complete", "paused"]
    text: str
    samples: npt.NDArray[np.int16]
    speech_start: float
    speech_end: float
    pause: tuple[float, float] | None  # the mid-sentence pause, for ``paused`` items

    @property
    def rate(self) -> int:
        return RATE


def _piper(text: str) -> npt.NDArray[np.int16]:
    from voicekit.tts import piper

    async def speak() -> npt.NDArray[np.int16]:
        chunks = await piper([text], rate=RATE, deterministic=True).list()
        return np.concatenate([c.samples for c in chunks])

    with ThreadPoolExecutor(1) as thread:  # its own event loop, even under a running one
        return thread.submit(asyncio.run, speak()).result()


def _espeak(ssml: str) -> npt.NDArray[np.int16]:
    exe = shutil.which("espeak-ng") or "/usr/bin/espeak-ng"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "say.wav"
        subprocess.run(
            [exe, "-v", "en-us", "-s", "160", "-m", "-w", str(out), f"<speak>{ssml}</speak>"],
            check=True,
            capture_output=True,
        )
        audio, rate = sf.read(out, dtype="float32")
    audio = soxr.resample(audio, rate, RATE) * 0.9 / max(1e-9, float(np.abs(audio).max()))
    return (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)


def _voiced(samples: npt.NDArray[np.int16]) -> npt.NDArray[np.bool_]:
    count = samples.shape[0] // _FRAME
    frames = np.abs(samples[: count * _FRAME].astype(np.int32)).reshape(count, _FRAME)
    return np.asarray(frames.max(axis=1) > _SPEECH)


def _trim(samples: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    voiced = np.flatnonzero(_voiced(samples))
    return samples[voiced[0] * _FRAME : (voiced[-1] + 1) * _FRAME]


def _gaps(samples: npt.NDArray[np.int16], min_frames: int = 4) -> list[tuple[int, int]]:
    """Interior quiet runs of at least ``min_frames`` frames, as (first, end) frame indices."""
    voiced = _voiced(samples)
    runs, start = [], None
    for index, loud in enumerate(voiced):
        if not loud and start is None:
            start = index
        elif loud and start is not None:
            if index - start >= min_frames and start > 0:
                runs.append((start, index))
            start = None
    return runs


def _with_pause(
    speech: npt.NDArray[np.int16], at: float, pause: float
) -> tuple[npt.NDArray[np.int16], float]:
    """``speech`` with the quiet run nearest to ``at`` seconds replaced by ``pause`` seconds of
    silence; also where the pause now starts."""
    runs = _gaps(speech)
    if not runs:
        raise RuntimeError("no gap to widen in the synthesized speech")
    first, end = min(runs, key=lambda r: abs((r[0] + r[1]) / 2 * _FRAME / RATE - at))
    silence = np.zeros(round(pause * RATE), np.int16)
    head, tail = speech[: first * _FRAME], speech[end * _FRAME :]
    return np.concatenate([head, silence, tail]), head.shape[0] / RATE


def _layout(
    speech: npt.NDArray[np.int16], seed: int
) -> tuple[npt.NDArray[np.int16], float, float]:
    lead, tail = np.zeros(round(LEAD * RATE), np.int16), np.zeros(round(TAIL * RATE), np.int16)
    audio = np.concatenate([lead, speech, tail]).astype(np.float64)
    noise = np.random.default_rng(seed).normal(0.0, 32768 * 10 ** (NOISE_DB / 20), audio.shape)
    mixed = np.clip(np.round(audio + noise), -32768, 32767).astype(np.int16)
    return mixed, LEAD, LEAD + speech.shape[0] / RATE


def _pause_truth(samples: npt.NDArray[np.int16], near: float) -> tuple[float, float]:
    runs = _gaps(samples, min_frames=30)
    first, end = min(runs, key=lambda r: abs(r[0] * _FRAME / RATE - near))
    return first * _FRAME / RATE, end * _FRAME / RATE


def make_item(voice: Voice, text: str, rest: str | None = None, pause: float = 0.0) -> Item:
    """Synthesize one item: ``text`` alone (complete), or ``text`` … pause … ``rest``."""
    seed = int(hashlib.sha256(f"{voice}|{text}|{rest}|{pause}".encode()).hexdigest()[:8], 16)
    if rest is None:
        speech = _trim(_piper(text) if voice == "piper" else _espeak(text))
        audio, start, end = _layout(speech, seed)
        return Item(f"{voice}: {text}", voice, "complete", text, audio, start, end, None)
    full = f"{text} {rest}"
    if voice == "piper":
        said = _trim(_piper(f"{text.rstrip(',')}, {rest}"))
        at = len(text) / len(full) * said.shape[0] / RATE
        speech, cut = _with_pause(said, at, pause)
    else:
        ms = round(pause * 1000)
        speech = _trim(_espeak(f'{text} <break time="{ms}ms"/> {rest}'))
        cut = max((r[0] for r in _gaps(speech, 30)), default=0) * _FRAME / RATE
    audio, start, end = _layout(speech, seed)
    gap = _pause_truth(audio, start + cut)
    name = f"{voice}: {text} …{pause:.1f}s… {rest}"
    return Item(name, voice, "paused", full, audio, start, end, gap)


def _key(voice: str, text: str, rest: str | None, pause: float) -> str:
    raw = f"v1|{voice}|{text}|{rest}|{pause}|{LEAD}|{TAIL}|{NOISE_DB}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def cached_item(
    cache: Path, voice: Voice, text: str, rest: str | None = None, pause: float = 0.0
) -> Item:
    """:func:`make_item`, kept in ``cache`` as ``<key>.npz`` across runs."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{_key(voice, text, rest, pause)}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            gap = tuple(float(x) for x in data["pause"]) if data["pause"].size else None
            return Item(
                str(data["name"]),
                voice,
                "paused" if rest is not None else "complete",
                str(data["text"]),
                data["samples"],
                float(data["start"]),
                float(data["end"]),
                gap,  # type: ignore[arg-type]
            )
    item = make_item(voice, text, rest, pause)
    np.savez(
        path,
        name=item.name,
        text=item.text,
        samples=item.samples,
        start=item.speech_start,
        end=item.speech_end,
        pause=np.array(item.pause if item.pause else [], dtype=np.float64),
    )
    return item


def corpus(cache: Path, voices: tuple[Voice, ...] = ("piper", "espeak")) -> list[Item]:
    """Every item: each complete text, and each paused sentence at each pause length."""
    items = []
    for voice in voices:
        items += [cached_item(cache, voice, text) for text in COMPLETE]
        for text, rest in PAUSED:
            items += [cached_item(cache, voice, text, rest, pause) for pause in PAUSES]
    return items


# ---------------------------------------------------------------------------------------------
# Turn decisions on an item, on stream time


async def _instant_text(source: AsyncIterable[Any]) -> AsyncIterator[Any]:
    """A recogniser that answers at once: a final transcript right after each SpeechStopped
    (``seg1``, ``seg2``, …, stamped with the utterance's onset). It isolates the turn policy."""
    onset, count = 0.0, 0
    async for item in source:
        yield item
        if isinstance(item, SpeechStarted):
            onset = item.t
        elif isinstance(item, SpeechStopped):
            count += 1
            yield Transcript(f"seg{count}", True, onset)


async def decide(item: Item, stop: Sequence[Any], chunk_ms: float = 20.0) -> list[Any]:
    """The turn marks and VAD markers :func:`voicekit.turns.turns` yields for ``item`` with the
    stop strategies ``stop``: Silero VAD (stop_secs 0.2), an instant recogniser, stream time."""
    from voicekit.audio import from_array
    from voicekit.turns import turns
    from voicekit.vad import vad

    flow = (
        from_array(item.samples, RATE, chunk_ms=chunk_ms)
        | vad()
        | Stage.of(_instant_text, "instant_text")
        | turns(stop=list(stop))
    )
    marks = (TurnStarted, TurnEnded, SpeechStarted, SpeechStopped)
    return [x for x in await flow.list() if isinstance(x, marks)]
