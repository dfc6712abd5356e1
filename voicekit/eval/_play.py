"""Playing one scenario through an agent and reading what came of it.

:func:`script_of` turns a :class:`~voicekit.eval.Scenario`'s turns into a
:func:`~voicekit.conversation.run_conversation` script; :func:`read_conversation` reads the
conversation that came back (the timeline, the Session, the latency probe's turns) into a
:class:`~voicekit.eval.ScenarioResult` with every expectation checked (:mod:`._checks`).

Replies belong to turns in order: the *n*-th reply to a user turn answers the *n*-th step that
gets a reply (a spoken first message is no turn's). An audio step is expected to be one user
turn; a reply more than the steps asked for is counted in the last turn.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._metrics import MILESTONES, TurnMetrics
from ..conversation import Audio, BargeIn, Conversation, Say, Step, Wait
from ..events import (
    AudioChunk,
    Dtmf,
    HangUp,
    Interrupted,
    ReplyFailed,
    ReplyStarted,
    SessionUpdated,
    ToolCall,
    ToolResult,
    TransferCall,
    TurnEnded,
    TurnStarted,
)
from ..stt._wer import normalise_words, word_error_rate
from ._checks import check_conversation, check_turn
from ._result import JudgeVerdict, Line, ReplyFailure, ScenarioResult, ToolUse, TurnResult
from ._scenario import Scenario, Turn

__all__ = [
    "DTMF_PREFIX",
    "SILENCE_PREFIX",
    "CallState",
    "Reply",
    "caller_side",
    "overall_wer",
    "read_conversation",
    "script_of",
]

DTMF_PREFIX = "\x00dtmf:"
"""A ``dtmf`` step travels through the script as a turn with this text; :func:`caller_side`
turns it into :class:`~voicekit.Dtmf` events before the agent sees it."""

SILENCE_PREFIX = "\x00silence:"
"""A ``quiet`` step travels as a turn with this text; :func:`caller_side` turns it into that
many seconds of silent audio, released in real time."""

_RATE = 16000
_FRAME = 320  # 20 ms at 16 kHz

_NAMES = tuple(name for name, _ in MILESTONES)


def script_of(scenario: Scenario) -> list[Step]:
    """The :func:`~voicekit.conversation.run_conversation` steps of ``scenario``'s turns.

    >>> from voicekit.eval._scenario import parse_scenario
    >>> s = parse_scenario({"turns": [{"say": "hi"}, {"wait": 1}, {"dtmf": "5"}]}, "x.json")
    >>> script_of(s)
    [Say(text='hi', after=None, reply=True), Wait(seconds=1.0), \
Say(text='\\x00dtmf:5', after=None, reply=False)]
    """
    steps: list[Step] = []
    for turn in scenario.turns:
        if turn.kind == "say":
            steps.append(Say(str(turn.text), turn.after, turn.reply))
        elif turn.kind == "dtmf":
            steps.append(Say(DTMF_PREFIX + str(turn.text), turn.after, turn.reply))
        elif turn.kind == "audio":
            assert turn.audio is not None
            steps.append(Audio(turn.audio, turn.after, turn.reply, turn.silence, turn.realtime))
        elif turn.kind == "wait":
            steps.append(Wait(turn.seconds))
        elif turn.kind == "quiet":
            steps.append(Say(f"{SILENCE_PREFIX}{turn.seconds!r}", None, False))
        else:
            steps.append(BargeIn(turn.text, turn.after_audio_ms))
    return steps


@dataclass
class CallState:
    """The call as the caller's side sees it: ``over`` once the agent hung up or transferred
    (a silence then ends early: nobody is listening any more)."""

    over: bool = False

    def see(self, item: Any) -> None:
        """Watch what the agent yields."""
        if isinstance(item, HangUp | TransferCall):
            self.over = True


async def _silence(seconds: float, start: float, line: CallState) -> AsyncIterator[AudioChunk]:
    """``seconds`` of silence from stream time ``start``, each 20 ms released at its pace."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    samples = np.zeros(_FRAME, np.int16)
    for k in range(max(1, round(seconds * _RATE / _FRAME))):
        await asyncio.sleep(max(0.0, began + k * _FRAME / _RATE - loop.time()))
        if line.over:
            return
        yield AudioChunk(samples, _RATE, start + k * _FRAME / _RATE)


