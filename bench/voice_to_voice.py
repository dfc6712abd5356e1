"""End of user speech → first reply audio, with the offline stack, as a live caller lives it.

The stack is the one ``voicekit demo`` runs: Silero VAD → Whisper tiny.en → turn detector →
voicekit's offline responder (with its demo weather tool) → Piper (en_US joe medium). At start
the bench synthesises a dozen short questions with Piper (once), resamples them to 16 kHz and
speaks them into ONE call, in real time: each question, then silence until the agent has
answered, then half a second more. Chunks are released when their end has been "recorded" (an
absolute clock), so stream time and wall time line up, as with a microphone.

For each turn it reports, on the wall clock, from the *true* end of the question's speech (the
last 10 ms frame above −50 dBFS in the synthesised clip — not the VAD's estimate): the VAD stop
decision, the transcript, the end of the turn, the LLM's first token, the first sentence into
the TTS and the first reply audio out of the agent; then the median and p90 of each step and of
the total. It also checks that the transcripts are right (word error rate).

With ``--sessions K`` it runs K such calls at once in one process, each asking the questions in
its own order, starting ``--stagger`` seconds apart; all share the models and the inference pool
(``voicekit._compute``). It then also reports *cores busy*: the process's CPU time over the wall
time of the calls, and that CPU time per turn. ``--old-compute FILE`` runs the bench with another
``_compute.py`` (the one-thread, one-lock version:
``git show 3f1b4c3:voicekit/_compute.py > /tmp/old_compute.py``), so that before and after can
be measured side by side on today's code.

Run:  python bench/voice_to_voice.py [--rounds 3] [--questions 12] [--no-warm] [--hint-secs 0]
                                     [--stop-secs 0.2] [--speech-timeout 0.6] [--busy 0]
                                     [--sessions 1] [--stagger 1.3] [--old-compute FILE] [--brief]
Target (issue 6): median end of speech → first reply audio ≤ 1.5 s on this 2-core machine.

Figures (2 vCPU, --rounds 3 = 36 turns unless said; median / p90, seconds, end of speech → first
reply audio; the machine's speed varies about ±2× from day to day):

  no warm-up, no speculation (--no-warm --hint-secs -1)    0.95 / 1.03
  as shipped (warm-up, Whisper starts at the pause hint)   0.96 / 1.05   (STT step 0.37 → 0.24)
  the same with --busy 2 (24 turns), without / with hint   1.16 / 1.29 → 1.08 / 1.22
  --stop-secs 0.1 (turn-taking change, warns)              0.85 / 0.92
  --speech-timeout 0.3 (turn-taking change)                0.65 / 0.74

The rest is the turn detector's pause: the turn ends 0.6 s after the VAD's stop (itself 0.2 s of
quiet), and the transcript is ready before that unless the CPU is busy. Speculation pays when
recognition is slow; a shorter pause pays always, at the cost of cutting slow speakers off.

Concurrent calls (issue 9 item 9), the old one-thread, one-lock ``_compute`` (``--old-compute``)
against the pool (2 workers, 1 thread per model), run one after the other, each pair at about
the same load average (other jobs shared the 2 cores: load 5–15). Median / p90 of end of speech
→ first reply audio, seconds, 12 turns per session; cores busy; CPU seconds per turn:

  K  load      old (1 thread under a lock)          pool
  1  6.6/5.1   1.68 / 2.30  0.40                     1.49 / 1.69  0.36
  1  6.2/7.2   2.24 / 3.20  0.40                     2.54 / 3.12  0.31
  1  6.9/5.4   1.49 / 1.95  0.44                     1.15 / 1.56  0.41
  1  11/12     2.47 / 3.39  0.32  2.22 s/turn        3.35 / 4.73  0.25  1.78 s/turn
  2  6.9/6.3   1.94 / 2.88  0.72                     1.61 / 2.80  0.67
  2  7.9/11    2.22 / 5.56  0.71                     3.45 / 5.44  0.49
  2  14/13     3.30 / 5.09  0.54  2.22 s/turn        3.57 / 5.27  0.50  1.91 s/turn
  4  6.4/6.3   3.68 / 6.93  0.94                     3.82 / 5.44  0.87
  4  6.8/7.0   3.58 / 5.93  1.07                     4.08 / 5.25  0.89
  4  14/13     6.13 / 11.6  0.73                     4.22 / 7.64  0.64
  4  12/12     6.64 / 10.8  0.64  2.52 s/turn        6.21 / 8.11  0.60  2.38 s/turn
  4  14/11     5.45 / 9.41  0.77  2.88 s/turn        3.25 / 4.38  0.87  1.63 s/turn

With other jobs keeping the 2 cores busy, the process gets about one core whatever it runs, so
the pool cannot show the second core at work here; what shows is that the p90 at 4 calls is
lower in every pair and a turn costs less CPU (no model threads fighting over the cores). The
medians move within the noise. Two threads per model instead of one
(``VOICEKIT_MODEL_THREADS=2``): 1.45 / 2.22, 1.99 / 2.95, 1.11 / 1.33 at K = 1 and
3.81 / 5.44, 4.00 / 5.41 at K = 4 in the same passes; run back to back (load 9–10), one thread
1.79 / 2.87 (1.86 s CPU per turn) against two 1.86 / 2.76 (2.30 s) at K = 1, and 3.23 / 4.38
(1.81 s) against 3.76 / 5.26 (2.34 s) at K = 4 — hence one thread per model on 2 cores. At
K = 4 the calls a turn waits on still wait for a thread (p90 1.8 s for a transcript, 1.4 s for
a first sentence): a running model call cannot be pre-empted, and the CPU was saturated.

On a quiet machine (2026-12-08, nothing else running, load average 0.6–2.3 from the bench
itself), ``--sessions K --brief`` with and without ``--old-compute`` (d1d95c2's one-thread
``_compute.py``), back to back; median / p90 seconds, end of speech → first reply audio; cores
busy; CPU seconds per turn; p90 wait for a thread (transcript / first audio):

  K  old (1 thread under a lock)                     pool (2 workers, 1 thread per model)
  1  0.88 / 0.96  0.56  1.89 s  0.00 / 0.00          0.92 / 1.01  0.49  1.71 s  0.00 / 0.00
  2  1.37 / 1.80  0.98  2.05 s  0.49 / 0.64          0.99 / 1.09  0.89  1.61 s  0.00 / 0.00
  4  2.30 / 4.01  1.41  2.25 s  1.67 / 1.82          1.54 / 2.20  1.33  1.61 s  0.62 / 0.73

Two calls now cost what one does (0.99 against 0.92 s); at four, the median drops by a third
and the p90 by nearly half. Cores busy do not rise: a turn costs 15–30 % less CPU (no two
model threads fighting per call), so the same work fits in fewer core-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.util
import multiprocessing
import os
import statistics
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

import voicekit.vad
from voicekit import _compute, tts
from voicekit.cli._agent import build_engines, converse, prepare
from voicekit.cli._latency import STEPS, LatencyProbe, TurnLatency, paced_audio, percentile
from voicekit.events import AudioChunk
from voicekit.stt import word_error_rate
from voicekit.turns import speech_timeout, turns
from voicekit.vad import vad

QUESTIONS = [
    "What is the weather like in Paris?",
    "Hello there!",
    "What time is it?",
    "Can you tell me the weather in London today?",
    "Thank you very much.",
    "What can you do?",
    "What's the date today?",
    "Is it windy in Berlin?",
    "Good morning, how are you?",
    "Please book a table for two at eight.",
    "What's the temperature in Tokyo?",
    "Goodbye, talk to you later.",
]

RATE = 16000
CHUNK = 320  # 20 ms
LEAD = 0.4  # silence before each question


@dataclass
class Clip:
    text: str
    samples: npt.NDArray[np.int16]
    speech_end: float  # seconds into samples where the speech truly ends
    start: float = 0.0  # stream time at which the clip starts (set while feeding)


def speech_end(samples: npt.NDArray[np.int16], threshold_db: float = -50.0) -> float:
    """Seconds to the end of the last 10 ms frame above ``threshold_db`` dBFS."""
    frames = samples[: len(samples) // 160 * 160].reshape(-1, 160).astype(np.float64)
    level = 10 * np.log10(np.mean(frames * frames, axis=1) + 1e-9) - 20 * np.log10(32768)
    loud = np.flatnonzero(level > threshold_db)
    return float((loud[-1] + 1) * 0.01) if loud.size else 0.0


def make_clips(texts: list[str]) -> list[Clip]:
    clips = []
    for text in texts:
        samples, rate = tts.synthesize(text)
        pcm = soxr.resample(samples.astype(np.float32) / 32768, rate, RATE, "HQ")
        pcm16 = np.clip(pcm * 32768, -32768, 32767).astype(np.int16)
        lead = np.zeros(round(LEAD * RATE), np.int16)
        joined = np.concatenate([lead, pcm16])
        clips.append(Clip(text, joined, speech_end(joined)))
    return clips


async def feed(clips: list[Clip], probe: LatencyProbe) -> AsyncIterator[AudioChunk]:
    """The questions one after another, each answered before the next, in real time."""

    async def chunks() -> AsyncIterator[AudioChunk]:
        t = 0.0
        silence = np.zeros(CHUNK, np.int16)
        for clip in clips:
            clip.start = t
            for i in range(0, len(clip.samples), CHUNK):
                piece = clip.samples[i : i + CHUNK]
                yield AudioChunk(piece, RATE, t)
                t += len(piece) / RATE
            waited = 0.0
            while waited < 30.0 and (waited < 1.0 or not probe.idle):
                yield AudioChunk(silence, RATE, t)
                t += CHUNK / RATE
                waited += CHUNK / RATE
            for _ in range(25):  # the caller takes a breath before the next question
                yield AudioChunk(silence, RATE, t)
                t += CHUNK / RATE

    async for chunk in paced_audio(chunks(), probe):
        yield chunk


wer = word_error_rate


def clip_of(turn: TurnLatency, clips: list[Clip]) -> Clip | None:
    """The clip whose speech the turn's end of speech falls in (or just after)."""
    if turn.speech_end_t is None:
        return None
    best = [c for c in clips if c.start <= turn.speech_end_t]
    return best[-1] if best else None


