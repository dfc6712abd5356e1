"""An LLM judge: for what string rules cannot check, any OpenAI-compatible model grades the
transcript against the scenario's rubric and answers a score with its reason.

The judge is named like the agent's LLM (``--judge`` takes a preset, ``NAME:MODEL`` or a base
URL; ``--judge-model``, ``--judge-api-key-env``), goes through :func:`voicekit.llm.chat` with
temperature 0 and the conversation's seed, and must answer one JSON object
``{"score": N, "reason": "..."}``; anything else is a failed check that says what came back.

>>> from voicekit.eval._scenario import Judge
>>> parse_verdict('Sure! {"score": 4, "reason": "polite and right"}', Judge("be right"))
JudgeVerdict(score=4.0, reason='polite and right', passed=True)
>>> parse_verdict('{"score": 9, "reason": "x"}', Judge("be right"))
Traceback (most recent call last):
...
ValueError: the judge's score 9 is not on the scale 1 to 5
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .._errors import ConfigError, VoicekitError
from .._frozen import thaw
from ..events import Token
from ..llm import chat
from ..llm.endpoint import Endpoint
from ._result import JudgeVerdict, Line, ToolUse
from ._scenario import Judge

__all__ = ["JudgeSpec", "grade", "judge_endpoint", "judge_messages", "parse_verdict"]

JUDGE_SYSTEM = (
    "You grade a recorded conversation between a caller and a voice agent against a rubric. "
    "Read the transcript and the tool calls, then answer with one JSON object and nothing "
    'else: {"score": <a whole number from 1 to SCALE>, "reason": "<one short sentence>"}. '
    "1 means the rubric is not met at all, SCALE that it is fully met."
)


@dataclass(frozen=True, slots=True)
class JudgeSpec:
    """Which LLM judges (picklable: a worker resolves it): ``llm`` a preset, ``NAME:MODEL`` or
    a base URL, with ``model``, ``api_key_env`` and ``timeout`` as for the agent's LLM."""

    llm: str
    model: str | None = None
    api_key_env: str | None = None
    timeout: float | None = None


async def judge_endpoint(spec: JudgeSpec, *, seed: int | None = None) -> Endpoint:
    """The judge's endpoint (temperature 0, ``seed``); ConfigError for one that cannot judge."""
    from ..cli._llm import NeedsModel, explicit_endpoint, listed_model

    args = argparse.Namespace(
        llm=spec.llm,
        model=spec.model,
        base_url=None,
        api_key_env=spec.api_key_env,
        timeout=spec.timeout,
    )
    chosen = explicit_endpoint(args)
    if isinstance(chosen, NeedsModel):
        chosen = await listed_model(chosen)
    if not isinstance(chosen, Endpoint):
        raise ConfigError(
            f"--judge {spec.llm}: a judge must be an LLM server (a preset or a base URL), "
            "not the offline responder or a model in process"
        )
    return dataclasses.replace(chosen, temperature=0.0, seed=seed)


def _transcript(lines: Sequence[Line], tools: Sequence[ToolUse]) -> str:
    out = []
    for line in lines:
        who = "Caller" if line.role == "user" else "Agent"
        cut = " [cut off by the caller]" if line.interrupted else ""
        out.append(f"{who}: {line.text}{cut}")
    for use in tools:
        arguments = json.dumps(thaw(use.arguments), ensure_ascii=False)
        result = f" -> {use.result}" if use.result is not None else ""
        out.append(f"Tool call: {use.name}({arguments}){result}")
    return "\n".join(out) or "(nothing was said)"


def judge_messages(
    judge: Judge, lines: Sequence[Line], tools: Sequence[ToolUse]
) -> list[dict[str, str]]:
    """The chat messages the judge gets: the instruction, then the rubric and transcript."""
    return [
        {"role": "system", "content": JUDGE_SYSTEM.replace("SCALE", str(judge.scale))},
        {
            "role": "user",
            "content": f"Rubric: {judge.rubric}\n\nTranscript:\n{_transcript(lines, tools)}",
        },
    ]


_OBJECT = re.compile(r"\{.*\}", re.S)


def parse_verdict(text: str, judge: Judge) -> JudgeVerdict:
    """The verdict in the judge's answer (the first JSON object in it); ValueError saying what
    is wrong with it."""
    match = _OBJECT.search(text)
    shown = text if len(text) <= 200 else text[:199] + "…"
    if match is None:
        raise ValueError(f"the judge did not answer a JSON object: {shown!r}")
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError:
        raise ValueError(f"the judge's answer is not valid JSON: {shown!r}") from None
    if not isinstance(data, dict):
        raise ValueError(f"the judge's answer is not a JSON object: {shown!r}")
    score: Any = data.get("score")
    if isinstance(score, str):
        with contextlib.suppress(ValueError):
            score = float(score.strip())
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise ValueError(f"the judge's answer has no numeric score: {shown!r}")
    if not 1 <= score <= judge.scale:
        raise ValueError(f"the judge's score {score:g} is not on the scale 1 to {judge.scale}")
    reason = data.get("reason")
    reason = reason.strip() if isinstance(reason, str) else ""
    return JudgeVerdict(float(score), reason, bool(score >= judge.min_score))


async def grade(
    endpoint: Endpoint, judge: Judge, lines: Sequence[Line], tools: Sequence[ToolUse]
) -> JudgeVerdict | str:
    """The judge's verdict, or why there is none (the LLM failed, or its answer was not a
    verdict) as text."""
    parts: list[str] = []
    try:
        async for event in chat(endpoint, judge_messages(judge, lines, tools)):
            if isinstance(event, Token):
                parts.append(event.text)
    except VoicekitError as exc:
        return f"the judge's LLM failed: {type(exc).__name__}: {exc}"
    try:
        return parse_verdict("".join(parts), judge)
    except ValueError as exc:
        return str(exc)