async def caller_side(
    source: AsyncIterable[Any], line: CallState | None = None
) -> AsyncIterator[Any]:
    """The script's stream with each ``dtmf`` step as :class:`~voicekit.Dtmf` events (one per
    digit) and each ``quiet`` step as silent audio in real time (cut short once ``line`` is
    over), instead of the turn that carried it."""
    line = line or CallState()
    held: TurnStarted | None = None
    async for item in source:
        if isinstance(item, TurnStarted) and held is None:
            held = item
            continue
        if held is not None:
            if isinstance(item, TurnEnded) and item.text.startswith(DTMF_PREFIX):
                for digit in item.text[len(DTMF_PREFIX) :]:
                    yield Dtmf(digit, item.t)
                held = None
                continue
            if isinstance(item, TurnEnded) and item.text.startswith(SILENCE_PREFIX):
                seconds = float(item.text[len(SILENCE_PREFIX) :])
                async for chunk in _silence(seconds, item.t, line):
                    yield chunk
                held = None
                continue
            yield held
            held = None
            if isinstance(item, TurnStarted):
                held = item
                continue
        yield item
    if held is not None:
        yield held


# ---------------------------------------------------------------------------------------------
# Reading the timeline


@dataclass
class Reply:
    """One reply of the agent, read from the timeline: what it answered (``turn``: the user's
    words, None for a first message), what it said, what it did, when."""

    turn: str | None
    started: float
    text: str = ""
    first_audio: float | None = None
    interrupted: bool = False
    tools: list[ToolUse] = field(default_factory=list)
    failures: list[ReplyFailure] = field(default_factory=list)
    hung_up: bool = False
    transferred: str | None = None
    user_line: Line | None = None
    agent_lines: list[Line] = field(default_factory=list)


def _replies(timeline: Sequence[tuple[float, Any]]) -> tuple[list[Reply], list[Reply]]:
    """(replies to user turns, every reply) in order, with what happened in each."""
    replies: list[Reply] = []
    ended_at: dict[str, float] = {}
    written = 0
    calls: dict[str, int] = {}
    current: Reply | None = None
    for t, item in timeline:
        if isinstance(item, TurnEnded):
            ended_at[item.text] = t
        elif isinstance(item, ReplyStarted):
            current = Reply(item.turn, t)
            replies.append(current)
            calls = {}
        if current is None:
            continue
        if isinstance(item, AudioChunk) and current.first_audio is None:
            current.first_audio = t
        elif isinstance(item, ToolCall):
            calls[item.id] = len(current.tools)
            current.tools.append(ToolUse.of(item))
        elif isinstance(item, ToolResult) and item.call_id in calls:
            index = calls[item.call_id]
            use = current.tools[index]
            current.tools[index] = ToolUse(use.name, use.arguments, item.content, use.turn)
        elif isinstance(item, ReplyFailed):
            current.failures.append(ReplyFailure(item.source, item.error, item.fallback))
        elif isinstance(item, Interrupted):
            current.interrupted = True
        elif isinstance(item, HangUp):
            current.hung_up = True
        elif isinstance(item, TransferCall):
            current.transferred = item.to
        elif isinstance(item, SessionUpdated):
            messages = item.session.messages[written:]
            written = len(item.session.messages)
            said = []
            for message in messages:
                content = message.get("content")
                if not isinstance(content, str) or not content:
                    continue
                cut = bool(message.get("interrupted"))
                if message["role"] == "user":
                    at = ended_at.get(content, current.started)
                    current.user_line = Line("user", content, at)
                elif message["role"] == "assistant":
                    said.append(content)
                    current.interrupted = current.interrupted or cut
                    current.agent_lines.append(
                        Line("agent", content, current.first_audio or t, cut)
                    )
            current.text = " ".join(said)
    return [r for r in replies if r.turn is not None], replies


def _milestones(metrics: TurnMetrics | None) -> dict[str, float]:
    """Seconds from the end of the user's speech (a text turn: its end) to each milestone."""
    if metrics is None:
        return {}
    zero = metrics.speech_end if metrics.speech_end is not None else metrics.turn_end
    if zero is None:
        return {}
    out = {}
    for name in _NAMES:
        value = getattr(metrics, name)
        if value is not None:
            out[name] = round(max(0.0, value - zero), 6)
    return out


def _wer_pairs(turns: Sequence[Turn], heard: Sequence[str]) -> list[tuple[str, str]]:
    return [
        (str(turn.text), said)
        for turn, said in zip(turns, heard, strict=True)
        if turn.kind == "audio" and turn.text is not None
    ]


