"""voicekit.notebook over many turns: turns_of reads TurnMetrics from calls, latencies gives the
seconds of each step, latency_plot draws their spread; timeline_plot takes a TurnMetrics."""

from __future__ import annotations

import numpy as np
import pytest

import voicekit as vk
from voicekit import agent
from voicekit.conversation import run_conversation, say, scripted_llm
from voicekit.events import (
    AudioChunk,
    ReplyStarted,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    Token,
    TurnEnded,
    TurnStarted,
    Usage,
)
from voicekit.notebook import latencies, latency_plot, timeline_plot, turn_times, turns_of
from voicekit.session import Session

SPEECH = {"start_secs": 0.2, "stop_secs": 0.2}


def turn(at: float, wait: float) -> list[tuple[float, object]]:
    """One paced turn starting at ``at``: speech 0.5 s in, stopped 1.5 s later; the turn ends
    0.6 s after the stop; first audio ``wait`` s after the end of speech."""
    end = at + 2.0
    return [
        (at + 0.7, TurnStarted(at + 0.5)),
        (at + 0.7, SpeechStarted(at + 0.5, SPEECH)),
        (end + 0.2, SpeechStopped(end, SPEECH)),
        (end + 0.8, TurnEnded("hello", end + 0.8)),
        (end + 0.8, ReplyStarted("hello", end + 0.8)),
        (end + wait, AudioChunk(np.zeros(1600, np.int16), 16000)),
        (end + wait + 0.2, SessionUpdated(Session())),
    ]


def measured(v2v: float, *, llm: float | None = None) -> vk.TurnMetrics:
    """A turn whose reply came ``v2v`` s after the end of speech (turn end at +0.8 s)."""
    first_token = None if llm is None else 10.8 + llm
    return vk.TurnMetrics(
        speech_end=10.0, vad_stop=10.2, turn_end=10.8, reply_start=10.8,
        llm_first_token=first_token, first_audio=10.0 + v2v,
    )


# =============================================================================================
# turns_of


def test_turns_of_reads_every_reply_of_a_timeline_without_turn_metrics():
    timeline = turn(0.0, 1.1) + turn(10.0, 1.5)
    found = turns_of(timeline)
    assert [round(m.voice_to_voice, 6) for m in found] == [1.1, 1.5]
    assert found == [turn_times(timeline, 0), turn_times(timeline, 1)]


def test_turns_of_takes_calls_in_every_form():
    one = measured(1.0)
    yielded = [SessionUpdated(Session()), measured(2.0), AudioChunk(np.zeros(8, np.int16), 16000)]
    calls = [one, turn(0.0, 1.2), yielded]
    assert [round(m.voice_to_voice, 6) for m in turns_of(calls)] == [1.0, 1.2, 2.0]
    assert turns_of(one) == [one]
    assert turns_of(yielded) == [measured(2.0)]


def test_turns_of_keeps_the_turn_metrics_after_the_reply_ends_not_an_early_estimate():
    early, final = measured(0.9), measured(1.0)  # a meter's estimate at the first audio, then
    items = [ReplyStarted("hi"), early, SessionUpdated(Session()), final, ReplyStarted("x")]
    assert turns_of(items) == [final]


async def test_turns_of_a_conversation_uses_the_agents_own_turn_metrics():
    bot = agent(
        llm=scripted_llm(["Hello ", "there. ", Usage(30, 4)], ["Bye ", "now. ", Usage(40, 3)]),
        tts=vk.tts.tones(),
        metrics=True,
    )
    result = await run_conversation(bot, [say("hi"), say("bye")])
    yielded = result.of(vk.TurnMetrics)
    assert len(yielded) == 2
    assert turns_of(result) == yielded
    assert [(m.input_tokens, m.output_tokens) for m in yielded] == [(30, 4), (40, 3)]
    # measured inside the agent: the LLM's first token is there (a stage after it sees none)
    assert all(m.llm_first_token is not None for m in yielded)


