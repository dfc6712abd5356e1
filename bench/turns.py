"""When does a turn end? Speech timeout vs Smart Turn v3 on a corpus of finished and paused speech.

    python bench/turns.py [--cache DIR] [--voices piper,espeak] [--thresholds 0.5,0.7,0.9]
                          [--fallbacks 3,1.5]

The corpus (bench/_turn_corpus.py, built once into ``--cache``): finished questions and
statements, and sentences with a 0.4-1.2 s pause in the middle ("I'd like to book a table for …
four people", "my account number is …", "um …", a list in progress), in a Piper voice
(deterministic) and in espeak-ng. Each item goes through Silero VAD (stop_secs 0.2), an
*instant* recogniser (a final transcript right after each VAD stop: the policy alone is
measured) and :func:`voicekit.turns.turns` with one stop strategy, on stream time.

Reported per strategy:

* **premature**: paused utterances whose turn ended inside the pause (before the speech after
  it was over), out of all paused ones; and finished utterances cut into more than one turn;
* **latency**: true end of speech → the turn's end, on stream time (median, p90), over the
  utterances whose turn ended after the speech;
* Smart Turn at each threshold with each silence fallback (3 s, Pipecat's, and a shorter one);
* for Smart Turn, the wall time of one model call on this machine (median, p90): it comes on
  top of the stream-time figure, as the turn waits for the verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _turn_corpus as tc

from voicekit import _compute
from voicekit import _smart_turn as st
from voicekit.events import TurnEnded
from voicekit.ops import Stage
from voicekit.turns import TurnAnalyzer, smart_turn, speech_timeout, turns

_scores: dict[str, float] = {}
_inference: list[float] = []


def _scored(samples: npt.NDArray[np.int16], rate: int) -> float:
    """Smart Turn's verdict, timed, and kept for the other thresholds (same audio, same score)."""
    key = hashlib.sha256(samples.tobytes() + str(rate).encode()).hexdigest()
    if key not in _scores:
        began = time.perf_counter()
        _scores[key] = st.analyze(samples, rate)
        _inference.append(time.perf_counter() - began)
    return _scores[key]


async def _smart(samples: npt.NDArray[np.int16], rate: int) -> float:
    return await _compute.run(_scored, samples, rate, priority=_compute.Priority.TRANSCRIPT)


async def _heard(item: tc.Item) -> list[Any]:
    """The item after the VAD and the instant recogniser (the same for every strategy)."""
    from voicekit.audio import from_array
    from voicekit.vad import vad

    flow = from_array(item.samples, tc.RATE) | vad() | Stage.of(tc._instant_text, "instant")
    return await flow.list()


async def _ends(items: list[Any], stop: Any) -> list[TurnEnded]:
    out = await turns(items, stop=[stop]).list()
    return [x for x in out if isinstance(x, TurnEnded)]


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_cache = Path(tempfile.gettempdir()) / "voicekit-turn-corpus"
    parser.add_argument("--cache", type=Path, default=default_cache)
    parser.add_argument("--voices", default="piper,espeak")
    parser.add_argument("--thresholds", default="0.5,0.7,0.9")
    parser.add_argument("--fallbacks", default="3,1.5", help="Smart Turn silence fallbacks (s)")
    args = parser.parse_args()
    voices = tuple(v.strip() for v in args.voices.split(",") if v.strip())
    began = time.perf_counter()
    corpus = tc.corpus(args.cache, voices)  # type: ignore[arg-type]
    print(f"corpus: {len(corpus)} items ({', '.join(voices)}) in {args.cache} "
          f"[{time.perf_counter() - began:.0f} s]")
    heard = [await _heard(item) for item in corpus]
    strategies: list[tuple[str, Any]] = [("speech timeout 0.6 s", speech_timeout())]
    for fallback in (float(v) for v in args.fallbacks.split(",")):
        for threshold in (float(v) for v in args.thresholds.split(",")):
            smart_turn(threshold, fallback_secs=fallback)  # the model is there, the values fit
            name = f"Smart Turn > {threshold:g}, {fallback:g} s"
            strategies.append((name, TurnAnalyzer(_smart, threshold, fallback_secs=fallback)))
    paused = sum(item.kind == "paused" for item in corpus)
    complete = len(corpus) - paused
    print(f"{'stop strategy':28} {'premature (paused)':>19} {'split (finished)':>17} "
          f"{'latency median':>15} {'p90':>6}")
    for name, stop in strategies:
        early, split, latency = 0, 0, []
        for item, items in zip(corpus, heard, strict=True):
            ends = await _ends(items, stop)
            before = [e for e in ends if e.t < item.speech_end]
            if item.kind == "paused" and before:
                early += 1
            if item.kind == "complete" and len(ends) > 1:
                split += 1
            after = [e.t - item.speech_end for e in ends if e.t >= item.speech_end]
            if after:
                latency.append(after[0])
        print(f"{name:28} {early:>5}/{paused} = {100 * early / paused:4.0f} % "
              f"{split:>9}/{complete:<3}    {_pct(latency, 50):>12.3f} s {_pct(latency, 90):.3f} s")
    if _inference:
        threads = _compute.model_threads()
        print(f"Smart Turn inference (wall, {len(_inference)} calls, {threads} thread(s)): "
              f"median {_pct(_inference, 50) * 1000:.0f} ms, "
              f"p90 {_pct(_inference, 90) * 1000:.0f} ms")
    print(f"load: {os.getloadavg()[0]:.2f} (1 min), {_compute.cores()} cores")


if __name__ == "__main__":
    asyncio.run(main())
