"""One conversation per scenario, in this process: the script played, every expectation checked
against what the agent really did, the judge asked over HTTP, recorded calls heard (WER)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from servers.openai_wire import validate_chat_request
from servers.sse_server import text_reply

from voicekit.audio import sample_path
from voicekit.eval._agents import AgentSpec
from voicekit.eval._judge import JudgeSpec
from voicekit.eval._recordings import expand_inputs
from voicekit.eval._result import ScenarioResult
from voicekit.eval._runner import evaluate, tasks_for
from voicekit.eval._scenario import load_scenarios
from voicekit.eval._task import run_task_async
from voicekit.tts import synthesize_tones

OFFLINE = AgentSpec(("--llm", "local", "--tts", "tones"))


def scenario_file(folder: Path, text: str, name: str = "s.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def run(folder: Path, text: str, agent: AgentSpec = OFFLINE) -> ScenarioResult:
    [result] = evaluate(load_scenarios(scenario_file(folder, text)), agent)
    return result


def failed(result: ScenarioResult) -> list[tuple[int | None, str, str]]:
    return [(turn, c.expectation, c.message) for turn, c in result.failed_checks()]


def test_the_offline_agent_calls_the_tool_and_every_check_passes(tmp_path):
    result = run(tmp_path, """
name: rome
turns:
  - say: What is the weather like in Rome today?
    expect:
      tool: {name: get_weather, arguments: {city: rome}}
      mentions: [Foggy in Rome, 22 degrees]
      latency: 5
  - say: Thanks!
    expect: {mentions: welcome, not_mentions: Rome}
expect:
  tools: [get_weather]
  latency: {p90: 5}
""")
    assert result.passed, result.why()
    assert result.error is None and result.attempts == 1 and result.seed is not None
    first, second = result.turns
    assert first.user == "What is the weather like in Rome today?"
    assert first.reply == "Foggy in Rome. It's 22 degrees, says the demo weather tool."
    assert second.reply == "You're welcome!"
    [use] = result.tool_calls
    assert (use.name, dict(use.arguments), use.turn) == ("get_weather", {"city": "Rome"}, 0)
    assert json.loads(use.result or "")["conditions"] == "foggy"
    assert [(x.role, x.text) for x in result.transcript] == [
        ("user", "What is the weather like in Rome today?"),
        ("agent", "Foggy in Rome. It's 22 degrees, says the demo weather tool."),
        ("user", "Thanks!"),
        ("agent", "You're welcome!"),
    ]
    times = [x.t for x in result.transcript]
    assert all(t is not None for t in times) and times == sorted(times)
    # a typed turn is timed from its end: the LLM, the first sentence and the first audio
    assert set(first.latencies) == {"turn_end", "llm_first_token", "first_sentence", "first_audio"}
    assert 0 <= first.latencies["llm_first_token"] <= first.latencies["first_audio"] < 5


def test_expectations_that_do_not_hold_fail_with_what_was_found(tmp_path):
    result = run(tmp_path, """
turns:
  - say: What's the weather in Paris?
    expect:
      tool: {name: get_weather, arguments: {city: Rome}}
      mentions: sunny
      not_mentions: Paris
expect:
  ended: true
""")
    assert not result.passed and result.error is None
    assert failed(result) == [
        (None, "the agent ended the call", "no HangUp"),
        (0, "reply mentions 'sunny'",
         "it said \"Cloudy in Paris. It's 14 degrees, says the demo weather tool.\""),
        (0, "reply does not mention 'Paris'",
         "it said \"Cloudy in Paris. It's 14 degrees, says the demo weather tool.\""),
        (0, 'tool get_weather called with {"city": "Rome"}',
         'tool calls: get_weather({"city": "Paris"})'),
    ]


def test_a_barge_in_cuts_the_reply_and_is_answered(tmp_path):
    samples, rate = synthesize_tones("Foggy in Rome.")  # the first sentence, in tones
    result = run(tmp_path, f"""
turns:
  - say: What is the weather like in Rome today?
    expect: {{interrupted: true}}
  - barge_in: stop
    after_audio_ms: {samples.shape[0] * 1000 / rate + 60}
    expect: {{mentions: "I heard: 'stop'", interrupted: false}}
""")
    assert result.passed, result.why()
    cut, answer = result.turns
    assert cut.interrupted and cut.reply == "Foggy in Rome."  # what the caller heard
    assert answer.user == "stop" and not answer.interrupted
    assert [x.interrupted for x in result.transcript if x.role == "agent"] == [True, False]


def test_keypad_digits_reach_the_agent_as_dtmf(tmp_path):
    result = run(tmp_path, """
turns:
  - dtmf: "4"
  - dtmf: "2#"
    reply: true
    expect: {mentions: "You said: The caller pressed 4 2"}
""", AgentSpec(factory="test_eval_agents:keypad"))
    assert result.passed, result.why()
    assert [t.user for t in result.turns] == ["The caller pressed 4 2"]


def test_hang_up_and_transfer_are_seen(tmp_path):
    result = run(tmp_path, """
turns:
  - say: I want a person.
    expect: {transferred: "+15550100", ended: false}
  - say: Never mind, bye.
    expect: {ended: true}
expect:
  transferred: true
  ended: true
""", AgentSpec(factory="test_eval_agents:call_control"))
    assert result.passed, result.why()
    assert (result.ended, result.transferred) == (True, "+15550100")
    wrong = run(tmp_path, """
turns:
  - say: I want a person.