def overall_wer(pairs: Sequence[tuple[str, str]]) -> float | None:
    """The word error rate over several (reference, heard) pairs: all their errors over all
    their reference words.

    >>> overall_wer([("the cat sat", "the bat sat"), ("hello", "hello")])
    0.25
    """
    words = sum(len(normalise_words(ref)) for ref, _ in pairs)
    if not pairs:
        return None
    errors = sum(
        word_error_rate(ref, said) * max(1, len(normalise_words(ref))) for ref, said in pairs
    )
    return round(errors / max(1, words), 6)


_SPACES = re.compile(r"\s+")


async def read_conversation(
    scenario: Scenario,
    conversation: Conversation,
    metrics: Sequence[TurnMetrics],
    *,
    wall_time: float,
    seed: int,
    labels: dict[str, str] | None = None,
    judge: Callable[[list[Line], list[ToolUse]], Awaitable[JudgeVerdict | str]] | None = None,
) -> ScenarioResult:
    """The :class:`ScenarioResult` of a conversation played from ``scenario``: ``metrics`` are
    the latency probe's turns (one per reply to a user turn, in order); ``judge`` grades the
    transcript (a verdict, or why there is none)."""
    answered, everything = _replies(conversation.timeline)
    steps = [t for t in scenario.turns if t.gets_reply]
    groups: list[list[int]] = [[] for _ in steps]
    for k in range(len(answered)):
        if steps:
            groups[min(k, len(steps) - 1)].append(k)
    turns: list[TurnResult] = []
    heard: list[str] = []
    tool_calls: list[ToolUse] = []
    failures: list[ReplyFailure] = []
    for index, (step, members) in enumerate(zip(steps, groups, strict=True)):
        replies = [answered[k] for k in members]
        user = " ".join(r.turn or "" for r in replies).strip()
        heard.append(user)
        text = " ".join(r.text for r in replies if r.text)
        uses = [ToolUse(u.name, u.arguments, u.result, index) for r in replies for u in r.tools]
        fails = [
            ReplyFailure(f.source, f.error, f.fallback, index) for r in replies for f in r.failures
        ]
        tool_calls += uses
        failures += fails
        latency = _milestones(metrics[members[0]]) if members and members[0] < len(metrics) else {}
        wer = (
            word_error_rate(step.text, user)
            if step.kind == "audio" and step.text is not None and replies
            else None
        )
        checks = check_turn(
            step,
            replied=bool(replies),
            reply=text,
            tools=uses,
            failures=fails,
            interrupted=any(r.interrupted for r in replies),
            hung_up=any(r.hung_up for r in replies),
            transferred=next((r.transferred for r in replies if r.transferred), None),
            first_audio=latency.get("first_audio"),
            wer=wer,
        )
        turns.append(
            TurnResult(
                index,
                _SPACES.sub(" ", user),
                text,
                latency,
                any(r.interrupted for r in replies),
                tuple(checks),
            )
        )
    greeting_failures = [
        ReplyFailure(f.source, f.error, f.fallback, None) for r in everything if r.turn is None
        for f in r.failures
    ]
    failures = greeting_failures + failures
    ended = any(isinstance(item, HangUp) for _, item in conversation.timeline)
    transferred = next(
        (item.to for _, item in conversation.timeline if isinstance(item, TransferCall)), None
    )
    transcript: list[Line] = []
    for reply in everything:
        if reply.user_line is not None:
            transcript.append(reply.user_line)
        transcript += reply.agent_lines
    verdict = await judge(transcript, tool_calls) if judge is not None else None
    checks, judged = check_conversation(
        scenario.expect,
        reply=" ".join(r.text for r in everything if r.text),
        tools=tool_calls,
        failures=failures,
        ended=ended,
        transferred=transferred,
        first_audio=[t.latencies["first_audio"] for t in turns if "first_audio" in t.latencies],
        verdict=verdict,
    )
    return ScenarioResult(
        scenario.name,
        scenario.source,
        turns=tuple(turns),
        checks=tuple(checks),
        transcript=tuple(transcript),
        tool_calls=tuple(tool_calls),
        ended=ended,
        transferred=transferred,
        failures=tuple(failures),
        wer=overall_wer(_wer_pairs(steps, heard)),
        judge=judged,
        wall_time=round(wall_time, 6),
        seed=seed,
        labels=labels or {},
    )
