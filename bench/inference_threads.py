"""Threads per model: one Whisper call and one Piper sentence, alone and both at once.

For each setting of threads per model (Whisper's CTranslate2 ``cpu_threads``, Piper's
onnxruntime intra-op threads), in a fresh process, it times a Whisper transcription of a short
question and a Piper synthesis of a short sentence, each alone (5 times) and then both at once
on two threads (4 times): the median wall time, and the process CPU time per call (CPU time
does not depend much on what else the machine runs, wall time does).

Run:  python bench/inference_threads.py [--threads 1 2] [--repeat 2]

Figures (2 vCPU shared with other jobs, load average 5.8–6.9; wall / CPU seconds):

  threads  alone: STT         TTS          both at once: STT, TTS, both done, CPU
  1        0.92 / 0.61   0.45 / 0.33   1.61, 1.29, 1.62, 0.98
  2        0.71 / 0.69   0.62 / 0.53   2.14, 1.76, 2.14, 1.29
  1        1.61 / 0.73   0.87 / 0.39   2.28, 1.59, 2.28, 1.06
  2        1.47 / 0.74   1.17 / 0.60   3.36, 2.83, 3.37, 1.32

Two threads buy Whisper a little when it runs alone and buy Piper nothing (its second thread
costs 60 % more CPU); when the two run at once, one thread each finishes both sooner and with
a quarter less CPU. Hence ``voicekit._compute``'s default: a worker per core, one thread each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

QUESTION = "Can you tell me the weather in London today?"
ANSWER = "It is sunny in London today, with a high of twenty degrees."


def _timed(fn: Callable[[], Any]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def measure() -> str:
    """One line of figures for the threads set in the environment (run in a fresh process)."""
    import numpy as np
    import soxr

    from voicekit import _compute, tts
    from voicekit.stt._whisper import WhisperSettings
    from voicekit.tts._piper import PiperSettings

    whisper, piper = WhisperSettings(), PiperSettings()
    whisper.load()
    piper.load()
    samples, rate = tts.synthesize(QUESTION)
    pcm = soxr.resample(samples.astype(np.float32) / 32768, rate, 16000, "HQ")
    pcm16 = np.clip(pcm * 32767, -32768, 32767).astype(np.int16)

    def stt() -> None:
        whisper.transcribe(pcm16)

    def synth() -> None:
        list(piper.pieces(ANSWER))

    stt()  # the first call of a model is slower
    synth()
    alone = []
    for fn in (stt, synth):
        cpu = time.process_time()
        walls = [_timed(fn) for _ in range(5)]
        alone.append((statistics.median(walls), (time.process_time() - cpu) / 5))
    together: list[tuple[float, float, float]] = []
    cpu = time.process_time()
    for _ in range(4):
        took: dict[str, float] = {}

        def run(name: str, fn: Callable[[], Any], took: dict[str, float] = took) -> None:
            took[name] = _timed(fn)

        workers = [
            threading.Thread(target=run, args=(name, fn))
            for name, fn in (("stt", stt), ("tts", synth))
        ]
        began = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        together.append((took["stt"], took["tts"], time.perf_counter() - began))
    both_cpu = (time.process_time() - cpu) / 4
    stt_both, tts_both, done = (statistics.median(x) for x in zip(*together, strict=True))
    return (
        f"{_compute.model_threads():<9}{alone[0][0]:.2f} / {alone[0][1]:.2f}   "
        f"{alone[1][0]:.2f} / {alone[1][1]:.2f}   "
        f"{stt_both:.2f}, {tts_both:.2f}, {done:.2f}, {both_cpu:.2f}   "
        f"(load {os.getloadavg()[0]:.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=2, help="rounds over the settings")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(measure(), flush=True)
        return
    print("threads  alone: STT         TTS          both at once: STT, TTS, both done, CPU")
    for _ in range(args.repeat):
        for threads in args.threads:  # interleaved, each in a fresh process
            env = {**os.environ, "VOICEKIT_MODEL_THREADS": str(threads)}
            env.setdefault("VOICEKIT_INFERENCE_THREADS", "2")
            subprocess.run(
                [sys.executable, __file__, "--one"], env=env, check=True, stderr=subprocess.DEVNULL
            )


if __name__ == "__main__":
    main()
