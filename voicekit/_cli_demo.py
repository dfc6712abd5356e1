"""``voicekit demo``: the main job, on the bundled sample recording, fully offline."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import audio, text
from .events import AudioChunk

SAMPLE_REPLY = (
    "It is sunny in Rome today, 24 degrees. Dr. Rossi says the U.S.A. forecast at 3:00 p.m. "
    "is different; see https://example.com/weather.today for details... Anything else?"
)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the main job on the bundled sample recording (offline)",
        description="Run voicekit's main job on the bundled sample question, offline.",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("voicekit-demo-out"), help="where to write outputs"
    )
    parser.add_argument("--input", type=Path, default=None, help="a recording to use instead")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    return asyncio.run(_demo(args.input or audio.sample_path(), out))


async def _demo(source: Path, out: Path) -> int:
    info = audio.info(source)
    print(f"input      {source} ({info.duration:.2f} s, {info.rate} Hz, {info.channels} ch)")

    started = time.perf_counter()
    clean = out / "input-16k.wav"
    await audio.write(audio.read(source, rate=16000, chunk_ms=20), clean)
    phone = out / "telephone-8k-ulaw.wav"
    await audio.write(
        audio.read(source, rate=16000, chunk_ms=20) | audio.resample(rate=8000) | audio.telephone(),
        phone,
    )
    elapsed = time.perf_counter() - started

    original, _ = audio.load(clean, rate=8000)
    through_phone, _ = audio.load(phone)
    n = min(len(original), len(through_phone))
    error = original[:n].astype(np.float64) - through_phone[:n].astype(np.float64)
    snr = 10 * np.log10(np.sum(original[:n].astype(np.float64) ** 2) / max(np.sum(error**2), 1.0))
    print(f"wrote      {clean}")
    print(f"wrote      {phone} (8 kHz G.711 μ-law round trip, SNR {snr:.1f} dB)")
    print(f"audio      {elapsed * 1000:.0f} ms for read → resample → μ-law → write, twice")

    print("sentences  a sample reply, split for speech as tokens arrive:")
    tokens = [SAMPLE_REPLY[i : i + 4] for i in range(0, len(SAMPLE_REPLY), 4)]
    async for sentence in text.sentences(tokens):
        print(f"           · {sentence}")
    chunks = [c async for c in audio.read(clean) if isinstance(c, AudioChunk)]
    print(f"done       {len(chunks)} chunks of 20 ms; outputs are in {out}")
    return 0
