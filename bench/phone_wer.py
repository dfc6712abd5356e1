"""Word error rate of a Whisper model on phone-quality speech: source × condition → WER.

Each sentence is spoken by a source (Piper with ``deterministic=True``, or an espeak-ng voice),
then heard through the real pipeline, one stream per sentence (``vad() | stt.whisper()``):

* ``16k clean`` — the source resampled to 16 kHz;
* ``8k μ-law as-is`` — through :func:`voicekit.audio.telephone` (8 kHz, G.711 μ-law round
  trip), heard with the old settings: ``whisper(narrowband=False)`` (resampling to 16 kHz,
  greedy decoding, faster-whisper's temperature fallback — random: it varies run to run);
* ``8k as-is T0`` — the same without the fallback (greedy only: deterministic);
* ``8k μ-law phone`` — the same audio heard with the defaults, which give 8 kHz audio the
  phone settings (``voicekit.stt._whisper.PHONE_OPTIONS``: beam 5, temperature 0).

Sentences: the five of tests/test_roundtrip.py (``--set roundtrip``), five phone-style ones not
used while choosing the settings (``--set holdout``), or both (default). WER uses
:func:`voicekit.stt.word_error_rate` over all sentences of a cell. STT time is the duration of
each Whisper call (median and p90 per condition). ``--model`` picks the model (default tiny.en,
or a CTranslate2 Whisper model directory: docs/phone-stt.md compares Whisper base this way),
``--conditions`` a subset of the columns. Needs ``espeak-ng`` on PATH::

    python bench/phone_wer.py                 # all: 240 transcriptions, ~15 min
    python bench/phone_wer.py --set roundtrip --voices en-us:160
    python bench/phone_wer.py --model /tmp/whisper-base --conditions "16k clean" "8k μ-law phone"
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from voicekit import Transcript, stt, tts
from voicekit.audio import from_array, load, telephone
from voicekit.stt._whisper import WhisperSettings
from voicekit.vad import vad

ROUNDTRIP = [  # tests/test_roundtrip.py
    "The quick brown fox jumps over the lazy dog.",
    "Please schedule a meeting with the design team for next Tuesday afternoon.",
    "The weather today is sunny with a high of seventy two degrees.",
    "Can you tell me how to get to the nearest train station?",
    "Voice assistants convert speech to text and then back to speech.",
]
HOLDOUT = [
    "What is the weather like in Rome today?",
    "I would like to book a table for two at half past seven.",
    "My order has not arrived yet, can you check where it is?",
    "Please transfer me to someone in the billing department.",
    "Is the pharmacy on Main Street open on Sunday morning?",
]
VOICES = ["en-us:160", "en:160", "en-us+f3:160", "en-us:200", "en-us+m3:130"]
CONDITIONS = ["16k clean", "8k μ-law as-is", "8k as-is T0", "8k μ-law phone"]

_times: dict[str, list[float]] = {}
_condition = ""
_model: str | None = None


def _timed_transcribe() -> None:
    """Record how long each Whisper call takes, per condition."""
    real = WhisperSettings.transcribe

    def transcribe(self: WhisperSettings, pcm: Any, source_rate: int = 16000) -> str:
        began = time.perf_counter()
        try:
            return real(self, pcm, source_rate)
        finally:
            _times.setdefault(_condition, []).append(time.perf_counter() - began)

    WhisperSettings.transcribe = transcribe  # type: ignore[method-assign]


def espeak(text: str, voice: str, speed: int) -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "say.wav"
        cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text]
        subprocess.run(cmd, check=True, capture_output=True)
        return load(path)


async def heard(samples: np.ndarray, rate: int, condition: str) -> str:
    global _condition
    _condition = condition
    pad = np.zeros(rate // 2, np.int16)
    flow: Any = from_array(np.concatenate([pad, samples, pad]), rate)
    if condition == "16k clean":
        from voicekit.audio import resample

        flow = flow | resample(rate=16000) | vad() | stt.whisper(model=_model)
    else:
        options: dict[str, Any] = {"model": _model}
        if condition == "8k μ-law as-is":
            options["narrowband"] = False
        elif condition == "8k as-is T0":
            options.update(narrowband=False, options={"temperature": 0.0})
        flow = flow | telephone() | vad() | stt.whisper(**options)
    return " ".join(x.text for x in await flow.list() if isinstance(x, Transcript))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", choices=["roundtrip", "holdout", "all"], default="all")
    parser.add_argument("--voices", nargs="*", default=VOICES, help="espeak voice:speed")
    parser.add_argument("--no-piper", action="store_true")
    parser.add_argument("--model", help="tiny.en (default) or a CTranslate2 Whisper model dir")
    parser.add_argument("--conditions", nargs="*", choices=CONDITIONS, default=CONDITIONS)
    parser.add_argument("-v", "--verbose", action="store_true", help="print every transcript")
    args = parser.parse_args()
    global _model
    _model = args.model
    conditions = args.conditions
    if args.voices and shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng is not installed (apt-get install espeak-ng), or pass --voices")
    sentences = {"roundtrip": ROUNDTRIP, "holdout": HOLDOUT, "all": ROUNDTRIP + HOLDOUT}[args.set]

    stt.preload(_model)
    _timed_transcribe()
    sources: dict[str, Any] = {}
    if not args.no_piper:
        sources["piper"] = lambda text: tts.synthesize(text, deterministic=True)
    for spec in args.voices:
        voice, _, speed = spec.partition(":")
        sources[f"espeak {voice} s{speed or 160}"] = (
            lambda text, v=voice, s=int(speed or 160): espeak(text, v, s)
        )

    reference = " ".join(sentences)
    table: dict[str, dict[str, float]] = {}
    words: dict[str, dict[str, list[str]]] = {}
    for name, speak in sources.items():
        spoken = [speak(text) for text in sentences]
        table[name] = {}
        for condition in conditions:
            hyps = [await heard(samples, rate, condition) for samples, rate in spoken]
            table[name][condition] = stt.word_error_rate(reference, " ".join(hyps))
            words.setdefault(name, {})[condition] = hyps
            if args.verbose:
                for hyp in hyps:
                    print(f"  {name} | {condition} | {hyp}", flush=True)
        print(f"{name:24s}" + "".join(f"{table[name][c]:>17.3f}" for c in conditions), flush=True)

    count = len(stt.normalise_words(reference))
    label = _model or "tiny.en"
    print(f"\nWER of Whisper {label}, {len(sentences)} sentences ({count} words) per cell\n")
    print(f"| source | {' | '.join(conditions)} |")
    print("|---|" + "---:|" * len(conditions))
    for name, row in table.items():
        print(f"| {name} | " + " | ".join(f"{row[c]:.3f}" for c in conditions) + " |")
    espeaks = [row for name, row in table.items() if name.startswith("espeak")]
    if espeaks:
        means = [np.mean([row[c] for row in espeaks]) for c in conditions]
        print("| **espeak mean** | " + " | ".join(f"**{m:.3f}**" for m in means) + " |")
    print("\nSTT time per utterance (s)\n")
    print("| condition | median | p90 | calls |")
    print("|---|---:|---:|---:|")
    for condition in conditions:
        times = _times.get(condition, [])
        if times:
            med, p90 = np.percentile(times, [50, 90])
            print(f"| {condition} | {med:.2f} | {p90:.2f} | {len(times)} |")


if __name__ == "__main__":
    asyncio.run(main())