def _spin() -> None:
    while True:
        pass


def use_old_compute(path: str) -> None:
    """Run the models the way the ``_compute.py`` at ``path`` (the one-thread, one-lock design)
    did: every model call through its ``run`` on one thread under its lock, in arrival order;
    VAD hops in the event loop's default executor; Whisper and Piper with 2 threads each."""
    spec = importlib.util.spec_from_file_location("voicekit_old_compute", path)
    assert spec is not None and spec.loader is not None
    old: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)

    async def run(fn: Callable[..., Any], *args: Any, priority: Any = None) -> Any:
        if priority == _compute.Priority.VAD:
            return await asyncio.to_thread(fn, *args)
        return await old.run(fn, *args)

    def call(fn: Callable[..., Any], *args: Any, priority: Any = None) -> Any:
        with old.INFERENCE:
            return fn(*args)

    patched: Any = _compute
    patched.run, patched.call = run, call
    patched.workers, patched.model_threads = (lambda: 1), (lambda: 2)
    vad_module: Any = voicekit.vad
    vad_module.run_inference = run


WAITS: dict[str, list[float]] = {}
"""Seconds each model call waited before a thread took it, by priority name."""


def watch_queue() -> None:
    """Note how long each model call waits before it starts (the old design's too)."""
    inner = _compute.run

    async def run(
        fn: Callable[..., Any], *args: Any, priority: Any = _compute.Priority.LATER
    ) -> Any:
        queued = time.perf_counter()

        def timed(*a: Any) -> Any:
            WAITS.setdefault(_compute.Priority(priority).name, []).append(
                time.perf_counter() - queued
            )
            return fn(*a)

        return await inner(timed, *args, priority=priority)

    patched: Any = _compute
    patched.run = run
    vad_module: Any = voicekit.vad
    vad_module.run_inference = run


