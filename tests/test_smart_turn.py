"""Smart Turn v3: the log-mel features checked against properties computed independently, the
model's verdicts on a few corpus items, and the turns() strategy ending or waiting on stream time.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voicekit import ConfigError, SpeechStarted, SpeechStopped, TurnEnded, TurnStarted
from voicekit import _smart_turn as st
from voicekit.turns import (
    TurnAnalyzer,
    recommended_stop_strategies,
    smart_turn,
    smart_turn_available,
    speech_timeout,
)

ROOT = Path(__file__).resolve().parents[1]


def _corpus_module() -> Any:
    path = ROOT / "bench" / "_turn_corpus.py"
    spec = importlib.util.spec_from_file_location("_turn_corpus", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["_turn_corpus"] = module
    spec.loader.exec_module(module)
    return module


tc = _corpus_module()


# ---------------------------------------------------------------------------------------------
# Features: each step against a reference computed another way


def test_slaney_mel_scale_is_linear_then_logarithmic() -> None:
    hz = np.array([0.0, 200.0, 1000.0, 6400.0, 8000.0])
    mel = st._hz_to_mel(hz)
    assert mel[:3] == pytest.approx([0.0, 3.0, 15.0])  # 3 mel per 200 Hz below 1 kHz
    assert mel[3] == pytest.approx(15.0 + 27.0)  # 27 mel per factor 6.4 above
    assert st._mel_to_hz(mel) == pytest.approx(hz)


def test_mel_filters_are_unit_area_triangles_at_their_corners() -> None:
    bank = st.mel_filters()
    assert bank.shape == (201, 80) and (bank >= 0).all()
    # unit area in Hz, integrated on a 0.5 Hz grid (the 40 Hz FFT grid is too coarse for that)
    fine = st.mel_filters(80, 32000, 16000)
    assert (fine.sum(axis=0) * 0.5) == pytest.approx(np.ones(80), rel=2e-3)
    # filter m peaks at corner m + 1, corners evenly spaced in mel from 0 to 8 kHz
    corners = st._mel_to_hz(np.linspace(0.0, float(st._hz_to_mel(np.array(8000.0))), 82))
    peaks = np.linspace(0.0, 8000.0, 16001)[fine.argmax(axis=0)]
    assert peaks == pytest.approx(corners[1:-1], abs=0.5)


def test_stft_matches_a_direct_dft() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=4000)
    power = st.stft_power(x)
    assert power.shape == (201, 1 + 4000 // 160)
    n = np.arange(400)
    window = np.sin(np.pi * n / 400) ** 2  # the periodic Hann window, written another way
    padded = np.concatenate([x[200:0:-1], x, x[-2:-202:-1]])  # reflect padding by hand
    k = np.arange(201)[:, None]
    basis = np.exp(-2j * np.pi * k * n[None, :] / 400)
    for frame in (0, 7, 25):
        segment = padded[frame * 160 : frame * 160 + 400] * window
        expected = np.abs(basis @ segment) ** 2
        assert power[:, frame] == pytest.approx(expected, rel=1e-9, abs=1e-6)


def test_a_sine_lands_in_its_bin_and_its_mel_band() -> None:
    t = np.arange(16000) / 16000
    power = st.stft_power(0.5 * np.sin(2 * np.pi * 1000.0 * t))
    middle = power[:, 50]
    assert middle.argmax() == 25  # 1000 Hz / 40 Hz per bin
    assert middle[25] == pytest.approx((0.5 * 100.0) ** 2, rel=1e-3)  # (A/2 * sum(window))²
    features = st.log_mel(np.sin(2 * np.pi * 1000.0 * t).astype(np.float32))
    corners = st._mel_to_hz(np.linspace(0.0, float(st._hz_to_mel(np.array(8000.0))), 82))
    assert features[:, 50].argmax() == np.abs(corners[1:-1] - 1000.0).argmin()


def test_log_mel_is_whisper_scaled_and_gain_invariant() -> None:
    rng = np.random.default_rng(3)
    wave = st.prepare(rng.normal(0, 3000, 24000).astype(np.int16), 16000)
    features = st.log_mel(wave)
    assert features.shape == (80, 800) and features.dtype == np.float32
    assert float(features.max() - features.min()) <= 2.0 + 1e-6  # floored 8 decades below
    louder = st.log_mel(wave * 8.0)
    assert louder == pytest.approx(features, abs=1e-4)  # the waveform is normalised first


def test_prepare_left_pads_keeps_the_last_eight_seconds_and_resamples() -> None:
    short = np.full(16000, 1000, np.int16)
    padded = st.prepare(short, 16000)
    assert padded.shape == (128000,)
    assert not padded[:112000].any() and padded[112000:] == pytest.approx(1000 / 32768)
    ramp = np.arange(10 * 16000, dtype=np.float32) / 1e6
    assert st.prepare(ramp, 16000)[0] == pytest.approx(ramp[2 * 16000])
    assert st.prepare(np.zeros(8000, np.int16), 8000)[-16000:].shape == (16000,)
    with pytest.raises(ConfigError, match="mono"):
        st.prepare(np.zeros((2, 100), np.int16), 16000)
    with pytest.raises(ConfigError, match="rate"):
        st.prepare(short, 0)


# ---------------------------------------------------------------------------------------------
# The model on corpus items (Piper deterministic, espeak-ng): honest margins


def test_the_model_is_found_in_the_installed_wheel() -> None:
    assert smart_turn_available()
    path = st.model_path()
    assert path.name == "smart-turn-v3.2-cpu.onnx" and path.stat().st_size > 8_000_000
    (given,) = st.load().get_inputs()
    assert given.name == "input_features" and list(given.shape[1:]) == [80, 800]
    assert recommended_stop_strategies() == (smart_turn(),)
    assert isinstance(smart_turn(0.7), TurnAnalyzer) and smart_turn(0.7).threshold == 0.7


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("turn_corpus"))


def _until(item: Any, t: float) -> np.ndarray:
    """The item's audio up to ``t`` + 0.25 s (where a VAD stop would hand it over)."""
    return item.samples[: round((t + 0.25) * tc.RATE)]


