"""Phone audio: 8 kHz μ-law speech (what a phone line delivers) is heard by Whisper tiny.en.

Deterministic speech: espeak-ng (a formant synthesiser, the hard case from issue 9) and Piper
with ``deterministic=True``, each put through :func:`voicekit.audio.telephone` and heard by the
real pipeline (``vad() | stt.whisper()``). The full table is bench/phone_wer.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voicekit import ConfigError, Transcript, stt, tts
from voicekit.audio import from_array, load, telephone
from voicekit.stt._whisper import PHONE_OPTIONS, WhisperSettings
from voicekit.vad import vad

SENTENCES = [  # tests/test_roundtrip.py
    "The quick brown fox jumps over the lazy dog.",
    "Please schedule a meeting with the design team for next Tuesday afternoon.",
    "The weather today is sunny with a high of seventy two degrees.",
    "Can you tell me how to get to the nearest train station?",
    "Voice assistants convert speech to text and then back to speech.",
]
# Measured (espeak-ng 1.51, tiny.en int8): phone settings 0.473, old greedy settings 0.536 on
# these 112 words. Bounds leave about five words of slack each way for other CPUs and threads.
PHONE_MAX = 0.52
MARGIN = 0.03

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed (apt-get install espeak-ng)",
)


@pytest.fixture(scope="module")
def model() -> Any:
    return stt.preload()


def espeak(text: str, voice: str, speed: int, tmp: Path) -> tuple[np.ndarray, int]:
    path = tmp / "say.wav"
    cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text]
    subprocess.run(cmd, check=True, capture_output=True)
    return load(path)


async def over_the_phone(samples: np.ndarray, rate: int, **options: Any) -> str:
    pad = np.zeros(rate // 2, np.int16)
    flow = from_array(np.concatenate([pad, samples, pad]), rate) | telephone() | vad()
    items = await (flow | stt.whisper(**options)).list()
    return " ".join(x.text for x in items if isinstance(x, Transcript))


async def wer_over_the_phone(spoken: list[tuple[np.ndarray, int]], **options: Any) -> float:
    """The WER of all the spoken sentences (the five SENTENCES, once per voice)."""
    heard = [await over_the_phone(samples, rate, **options) for samples, rate in spoken]
    reference = " ".join(SENTENCES * (len(spoken) // len(SENTENCES)))
    return stt.word_error_rate(reference, " ".join(heard))


@needs_espeak
async def test_espeak_over_a_phone_line_is_heard(model: Any, tmp_path: Path) -> None:
    voices = ("en-us", "en-us+f3")
    spoken = [espeak(s, voice, 160, tmp_path) for voice in voices for s in SENTENCES]
    phone = await wer_over_the_phone(spoken)  # 8 kHz audio: the phone settings, automatically
    # the old settings, minus their random temperature fallback (which makes them vary per run)
    old = await wer_over_the_phone(spoken, narrowband=False, options={"temperature": 0.0})
    print(f"phone WER {phone:.3f}, old greedy {old:.3f}")
    assert phone <= PHONE_MAX, phone
    assert phone <= old - MARGIN, (phone, old)


async def test_piper_over_a_phone_line_stays_nearly_perfect(model: Any) -> None:
    spoken = [tts.synthesize(s, deterministic=True) for s in SENTENCES]
    assert await wer_over_the_phone(spoken) <= 0.06  # at most 3 of 56 words


def test_phone_settings_apply_to_8_khz_audio_unless_told(model: Any) -> None:
    auto = WhisperSettings()
    assert auto.phone(8000) and not auto.phone(16000) and not auto.phone(11025)
    assert WhisperSettings(narrowband=True).phone(48000)
    assert not WhisperSettings(narrowband=False).phone(8000)
    assert auto.decoding(False)["beam_size"] == 1
    assert auto.decoding(True)["beam_size"] == PHONE_OPTIONS["beam_size"] > 1
    assert auto.decoding(True)["temperature"] == 0.0  # no random fallback: same text every run
    assert "temperature" not in auto.decoding(False)
    mine = WhisperSettings(beam_size=2, options={"patience": 1.5})
    assert mine.decoding(True)["beam_size"] == 2 and mine.decoding(True)["patience"] == 1.5
    with pytest.raises(ConfigError, match="narrowband"):
        WhisperSettings(narrowband="yes")  # type: ignore[arg-type]