async def main(args: argparse.Namespace) -> None:
    if args.old_compute:
        use_old_compute(args.old_compute)
    watch_queue()
    hogs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.busy)]
    for hog in hogs:
        hog.start()
    try:
        await _run(args)
    finally:
        for hog in hogs:
            hog.terminate()
            hog.join()


Row = tuple[Clip, TurnLatency, float, str]


async def _session(
    index: int, args: argparse.Namespace, engines: Any, clips: list[Clip]
) -> list[Row]:
    """One caller: the questions from the ``index``-th on, ``args.rounds`` times."""
    await asyncio.sleep(index * args.stagger)
    shift = index % len(clips)
    mine = [dataclasses.replace(c) for c in clips[shift:] + clips[:shift]]
    rows: list[Row] = []
    for round_ in range(args.rounds):
        probe = LatencyProbe()
        result = await converse(
            engines,
            feed(mine, probe),
            probe,
            vad_stage=vad(stop_secs=args.stop_secs, hint_secs=args.hint_secs),
            turns_stage=turns(stop=[speech_timeout(args.speech_timeout)]),
        )
        heard = {u: s for u, s in result.turns}
        for turn in result.latency:
            clip = clip_of(turn, mine)
            if clip is None or probe.origin is None:
                continue
            true_end = probe.origin + clip.start + clip.speech_end
            vad_lag = (turn.speech_end or true_end) - true_end
            turn = dataclasses.replace(turn, speech_end=true_end)  # from the true end of speech
            rows.append((clip, turn, vad_lag, heard.get(turn.text, "")))
        caller = f"session {index + 1}, " if args.sessions > 1 else ""
        print(
            f"{caller}round {round_ + 1}: {len(result.latency)} turns, "
            f"{probe.stops} VAD stops, {probe.hints} pause hints",
            flush=True,
        )
    return rows


