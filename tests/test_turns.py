"""User turns: start and stop strategies on scripted streams, warnings, and the real sample."""

from __future__ import annotations

import asyncio
import re
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voicekit import (
    AudioChunk,
    ConfigError,
    SpeechStarted,
    SpeechStopped,
    Transcript,
    TurnEnded,
    TurnPending,
    TurnStarted,
    stt,
)
from voicekit.audio import read, sample_path
from voicekit.ops import Stage
from voicekit.turns import (
    MinWords,
    SpeechTimeout,
    StopSecsWarning,
    STTLatency,
    VADStart,
    default_start_strategies,
    default_stop_strategies,
    fade_out,
    min_words,
    speech_timeout,
    transcript_start,
    turn_analyzer,
    turns,
    vad_start,
    wake_phrase,
)
from voicekit.vad import vad

RATE = 16000
STEP = 0.02  # seconds of audio per scripted chunk
PARAMS = {"start_secs": 0.2, "stop_secs": 0.2}

# ---------------------------------------------------------------------------------------------
# Scripted streams: silent (or given) audio in 20 ms chunks, with items inserted where they
# would arrive. A marker arrives start_secs / stop_secs after its t, as voicekit.vad emits it.

Timed = tuple[float, Any]


def started(t: float, secs: float = 0.2) -> Timed:
    return (t + secs, SpeechStarted(t, {**PARAMS, "start_secs": secs}))


def stopped(t: float, secs: float = 0.2) -> Timed:
    return (t + secs, SpeechStopped(t, {**PARAMS, "stop_secs": secs}))


def heard(text: str, at: float, onset: float, final: bool = True) -> Timed:
    return (at, Transcript(text, final, onset))


def timeline(end: float, *events: Timed, audio: np.ndarray | None = None) -> list[Any]:
    """Chunks covering [0, end); each event goes before the first chunk starting at or after
    its arrival time (stable for equal times)."""
    if audio is None:
        audio = np.zeros(round(end * RATE), np.int16)
    size = round(STEP * RATE)
    pending = sorted(events, key=lambda e: e[0])
    out: list[Any] = []
    i = 0
    for k in range(round(end / STEP)):
        t0 = k * size / RATE
        while i < len(pending) and pending[i][0] <= t0 + 1e-9:
            out.append(pending[i][1])
            i += 1
        out.append(AudioChunk(audio[k * size : (k + 1) * size], RATE, t0))
    out.extend(item for _, item in pending[i:])
    return out


def run(items: list[Any], **kw: Any) -> list[Any]:
    return asyncio.run(turns(items, **kw).list())