# =============================================================================================
# latencies and latency_plot


def test_latencies_gives_the_seconds_of_each_step_of_each_turn():
    rows = latencies([measured(1.0, llm=0.1), measured(1.4, llm=0.3), measured(2.0)])
    assert rows["VAD stop"] == [0.2, 0.2, 0.2]
    assert rows["turn end"] == [0.6, 0.6, 0.6]
    assert rows["LLM first token"] == [0.1, 0.3]  # the third turn has no token seen
    assert rows["TTS first audio"] == [0.1, 0.3, 1.2]  # from the last milestone before it
    assert rows["voice-to-voice"] == [1.0, 1.4, 2.0]
    assert rows["STT"] == [] and rows["first sentence"] == []


def test_latency_plot_draws_a_box_per_step_with_median_and_p90():
    calls = [[measured(1.0 + 0.1 * k, llm=0.05 * k) for k in range(10)], measured(3.0)]
    fig = latency_plot(calls)
    ax = fig.axes[0]
    rows = {t.get_text(): y for t, y in zip(ax.get_yticklabels(), ax.get_yticks(), strict=True)}
    labels = sorted(rows, key=rows.__getitem__, reverse=True)  # top to bottom
    assert labels == ["VAD stop", "turn end", "LLM first token", "TTS first audio",
                      "voice-to-voice"]
    boxes = {p.get_gid() for p in ax.patches if p.get_gid()}
    assert boxes == set(labels)
    v2v = [1.0 + 0.1 * k for k in range(10)] + [3.0]
    p90 = np.percentile(v2v, 90)
    texts = [t.get_text() for t in ax.texts]
    assert f"median 1.50 s · p90 {p90:.2f} s · n=11" in texts
    assert "median 200 ms · p90 200 ms · n=11" in texts  # the VAD's stop, every turn alike
    assert ax.get_title() == "latency over 11 turns"


def test_latency_plot_draws_on_given_axes_and_takes_a_title():
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot()
    assert latency_plot([measured(1.0)], ax=ax, title="calls of Monday") is fig
    assert ax.get_title() == "calls of Monday"


def test_latency_plot_says_when_there_is_nothing_to_draw():
    with pytest.raises(ValueError, match="no turn with a measured step"):
        latency_plot([vk.TurnMetrics(), [Token("hi")]])


# =============================================================================================
# timeline_plot


def spans_drawn(fig):
    ax = fig.axes[0]
    return {p.get_gid(): (p.get_x(), p.get_width()) for p in ax.patches if p.get_gid()}


def test_timeline_plot_draws_a_turn_metrics_value():
    m = vk.TurnMetrics(text="hi", speech_start=1.0, speech_end=2.0, vad_stop=2.2,
                       transcript=2.5, turn_end=2.8, reply_start=2.8, llm_first_token=3.0,
                       first_sentence=3.1, first_audio=3.3, audio_end=4.0)
    found = spans_drawn(timeline_plot(m))
    assert found["LLM first token"] == pytest.approx((2.8, 0.2))
    assert found["reply audio"] == pytest.approx((3.3, 0.7))
    assert len(found) == 8


async def test_timeline_plot_of_a_conversation_prefers_the_agents_turn_metrics():
    bot = agent(llm=scripted_llm("Hello there. How are you?"), tts=vk.tts.tones(), metrics=True)
    result = await run_conversation(bot, [say("hi")])
    (m,) = result.of(vk.TurnMetrics)
    found = spans_drawn(timeline_plot(result))
    # the agent saw its LLM's first token; a timeline after the agent has none
    assert "LLM first token" in found and "LLM + TTS first audio" not in found
    assert found["LLM first token"] == pytest.approx((m.reply_start, m.llm_first_token
                                                      - m.reply_start))
    with pytest.raises(ValueError, match="no turn 1"):
        timeline_plot(result, turn=1)