async def _run(args: argparse.Namespace) -> None:
    engine_args = argparse.Namespace(llm="local", stt=None, tts=None, voice=None, system=None)
    engines = await build_engines(engine_args)
    if args.hint_secs < 0:
        args.hint_secs = None
    if args.no_warm:
        engines.warmers = []
    began = time.perf_counter()
    await prepare(engines)
    warm = "off" if args.no_warm else "on"
    compute = (
        f"old compute {args.old_compute}"
        if args.old_compute
        else f"pool of {_compute.workers()}, {_compute.model_threads()} threads per model"
    )
    print(
        f"models ready in {time.perf_counter() - began:.1f} s (warm-up {warm}, busy {args.busy}, "
        f"{compute})"
    )
    clips = make_clips(QUESTIONS[: args.questions])
    print(f"{len(clips)} questions synthesised with Piper")
    cpu, wall = time.process_time(), time.perf_counter()
    sessions = await asyncio.gather(
        *(_session(i, args, engines, clips) for i in range(args.sessions))
    )
    cpu = time.process_time() - cpu
    cores_busy = cpu / (time.perf_counter() - wall)
    rows = [row for rows in sessions for row in rows]

    if not args.brief:
        print()
        print(
            f"{'question':<46}{'WER':>5}  "
            + "".join(f"{label[:9]:>10}" for _, label in STEPS)
            + f"{'total':>9}"
        )
        for clip, turn, _, _ in rows:
            steps = turn.steps()
            cells = "".join(f"{s[2]:10.2f}" if s[2] is not None else f"{'–':>10}" for s in steps)
            total = f"{turn.total:9.2f}" if turn.total is not None else f"{'–':>9}"
            print(f"{clip.text[:45]:<46}{wer(clip.text, turn.text):5.2f}  {cells}{total}")
    print()
    print("median / p90 over", len(rows), "turns (seconds; each step from the one before):")
    for index, (_, label) in enumerate(STEPS):
        values = [v for _, t, _, _ in rows if (v := t.steps()[index][2]) is not None]
        if values:
            _line(label, values)
    lags = [lag for _, _, lag, _ in rows]
    totals = [t.total for _, t, _, _ in rows if t.total is not None]
    if lags:
        _line("(VAD end estimate − true end)", lags)
    if totals:
        _line("END OF SPEECH → FIRST REPLY AUDIO", totals)
    if args.sessions == 1:
        firsts = [t.total for i, (_, t, _, _) in enumerate(rows) if i % len(clips) == 0 and t.total]
        if firsts:
            shown = ", ".join(f"{v:.2f}" for v in firsts)
            print(f"  first turn of each round (the demo's case): {shown}")
    errors = [wer(c.text, t.text) for c, t, _, _ in rows]
    if errors:
        print(f"  mean WER of the transcripts: {statistics.mean(errors):.3f}")
    for clip, turn, _, _ in rows:
        if wer(clip.text, turn.text) > 0:
            print(f"  misheard: {clip.text!r} → {turn.text!r}")
    if WAITS:
        print("  wait for a thread, by priority (median / p90, seconds; calls):")
        for name, waited in sorted(WAITS.items(), key=lambda kv: _compute.Priority[kv[0]]):
            print(
                f"    {name:<12}{statistics.median(waited):6.3f}  {percentile(waited, 90):6.3f}"
                f"  ({len(waited)})"
            )
    median = statistics.median(totals) if totals else float("nan")
    p90 = percentile(totals, 90) if totals else float("nan")
    print(
        f"RESULT sessions={args.sessions} compute={'old' if args.old_compute else 'pool'} "
        f"workers={_compute.workers()} model_threads={_compute.model_threads()} "
        f"turns={len(totals)}/{len(rows)} median={median:.2f} p90={p90:.2f} "
        f"cores_busy={cores_busy:.2f} cpu_per_turn={cpu / max(1, len(rows)):.2f} "
        f"wait_transcript_p90={_p90(WAITS.get('TRANSCRIPT'))} "
        f"wait_first_audio_p90={_p90(WAITS.get('FIRST_AUDIO'))} "
        f"load={os.getloadavg()[0]:.1f}",
        flush=True,
    )


