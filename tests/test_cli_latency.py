"""One implementation of a turn's milestones: ``turn_metrics`` reads the notebook's timelines
and the CLI probe's alike (issue 9, structure)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import voicekit.cli._latency as latency
import voicekit.notebook as notebook
from voicekit._metrics import TurnMetrics, turn_metrics
from voicekit.events import (
    AudioChunk,
    Interrupted,
    ReplyStarted,
    Sentence,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    Token,
    ToolCall,
    Transcript,
    TurnEnded,
    TurnPending,
    TurnStarted,
)
from voicekit.session import Session

SPEECH = {"start_secs": 0.2, "stop_secs": 0.2}
HALF_SECOND = AudioChunk(np.zeros(8000, np.int16), 16000)


def test_the_notebook_and_the_cli_share_one_function() -> None:
    assert notebook.turn_metrics is turn_metrics and latency.turn_metrics is turn_metrics
    assert notebook.TurnTimes is TurnMetrics and latency.TurnLatency is TurnMetrics
    with pytest.raises(dataclasses.FrozenInstanceError):
        TurnMetrics().speech_end = 1.0  # type: ignore[misc]
    plain = {f.name for f in dataclasses.fields(TurnMetrics)} - {
        "text", "sentence", "call_id", "errors"
    }  # fmt: skip
    hints = {f.name: f.type for f in dataclasses.fields(TurnMetrics) if f.name in plain}
    assert set(hints.values()) <= {"float | None", "float", "bool", "int"}


def probe_timeline(*, preempted: bool) -> list[tuple[float, object]]:
    """As the CLI's probe notes it: each item where it leaves its stage. Speech ends at stream
    time 2.0 (origin 10.0: 12.0 on the wall clock)."""
    timeline: list[tuple[float, object]] = [
        (10.7, SpeechStarted(0.5, SPEECH)),  # after the VAD: before the turn detector's marker
        (10.71, TurnStarted(0.5)),
        (12.25, SpeechStopped(2.0, SPEECH)),
        (12.6, Transcript("weather in Rome?", t=0.5)),
        (12.62, TurnPending("weather in Rome?", 12.62)),
    ]
    llm = [
        (12.7, ToolCall("c1", "get_weather", '{"city": "Rome"}')),
        (12.9, Token(" ")),
        (12.95, Token("Foggy in Rome.")),
        (13.0, Token(" Cool")),
        (13.02, Sentence("Foggy in Rome.")),
    ]
    if preempted:  # the reply was prepared during the turn detector's wait
        timeline += [*llm, (13.3, TurnEnded("weather  in Rome?", 13.3)),
                     (13.31, ReplyStarted("weather in Rome?", 13.3))]  # fmt: skip
    else:
        timeline += [(13.3, TurnEnded("weather in Rome?", 13.3)),
                     (13.31, ReplyStarted("weather in Rome?", 13.3))]  # fmt: skip
        timeline += [(round(t + 0.7, 6), item) for t, item in llm]
    end = SessionUpdated(Session(call_id="CA-probe"))
    return [*timeline, (13.8, HALF_SECOND), (14.3, HALF_SECOND), (14.8, end)]


def test_a_promoted_reply_counts_the_llm_work_done_during_the_turn() -> None:
    m = turn_metrics(probe_timeline(preempted=True), origin=10.0)
    assert (m.speech_start, m.speech_end, m.speech_end_t) == (10.5, 12.0, 2.0)
    assert (m.vad_stop, m.transcript, m.turn_end, m.reply_start) == (12.25, 12.6, 13.3, 13.31)
    # "Foggy in Rome." is complete with its own token: the splitter releases it at once (issue
    # 12 item 6), not when " Cool" comes
    assert (m.llm_first_token, m.first_sentence, m.first_audio) == (12.95, 12.95, 13.8)
    assert (m.tool_calls, m.sentence, m.audio_end) == (1, "Foggy in Rome.", 14.8)
    assert m.total == pytest.approx(1.8)
    steps = {name: step for name, _, step, _ in m.steps()}
    assert steps["llm_first_token"] == 0.0 and steps["first_sentence"] == 0.0  # took no time
    assert steps["first_audio"] == pytest.approx(0.5)


def test_a_reply_started_at_the_turn_end() -> None:
    m = turn_metrics(probe_timeline(preempted=False), origin=10.0)
    assert (m.llm_first_token, m.first_sentence, m.tool_calls) == (13.65, 13.65, 1)
    steps = [step for _, _, step, _ in m.steps()]
    assert steps == pytest.approx([0.25, 0.35, 0.7, 0.35, 0.0, 0.15])
    without_origin = turn_metrics(probe_timeline(preempted=False))
    assert without_origin.speech_end == pytest.approx(12.05)  # seen, less stop_secs


def test_llm_work_of_a_cancelled_speculation_does_not_count() -> None:
    timeline = probe_timeline(preempted=True)
    pending = next(k for k, (_, i) in enumerate(timeline) if isinstance(i, TurnPending))
    # the user went on after the pause: the speculation's tokens belong to no reply
    timeline[pending + 6 : pending + 6] = [(13.1, SpeechStarted(3.0, SPEECH))]
    m = turn_metrics(timeline, origin=10.0)
    assert m.llm_first_token is None and m.tool_calls == 0 and m.first_sentence is None


def test_a_barge_in_cuts_the_reply_audio() -> None:
    timeline = probe_timeline(preempted=False)[:-1]
    timeline += [(14.0, TurnStarted(4.0)), (14.0, Interrupted("Foggy in Rome.", 4.0)),
                 (14.0, SessionUpdated(Session()))]  # fmt: skip
    m = turn_metrics(timeline)
    assert m.interrupted and m.audio_end == 14.0


def test_the_probe_records_at_first_audio_and_completes_at_the_reply_end() -> None:
    now = {"t": 0.0}
    probe = latency.LatencyProbe(clock=lambda: now["t"], origin=10.0)
    seen: list[TurnMetrics] = []
    probe.on_turn = seen.append
    taps = {
        SpeechStarted: probe._see_vad, SpeechStopped: probe._see_vad,
        Transcript: probe._see_stt, TurnStarted: probe._see_turns,
        TurnPending: probe._see_turns, TurnEnded: probe._see_turns, Token: probe._note,
        ToolCall: probe._note, Sentence: probe._see_tts_input,
    }  # fmt: skip
    greeting = [(9.0, ReplyStarted(None)), (9.1, HALF_SECOND), (9.6, SessionUpdated(Session()))]
    for t, item in greeting + probe_timeline(preempted=False):
        now["t"] = t
        see = taps.get(type(item), probe._see_agent)
        see(item)
        if type(item) in (TurnStarted, TurnEnded):
            probe._see_agent(item)  # the agent passes the turn markers on
        if isinstance(item, AudioChunk) and t == 13.8:
            assert len(seen) == 1 and seen[0].first_audio == 13.8 and seen[0].audio_end == 14.3
    assert len(seen) == 1 and len(probe.turns) == 1  # the greeting is no user turn
    assert probe.turns[0] == turn_metrics(probe_timeline(preempted=False), origin=10.0)
    assert probe.turns[0].audio_end == 14.8  # completed at the reply's end
    assert probe.idle and probe.stops == 1
    assert isinstance(probe.timeline[0][1], ReplyStarted)  # what no later turn needs is gone
