"""`voicekit run`: two recordings answered (subprocess, real models), the progress bar and the
summary table."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from servers.audio_server import AudioServer

from voicekit import audio, tts
from voicekit.cli.run import Progress, Row, _names, render

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
    samples, rate = tts.synthesize("What time is it now?")  # one utterance: no pause
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
    assert re.match(r"file\s+latency\s+transcript\s+reply\s+error$", lines[header])
    rows = lines[header + 1 : header + 3]
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
    # in time order: the tool call between the question and the answer that used it
    lines = (out / "question.txt").read_text(encoding="utf-8").splitlines()
    assert [line.split(":", 1)[0] for line in lines] == ["user", "tool", "assistant"], lines
    assert lines[1].startswith('tool: get_weather({"city": "Rome"}) -> ')
    summary = (out / "summary.tsv").read_text(encoding="utf-8").splitlines()
    assert summary[0] == "file\tlatency_s\ttranscript\treply\terror"
    assert len(summary) == 3
    fields = summary[1].split("\t")
    assert fields[0].endswith("question.wav") and float(fields[1]) > 0
    assert "Rome" in fields[2] and "Rome" in fields[3] and fields[4] == ""


def test_run_shows_progress_over_the_files(answered) -> None:
    result, _ = answered
    progress = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert progress == ["[0/2] question.wav", "[1/2] hello.wav", "[2/2] done"]


def test_run_refuses_missing_files_at_once(tmp_path) -> None:
    result = run_cli("run", str(tmp_path / "nope.wav"), "--out", str(tmp_path), timeout=60)
    assert result.returncode == 2
    assert "no such file" in result.stderr and "nope.wav" in result.stderr


def test_progress_is_a_line_per_step_when_not_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(4, stream)
    progress.show(1, "b.wav")
    progress.show(4, "done")
    progress.close()
    assert stream.getvalue() == "[1/4] b.wav\n[4/4] done\n"


def test_progress_is_a_rich_bar_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = Progress(4, stream)
    assert progress.bar is not None
    progress.show(1, "b.wav")
    progress.close()
    assert "1/4" in stream.getvalue() and "b.wav" in stream.getvalue()


def test_table_cuts_long_text_and_has_an_error_column() -> None:
    rows = [
        Row("/x/a.wav", "what is the weather in Rome today please", "Sunny.", 0.91),
        Row("b.wav", error="no speech was heard in the recording"),
        Row("c.wav", error="ProviderError: " + "boom " * 30),
    ]
    text = render(rows).splitlines()
    assert re.match(r"file\s+latency\s+transcript\s+reply\s+error$", text[0])
    assert text[1].startswith("a.wav") and "0.91 s" in text[1] and "Sunny." in text[1]
    assert text[2].startswith("b.wav") and text[2].endswith("no speech was heard in the recording")
    assert text[3].endswith("…") and len(text[3]) < 200  # cut here, printed whole under it
    assert all(line == line.rstrip() for line in text)


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
    row = next(line for line in result.stdout.splitlines() if line.startswith("question"))
    assert "llm: ProviderConnectError" in row  # the error column
    error = re.search(r"^error question\.wav: (.+)$", result.stdout, re.MULTILINE)
    assert error, result.stdout
    assert "ProviderConnectError" in error.group(1) and url in error.group(1)
    assert "_llm_events" not in result.stdout + result.stderr
    assert "hint is the LLM at" in result.stdout


# ---------------------------------------------------------------------------------------------
# Folders, recordings without speech, Ctrl-C (issue 9 item 19). STT and TTS are a local
# OpenAI-compatible server and the LLM the offline responder, so no model but Silero loads.


async def _start_run(*args: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if k not in _LLM_ENV}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicekit.cli", "run", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


def _engines(speech: AudioServer) -> list[str]:
    return ["--stt", speech.base_url, "--tts", speech.base_url, "--llm", "local"]


async def test_run_expands_a_folder_and_says_when_there_was_no_speech(tmp_path: Path) -> None:
    folder = tmp_path / "calls"
    folder.mkdir()
    question, rate = sf.read(audio.sample_path(), dtype="int16")
    sf.write(folder / "b-question.wav", question, rate)
    sf.write(folder / "a-silence.flac", np.zeros(rate * 2, np.int16), rate)
    (folder / "notes.txt").write_text("not audio")
    (folder / "sub").mkdir()
    out = tmp_path / "out"
    async with AudioServer() as speech:
        speech.transcripts.append("What is the weather like in Rome?")
        proc = await _start_run(str(folder), "--out", str(out), *_engines(speech))
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    text = stdout.decode()
    assert proc.returncode == 1, text + stderr.decode()  # one recording was not answered
    rows = [line for line in text.splitlines() if line.startswith(("a-silence", "b-question"))]
    assert [row.split()[0] for row in rows] == ["a-silence.flac", "b-question.wav"]
    assert rows[0].endswith("no speech was heard in the recording")
    assert "Rome" in rows[1]
    assert "error a-silence.flac: no speech was heard in the recording" in text
    summary = (out / "summary.tsv").read_text(encoding="utf-8").splitlines()
    assert summary[1].split("\t")[-1] == "no speech was heard in the recording"
    lines = (out / "b-question.txt").read_text(encoding="utf-8").splitlines()
    assert [line.split(":", 1)[0] for line in lines] == ["user", "tool", "assistant"], lines


async def test_run_refuses_a_folder_without_audio(tmp_path: Path) -> None:
    proc = await _start_run(str(tmp_path), "--out", str(tmp_path / "out"))
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert f"no audio files in the folder {tmp_path}" in stderr.decode()


async def test_ctrl_c_writes_the_summary_of_what_finished(tmp_path: Path) -> None:
    folder = tmp_path / "calls"
    folder.mkdir()
    question, rate = sf.read(audio.sample_path(), dtype="int16")
    for n in range(3):
        sf.write(folder / f"q{n}.wav", question, rate)
    out = tmp_path / "out"
    async with AudioServer() as speech:
        proc = await _start_run(str(folder), "--out", str(out), *_engines(speech))
        assert proc.stderr is not None
        seen: list[str] = []
        while not seen or not seen[-1].startswith("[1/3]"):  # the first recording is done
            line = await asyncio.wait_for(proc.stderr.readline(), 120)
            assert line, "".join(seen)
            seen.append(line.decode())
        proc.send_signal(signal.SIGINT)
        stdout, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = stdout.decode()
    assert proc.returncode == 130, text
    assert "interrupted (Ctrl-C): 1 of 3 recordings finished" in text
    assert any(line.startswith("q0.wav") for line in text.splitlines())
    assert not any(line.startswith(("q1.wav", "q2.wav")) for line in text.splitlines())
    summary = (out / "summary.tsv").read_text(encoding="utf-8").splitlines()
    assert len(summary) == 2 and summary[1].startswith(str(folder / "q0.wav"))