expect: {transferred: "+19999999", ended: false}
""", AgentSpec(factory="test_eval_agents:call_control"))
    assert failed(wrong) == [
        (None, "the agent transferred the call to +19999999", "transferred to +15550100")
    ]


def test_a_failed_reply_fails_the_conversation_unless_expected(tmp_path):
    text = """
turns:
  - say: hello
  - say: again
    expect: {mentions: Fine now}
"""
    result = run(tmp_path, text, AgentSpec(factory="test_eval_agents:failing"))
    assert failed(result) == [(None, "no reply failed", "llm: ProviderTimeout: read timeout")]
    assert [(f.source, f.turn, f.fallback) for f in result.failures] == [("llm", 0, True)]
    assert result.turns[0].reply == ""  # the spoken apology is not the LLM's: not recorded
    expected = run(tmp_path, text + "expect: {failed: true}\n",
                   AgentSpec(factory="test_eval_agents:failing"))  # fmt: skip
    assert expected.passed, expected.why()


def test_a_conversation_over_its_time_limit_is_an_error_not_a_hang(tmp_path):
    result = run(tmp_path, "time_limit: 0.5\nturns: [{say: hello}]\n",
                 AgentSpec(factory="test_eval_agents:slow"))  # fmt: skip
    assert result.error is not None and result.error.startswith("TimeoutError: run_conversation")
    assert not result.passed and result.turns == ()
    assert 0.4 < result.wall_time < 10


def test_the_same_seed_gives_the_same_conversation(tmp_path):
    text = "turns: [{say: 'my number?'}]\n"
    agent = AgentSpec(factory="test_eval_agents:lucky_number")
    first, second = run(tmp_path, text, agent), run(tmp_path, text, agent)
    assert first.turns[0].reply == second.turns[0].reply
    assert f"Your seed is {first.seed}." in first.turns[0].reply
    [other] = evaluate(load_scenarios(scenario_file(tmp_path, text)), agent, seed=1)
    assert other.seed != first.seed and other.turns[0].reply != first.turns[0].reply


async def test_the_judge_grades_over_an_openai_compatible_server(tmp_path, sse_server):
    path = scenario_file(tmp_path, """
turns: [{say: "What is the weather like in Rome today?"}]
judge: {rubric: The agent gives the weather for Rome., min_score: 4}
""")
    [scenario] = load_scenarios(path)
    judge = JudgeSpec(sse_server.base_url, model="grader")
    sse_server.enqueue(
        text_reply(['Here you go: {"score": 5, ', '"reason": "It gave Rome\'s weather."}']),
        text_reply(['{"score": 2, "reason": "Too vague."}']),
        text_reply(["I think it was fine."]),
    )
    [task] = tasks_for([scenario], OFFLINE, judge=judge)
    good = await run_task_async(task)
    low = await run_task_async(task)
    garbled = await run_task_async(task)
    bodies = [r.json() for r in sse_server.requests]
    assert good.passed and good.judge is not None
    assert (good.judge.score, good.judge.reason) == (5.0, "It gave Rome's weather.")
    assert not low.passed and low.judge is not None and not low.judge.passed
    assert "judge: score 2: Too vague." in low.why()
    assert garbled.judge is None
    assert failed(garbled) == [
        (None, "the judge graded the conversation",
         "the judge did not answer a JSON object: 'I think it was fine.'")
    ]
    for body in bodies:
        validate_chat_request(body)
        assert (body["model"], body["temperature"], body["seed"]) == ("grader", 0.0, task.seed)
    prompt = bodies[0]["messages"][-1]["content"]
    assert "Rubric: The agent gives the weather for Rome." in prompt
    assert "Caller: What is the weather like in Rome today?" in prompt
    assert "Agent: Foggy in Rome. It's 22 degrees, says the demo weather tool." in prompt
    assert 'Tool call: get_weather({"city": "Rome"}) -> {' in prompt


def test_a_recorded_call_is_heard_and_its_wer_measured(tmp_path):
    calls = tmp_path / "calls"
    calls.mkdir()
    shutil.copy(sample_path(), calls / "rome.wav")
    (calls / "rome.txt").write_text("What is the weather like in Rome today?")
    [result] = evaluate(expand_inputs([calls]), OFFLINE)
    assert result.passed, result.why()
    [turn] = result.turns
    assert turn.user.strip().rstrip("?").lower() == "what is the weather like in rome today"
    assert result.wer == 0.0
    assert turn.reply.startswith("Foggy in Rome.")
    # heard from audio: every milestone from the end of the caller's speech
    assert list(turn.latencies)[:3] == ["vad_stop", "transcript", "turn_end"]
    assert 0 < turn.latencies["vad_stop"] < turn.latencies["first_audio"] < 20


async def test_a_silence_is_real_time_audio_and_ends_when_the_agent_hangs_up():
    from voicekit.eval._play import SILENCE_PREFIX, CallState, caller_side
    from voicekit.events import AudioChunk, HangUp, TurnEnded, TurnStarted

    async def script():
        yield TurnStarted(1.0)
        yield TurnEnded(f"{SILENCE_PREFIX}10.0", 1.0)

    line = CallState()
    chunks = []
    async for item in caller_side(script(), line):
        chunks.append(item)
        if len(chunks) == 10:  # 200 ms in: the agent hangs up
            line.see(HangUp("idle"))
    assert all(isinstance(c, AudioChunk) and not c.samples.any() for c in chunks)
    assert [round(c.t, 2) for c in chunks[:3]] == [1.0, 1.02, 1.04]
    assert len(chunks) == 10  # nothing after the hang-up, not 500 chunks
