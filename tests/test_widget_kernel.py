"""``voicekit.notebook.talk`` in a real IPython kernel, with a real widget comm: the test plays
the browser's part of the comm protocol (Jupyter's ``comm_msg`` with custom content and binary
buffers), so the kernel side is exactly what Jupyter runs."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from jupyter_client.manager import start_new_kernel

SETUP = """
import voicekit as vk
from voicekit.stt import fake
from voicekit.tts import tones
from voicekit.turns import speech_timeout, turns
from voicekit.vad import energy, vad

async def llm(messages):
    yield "Hello from the kernel. "
    yield "Goodbye now."

bot = vk.voice_agent(llm=llm, tts=tones(), stt=fake(transcripts=["are you there"]),
                     vad=vad(detector=energy(), min_volume=0, stop_secs=0.2),
                     turns=turns(stop=[speech_timeout(0.2)], pending=False))
t = vk.notebook.talk(bot)
display(t)
"""


@pytest.fixture
def kernel() -> Iterator[Any]:
    manager, client = start_new_kernel(kernel_name="python3")
    try:
        yield client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def run(client: Any, code: str) -> str:
    """Execute ``code``; what it printed."""
    out: list[Any] = []
    reply = client.execute_interactive(code, timeout=60, output_hook=out.append)
    assert reply["content"]["status"] == "ok", reply["content"]
    return "".join(m["content"].get("text", "") for m in out if m["msg_type"] == "stream")


def messages(client: Any, timeout: float) -> Iterator[Any]:
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        try:
            yield client.get_iopub_msg(timeout=0.2)
        except queue.Empty:
            continue


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_talk_runs_a_call_over_a_real_widget_comm(kernel):
    run(kernel, SETUP)
    comm_id = None
    for msg in messages(kernel, 10):  # the widget's comm_open (after the run's own messages)
        if msg["msg_type"] == "comm_open":
            state = msg["content"]["data"].get("state", {})
            if "voicekit" in state.get("_esm", "") and "_audio_js" in state:
                comm_id = msg["content"]["comm_id"]
                break
    if comm_id is None:  # already consumed by execute_interactive: ask the kernel
        comm_id = run(kernel, "print(t.widget.model_id)").strip().splitlines()[-1]

    def send(content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        kernel.session.send(kernel.shell_channel.socket, "comm_msg",
                            {"comm_id": comm_id, "data": {"method": "custom", "content": content}},
                            buffers=buffers or [])

    send({"text": json.dumps({"type": "start", "acks": True, "events": True})})
    rate = 16000
    tone = (np.sin(2 * np.pi * 300 * np.arange(rate) / rate) * 9000).astype("<i2")
    audio = np.concatenate((tone, np.zeros(rate, "<i2")))
    for i in range(0, audio.shape[0], 320):
        send({"audio": True}, [audio[i : i + 320].tobytes()])
    received = 0
    shown: list[dict[str, Any]] = []
    for msg in messages(kernel, 30):
        if msg["msg_type"] != "comm_msg" or msg["content"]["comm_id"] != comm_id:
            continue
        content = msg["content"]["data"].get("content", {})
        if content.get("audio"):
            received += len(msg["buffers"][0]) // 2
        elif "text" in content:
            event = json.loads(content["text"])
            shown.append(event)
            if event["type"] == "mark":
                send({"text": json.dumps({"type": "played", "name": event["name"]})})
                if event["text"] == "Goodbye now.":
                    break
    send({"text": json.dumps({"type": "stop"})})
    kinds = [e["type"] for e in shown]
    assert "transcript" in kinds and "metrics" in kinds
    assert [e["text"] for e in shown if e["type"] == "mark"] == ["Hello from the kernel.",
                                                                  "Goodbye now."]
    assert received > rate // 2  # the reply's audio came over the comm
    for _ in range(50):
        done = run(kernel, "print(len(t.sessions))").strip().splitlines()[-1]
        if done == "1":
            break
        time.sleep(0.1)
    history = run(kernel, "import json; print(json.dumps(t.sessions[0].messages_json()))")
    assert json.loads(history.strip().splitlines()[-1]) == [
        {"role": "user", "content": "are you there"},
        {"role": "assistant", "content": "Hello from the kernel. Goodbye now."},
    ]
    left = run(kernel, "import asyncio\nt.stop()\nawait asyncio.sleep(0.2)\nprint(sorted("
               "x.get_name() for x in asyncio.all_tasks() if x.get_name().startswith('voicekit')"
               " and not x.done()))")
    assert left.strip().splitlines()[-1] == "[]"

