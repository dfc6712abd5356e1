"""`voicekit demo` (the README's main job, run as a subprocess, real models), and the README's
composition example."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voicekit import stt
from voicekit.stt import word_error_rate

ROOT = Path(__file__).resolve().parents[1]

# LLM settings in the environment would take the demo off the offline default.
_LLM_ENV = ("OPENAI_API_KEY", "VOICEKIT_LLM_BASE_URL", "VOICEKIT_LLM_MODEL", "VOICEKIT_LLM_API_KEY")

wer = word_error_rate


def run_cli(
    *args: str, timeout: float = 300, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in _LLM_ENV} | (env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "voicekit.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`voicekit demo` run once for the module, offline, with its output directory."""
    out = tmp_path_factory.mktemp("demo") / "out"
    # Piper samples noise: a deterministic voice makes the reply's audio the same on every run,
    # so what Whisper hears of it cannot change from one CI run to the next.
    result = run_cli("demo", "--out", str(out), env_extra={"VOICEKIT_PIPER_DETERMINISTIC": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    return result, out


def _field(stdout: str, label: str) -> str:
    match = re.search(rf"^{label}\s+(.+)$", stdout, re.MULTILINE)
    assert match, f"no {label!r} line in:\n{stdout}"
    return match.group(1).strip()


def test_demo_hears_the_question_and_says_which_llm(demo) -> None:
    result, _ = demo
    assert "LLM: voicekit's offline responder" in result.stdout
    assert "STT: Whisper tiny.en" in result.stdout
    assert "TTS: Piper" in result.stdout
    assert wer("What is the weather like in Rome today?", _field(result.stdout, "heard")) <= 0.1
    assert 'get_weather({"city": "Rome"})' in _field(result.stdout, "tool")
    assert "voicekit: loading" in result.stderr  # the models' progress messages


def test_demo_reply_wav_is_intelligible(demo) -> None:
    result, out = demo
    reply = _field(result.stdout, "reply")
    assert "Rome" in reply
    assert str(out / "reply.wav") in result.stdout
    samples, rate = sf.read(out / "reply.wav", dtype="int16")
    assert rate == 22050 and len(samples) / rate > 1.0
    heard = stt.transcribe(out / "reply.wav")
    # What matters is that the words carrying the answer are heard; a small word (an article, a
    # number written as digits) may differ without making the reply unintelligible.
    key = [w for w in re.findall(r"[a-z]+", reply.lower()) if len(w) > 3]
    heard_words = set(re.findall(r"[a-z]+", heard.lower()))
    missing = [w for w in key if w not in heard_words]
    assert key and len(missing) <= len(key) // 4, (reply, heard, missing)
    assert wer(reply, heard) <= 0.4, (reply, heard)


def test_demo_writes_transcript_and_phone_copy(demo) -> None:
    result, out = demo
    lines = (out / "transcript.txt").read_text(encoding="utf-8").splitlines()
    # in time order: the question, the tool call it caused, the answer that used the result
    assert len(lines) == 3, lines
    assert lines[0].startswith("user: ") and "Rome" in lines[0]
    assert lines[1].startswith('tool: get_weather({"city": "Rome"}) -> ')
    assert lines[2] == "assistant: " + _field(result.stdout, "reply")
    assert sf.info(out / "reply-phone-8k-ulaw.wav").subtype == "ULAW"  # really μ-law coded
    phone, rate = sf.read(out / "reply-phone-8k-ulaw.wav", dtype="int16")
    original, original_rate = sf.read(out / "reply.wav", dtype="int16")
    assert rate == 8000
    assert abs(len(phone) / rate - len(original) / original_rate) < 0.05
    assert np.abs(phone).max() > 5000  # speech, not silence
    assert f"outputs    are in {out}" in result.stdout


def test_demo_prints_a_latency_breakdown(demo) -> None:
    result, _ = demo
    stdout = result.stdout
    assert "latency (wall clock, from the end of your speech" in stdout
    steps = [
        "VAD stop",
        "STT",
        "turn end",
        "LLM first token",
        "first sentence",
        "TTS first audio",
    ]
    seconds = []
    for step in steps:
        match = re.search(rf"^  {step}\s+([\d.]+) s .*at \+([\d.]+) s$", stdout, re.MULTILINE)
        assert match, f"no {step!r} line in:\n{stdout}"
        seconds.append(float(match.group(2)))
    assert seconds == sorted(seconds)  # milestones in order
    total = re.search(r"end of speech → first reply audio: ([\d.]+) s", stdout)
    assert total and float(total.group(1)) == pytest.approx(seconds[-1], abs=0.011)
    assert 0.2 < float(total.group(1)) < 20


def test_demo_rejects_bad_engine_options(tmp_path) -> None:
    result = run_cli("demo", "--out", str(tmp_path), "--stt", "nonsense", timeout=60)
    assert result.returncode == 2
    assert "--stt: unknown choice 'nonsense'" in result.stderr
    result = run_cli("demo", "--out", str(tmp_path), "--tts", "openai", timeout=60)
    assert result.returncode == 2
    assert "OPENAI_API_KEY" in result.stderr


def test_demo_with_a_corrupt_recording_says_so_before_loading_models(tmp_path) -> None:
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF" + bytes(range(256)) * 8)
    result = run_cli("demo", "--out", str(tmp_path / "out"), "--input", str(bad), timeout=60)
    assert result.returncode == 1
    assert f"AudioError: cannot read {bad}" in result.stderr
    assert "loading" not in result.stdout + result.stderr  # failed fast, no model was loaded


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_demo_with_an_llm_that_is_down_fails_once_with_a_hint(tmp_path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    out = tmp_path / "out"
    result = run_cli("demo", "--out", str(out), "--llm", url, env_extra={"VOICEKIT_LLM_MODEL": "m"})
    both = result.stdout + result.stderr
    assert result.returncode == 1, both  # a failed reply is not success
    assert len(re.findall(r"could not connect", both)) == 1, both  # printed once, not twice
    assert "_llm_events" not in both  # no private stage tags
    assert _field(result.stdout, "error").startswith("the reply failed (llm): ProviderConnectError")
    assert f"try `voicekit doctor --llm {url}`" in _field(result.stdout, "hint")
    assert (out / "reply.wav").is_file()  # the spoken apology is still written
