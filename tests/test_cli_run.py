"""`voicekit run`: two recordings answered (subprocess, real models), the progress bar and the
summary table."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voicekit import audio, tts
from voicekit.cli.run import Progress, Row, _names, table

_LLM_ENV = ("OPENAI_API_KEY", "VOICEKIT_LLM_BASE_URL", "VOICEKIT_LLM_MODEL", "VOICEKIT_LLM_API_KEY")


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
def answered(tmp_path_factory: pytest.TempPathFactory):
    """`voicekit run` on the bundled question and a second recording made with Piper."""
    folder = tmp_path_factory.mktemp("run")
    samples, rate = tts.synthesize("Hello there! What time is it?")
    hello = folder / "hello.wav"
    sf.write(hello, np.concatenate([np.zeros(rate // 4, np.int16), samples]), rate)
    out = folder / "out"
    result = run_cli("run", str(audio.sample_path()), str(hello), "--out", str(out))
    return result, out


def test_run_answers_each_recording_and_prints_a_table(answered) -> None:
    result, out = answered
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("file "))
    assert re.match(r"file\s+latency\s+transcript\s+reply$", lines[header])
    rows = lines[header + 2 : header + 4]
    assert rows[0].startswith("question.wav") and "Rome" in rows[0]
    assert re.search(r"\s\d+\.\d\d s\s", rows[0])
    assert rows[1].startswith("hello.wav") and "It's " in rows[1]
    assert re.search(r"\s\d+\.\d\d s\s", rows[1])
    assert f"outputs are in {out}" in result.stdout


def test_run_writes_a_reply_and_transcript_per_file(answered) -> None:
    _, out = answered
    for name in ("question", "hello"):
        samples, rate = sf.read(out / f"{name}-reply.wav", dtype="int16")
        assert len(samples) / rate > 0.5 and np.abs(samples).max() > 5000
        text = (out / f"{name}.txt").read_text(encoding="utf-8")
        assert text.startswith("user: ") and "\nassistant: " in text
    summary = (out / "summary.tsv").read_text(encoding="utf-8").splitlines()
    assert summary[0] == "file\tlatency_s\ttranscript\treply\terror"
    assert len(summary) == 3
    fields = summary[1].split("\t")
    assert fields[0].endswith("question.wav") and float(fields[1]) > 0
    assert "Rome" in fields[2] and "Rome" in fields[3] and fields[4] == ""


def test_run_shows_progress_over_the_files(answered) -> None:
    result, _ = answered
    assert "] 0/2 question.wav" in result.stderr
    assert "] 1/2 hello.wav" in result.stderr
    assert "] 2/2 done" in result.stderr


def test_run_refuses_missing_files_at_once(tmp_path) -> None:
    result = run_cli("run", str(tmp_path / "nope.wav"), "--out", str(tmp_path), timeout=60)
    assert result.returncode == 2
    assert "no such file" in result.stderr and "nope.wav" in result.stderr


def test_progress_bar() -> None:
    stream = io.StringIO()
    progress = Progress(4, stream, width=8)
    progress.show(1, "b.wav")
    progress.show(4, "done")
    progress.close()
    assert stream.getvalue() == "[██······] 1/4 b.wav\n[████████] 4/4 done\n"


def test_table_cuts_long_text_and_marks_missing_replies() -> None:
    rows = [
        Row("/x/a.wav", "what is the weather in Rome today please", "Sunny.", 0.91),
        Row("b.wav", "", "", None),
        Row("c.wav", error="ProviderError: boom"),
    ]
    text = table(rows, widths=(10, 12, 20)).splitlines()
    assert text[2] == "a.wav" + " " * 8 + "0.91 s  what is the…  Sunny."
    assert "(no speech …" in text[3] and text[3].endswith("(no reply)")
    assert text[4].endswith("(error) ProviderErr…")


def test_output_names_are_distinct() -> None:
    assert _names([Path("a/q.wav"), Path("b/q.wav"), Path("q.flac")]) == ["q", "q-2", "q-3"]


async def test_run_with_http_engines_and_an_llm_url(tmp_path) -> None:
    """--stt/--tts/--llm pointed at local OpenAI-compatible servers (the VAD stays Silero)."""
    import asyncio

    from servers.audio_server import AudioServer
    from servers.sse_server import SSEServer, text_reply

    async with AudioServer() as speech, SSEServer() as llm:
        speech.transcripts.append("What is the weather like in Rome?")
        llm.enqueue(text_reply(["Sunny", " in Rome.", " Anything", " else?"]))
        env = {k: v for k, v in os.environ.items() if k not in _LLM_ENV}
        env["VOICEKIT_LLM_MODEL"] = "test-model"
        args = ["run", str(audio.sample_path()), "--out", str(tmp_path)]
        args += ["--stt", speech.base_url, "--tts", speech.base_url, "--voice", "nova"]
        args += ["--llm", llm.base_url, "--system", "Be brief."]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voicekit.cli", *args, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    out = stdout.decode()
    assert proc.returncode == 0, out + stderr.decode()
    assert f"LLM: custom at {llm.base_url}, model 'test-model' (chosen with --llm)" in out
    assert f"STT: OpenAI-compatible server at {speech.base_url}" in out
    assert "loading models" not in out  # nothing local to load
    row = next(line for line in out.splitlines() if line.startswith("question.wav"))
    assert "What is the weather like in Rome?" in row and "Sunny in Rome. Anything else?" in row
    assert speech.uploads[0].wav is not None and speech.uploads[0].wav.rate == 16000
    spoken = [r.json() for r in speech.requests if r.path.endswith("/audio/speech")]
    assert [s["input"] for s in spoken] == ["Sunny in Rome.", "Anything else?"]
    assert {s["voice"] for s in spoken} == {"nova"}
    sent = llm.requests[-1].json()
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["messages"][-1] == {"role": "user", "content": "What is the weather like in Rome?"}
    assert "tools" not in sent  # demo tools go to the offline responder only
    samples, rate = sf.read(tmp_path / "question-reply.wav", dtype="int16")
    assert rate == 24000 and len(samples) > 0


def test_run_with_an_llm_that_is_down_exits_1_with_the_full_error(tmp_path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    result = run_cli(
        "run", str(audio.sample_path()), "--out", str(tmp_path), "--llm", url,
        env_extra={"VOICEKIT_LLM_MODEL": "m"},
    )
    assert result.returncode == 1, result.stdout + result.stderr
    error = re.search(r"^error question\.wav: (.+)$", result.stdout, re.MULTILINE)
    assert error, result.stdout
    assert "ProviderConnectError" in error.group(1) and url in error.group(1)
    assert "_llm_events" not in result.stdout + result.stderr
    assert "hint is the LLM at" in result.stdout
