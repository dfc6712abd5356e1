"""The page's turn meter: one final TurnMetrics per turn, the agent's when it sends one."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from voicekit import Session, TurnMetrics, agent
from voicekit.events import (
    AudioChunk,
    ReplyStarted,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    TurnEnded,
    TurnStarted,
)
from voicekit.tts import tones
from voicekit.web import turn_meter


def _turn(t: float) -> list[Any]:
    return [SpeechStarted(t), TurnStarted(t), SpeechStopped(t + 1.0), TurnEnded("hello", t + 1.0)]


def _metrics(out: list[Any]) -> list[tuple[int, TurnMetrics]]:
    return [(k, x) for k, x in enumerate(out) if isinstance(x, TurnMetrics)]


def test_without_the_agents_metrics_the_meter_sends_its_own_after_the_update() -> None:
    chunk = AudioChunk(np.zeros(160, np.int16), 16000)
    items = [*_turn(0.0), ReplyStarted("hello", 1.0), chunk, SessionUpdated(Session())]
    out = asyncio.run((items | turn_meter(iter(range(100)).__next__)).list())
    found = _metrics(out)
    assert len(found) == 2  # at the first audio (for the page's bar) and after the update
    assert found[1][0] == len(out) - 1 and isinstance(out[-2], SessionUpdated)


def test_an_agents_own_turn_metrics_replaces_the_meters_final_one() -> None:
    async def llm(messages: Any) -> Any:
        yield "Hi there."

    async def run() -> list[Any]:
        bot = agent(llm=llm, tts=tones(), metrics=True)
        return await (_turn(0.0) | bot | turn_meter()).list()

    out = asyncio.run(run())
    found = _metrics(out)
    finals = [m for k, m in found if k > 0 and isinstance(out[k - 1], SessionUpdated)]
    assert len(finals) == 1  # one final per turn, not the meter's and the agent's
    assert finals[0].llm_first_token is not None  # the agent's: it saw the LLM's tokens
    assert len(found) == 2  # plus the meter's early one at the first audio