def turn_events(items: list[Any]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for x in items:
        if isinstance(x, TurnStarted):
            out.append(("start", round(x.t, 6)))
        elif isinstance(x, TurnEnded):
            out.append(("end", x.text, round(x.t, 6)))
    return out


def passed(items: list[Any]) -> list[Any]:
    return [x for x in items if not isinstance(x, TurnStarted | TurnPending | TurnEnded)]


def pending_events(items: list[Any]) -> list[tuple[Any, ...]]:
    """Turn marks with the pending ones: ("pending", text, t) in their place."""
    out: list[tuple[Any, ...]] = []
    for x in items:
        if isinstance(x, TurnPending):
            out.append(("pending", x.text, round(x.t, 6)))
        elif isinstance(x, TurnStarted | TurnEnded):
            out += turn_events([x])
    return out


def check_placement(items: list[Any]) -> None:
    """Each TurnEnded comes just before the first chunk that takes stream time to its t."""
    for i, x in enumerate(items):
        if isinstance(x, TurnEnded):
            before = [c for c in items[:i] if isinstance(c, AudioChunk)]
            after = [c for c in items[i + 1 :] if isinstance(c, AudioChunk)]
            assert not before or before[-1].end <= x.t + 1e-9
            assert not after or after[0].end >= x.t - 1e-9


# ---------------------------------------------------------------------------------------------
# Defaults, values, configuration


def test_defaults_are_vad_start_and_speech_timeout() -> None:
    assert default_start_strategies() == (VADStart(),)
    assert default_stop_strategies() == (SpeechTimeout(0.6),)
    assert speech_timeout().user_speech_timeout == 0.6
    assert turn_analyzer().threshold == 0.5
    assert wake_phrase("hi").timeout == 10.0 and wake_phrase("hi").mode == "timeout"


def test_strategies_are_frozen_values() -> None:
    strategy = min_words(3)
    assert strategy == MinWords(3) and hash(strategy) == hash(MinWords(3))
    with pytest.raises(AttributeError):
        strategy.n = 4  # type: ignore[misc]
    assert wake_phrase("hey you") == wake_phrase("hey you")


@pytest.mark.parametrize(
    "make",
    [
        lambda: min_words(0),
        lambda: min_words(True),
        lambda: wake_phrase(),
        lambda: wake_phrase("!!"),
        lambda: wake_phrase("hi", mode="forever"),
        lambda: wake_phrase("hi", timeout=0),
        lambda: speech_timeout(-1),
        lambda: turn_analyzer(threshold=2),
        lambda: turn_analyzer(fn=42),
        lambda: STTLatency(float("nan")),
        lambda: fade_out(drop_db=-1),
        lambda: turns(start=[vad_start(), wake_phrase("hi")]),
        lambda: turns(start=[]),
        lambda: turns(stop=[vad_start()]),
        lambda: turns(stop="speech"),
        lambda: turns(stt_p99=-0.1),
        lambda: turns(stop_timeout=0),
    ],
)
def test_bad_configuration_is_refused(make: Any) -> None:
    with pytest.raises(ConfigError):
        made = make()
        if isinstance(made, Stage):  # a stage checks its parameters when it runs
            asyncio.run(made([]).list())


def test_everything_passes_through_in_order() -> None:
    marker = object()
    items = timeline(
        3.0,
        started(0.5),
        (0.9, marker),
        stopped(1.5),
        heard("hi", 1.8, 0.5),
        (2.0, STTLatency(1.0)),
    )
    out = run(items)
    assert passed(out) == items
    assert turn_events(out) == [("start", 0.5), ("end", "hi", 2.3)]
    begun = next(i for i, x in enumerate(out) if isinstance(x, TurnStarted))
    assert isinstance(out[begun + 1], SpeechStarted)  # just before the item that started it
    check_placement(out)


# ---------------------------------------------------------------------------------------------
# speech_timeout


def test_turn_ends_a_pause_after_the_stop_when_the_transcript_is_in() -> None:
    out = run(timeline(4.0, started(1.0), stopped(2.0), heard("hello", 2.5, 1.0)))
    assert turn_events(out) == [("start", 1.0), ("end", "hello", 2.8)]  # 2.0 + 0.2 + 0.6
    check_placement(out)


def test_a_late_transcript_ends_the_turn_on_arrival() -> None:
    out = run(timeline(4.0, started(1.0), stopped(2.0), heard("hello", 3.1, 1.0)))
    assert turn_events(out) == [("start", 1.0), ("end", "hello", 3.1)]
    transcript = next(i for i, x in enumerate(out) if isinstance(x, Transcript))
    assert isinstance(out[transcript + 1], TurnEnded)  # right after the transcript


def test_user_speech_timeout_sets_the_pause() -> None:
    events = (started(1.0), stopped(2.0), heard("hello", 2.3, 1.0))
    out = run(timeline(4.0, *events), stop=[speech_timeout(1.2)])
    assert turn_events(out)[-1] == ("end", "hello", 3.4)


def test_resuming_within_the_pause_continues_the_turn() -> None:
    events = [started(1.0), stopped(2.0), heard("hello", 2.3, 1.0)]
    resumed = run(timeline(5.0, *events, started(2.5), stopped(3.5), heard("world", 3.8, 2.5)))
    assert turn_events(resumed) == [("start", 1.0), ("end", "hello world", 4.3)]
    # resuming after the pause is a new turn
    later = run(timeline(5.0, *events, started(2.7), stopped(3.5), heard("world", 3.8, 2.7)))
    assert turn_events(later) == [
        ("start", 1.0),
        ("end", "hello", 2.8),
        ("start", 2.7),
        ("end", "world", 4.3),
    ]


def test_without_a_new_transcript_the_stt_p99_wait_ends_the_turn() -> None:
    events = [started(1.0), stopped(2.0), heard("one", 2.3, 1.0), started(2.5), stopped(3.0)]
    # p99 1.5 s: the wait after the stop is 1.5 - 0.2 = 1.3 s, longer than the 0.6 s pause
    out = run(timeline(6.0, *events), stt_p99=1.5)
    assert turn_events(out) == [("start", 1.0), ("end", "one", 4.5)]
    # an instant recogniser: the pause alone; an unknown one: assumed 1.0 s
    assert turn_events(run(timeline(6.0, *events), stt_p99=0.0))[-1] == ("end", "one", 3.8)
    assert turn_events(run(timeline(6.0, *events)))[-1] == ("end", "one", 4.0)
    # a transcript after the stop ends it after the pause, without waiting for the p99
    quick = run(timeline(6.0, *events, heard("two", 3.4, 2.5)), stt_p99=1.5)
    assert turn_events(quick) == [("start", 1.0), ("end", "one two", 3.8)]


def test_a_late_transcript_of_an_earlier_utterance_is_not_the_answer() -> None:
    # "one" (said 1.0-2.0) is recognised only after "two" (2.3-2.6) has stopped; the answer for
    # "two" is its own transcript (t = its onset), so the turn waits for it.
    events = [
        started(1.0),
        stopped(2.0),
        started(2.3),
        stopped(2.6),
        heard("one", 2.9, 1.0),
        heard("two", 3.6, 2.3),
    ]
    out = run(timeline(6.0, *events), stt_p99=1.5)
    assert turn_events(out) == [("start", 1.0), ("end", "one two", 3.6)]
    analyzed = run(timeline(6.0, *events), stt_p99=1.5, stop=[turn_analyzer(lambda s, r: 1.0)])
    assert turn_events(analyzed) == [("start", 1.0), ("end", "one two", 3.6)]


def test_a_transcript_later_than_the_wait_starts_a_new_turn() -> None:
    # "two" was said inside the turn, but its text comes after the turn ended on "one": it is
    # not dropped, it starts a turn of its own (whatever the start strategies) that ends at once
    events = [started(1.0), stopped(2.0), heard("one", 2.3, 1.0), started(2.5), stopped(3.0)]
    late = heard("two", 5.0, 2.5)
    expected = [("start", 1.0), ("end", "one", 4.5), ("start", 2.5), ("end", "two", 5.0)]
    assert turn_events(run(timeline(6.0, *events, late), stt_p99=1.5)) == expected
    kept = run(timeline(6.0, *events, late), stt_p99=1.5, start=[vad_start(), transcript_start()])
    assert turn_events(kept) == expected
    words = run(timeline(6.0, *events, late), stt_p99=1.5, start=[min_words(3)])
    assert turn_events(words) == []  # "one" started no turn, so "two" was said in none


def test_watchdog_ends_a_turn_without_words() -> None:
    events = (started(1.0), stopped(2.0))
    assert turn_events(run(timeline(9.0, *events))) == [("start", 1.0), ("end", "", 7.2)]
    assert turn_events(run(timeline(9.0, *events), stop_timeout=2.0)) == [
        ("start", 1.0),
        ("end", "", 4.2),
    ]
    # no watchdog: the end of the stream ends it
    assert turn_events(run(timeline(9.0, *events), stop_timeout=None))[-1] == ("end", "", 9.0)


def test_end_of_stream_ends_an_open_turn() -> None:
    out = run(timeline(2.5, started(1.0), stopped(2.0), heard("bye", 2.3, 1.0)))
    assert turn_events(out) == [("start", 1.0), ("end", "bye", 2.5)]
    assert isinstance(out[-1], TurnEnded)
    speaking = run(timeline(2.0, started(1.0), heard("still", 1.5, 1.0, final=False)))
    assert turn_events(speaking) == [("start", 1.0), ("end", "", 2.0)]


def test_markers_without_audio_end_the_turn_at_the_transcript() -> None:
    items = [
        SpeechStarted(0.5, PARAMS),
        SpeechStopped(1.5, PARAMS),
        Transcript("first", True, 0.5),
        SpeechStarted(3.0, PARAMS),
        SpeechStopped(4.0, PARAMS),
        Transcript("second", True, 3.0),
    ]
    out = run(items)
    assert turn_events(out) == [
        ("start", 0.5),
        ("end", "first", 1.7),
        ("start", 3.0),
        ("end", "second", 4.2),
    ]
    assert [type(x).__name__ for x in out].index("TurnEnded") == 4  # right after "first"


def test_transcripts_without_vad_markers() -> None:
    analyzer = [turn_analyzer(lambda s, r: 0.0)]  # no stops to analyze: it does not hold the turn
    alone = run(
        timeline(4.0, heard("no markers", 1.0, 0.5)), start=[transcript_start()], stop=analyzer
    )
    assert turn_events(alone) == [("start", 0.5), ("end", "no markers", 1.0)]
    out = run(
        timeline(4.0, heard("no", 1.0, 0.5), heard("markers", 1.3, 1.1)), start=[transcript_start()]
    )
    assert turn_events(out) == [("start", 0.5), ("end", "no markers", 1.9)]  # 1.3 + 0.6


# ---------------------------------------------------------------------------------------------
# min_words


def test_min_words_drops_short_text_and_starts_on_enough_words() -> None:
    events = [
        started(0.5),
        stopped(1.0),
        heard("uh", 1.3, 0.5),
        started(2.0),
        stopped(3.0),
        heard("book a table", 3.3, 2.0),
    ]
    out = run(timeline(5.0, *events), start=[min_words(3)])
    assert turn_events(out) == [("start", 2.0), ("end", "book a table", 3.8)]
    assert passed(out) == timeline(5.0, *events)
    # four words needed: no turn at all
    assert turn_events(run(timeline(5.0, *events), start=[min_words(4)])) == []


def test_min_words_keeps_short_text_once_the_turn_is_open() -> None:
    events = [
        started(0.5),
        stopped(1.5),
        heard("call my mother", 1.8, 0.5),
        started(2.0),  # resumes within the pause: its marker arrives at 2.2 < 2.3
        stopped(2.5),
        heard("please", 2.8, 2.0),
    ]
    out = run(timeline(5.0, *events), start=[min_words(3)])
    assert turn_events(out) == [("start", 0.5), ("end", "call my mother please", 3.3)]


def test_min_words_counts_interims_but_keeps_only_finals() -> None:
    events = [
        started(0.5),
        heard("I would like", 1.0, 0.5, final=False),
        stopped(1.5),
        heard("I would like tea", 1.8, 0.5),
    ]
    out = run(timeline(4.0, *events), start=[min_words(3)])
    assert turn_events(out) == [("start", 0.5), ("end", "I would like tea", 2.3)]
    started_at = [type(x).__name__ for x in out].index("TurnStarted")
    assert isinstance(out[started_at + 1], Transcript) and not out[started_at + 1].final


# ---------------------------------------------------------------------------------------------
# wake_phrase


def utterance(onset: float, end: float, text: str, delay: float = 0.3) -> list[Timed]:
    return [started(onset), stopped(end), heard(text, end + delay, onset)]


def test_wake_phrase_asleep_awake_and_timeout() -> None:
    events = [
        *utterance(1.0, 2.0, "what time is it"),  # asleep: dropped
        *utterance(3.0, 4.0, "Hey, VoiceKit! Play some music."),  # wakes: a turn, text kept
        *utterance(6.0, 7.0, "louder"),  # awake: a VAD-started turn
        *utterance(20.0, 21.0, "stop the music"),  # 10 s quiet: asleep again
    ]
    out = run(timeline(23.0, *events), start=[wake_phrase("hey voicekit"), vad_start()])
    assert turn_events(out) == [
        ("start", 3.0),
        ("end", "Hey, VoiceKit! Play some music.", 4.8),
        ("start", 6.0),
        ("end", "louder", 7.8),
    ]


@pytest.mark.parametrize(("onset", "turn"), [(17.5, True), (17.7, False)])
def test_wake_phrase_stays_awake_for_the_timeout(onset: float, turn: bool) -> None:
    events = [
        *utterance(3.0, 4.0, "hey voicekit, play"),
        *utterance(6.0, 7.0, "louder"),  # turn ends at 7.8: awake until 17.8
        *utterance(onset, onset + 0.5, "stop"),  # its SpeechStarted arrives at onset + 0.2
    ]
    out = run(timeline(20.0, *events), start=[wake_phrase("hey voicekit"), vad_start()])
    assert len(turn_events(out)) == (6 if turn else 4)


def test_wake_phrase_matches_across_transcripts_and_any_phrase() -> None:
    start = [wake_phrase("hey voicekit", "ok computer"), vad_start()]
    split = [*utterance(1.0, 1.5, "hey"), *utterance(2.0, 3.0, "voice kit lights on")]
    assert turn_events(run(timeline(5.0, *split), start=start)) == []  # "voice kit" ≠ "voicekit"
    split = [*utterance(1.0, 1.5, "hey"), *utterance(2.0, 3.0, "VOICEKIT, lights on")]
    assert turn_events(run(timeline(5.0, *split), start=start)) == [
        ("start", 2.0),
        ("end", "VOICEKIT, lights on", 3.8),
    ]
    other = utterance(1.0, 2.0, "OK computer: what's new?")
    assert turn_events(run(timeline(4.0, *other), start=start))[0] == ("start", 1.0)
    assert turn_events(run(timeline(4.0, *utterance(1.0, 2.0, "heyvoicekit go")), start=start))


def test_wake_phrase_asleep_blocks_every_start_strategy() -> None:
    events = [*utterance(1.0, 2.0, "one two three four"), *utterance(3.0, 4.0, "five")]
    start = [wake_phrase("computer"), vad_start(), transcript_start(), min_words(1)]
    out = run(timeline(6.0, *events), start=start)
    assert turn_events(out) == []
    assert passed(out) == timeline(6.0, *events)


def test_wake_phrase_single_activation_allows_one_turn() -> None:
    events = [
        *utterance(1.0, 2.0, "computer, what is the time"),
        *utterance(3.0, 4.0, "and the date"),  # asleep again: dropped
        *utterance(5.0, 6.0, "computer the date"),
    ]
    start = [wake_phrase("computer", mode="single_activation"), vad_start()]
    out = run(timeline(8.0, *events), start=start)
    assert turn_events(out) == [
        ("start", 1.0),
        ("end", "computer, what is the time", 2.8),
        ("start", 5.0),
        ("end", "computer the date", 6.8),
    ]
    # in timeout mode the second utterance is a turn of its own
    timed = run(timeline(8.0, *events), start=[wake_phrase("computer"), vad_start()])
    assert [e[1] for e in turn_events(timed) if e[0] == "end"] == [
        "computer, what is the time",
        "and the date",
        "computer the date",
    ]


# ---------------------------------------------------------------------------------------------
# turn_analyzer


def ramp(seconds: float) -> np.ndarray:
    """Audio whose every sample says where it is: sample i holds i mod 30000."""
    return (np.arange(round(seconds * RATE)) % 30000).astype(np.int16)


def test_analyzer_gets_the_recent_audio_and_its_verdict_decides() -> None:
    calls: list[tuple[np.ndarray, int]] = []

    def complete(samples: np.ndarray, rate: int) -> float:
        calls.append((samples.copy(), rate))
        return 0.9

    audio = ramp(6.0)
    events = [started(1.0), stopped(3.0), heard("done", 3.4, 1.0)]
    out = run(timeline(6.0, *events, audio=audio), stop=[turn_analyzer(complete)])
    assert turn_events(out) == [("start", 1.0), ("end", "done", 3.4)]
    [(samples, rate)] = calls
    assert rate == RATE
    # from 0.5 s before the speech began to the moment the stop was emitted
    assert np.array_equal(samples, audio[round(0.5 * RATE) : round(3.2 * RATE)])

    unsure = run(timeline(8.0, *events, audio=ramp(8.0)), stop=[turn_analyzer(lambda s, r: 0.5)])
    assert turn_events(unsure) == [("start", 1.0), ("end", "done", 6.0)]  # 3 s silence fallback


def test_analyzer_window_is_at_most_eight_seconds() -> None:
    sizes: list[int] = []
    audio = ramp(14.0)
    events = [started(1.0), stopped(12.0), heard("long", 12.4, 1.0)]

    def record(samples: np.ndarray, rate: int) -> float:
        sizes.append(samples.shape[0])
        assert np.array_equal(samples, audio[round(4.2 * RATE) : round(12.2 * RATE)])
        return 1.0

    run(timeline(14.0, *events, audio=audio), stop=[turn_analyzer(record)])
    assert sizes == [8 * RATE]


async def test_async_analyzer_waits_for_more_speech_when_incomplete() -> None:
    scores = iter([0.2, 0.8])

    async def model(samples: np.ndarray, rate: int) -> float:
        await asyncio.sleep(0)
        return next(scores)

    events = [
        *utterance(1.0, 2.0, "I want"),
        *utterance(3.0, 4.0, "a coffee"),
    ]
    out = await turns(timeline(6.0, *events), stop=[turn_analyzer(model)]).list()
    assert turn_events(out) == [("start", 1.0), ("end", "I want a coffee", 4.3)]


def test_analyzer_waits_for_the_stt_after_a_complete_verdict() -> None:
    events = [started(1.0), stopped(2.0)]
    analyzer = turn_analyzer(lambda s, r: 1.0)
    # text already there (an interim would not do): the p99 wait (1.0 - 0.2) passes first
    early = [started(1.0), heard("yes", 1.9, 1.0), stopped(2.0)]
    assert turn_events(run(timeline(5.0, *early), stop=[analyzer], stt_p99=1.0))[-1] == (
        "end",
        "yes",
        3.0,
    )
    late = run(timeline(5.0, *events, heard("yes", 2.5, 1.0)), stop=[analyzer], stt_p99=1.0)
    assert turn_events(late)[-1] == ("end", "yes", 2.5)


def test_stop_strategies_race() -> None:
    events = [started(1.0), stopped(2.0), heard("hi", 2.3, 1.0)]
    never = turn_analyzer(lambda s, r: 0.0, fallback_secs=9.0)
    assert turn_events(run(timeline(5.0, *events), stop=[never, speech_timeout()]))[-1] == (
        "end",
        "hi",
        2.8,
    )
    sure = turn_analyzer(lambda s, r: 1.0)
    assert turn_events(run(timeline(5.0, *events), stop=[speech_timeout(), sure]))[-1] == (
        "end",
        "hi",
        2.3,
    )


def test_fade_out_tells_a_fade_from_a_cut() -> None:
    rate = 16000
    tone = (np.sin(2 * np.pi * 200 * np.arange(rate) / rate) * 12000).astype(np.int16)
    fade = (tone * np.linspace(1.0, 0.02, rate) ** 2).astype(np.int16)
    silence = np.zeros(rate // 4, np.int16)
    analyze = fade_out()
    assert analyze(np.concatenate([tone, silence]), rate) < 0.1
    assert analyze(np.concatenate([fade, silence]), rate) > 0.9
    assert analyze(silence, rate) == 1.0 and analyze(np.zeros(0, np.int16), rate) == 1.0


# ---------------------------------------------------------------------------------------------
# stop_secs warnings


def stop_warnings(items: list[Any], **kw: Any) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(items, **kw)
    return [str(w.message) for w in caught if issubclass(w.category, StopSecsWarning)]


def utterances(*stop_secs: float) -> list[Any]:
    items: list[Any] = []
    for i, secs in enumerate(stop_secs):
        items += [SpeechStarted(2.0 * i, PARAMS), SpeechStopped(2.0 * i + 1, {"stop_secs": secs})]
    return items


def test_no_warning_at_the_default_stop_secs() -> None:
    assert stop_warnings(utterances(0.2, 0.2), stt_p99=1.0) == []
    assert stop_warnings(utterances(0.2)) == []
    assert stop_warnings([SpeechStarted(0.0), SpeechStopped(1.0)], stt_p99=0.1) == []  # unknown


def test_warns_once_when_stop_secs_differs_from_the_default() -> None:
    messages = stop_warnings(utterances(0.5, 0.5, 0.3), stt_p99=1.0)
    assert len(messages) == 1
    assert "stop_secs (0.5s) differs from the recommended 0.2s" in messages[0]


def test_warns_when_stop_secs_reaches_the_stt_p99() -> None:
    messages = stop_warnings(utterances(0.5, 0.5), stt_p99=0.35)
    assert len(messages) == 2
    assert "differs" in messages[0] and "collapsed to 0s" in messages[1]
    only = stop_warnings(utterances(0.2), stt_p99=0.2)
    assert len(only) == 1 and "(0.2s) >= STT p99 latency (0.2s)" in only[0]


def test_warnings_re_arm_when_the_stt_latency_changes() -> None:
    items = [*utterances(0.5), STTLatency(1.2), *utterances(0.5, 0.5)[2:]]
    assert len(stop_warnings(items, stt_p99=1.0)) == 2
    assert len(stop_warnings([*utterances(0.5), *utterances(0.5)], stt_p99=1.0)) == 1
    collapsed = [*utterances(0.2), STTLatency(0.1), *utterances(0.2)]
    assert ["collapsed" in m for m in stop_warnings(collapsed)] == [True]


def test_warning_category_is_a_user_warning() -> None:
    with pytest.warns(StopSecsWarning, match="differs"):
        run(utterances(0.4))
    assert issubclass(StopSecsWarning, UserWarning)


# ---------------------------------------------------------------------------------------------
# Properties over random scripted conversations


@st.composite
def conversations(draw: Any) -> tuple[list[Timed], list[str], float]:
    """Utterances with gaps, each with a transcript (or none) arriving < 0.6 s after its stop."""
    events: list[Timed] = []
    texts: list[str] = []
    t = draw(st.floats(0.1, 1.0))
    for i in range(draw(st.integers(0, 6))):
        length = draw(st.floats(0.1, 2.0))
        events += [started(t), stopped(t + length)]
        if draw(st.booleans()):
            text = f"w{i} " * draw(st.integers(1, 3))
            events.append(heard(text.strip(), t + length + 0.2 + draw(st.floats(0, 0.55)), t))
            texts.append(text.strip())
        t += length + draw(st.floats(0.25, 2.5))
    return events, texts, t + 1.0


@settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(conversations(), st.sampled_from(["default", "p99", "analyzer", "words"]))
def test_turns_are_balanced_and_keep_every_word(
    conversation: tuple[list[Timed], list[str], float], setup: str
) -> None:
    events, texts, end = conversation
    kw: dict[str, Any] = {
        "default": {},
        "p99": {"stt_p99": 0.5},
        "analyzer": {"stop": [turn_analyzer(lambda s, r: 0.3, fallback_secs=0.5)]},
        "words": {"start": [min_words(2)]},
    }[setup]
    items = timeline(end, *events)
    out = run(items, **kw)
    assert passed(out) == items
    marks = [x for x in out if isinstance(x, TurnStarted | TurnEnded)]
    assert [type(x) for x in marks] == [TurnStarted, TurnEnded] * (len(marks) // 2)
    ends = [x.t for x in marks if isinstance(x, TurnEnded)]
    assert ends == sorted(ends)
    # every TurnPending is inside a turn, a new text each time, the last one the turn's text
    # unless the user went on after it (a SpeechStarted between them)
    open_turn, offered, resumed = False, [], False
    for x in out:
        if isinstance(x, TurnStarted):
            open_turn, offered, resumed = True, [], False
        elif isinstance(x, SpeechStarted):
            resumed = True
        elif isinstance(x, TurnPending):
            assert open_turn and x.text and x.text not in offered
            offered.append(x.text)
            resumed = False
        elif isinstance(x, TurnEnded):
            if offered and not resumed:
                assert x.text == offered[-1]
            open_turn = False
    check_placement(out)
    said = " ".join(x.text for x in marks if isinstance(x, TurnEnded) and x.text)
    if setup == "words":
        assert set(said.split()) <= set(" ".join(texts).split())
    else:
        assert said == " ".join(texts)  # nothing lost, nothing repeated


# ---------------------------------------------------------------------------------------------
# The real sample: VAD + scripted STT + turns


@pytest.mark.parametrize("pass_audio", [False, True])
async def test_bundled_sample_gives_one_turn(pass_audio: bool) -> None:
    text = "what is the weather like in rome today"
    flow = (
        read(sample_path())
        | vad()
        | stt.fake(transcripts=[text], pass_audio=pass_audio)
        | turns(stt_p99=1.0)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", StopSecsWarning)
        out = await flow.list()
    marks = [x for x in out if isinstance(x, TurnStarted | TurnEnded)]
    assert [type(x) for x in marks] == [TurnStarted, TurnEnded]
    began, ended = marks
    assert ended.text == text
    speech = [x for x in out if isinstance(x, SpeechStarted | SpeechStopped)]
    assert began.t == speech[0].t and 0.3 < began.t < 0.6
    assert ended.t > speech[-1].t + 0.2 - 1e-9
    kinds = [type(x).__name__ for x in out if not isinstance(x, AudioChunk)]
    expected = ["TurnStarted", "SpeechStarted", "SpeechStopped", "Transcript", "TurnEnded"]
    if pass_audio:  # time moves: the text is in before the pause is over
        expected.insert(4, "TurnPending")
    assert kinds == expected
    assert re.fullmatch(r"[a-z ]+", ended.text)


# ---------------------------------------------------------------------------------------------
# TurnPending


def test_pending_comes_with_the_answer_while_the_user_is_quiet() -> None:
    out = run(timeline(4.0, started(1.0), stopped(2.0), heard("hello", 2.5, 1.0)))
    assert pending_events(out) == [("start", 1.0), ("pending", "hello", 2.5), ("end", "hello", 2.8)]
    transcript = next(i for i, x in enumerate(out) if isinstance(x, Transcript))
    assert out[transcript + 1] == TurnPending("hello", 2.5)  # just after the answer
    # not before the stop: a transcript that comes while the user speaks is no answer yet
    early = run(timeline(4.0, started(1.0), heard("hello", 1.5, 1.0), stopped(2.0)))
    assert [x for x in pending_events(early) if x[0] == "pending"] == []
    # an answer that ends the turn on arrival: no pending, the TurnEnded says it all
    late = run(timeline(4.0, started(1.0), stopped(2.0), heard("hello", 3.1, 1.0)))
    assert pending_events(late) == [("start", 1.0), ("end", "hello", 3.1)]


def test_pending_once_per_text_and_again_when_the_user_goes_on() -> None:
    events = [
        started(1.0),
        stopped(2.0),
        heard("hello", 2.3, 1.0),
        heard("", 2.35, 1.0),  # an empty final: no new text, no new pending
        started(2.5),
        stopped(3.5),
        heard("world", 3.8, 2.5),
    ]
    out = run(timeline(5.0, *events))
    assert pending_events(out) == [
        ("start", 1.0),
        ("pending", "hello", 2.3),
        ("pending", "hello world", 3.8),
        ("end", "hello world", 4.3),
    ]
    # resuming without a new answer: the turn ends with the old text, and no second pending
    quiet = run(timeline(5.0, *events[:5], stopped(3.0)), stt_p99=0.0)
    assert pending_events(quiet) == [
        ("start", 1.0),
        ("pending", "hello", 2.3),
        ("end", "hello", 3.8),
    ]


def test_pending_can_be_turned_off_and_without_vad_each_final_is_an_answer() -> None:
    events = (started(1.0), stopped(2.0), heard("hello", 2.5, 1.0))
    assert not any(isinstance(x, TurnPending) for x in run(timeline(4.0, *events), pending=False))
    no_vad = run(
        timeline(4.0, heard("one", 1.0, 0.5), heard("two", 1.4, 1.0)), start=[transcript_start()]
    )
    assert pending_events(no_vad) == [
        ("start", 0.5),
        ("pending", "one", 1.0),
        ("pending", "one two", 1.4),
        ("end", "one two", 2.0),
    ]
    with pytest.raises(ConfigError):
        run([], pending="yes")


# ---------------------------------------------------------------------------------------------
# A slow recogniser: no words lost


@pytest.mark.parametrize("analyzed", [False, True])
def test_slow_stt_does_not_drop_the_next_segment(analyzed: bool) -> None:
    # "Hello there." (0.5-1.5 s), a short breath, "What time is it?" (1.8-3.0 s); Whisper takes
    # 1.9 s for each, so the turn's recogniser wait (p99 1.0 s) runs out on the first text.
    events = [
        started(0.5),
        stopped(1.5),
        started(1.8),
        heard("Hello there.", 3.4, 0.5),  # arrives after the second stop
        stopped(3.0),
        heard("What time is it?", 5.1, 1.8),
    ]
    stop = [turn_analyzer(lambda s, r: 0.9)] if analyzed else None
    items = timeline(7.0, *events)
    out = run(items, stop=stop)
    assert passed(out) == items
    ends = [x for x in out if isinstance(x, TurnEnded)]
    assert " ".join(x.text for x in ends) == "Hello there. What time is it?"
    assert turn_events(out) == [
        ("start", 0.5),
        ("end", "Hello there.", 4.0),  # 3.2 (the stop) + 0.8, the recogniser wait
        ("start", 1.8),
        ("end", "What time is it?", 5.1),  # on the late text's arrival
    ]
    check_placement(out)


def test_a_late_transcript_joins_the_next_turn_when_one_is_open() -> None:
    events = [
        started(0.5),
        stopped(1.5),
        heard("one", 1.8, 0.5),
        started(1.8),
        stopped(2.2),
        started(3.0),  # a new turn opens before "two" is recognised
        heard("two", 3.3, 1.8),
        stopped(3.6),
        heard("three", 3.9, 3.0),
    ]
    out = run(timeline(6.0, *events), stt_p99=0.5)
    assert turn_events(out) == [
        ("start", 0.5),
        ("end", "one", 3.0),  # 2.4 (the stop) + 0.6; the new speech starts then
        ("start", 3.0),
        ("end", "two three", 4.4),
    ]
