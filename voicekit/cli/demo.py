"""``voicekit demo``: the offline voice agent answers the bundled recorded question.

The recording is spoken into the agent as a live caller would — in real time, then silence —
through Silero VAD, Whisper, the turn detector, the LLM (resolved in the documented order; the
offline responder with its demo weather tool when nothing else answers) and Piper. The demo
prints what it heard, what it answered and a latency breakdown, and writes ``reply.wav``, the
reply as a caller hears it on a phone line, and ``transcript.txt`` into ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from .. import audio
from .._errors import VoicekitError
from ..audio import from_array
from ..events import ReplyFailed, SessionUpdated, ToolCall, ToolResult, Transcript
from ..llm._llama import local_model_of
from ..llm.local import local_responder
from ._agent import (
    Engines,
    Exchange,
    add_agent_options,
    answer_recording,
    build_engines,
    output_dir,
    prepare,
    reply_text,
    report_error,
    telephone_copy,
)
from ._latency import format_turn
from ._llm import failure_hint

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the offline voice agent answers a recorded question",
        description=(
            "Speak the bundled question (or --input) into the voice agent as a live caller "
            "would, and write its spoken reply. Offline by default: Silero VAD, Whisper "
            "tiny.en, voicekit's rule-based responder, Piper."
        ),
    )
    parser.add_argument(
        "--out",
        type=output_dir,
        default=Path("voicekit-demo-out"),
        metavar="DIR",
        help="the directory to write the outputs into (default: %(default)s)",
    )
    parser.add_argument(
        "--input",
        type=Path,
        default=None,
        metavar="FILE",
        help="a recording to answer (default: the bundled question, 'What is the weather like "
        "in Rome today?')",
    )
    add_agent_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``voicekit demo``: 0 when the agent answered, 1 when it did not (a reply failed, or
    there was no reply), 2 for bad options."""
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        return asyncio.run(_demo(args))
    except (VoicekitError, OSError) as exc:
        return report_error("demo", exc, args)
    except KeyboardInterrupt:
        return 130


def _say(label: str, text: str) -> None:
    print(f"{label:<11}{text}", flush=True)


async def _demo(args: argparse.Namespace) -> int:
    source: Path = args.input or audio.sample_path()
    out: Path = args.out.resolve()
    info = audio.info(source)  # a bad recording fails here, before any model loads
    engines: Engines = await build_engines(args)
    for line in engines.about:
        print(line, flush=True)
    seconds = await prepare(engines)
    if seconds:
        _say("ready", f"models loaded and warmed up in {seconds:.1f} s")
    _say("input", f"{source} ({info.duration:.2f} s), spoken in real time as a live caller")

    calls: dict[str, ToolCall] = {}

    def on_item(item: Any) -> None:  # said as it happens
        if isinstance(item, Transcript) and item.final:
            _say("heard", item.text)
        elif isinstance(item, ToolCall):
            calls[item.id] = item
        elif isinstance(item, ToolResult) and item.call_id in calls:
            call = calls[item.call_id]
            _say("tool", f"{call.name}({call.arguments}) → {item.content}")
        elif isinstance(item, ReplyFailed):
            _say("error", f"the reply failed ({item.source}): {item.error}")
            _say("hint", failure_hint(args, item.source))
        elif isinstance(item, SessionUpdated):
            said = reply_text(item.session)
            if said:
                _say("reply", said)

    result = await answer_recording(engines, source, on_item=on_item)
    latencies = result.latency
    if not result.turns:
        _say("reply", "(none: no speech was heard in the recording)")
    elif not result.errors:
        _say("brain", _brain(engines))
    await _write(result, out)
    for number, turn in enumerate(latencies, 1):
        where = "" if turn.speech_end_t is None else f" at {turn.speech_end_t:.2f} s"
        which = f" of turn {number}" if len(latencies) > 1 else ""
        print(f"latency{which} (wall clock, from the end of your speech{where} in the recording):")
        print(format_turn(turn))
    if result.errors:
        return 1  # the spoken apology is written, but the agent did not answer
    return 0 if result.audio else 1


def _brain(engines: Engines) -> str:
    """Who wrote the reply, honestly: a model in this process, the rule-based responder, or the
    LLM server."""
    spec = local_model_of(engines.llm)
    if spec is not None:
        return f"{spec.title}, a real language model run in this process by llama.cpp"
    if engines.llm is local_responder:
        return "voicekit's rule-based offline responder (not a language model)"
    return engines.about[0].removeprefix("LLM: ")


async def _write(result: Exchange, out: Path) -> None:
    transcript = out / "transcript.txt"
    await asyncio.to_thread(transcript.write_text, result.transcript, encoding="utf-8")
    joined = result.reply_audio
    if joined is None:
        _say("wrote", f"{transcript} (there was no reply audio)")
        return
    samples, rate = joined
    reply = out / "reply.wav"
    await audio.write(from_array(samples, rate), reply)
    phone = out / "reply-phone-8k-ulaw.wav"
    await audio.write(telephone_copy(samples, rate), phone, subtype="ULAW")
    _say("wrote", f"{reply} ({len(samples) / rate:.2f} s at {rate} Hz)")
    _say("wrote", f"{phone} (the reply as a caller hears it: 8 kHz G.711 μ-law)")
    _say("wrote", str(transcript))
    _say("outputs", f"are in {out}")
