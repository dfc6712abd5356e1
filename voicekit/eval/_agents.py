"""The agent under evaluation, described by a picklable value and built inside each worker.

An :class:`AgentSpec` is either the ``voicekit`` command's agent options (``flags``: ``--llm``,
``--model``, ``--base-url``, ``--api-key-env``, ``--timeout``, ``--stt``, ``--tts``,
``--voice``, ``--system``; ``--tts tones`` speaks in tones, for fast runs that test what the
agent says rather than how) or an importable ``factory`` ``"package.module:function"``. A worker
builds the engines once (models loaded once per process) and a fresh agent, with its own
Session, for every conversation.

The factory is called once per conversation with the keyword arguments it accepts among
``session`` (a fresh :class:`~voicekit.Session`), ``seed``, ``first_message`` and ``scenario``,
and returns the agent: a stage from user turns to replies, such as :func:`voicekit.agent`. A
scenario with recordings gets the speech front end ``vad | stt | turns`` in front of it (the
``--stt`` of ``flags``; Whisper by default).

Every pipeline is watched by a :class:`~voicekit.cli._latency.LatencyProbe`, so each turn's
milestones are measured where they happen (the LLM's first token and the first sentence only
for agents built from flags: the probe wraps their LLM and TTS).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import importlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import _compute, phone
from .._agent import agent
from .._errors import ConfigError
from ..cli._agent import HINT_SECS, Engines, add_agent_options, build_engines, stt_engine
from ..cli._latency import LatencyProbe
from ..cli._llm import explicit_endpoint
from ..llm.endpoint import Endpoint
from ..ops import Stage, tap
from ..session import Session
from ..stt._whisper import WhisperSettings
from ..tts import tones
from ..tts._piper import PiperSettings
from ..turns import (
    recommended_stop_strategies,
    smart_turn,
    smart_turn_available,
    speech_timeout,
    turns,
)
from ..vad import silero, vad
from ._play import CallState, caller_side
from ._scenario import Scenario

__all__ = [
    "AgentSpec", "Built", "add_turns_option", "build", "flags_parser", "pipeline_for",
    "stop_strategies",
]

LLM_ERROR_MESSAGE = "Sorry, I could not reach the language model."


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """How a worker builds the agent: the command's agent options, or a factory.

    >>> AgentSpec(("--llm", "local")).describe()
    'voicekit agent --llm local'
    >>> AgentSpec(factory="mypkg.bots:make").describe()
    'factory mypkg.bots:make'
    """

    flags: tuple[str, ...] = ()
    factory: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "flags", tuple(str(f) for f in self.flags))
        if self.factory is not None:
            module, _, name = self.factory.partition(":")
            if not module or not name or not all(p.isidentifier() for p in module.split(".")):
                raise ConfigError(
                    f"--agent {self.factory!r}: give an importable factory as module:function, "
                    "e.g. mypkg.bots:make_agent"
                )
        args = self.options()  # bad flags fail here, in the process that was given them
        _turns_choice(args.turns)
        if self.factory is None:
            explicit_endpoint(args)  # an unknown --llm too (no server is asked)

    def options(self) -> argparse.Namespace:
        """The flags, parsed (ConfigError for a bad one)."""
        parser = flags_parser()
        try:
            args, rest = parser.parse_known_args(list(self.flags))
        except _ParseError as exc:
            raise ConfigError(f"agent options {' '.join(self.flags)!r}: {exc}") from None
        if rest:
            raise ConfigError(f"agent options: not understood: {' '.join(rest)}")
        return args

    def describe(self) -> str:
        """One line naming the agent (no key ever: keys come from the environment)."""
        if self.factory is not None:
            return f"factory {self.factory}" + (f" ({' '.join(self.flags)})" if self.flags else "")
        return "voicekit agent " + (" ".join(self.flags) or "(default options)")


class _ParseError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would exit the worker
        raise _ParseError(message)


def flags_parser() -> argparse.ArgumentParser:
    """A parser of the agent options (those of ``voicekit run`` and ``--turns``), raising
    instead of exiting."""
    parser = _Parser(prog="voicekit eval", add_help=False)
    add_agent_options(parser)
    add_turns_option(parser)
    return parser


def add_turns_option(parser: argparse.ArgumentParser) -> None:
    """``--turns``: how the turn detector ends a spoken turn (see :func:`stop_strategies`)."""
    parser.add_argument(
        "--turns", metavar="STOP",
        help="how a spoken turn ends: 'smart' (Smart Turn v3, the turn extra), 'timeout' or "
        "'timeout:SECONDS' (the speech timeout after the VAD stop; 0.6 s) (default: smart "
        "when installed, else the timeout)",
    )  # fmt: skip


def _turns_choice(text: str | None) -> tuple[str, float] | None:
    """``--turns`` read: None (the default), ("smart", 0) or ("timeout", seconds).

    >>> _turns_choice("timeout:1.2"), _turns_choice("smart"), _turns_choice(None)
    (('timeout', 1.2), ('smart', 0.0), None)
    >>> _turns_choice("timeout:0")
    Traceback (most recent call last):
    ...
    voicekit._errors.ConfigError: --turns 'timeout:0': give smart, timeout or timeout:SECONDS (0-60)
    """
    if text is None:
        return None
    name, colon, value = text.strip().lower().partition(":")
    if name == "smart" and not colon:
        return ("smart", 0.0)
    if name == "timeout":
        try:
            seconds = float(value) if colon else 0.6
        except ValueError:
            seconds = -1.0
        if 0 < seconds < 60:
            return ("timeout", seconds)
    raise ConfigError(f"--turns {text!r}: give smart, timeout or timeout:SECONDS (0-60)")


def stop_strategies(text: str | None) -> tuple[Any, ...]:
    """The stop strategies of ``--turns`` (its default: :func:`recommended_stop_strategies`)."""
    choice = _turns_choice(text)
    if choice is None:
        return recommended_stop_strategies()
    if choice[0] == "smart":
        if not smart_turn_available():
            raise ConfigError(
                "--turns smart: Smart Turn is not installed: pip install 'voicekit[turn]' and "
                "pip install --no-deps 'pipecat-ai>=1.14,<2'"
            )
        return (smart_turn(),)
    return (speech_timeout(choice[1]),)


# ---------------------------------------------------------------------------------------------
# Building, once per worker process


@dataclass
class Built:
    """An agent description made real in this process: the engines (flags) or the factory."""

    spec: AgentSpec
    engines: Engines | None = None
    factory: Callable[..., Any] | None = None
    front_stt: Stage[Any, Any] | None = None
    about: list[str] = field(default_factory=list)
    loaded: set[str] = field(default_factory=set)
    pending: dict[str, list[Callable[[], Any]]] = field(default_factory=dict)
    warmers: dict[str, list[Callable[[], Any]]] = field(default_factory=dict)


_built: dict[AgentSpec, Built] = {}


def _kind(fn: Callable[[], Any]) -> str:
    """Which engine a loader or warmer belongs to: ``stt``, ``tts`` or ``llm``."""
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, WhisperSettings):
        return "stt"
    if isinstance(owner, PiperSettings):
        return "tts"
    name = getattr(fn, "__qualname__", "")
    if name.startswith("stt_engine"):
        return "stt"
    if name.startswith("tts_engine"):
        return "tts"
    return "llm"


def _import_factory(text: str) -> Callable[..., Any]:
    module_name, _, name = text.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"--agent {text}: cannot import {module_name}: {exc}") from exc
    factory = getattr(module, name, None)
    if not callable(factory):
        raise ConfigError(f"--agent {text}: {module_name} has no function {name!r}")
    return factory


async def build(spec: AgentSpec) -> Built:
    """The agent of ``spec`` in this process, built the first time (the LLM resolved, the
    engines chosen; models load when a conversation first needs them)."""
    built = _built.get(spec)
    if built is not None:
        return built
    args = spec.options()
    tts_tones = (args.tts or "").strip().lower() == "tones"
    if tts_tones:
        args.tts = None
    built = Built(spec)
    if spec.factory is not None:
        built.factory = _import_factory(spec.factory)
        built.about.append(spec.describe())
    else:
        engines = await build_engines(args)
        if tts_tones:
            engines.tts = tones()
            engines.about = [
                "TTS: tones (what the agent says, not how)" if a.startswith("TTS:") else a
                for a in engines.about
            ]
        for fn in engines.loaders:
            if not (tts_tones and _kind(fn) == "tts"):
                built.pending.setdefault(_kind(fn), []).append(fn)
        for fn in engines.warmers:
            if not (tts_tones and _kind(fn) == "tts"):
                built.warmers.setdefault(_kind(fn), []).append(fn)
        built.engines = engines
        built.about += engines.about
    _built[spec] = built
    return built


async def _load(built: Built, kinds: Sequence[str]) -> None:
    """Load and warm the models of ``kinds`` that are not loaded yet (once per process)."""
    todo = [k for k in kinds if k not in built.loaded]
    if not todo:
        return
    loaders = [fn for k in todo for fn in built.pending.get(k, [])]
    await asyncio.gather(*(asyncio.to_thread(fn) for fn in loaders))
    for k in todo:
        for warm in built.warmers.get(k, []):
            await _compute.run(warm)
        built.loaded.add(k)


async def prepare(built: Built, scenario: Scenario) -> None:
    """Load what ``scenario`` needs before it is timed: the STT only for recordings."""
    if built.engines is None and scenario.has_audio and built.front_stt is None:
        engine = stt_engine(built.spec.options().stt)
        built.front_stt = engine.stage
        built.pending["stt"] = list(engine.loaders)
        built.warmers["stt"] = list(engine.warmers)
    await _load(built, ["llm", "tts", "stt"] if scenario.has_audio else ["llm", "tts"])


def _seeded(llm: Callable[..., Any], seed: int) -> Callable[..., Any]:
    """An LLM server's function with the conversation's seed in its requests."""
    if isinstance(llm, functools.partial) and llm.args and isinstance(llm.args[0], Endpoint):
        endpoint = dataclasses.replace(llm.args[0], seed=seed)
        return functools.partial(llm.func, endpoint, *llm.args[1:], **llm.keywords)
    return llm


def _call_factory(factory: Callable[..., Any], **offered: Any) -> Any:
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return factory()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return factory(**offered)
    return factory(**{k: v for k, v in offered.items() if k in parameters})


def pipeline_for(
    built: Built, scenario: Scenario, *, seed: int, probe: LatencyProbe
) -> Callable[[Any], Any]:
    """A fresh agent for one conversation, as a function from the script's stream to what the
    agent yields (the speech front end in front when the scenario has recordings)."""
    session = Session(call_id=f"eval-{seed:08x}")
    if built.factory is not None:
        bot = _call_factory(
            built.factory,
            session=session,
            seed=seed,
            first_message=scenario.first_message,
            scenario=scenario,
        )
        if not callable(bot):
            raise ConfigError(f"--agent {built.spec.factory}: returned {bot!r}, not a stage")
        stt = built.front_stt
        detector = None
    else:
        engines = built.engines
        assert engines is not None
        bot = agent(
            llm=probe.timed_llm(_seeded(engines.llm, seed)),
            tts=probe.before_tts | engines.tts,
            session=session,
            system=engines.system,
            tools=engines.tools,
            first_message=scenario.first_message,
            llm_error_message=LLM_ERROR_MESSAGE,
            first_audio_deadline=engines.first_audio_deadline,
            idle=(
                None
                if scenario.idle is None
                else phone.idle(scenario.idle.after, reprompts=scenario.idle.reprompts)
            ),
        )
        stt = engines.stt
        detector = engines.vad_detector
    line = CallState()
    back = probe.after_turns | bot | probe.after_agent | tap(line.see, name="eval(line)")
    if scenario.has_audio:
        assert stt is not None
        front = (
            vad(hint_secs=HINT_SECS, detector=detector or silero())
            | probe.after_vad
            | stt
            | probe.after_stt
            | turns(stop=stop_strategies(built.spec.options().turns))
        )
        back = front | back

    def run(source: Any) -> Any:
        return back(caller_side(source, line))

    return run