@pytest.mark.parametrize("voice", ["piper", "espeak"])
def test_a_finished_question_scores_complete(cache: Path, voice: str) -> None:
    item = tc.cached_item(cache, voice, "What time is it?")
    assert st.analyze(_until(item, item.speech_end), tc.RATE) > 0.8  # 0.94-0.98 measured


@pytest.mark.parametrize(
    ("voice", "text", "rest"),
    [
        ("piper", "Um", "I want to cancel my order."),
        ("espeak", "Um", "I want to cancel my order."),
        ("espeak", "My account number is", "four five six seven."),
    ],
)
def test_a_cut_sentence_scores_incomplete(cache: Path, voice: str, text: str, rest: str) -> None:
    item = tc.cached_item(cache, voice, text, rest, 0.8)
    assert item.pause is not None
    assert st.analyze(_until(item, item.pause[0]), tc.RATE) < 0.4  # 0.01-0.24 measured


# ---------------------------------------------------------------------------------------------
# The strategy in turns(), on stream time (Silero VAD, an instant recogniser)


def _ends(marks: list[Any]) -> list[TurnEnded]:
    return [m for m in marks if isinstance(m, TurnEnded)]


async def test_a_complete_turn_ends_at_the_vad_stop(cache: Path) -> None:
    item = tc.cached_item(cache, "piper", "What time is it?")
    smart = await tc.decide(item, [smart_turn()])
    timed = await tc.decide(item, [speech_timeout()])
    (stop,) = [m for m in smart if isinstance(m, SpeechStopped)]
    (ended,) = _ends(smart)
    assert ended.t == pytest.approx(stop.t + 0.2, abs=0.021)  # at the VAD stop (one chunk)
    assert _ends(timed)[0].t == pytest.approx(stop.t + 0.8, abs=0.021)  # 0.6 s more


async def test_an_incomplete_turn_waits_for_the_rest(cache: Path) -> None:
    item = tc.cached_item(cache, "espeak", "Um", "I want to cancel my order.", 1.2)
    marks = await tc.decide(item, [smart_turn()])
    starts = [m for m in marks if isinstance(m, SpeechStarted)]
    assert len(starts) == 2 and len([m for m in marks if isinstance(m, TurnStarted)]) == 1
    (ended,) = _ends(marks)
    assert ended.text == "seg1 seg2" and ended.t > item.speech_end
    # speech timeout alone ends the turn inside the 1.2 s pause
    timed = _ends(await tc.decide(item, [speech_timeout()]))
    assert len(timed) == 2 and timed[0].t < starts[1].t


def test_smart_turn_without_the_model_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(st, "MODEL_FILE", "pipecat/no/such/model.onnx")
    assert not smart_turn_available()
    with pytest.raises(ConfigError, match="pip install --no-deps"):
        smart_turn()


def test_smart_turn_is_recommended_only_when_the_stt_passes_the_audio() -> None:
    from voicekit import stt

    assert recommended_stop_strategies(stt.fake(transcripts=[], pass_audio=True)) == (smart_turn(),)
    assert recommended_stop_strategies(stt.fake(transcripts=[])) == (speech_timeout(),)


async def test_scoring_runs_on_the_inference_pool_not_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    seen: list[str] = []
    real = st.analyze

    def spy(samples: np.ndarray, rate: int) -> float:
        seen.append(threading.current_thread().name)
        return real(samples, rate)

    monkeypatch.setattr(st, "analyze", spy)
    p = await smart_turn().fn(np.zeros(8000, np.int16), 16000)
    assert 0.0 <= p <= 1.0
    assert seen and seen[0] != threading.main_thread().name
