"""A streamdouble scenario *file* against ``voicekit.serve`` (issue 14 item 7): the caller keys
``4 2 #``, the agent answers the entry at length, the caller talks over it (``expect: clear``),
then the line drops (``hangup``: the socket closed without ``stop``). The same YAML file runs
through streamdouble's loader in this process and through its own command line, as a user would
run it against their server; the agent is the offline phone agent (energy VAD, scripted STT and
LLM, tones) with ``phone.collect_digits``."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from servers.phone_calls import PhoneAgent, tone_wav
from servers.serving import serving, voicekit_tasks
from streamdouble import api
from streamdouble.session import SessionConfig

import voicekit as vk
import voicekit.serve
from voicekit.conversation import scripted_llm
from voicekit.events import CallEnded, Dtmf, Interrupted, Played
from voicekit.phone import Digits

SCENARIO = """\
name: keys, a long answer cut short, and a dropped line
steps:
  - wait: 0.3
  - dtmf: "42#"
  - wait_for: {event: audio, timeout: 30}
  - expect: audio
  - wait: 1.5
  - expect: no clear          # nobody has spoken over it yet
  - say: stop.wav             # the caller talks over the answer
  - wait: 1.0
  - expect: clear             # and the agent stops talking
  - wait_for: {event: mark, timeout: 10}
  - hangup
"""

LONG = " ".join(f"Option forty two, detail number {i}, which takes a while to read." for i in
                range(1, 12))


def scenario_file(tmp_path: Path) -> Path:
    tone_wav(tmp_path / "stop.wav", 0.8, 0.3)
    path = tmp_path / "keys-barge-in-hangup.yaml"
    path.write_text(SCENARIO)
    return path


def agent() -> PhoneAgent:
    return PhoneAgent(scripted_llm(LONG, "Sure, I will stop there."), transcripts=["stop"],
                      digits={"end": "#"})


async def test_a_scenario_file_with_keys_a_barge_in_and_a_hang_up(tmp_path):
    bot = agent()
    application = vk.serve.app(bot.on_call, dev=True, on_end=bot.on_end, grace=0.5)
    config = SessionConfig(response_timeout_s=30.0, quiet_period_s=1.0, max_drain_s=5.0)
    async with serving(application) as host:
        report = await api.run_scenario(f"ws://{host}/twilio/media", scenario_file(tmp_path),
                                        config=config)
        await asyncio.wait_for(bot.done.wait(), 10)
        assert await voicekit_tasks() == []
    assert report.result.failed_expectations == [] and report.violations == []
    assert report.result.clears_received >= 1
    # the keys: Twilio's dtmf messages → Dtmf → one entry → the user turn the agent answered
    assert [d.digit for d in bot.came_in(Dtmf)] == ["4", "2", "#"]
    (entry,) = bot.went_out(Digits)
    assert (entry.value, entry.ended_by) == ("42", "end")
    # the barge-in: the answer was cut where the caller heard it, and "stop" was answered
    assert bot.went_out(Interrupted)
    (final,) = bot.ended
    messages = final.messages_json()
    assert messages[0] == {"role": "user", "content": "The caller pressed 4 2."}
    assert messages[1]["role"] == "assistant" and messages[1].get("interrupted") is True
    assert 0 < len(messages[1]["content"]) < len(LONG) / 2
    assert messages[2] == {"role": "user", "content": "stop"}
    assert bot.came_in(Played)  # streamdouble echoed the marks of what it played
    # the hang-up: the socket closed without `stop`, which the call sees as a dropped line
    assert bot.came_in(CallEnded)[-1].reason == "dropped"


async def test_the_same_file_through_streamdoubles_command_line(tmp_path):
    bot = agent()
    application = vk.serve.app(bot.on_call, dev=True, on_end=bot.on_end, grace=0.5)
    path = scenario_file(tmp_path)
    async with serving(application) as host:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "streamdouble.cli", "scenario", str(path),
            f"ws://{host}/twilio/media", "--json", "--response-timeout", "30",
            "--max-drain", "5", cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 120)
        await asyncio.wait_for(bot.done.wait(), 10)
        assert await voicekit_tasks() == []
    assert process.returncode == 0, (out.decode()[-2000:], err.decode()[-2000:])
    metrics = json.loads(out)
    assert [(e["what"], e["passed"]) for e in metrics["expectations"]] == [
        ("expect audio", True), ("expect no clear", True), ("expect clear", True)]
    assert metrics["clears_received"] >= 1 and metrics["closed_by"] == "caller"
    assert metrics["violations"] == []
    assert [d.digit for d in bot.came_in(Dtmf)] == ["4", "2", "#"]
    assert bot.ended[0].messages_json()[2] == {"role": "user", "content": "stop"}