def _p90(values: list[float] | None) -> str:
    return f"{percentile(values, 90):.2f}" if values else "-"


def _line(label: str, values: list[float]) -> None:
    print(f"  {label:<34}{statistics.median(values):6.2f}  {percentile(values, 90):6.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=1, help="how many times to run the questions")
    parser.add_argument("--questions", type=int, default=len(QUESTIONS), help="how many to ask")
    parser.add_argument("--no-warm", action="store_true", help="skip the warm-up inference")
    parser.add_argument("--stop-secs", type=float, default=0.2, help="VAD stop_secs")
    parser.add_argument(
        "--speech-timeout", type=float, default=0.6, help="turns user_speech_timeout"
    )
    parser.add_argument(
        "--hint-secs",
        type=float,
        default=0.0,
        help="VAD pause hint after this much quiet: Whisper starts then (default: first quiet "
        "frame); a negative value turns speculation off",
    )
    parser.add_argument("--sessions", type=int, default=1, help="concurrent calls (default 1)")
    parser.add_argument(
        "--stagger", type=float, default=1.3, help="seconds between the calls' starts"
    )
    parser.add_argument(
        "--old-compute",
        metavar="FILE",
        help="measure with this _compute.py instead (the old one-thread design)",
    )
    parser.add_argument("--brief", action="store_true", help="no per-turn table")
    parser.add_argument(
        "--busy",
        type=int,
        default=0,
        help="processes spinning on the CPU meanwhile (other tenants)",
    )
    asyncio.run(main(parser.parse_args()))
