"""voicekit.notebook: clip players, the live view, one turn's times and its plot."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import warnings

import numpy as np
import pytest
import soundfile as sf

import voicekit as vk
from voicekit import agent, audio
from voicekit.conversation import barge_in, run_conversation, say, scripted_llm
from voicekit.events import (
    AudioChunk,
    Finish,
    Interrupted,
    ReplyStarted,
    Sentence,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    Token,
    ToolCall,
    ToolResult,
    Transcript,
    TurnEnded,
    TurnStarted,
)
from voicekit.notebook import live_view, player, timeline_plot, turn_times
from voicekit.session import Session


def wav_samples(data: bytes) -> tuple[np.ndarray, int]:
    samples, rate = sf.read(io.BytesIO(bytes(data)), dtype="int16")
    return samples, rate


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# =============================================================================================
# importing


def test_importing_the_module_loads_no_widget_or_plot_library():
    code = (
        "import sys, voicekit.notebook; "
        "print(sorted(m for m in ('ipywidgets', 'IPython', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# =============================================================================================
# player


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_player_plays_int16_samples_as_they_are(no_warnings):
    samples = (np.sin(np.arange(1600) / 5) * 12000).astype(np.int16)
    clip = player(samples, 16000)
    decoded, rate = wav_samples(clip.data)
    assert rate == 16000
    assert decoded.tolist() == samples.tolist()  # exactly: not normalised to full scale


def test_player_plays_quiet_float_audio_quietly(no_warnings):
    samples = np.full(800, 0.01, dtype=np.float32)
    decoded, _ = wav_samples(player(samples, 8000).data)
    assert decoded.tolist() == [328] * 800  # 0.01 of full scale, not normalised


def test_player_clips_float_audio_beyond_full_scale(no_warnings):
    decoded, _ = wav_samples(player(np.array([2.0, -3.0, 0.5]), 8000).data)
    assert decoded.tolist() == [32767, -32768, 16384]


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.float64])
def test_player_handles_silence_without_warnings(no_warnings, dtype):
    decoded, _ = wav_samples(player(np.zeros(1600, dtype=dtype), 16000).data)
    assert decoded.shape == (1600,) and not decoded.any()


def test_player_of_nothing_is_an_empty_player(no_warnings):
    clip = player(np.zeros(0, np.int16), 16000)
    assert wav_samples(clip.data)[0].shape == (0,)
    assert player([], 16000)._repr_html_()


def test_player_reads_a_path_and_resamples_it(no_warnings):
    path = audio.sample_path()
    samples, rate = audio.load(path)
    decoded, decoded_rate = wav_samples(player(path).data)
    assert decoded_rate == rate and len(decoded) == len(samples)
    decoded, decoded_rate = wav_samples(player(str(path), rate=8000).data)
    assert decoded_rate == 8000 and abs(len(decoded) - len(samples) // 2) <= 1


def test_player_joins_the_chunks_of_a_stream_and_skips_other_items(no_warnings):
    tone = (np.ones(160) * 1000).astype(np.int16)
    items = [
        SpeechStarted(0.0),
        AudioChunk(tone, 16000, 0.0),
        Sentence("hi"),
        AudioChunk(-tone, 16000, 0.01),
    ]
    decoded, rate = wav_samples(player(items).data)
    assert rate == 16000 and decoded.tolist() == [1000] * 160 + [-1000] * 160
    decoded, _ = wav_samples(player(AudioChunk(tone, 16000)).data)
    assert len(decoded) == 160


def test_player_resamples_chunks_at_other_rates_to_the_first_rate(no_warnings):
    items = [AudioChunk(np.zeros(160, np.int16), 16000), AudioChunk(np.zeros(80, np.int16), 8000)]
    decoded, rate = wav_samples(player(items).data)
    assert rate == 16000 and len(decoded) == 320


def test_player_takes_a_samples_rate_pair_and_mixes_stereo_down(no_warnings):
    stereo = np.stack([np.full(400, 0.5), np.full(400, -0.5)], axis=1)
    decoded, rate = wav_samples(player((stereo, 8000)).data)
    assert rate == 8000 and decoded.shape == (400,) and not decoded.any()


def test_player_as_a_widget_holds_wav_bytes(no_warnings):
    import ipywidgets

    clip = player(np.full(320, 0.25), 16000, widget=True)
    assert isinstance(clip, ipywidgets.Audio)
    decoded, rate = wav_samples(clip.value)
    assert rate == 16000 and decoded.tolist() == [8192] * 320


def test_player_needs_the_rate_of_a_bare_array():
    with pytest.raises(vk.AudioError, match="rate"):
        player(np.zeros(10, np.int16))


def test_player_refuses_a_stream_it_would_have_to_await():
    flow = audio.read(audio.sample_path())
    with pytest.raises(TypeError, match="to_array"):
        player(flow)


# =============================================================================================
# turn_times and timeline_plot

SPEECH = {"start_secs": 0.2, "stop_secs": 0.2}


def one_turn(*, tokens: bool = True, interrupted: bool = False) -> list[tuple[float, object]]:
    """A paced turn: speech 0.5–2.0 s, STT done 2.6, turn end 2.8, first audio 3.3."""
    second = AudioChunk(np.zeros(16000, np.int16), 16000)
    timeline: list[tuple[float, object]] = [
        (0.7, TurnStarted(0.5)),
        (0.7, SpeechStarted(0.5, SPEECH)),
        (2.2, SpeechStopped(2.0, SPEECH)),
        (2.6, Transcript("weather in Rome?", t=0.5)),
        (2.8, TurnEnded("weather in Rome?", 2.8)),
        (2.8, ReplyStarted("weather in Rome?", 2.8)),
        (2.85, ToolCall("c1", "get_weather", '{"city": "Rome"}')),
        (2.86, ToolResult("c1", "get_weather", "{}")),
    ]
    if tokens:
        timeline += [(2.9, Token("Sunny")), (2.95, Token(" in Rome.")), (3.0, Token(" It's"))]
    timeline += [(3.3, second)] + ([(3.4, Token(" warm."))] if tokens else []) + [(4.3, second)]
    if interrupted:
        timeline += [(4.8, TurnStarted(4.8)), (4.8, Interrupted("Sunny in Rome.", 4.8))]
    timeline += [(5.3, Finish()), (5.3, SessionUpdated(Session()))]
    return timeline


def test_turn_times_of_a_paced_turn():
    times = turn_times(one_turn())
    assert times.speech_start == pytest.approx(0.5)
    assert times.speech_end == pytest.approx(2.0)
    assert (times.vad_stop, times.transcript, times.turn_end) == (2.2, 2.6, 2.8)
    assert (times.reply_start, times.llm_first_token) == (2.8, 2.9)
    assert times.first_sentence == 2.95  # " in Rome." completes it: a full stop after a word
    assert times.first_audio == 3.3 and times.audio_end == pytest.approx(5.3)
    assert times.voice_to_voice == pytest.approx(1.3)
    assert not times.interrupted and times.text == "weather in Rome?"


def test_turn_times_cuts_the_reply_audio_at_a_barge_in():
    times = turn_times(one_turn(interrupted=True))
    assert times.interrupted and times.audio_end == pytest.approx(4.8)


def test_turn_times_picks_a_turn_and_skips_the_greeting():
    greeting = [(0.0, ReplyStarted(None)), (0.1, SessionUpdated(Session()))]
    first = one_turn()
    second = [(t + 10, item) for t, item in one_turn()]
    timeline = greeting + first + second
    assert turn_times(timeline, 0).speech_start == pytest.approx(0.5)
    assert turn_times(timeline).speech_start == pytest.approx(10.5)
    assert turn_times(timeline, -2) == turn_times(timeline, 0)
    with pytest.raises(ValueError, match="no turn 2"):
        turn_times(timeline, 2)
    with pytest.raises(ValueError, match="no reply"):
        turn_times(greeting)


def test_turn_times_without_tokens_has_one_step_from_request_to_audio():
    spans = turn_times(one_turn(tokens=False)).spans()
    labels = [label for label, _, _ in spans]
    assert labels == [
        "user speech",
        "VAD stop",
        "STT",
        "turn end",
        "LLM + TTS first audio",
        "reply audio",
    ]
    assert spans[4][1:] == (2.8, 3.3)


def test_a_sentence_seen_before_the_first_audio_counts_as_ready():
    timeline = one_turn(tokens=False)
    timeline.insert(8, (3.1, Sentence("Sunny in Rome.")))
    assert turn_times(timeline).first_sentence == 3.1
    # a Sentence passed on by the TTS after its audio says nothing about when it was ready
    late = one_turn(tokens=False)
    late.insert(9, (3.35, Sentence("Sunny in Rome.")))
    assert turn_times(late).first_sentence is None


def bars(fig):
    ax = fig.axes[0]
    found = {p.get_gid(): (p.get_x(), p.get_width()) for p in ax.patches if p.get_gid()}
    return ax, found


def test_timeline_plot_draws_a_labelled_bar_per_step():
    fig = timeline_plot(one_turn())
    ax, found = bars(fig)
    expected = [
        "user speech",
        "VAD stop",
        "STT",
        "turn end",
        "LLM first token",
        "first sentence",
        "TTS first audio",
        "reply audio",
    ]
    assert [t.get_text() for t in ax.get_yticklabels()] == expected[::-1] or [
        t.get_text() for t in ax.get_yticklabels()
    ] == expected
    assert sorted(found) == sorted(expected)
    assert found["user speech"] == pytest.approx((0.5, 1.5))
    assert found["STT"] == pytest.approx((2.2, 0.4))
    assert found["LLM first token"] == pytest.approx((2.8, 0.1))
    assert found["TTS first audio"] == pytest.approx((2.95, 0.35))
    assert found["reply audio"] == pytest.approx((3.3, 2.0))
    # the first step is drawn on top
    tops = {p.get_gid(): p.get_y() for p in ax.patches if p.get_gid()}
    assert tops["user speech"] > tops["reply audio"]
    texts = [t.get_text() for t in ax.texts]
    assert "voice-to-voice 1.30 s" in texts and "400 ms" in texts
    assert "weather in Rome?" in ax.get_title()


def test_timeline_plot_marks_an_interrupted_reply_and_takes_a_title():
    fig = timeline_plot(one_turn(interrupted=True), title="barge-in")
    ax, found = bars(fig)
    assert ax.get_title() == "barge-in (interrupted)"
    assert found["reply audio"] == pytest.approx((3.3, 1.5))


def test_timeline_plot_draws_on_given_axes():
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot()
    assert timeline_plot(one_turn(), ax=ax) is fig
    assert len(bars(fig)[1]) == 8


async def test_timeline_plot_takes_a_conversation():
    bot = agent(llm=scripted_llm("Hello there. How are you?"), tts=vk.tts.tones())
    result = await run_conversation(bot, [say("hi")])
    fig = timeline_plot(result)
    _, found = bars(fig)
    assert sorted(found) == ["LLM + TTS first audio", "reply audio"]  # no speech, no tokens
    assert found["reply audio"][1] == pytest.approx(result.audio_seconds)


# =============================================================================================
# live_view


def feed(view, items):
    for item in items:
        view.observe(item)


def test_the_view_shows_the_transcript_escaped_with_tool_calls():
    clock = FakeClock()
    view = live_view(clock=clock)
    question = "is <b>5 & 6</b> weather?"
    feed(
        view,
        [
            TurnStarted(0.5),
            SpeechStarted(0.5, SPEECH),
            SpeechStopped(2.0, SPEECH),
            Transcript(question, t=0.5),
        ],
    )
    view.flush()
    html = view.transcript.value
    assert "is &lt;b&gt;5 &amp; 6&lt;/b&gt; weather?" in html and "<b>5" not in html
    assert "<i>" in html  # still pending: the turn has not ended
    feed(
        view,
        [
            TurnEnded(question, 2.8),
            ReplyStarted(question, 2.8),
            ToolCall("c1", "get_weather", '{"city": "Rome"}'),
            ToolResult("c1", "get_weather", '{"conditions": "sunny"}'),
            Token("Sunny"),
            Token(" <i>in</i> Rome."),
        ],
    )
    view.flush()
    html = view.transcript.value
    assert "get_weather({&quot;city&quot;: &quot;Rome&quot;}) → {&quot;conditions&quot;" in html
    assert "Sunny &lt;i&gt;in&lt;/i&gt; Rome." in html
    assert html.index("get_weather") < html.index("Sunny")  # the reply follows the tool call
    final = Session().add_user(question).add_assistant("Sunny <i>in</i> Rome!")
    feed(view, [SessionUpdated(final)])
    view.flush()
    html = view.transcript.value
    assert "Sunny &lt;i&gt;in&lt;/i&gt; Rome!" in html  # what the session says was said
    assert "<i>" not in html.replace("&lt;i&gt;", "")  # nothing pending any more
    assert "listening" in view.status.value and "turns: 1" in view.status.value


def test_the_view_grows_the_reply_from_sentences_when_it_sees_no_tokens():
    view = live_view(clock=FakeClock())
    feed(view, [TurnEnded("hi", 1.0), ReplyStarted("hi", 1.0), Sentence("Hello there.")])
    feed(view, [Sentence("How are you?")])
    view.flush()
    assert "Hello there. How are you?" in view.transcript.value


def test_the_view_marks_an_interrupted_reply_with_what_was_heard():
    view = live_view(clock=FakeClock())
    chunk = AudioChunk(np.full(1600, 500, np.int16), 16000)
    feed(view, [TurnEnded("tell me a story", 1.0), ReplyStarted("tell me a story", 1.0)])
    feed(view, [Token("Once upon a time. "), Token("There was"), chunk, chunk])
    feed(view, [TurnStarted(3.0), Interrupted("Once upon a time.", 3.0)])
    feed(view, [SessionUpdated(Session())])
    view.flush()
    html = view.transcript.value
    assert "Once upon a time. <span style='color:#b00'>[interrupted]</span>" in html
    assert "There was" not in html
    decoded, rate = wav_samples(view.reply.value)
    assert rate == 16000 and len(decoded) == 3200 and set(decoded.tolist()) == {500}


def test_the_view_drops_an_empty_turn():
    view = live_view(clock=FakeClock())
    feed(view, [TurnStarted(0.5), TurnEnded("", 1.5)])
    view.flush()
    assert "no conversation yet" in view.transcript.value


def test_the_event_log_keeps_the_last_events_with_times_and_folds_runs():
    clock = FakeClock()
    view = live_view(clock=clock, max_events=3)
    chunk = AudioChunk(np.zeros(320, np.int16), 16000)
    view.observe(ReplyStarted("a <question>", 0.0))
    clock.now += 1.5
    feed(view, [Token("Hi"), Token(" there.")])
    clock.now += 0.25
    feed(view, [chunk] * 10)
    feed(view, [Finish()])
    view.flush()
    log = view.events.value
    assert "ReplyStarted" not in log  # only the last three lines are kept
    assert "  1.500  Token ×2 &#x27;Hi there.&#x27;" in log
    assert "  1.750  audio 0.20 s (10 chunks)" in log
    assert "  1.750  Finish(reason=&#x27;stop&#x27;, response_id=None)" in log
    assert [t for t, _ in view.timeline][:2] == [0.0, 1.5]


def test_the_view_cuts_the_question_from_the_callers_audio_when_the_turn_ends():
    view = live_view(clock=FakeClock())
    for k in range(100):  # 2 s of audio whose samples say which 20 ms chunk they are in
        view.listen(AudioChunk(np.full(320, k, np.int16), 16000, k * 0.02))
    view.listen(SpeechStarted(0.5))  # the caller's side: only audio counts
    feed(view, [TurnStarted(0.6), SpeechStarted(0.6, SPEECH), SpeechStopped(1.2, SPEECH)])
    view.flush()
    assert len(wav_samples(view.question.value)[0]) == 0  # not before the turn ends
    view.observe(TurnEnded("hello", 1.9))
    view.flush()
    decoded, rate = wav_samples(view.question.value)
    # from 0.3 s before the speech to 0.3 s after it stopped
    assert rate == 16000 and len(decoded) == round(1.2 * 16000)
    assert decoded[0] == 15 and decoded[-1] == 74


def test_the_view_renders_at_most_ten_times_a_second():
    clock = FakeClock()
    view = live_view(clock=clock)
    changes = []
    view.events.observe(lambda change: changes.append(change["new"]), names="value")
    for k in range(100):  # 100 events over one second
        view.observe(Transcript(f"word{k}", final=False, t=0.0))
        clock.now += 0.01
    assert 9 <= len(changes) <= 11
    assert "word99" not in view.events.value  # the last one waits for the next update…
    view.flush()
    assert "word99" in view.events.value  # …or for flush()


async def test_the_last_update_is_not_lost_when_events_stop():
    view = live_view(updates_per_second=20)
    view.observe(TurnStarted(0.0))
    view.observe(Transcript("late words", final=True, t=0.0))  # within 50 ms: throttled
    assert "late words" not in view.transcript.value
    await asyncio.sleep(0.12)
    assert "late words" in view.transcript.value


def test_the_view_checks_its_settings():
    with pytest.raises(ValueError, match="max_events"):
        live_view(max_events=0)
    with pytest.raises(ValueError, match="updates_per_second"):
        live_view(updates_per_second=0)


def test_the_view_displays_as_its_widget():
    view = live_view()
    bundle = view._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert view.widget.children[0] is view.status


async def test_the_view_follows_a_running_agent_through_taps():
    view = live_view()
    bot = agent(
        llm=scripted_llm("Once upon a time there was a bot. It talked and talked.", "Bye."),
        tts=vk.tts.tones(),
    )
    script = [say("story?"), barge_in("stop", after_audio_ms=300)]
    result = await run_conversation(lambda src: src | bot | vk.tap(view.observe), script)
    view.flush()
    html = view.transcript.value
    assert "[interrupted]" in html
    assert html.index("story?") < html.index("[interrupted]") < html.index("Bye.")
    heard = result.of(Interrupted)[0].heard
    assert f"{heard} <span style='color:#b00'>[interrupted]</span>" in html
    assert len(view.timeline) == len(result.timeline)
    assert len(wav_samples(view.reply.value)[0]) > 0


def test_core_imports_without_the_notebook_stack_and_says_which_extra() -> None:
    # A server or CLI install has no ipywidgets, IPython or matplotlib (the `notebook` extra):
    # voicekit, its CLI and voicekit.notebook still import, and each notebook function that
    # needs the stack names the extra to install.
    import subprocess
    import sys

    code = """
import sys
for name in ("ipywidgets", "IPython", "matplotlib"):
    sys.modules[name] = None  # an import of it now fails as if it were not installed
import numpy as np
import voicekit, voicekit.cli, voicekit.notebook, voicekit.testing
from voicekit import ConfigError
from voicekit.notebook import live_view, player, timeline_plot
calls = [
    lambda: player(np.zeros(160, np.int16), 16000),
    lambda: player(np.zeros(160, np.int16), 16000, widget=True),
    lambda: live_view(),
]
for call in calls:
    try:
        call()
    except ConfigError as exc:
        print(exc)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines == [
        "voicekit.notebook.player() needs IPython: pip install 'voicekit[notebook]'",
        "voicekit.notebook.player(widget=True) needs ipywidgets: pip install 'voicekit[notebook]'",
        "voicekit.notebook.live_view() needs ipywidgets: pip install 'voicekit[notebook]'",
    ]
    assert "ipywidgets" not in _core_dependencies()


def _core_dependencies() -> str:
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    return " ".join(project["project"]["dependencies"])
