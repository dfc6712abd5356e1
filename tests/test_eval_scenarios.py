"""Scenario files: the schema read into values, every mistake named by file and field, recorded
calls as scenarios, and the expectation checks as pure functions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from voicekit.audio import sample_path
from voicekit.eval._checks import arguments_match, check_conversation, check_turn, mentions
from voicekit.eval._recordings import expand_inputs
from voicekit.eval._result import JudgeVerdict, ReplyFailure, ToolUse
from voicekit.eval._scenario import (
    Expect,
    LatencyBound,
    ScenarioError,
    ToolExpectation,
    Turn,
    load_scenarios,
)

FULL = """
name: everything
description: every kind of step
tags: [a, b]
seed: 42
time_limit: 20
first_message: Hi there.
turns:
  - say: What is the weather in Rome?
    expect:
      mentions: [Rome, degrees]
      not_mentions: sorry
      tool: {name: get_weather, arguments: {city: Rome}}
      latency: 2.5
  - wait: 1.5
  - audio: q.wav
    text: What is the weather like in Rome today?
    silence: 2
    expect: {max_wer: 0.2, interrupted: true}
  - barge_in: stop
    after_audio_ms: 300
  - barge_in: true
  - dtmf: 12#
    after: 0.5
  - dtmf: 7
    reply: true
    expect: {mentions: seven}
  - quiet: 4
expect:
  tools: [get_weather, {name: end_call}]
  ended: true
  transferred: "+15550100"
  failed: false
  latency: {p50: 1.0, p90: 2.0, max: 3.0}
judge:
  rubric: Polite and right.
  min_score: 4
idle: {after: 2.5}
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_full_scenario_reads_into_values(tmp_path):
    shutil.copy(sample_path(), tmp_path / "q.wav")
    [s] = load_scenarios(write(tmp_path, "full.yaml", FULL))
    assert (s.name, s.tags, s.seed, s.time_limit, s.first_message) == (
        "everything", ("a", "b"), 42, 20.0, "Hi there."
    )
    assert [t.kind for t in s.turns] == [
        "say", "wait", "audio", "barge_in", "barge_in", "dtmf", "dtmf", "quiet"
    ]
    say, wait, audio, cut, noise, digits, seven, quiet = s.turns
    assert say.expect == Expect(
        mentions=("Rome", "degrees"),
        not_mentions=("sorry",),
        tools=(ToolExpectation("get_weather", {"city": "Rome"}),),
        latency=LatencyBound(max=2.5),
    )
    assert wait.seconds == 1.5 and not wait.gets_reply
    assert audio.audio == str(tmp_path / "q.wav") and audio.silence == 2.0
    assert audio.expect.max_wer == 0.2 and audio.expect.interrupted is True
    assert (cut.text, cut.after_audio_ms, cut.gets_reply) == ("stop", 300.0, True)
    assert (noise.text, noise.gets_reply) == (None, False)
    assert (digits.text, digits.after, digits.reply) == ("12#", 0.5, False)
    assert (seven.text, seven.reply, seven.expect.mentions) == ("7", True, ("seven",))
    assert s.expect.tools == (ToolExpectation("get_weather"), ToolExpectation("end_call"))
    assert (s.expect.ended, s.expect.transferred, s.expect.failed) == (True, "+15550100", False)
    assert s.expect.latency == LatencyBound(3.0, 1.0, 2.0)
    assert (s.judge.rubric, s.judge.min_score, s.judge.scale) == ("Polite and right.", 4.0, 5)
    assert (quiet.seconds, quiet.gets_reply) == (4.0, False)
    assert (s.idle.after, s.idle.reprompts) == (2.5, 1)
    assert s.has_audio


def test_json_and_a_list_of_scenarios(tmp_path):
    data = {"scenarios": [{"turns": [{"say": "hi"}]}, {"name": "two", "turns": [{"say": "yo"}]}]}
    scenarios = load_scenarios(write(tmp_path, "many.json", json.dumps(data)))
    assert [s.name for s in scenarios] == ["many[0]", "two"]
    assert scenarios[0].seed != scenarios[1].seed  # seeds come from the names


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("turns: []", "turns: must be a non-empty list of steps"),
        ("name: x", "turns: is required"),
        ("turns: [{say: hi}]\ncolour: red", "colour: unknown field; expected one of: name,"),
        ("turns: [{say: 3}]", "turns[0].say: must be text, got 3"),
        ("turns: [{say: hi, wait: 2}]", "turns[0]: needs exactly one of say, audio, wait"),
        ("turns: [{shout: hi}]", "turns[0]: needs exactly one of say, audio, wait, barge_in, "
         "dtmf, quiet (found none)"),
        ("turns: [{say: hi, expect: {mention: x}}]", "turns[0].expect.mention: unknown field"),
        ("turns: [{say: hi, expect: {tool: {arguments: {}}}}]",
         "turns[0].expect.tool.name: is required"),
        ("turns: [{say: hi, expect: {latency: {p50: 1}}}]",
         "turns[0].expect.latency.p50: unknown field; expected one of: max"),
        ("turns: [{say: hi, expect: {latency: -1}}]",
         "turns[0].expect.latency.max: must be above 0, got -1"),
        ("turns: [{say: hi, expect: {ended: yes please}}]",
         "turns[0].expect.ended: must be true or false"),
        ("turns: [{say: hi, expect: {max_wer: 0.1}}]", "turns[0].expect.max_wer: unknown field"),
        ("turns: [{audio: nowhere.wav}]", "turns[0].audio: no such audio file:"),
        ("turns: [{say: hi}, {dtmf: '12x'}]", "turns[1].dtmf: not keypad digits: 'X'"),
        ("turns: [{say: hi}, {dtmf: '1', expect: {mentions: a}}]",
         "turns[1].expect: this step gets no reply to check"),
        ("turns: [{wait: 1}]", "turns: no step gets a reply"),
        ("turns: [{barge_in: stop}]", "turns[0]: a barge-in needs a reply in progress"),
        ("turns: [{say: hi}]\nseed: -4", "seed: must be a whole number ≥ 0"),
        ("turns: [{say: hi}]\njudge: {min_score: 3}", "judge.rubric: is required"),
        ("turns: [{say: hi}]\njudge: {rubric: ok, min_score: 9}",
         "judge.min_score: must be between 1 and 5, got 9"),
        ("turns: [{say: hi}]\nexpect: {interrupted: true}", "expect.interrupted: unknown field"),
        ("turns: [{say: hi}\n", "not valid YAML:"),
        ("- just\n- a list", "(top level): must be a mapping"),
        ("turns: [{say: hi}, {quiet: 0}]", "turns[1].quiet: must be above 0, got 0"),
        ("turns: [{say: hi}]\nidle: {reprompts: 2}", "idle.after: is required"),
        ("turns: [{say: hi}]\nidle: {after: 2, reprompts: -1}",
         "idle.reprompts: must be a whole number ≥ 0"),
    ],
)
def test_mistakes_name_the_file_and_the_field(tmp_path, text, message):
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(ScenarioError) as caught:
        load_scenarios(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_broken_json_says_where(tmp_path):
    path = write(tmp_path, "bad.json", '{"turns": [{"say": "hi"},]}')
    with pytest.raises(ScenarioError, match=r"bad\.json: not valid JSON: .* line 1, column 26"):
        load_scenarios(path)


def test_a_yaml_error_gives_its_line(tmp_path):
    path = write(tmp_path, "bad.yaml", "name: x\nturns:\n  - say: [unclosed\n")
    with pytest.raises(ScenarioError, match=r"not valid YAML: .* at line 4"):
        load_scenarios(path)


# ---------------------------------------------------------------------------------------------
# Recorded calls


def test_a_folder_of_recordings_with_references(tmp_path):
    calls = tmp_path / "calls"
    calls.mkdir()
    shutil.copy(sample_path(), calls / "b-rome.wav")
    shutil.copy(sample_path(), calls / "a-plain.wav")
    (calls / "b-rome.txt").write_text("What is the weather\nlike in Rome today?\n")
    (calls / "notes.md").write_text("not a recording")
    a, b = expand_inputs([calls])
    assert (a.name, a.turns[0].text, b.name, b.turns[0].text) == (
        "a-plain", None, "b-rome", "What is the weather like in Rome today?"
    )
    assert b.turns[0].kind == "audio" and b.has_audio and b.expect == Expect()
    assert a.seed != b.seed


def test_a_folder_with_scenarios_stands_for_them_not_their_audio(tmp_path):
    shutil.copy(sample_path(), tmp_path / "q.wav")
    write(tmp_path, "one.yaml", "turns: [{audio: q.wav}]")
    write(tmp_path, "two.json", '{"turns": [{"say": "hi"}]}')
    assert [s.name for s in expand_inputs([tmp_path])] == ["one", "two"]


def test_inputs_that_are_not_scenarios_or_recordings(tmp_path):
    with pytest.raises(ScenarioError, match="no such file or folder"):
        expand_inputs([tmp_path / "missing"])
    with pytest.raises(ScenarioError, match="not a scenario file"):
        expand_inputs([write(tmp_path, "x.txt", "hello")])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ScenarioError, match=r"no scenario files .* or recordings"):
        expand_inputs([empty])
    write(tmp_path, "a.yaml", "name: same\nturns: [{say: hi}]")
    write(tmp_path, "b.yaml", "name: same\nturns: [{say: yo}]")
    with pytest.raises(ScenarioError, match="'same' is also used in"):
        expand_inputs([tmp_path / "a.yaml", tmp_path / "b.yaml"])


# ---------------------------------------------------------------------------------------------
# The checks


def test_text_and_arguments_match_loosely_but_not_wrongly():
    assert mentions("It’s 22 degrees\nin ROME", "it's 22 degrees in rome")
    assert not mentions("Rome", "Romeo")
    assert arguments_match({"city": "Rome", "days": 2, "opts": {"unit": "C", "x": 1}},
                           {"city": "rome", "days": 2.0, "opts": {"unit": "c"}})  # fmt: skip
    assert not arguments_match({"city": "Rome"}, {"city": "Rome", "unit": "C"})
    assert not arguments_match("city=Rome", {"city": "Rome"})
    assert not arguments_match({"flag": 1}, {"flag": True})


def turn_checks(expect: Expect, **happened):
    facts = dict(replied=True, reply="", tools=[], failures=[], interrupted=False,
                 hung_up=False, transferred=None, first_audio=None, wer=None)  # fmt: skip
    facts.update(happened)
    checks = check_turn(Turn("say", "x", expect=expect), **facts)
    return [(c.expectation, c.passed, c.message) for c in checks]


def test_turn_checks_say_what_was_expected_and_found():
    expect = Expect(mentions=("Rome",), not_mentions=("sorry",),
                    tools=(ToolExpectation("get_weather", {"city": "Rome"}),),
                    interrupted=True, latency=LatencyBound(max=1.0))  # fmt: skip
    paris = ToolUse("get_weather", {"city": "Paris"})
    assert turn_checks(expect, reply="Sorry, Paris is sunny.", tools=[paris], first_audio=1.5) == [
        ("reply mentions 'Rome'", False, "it said 'Sorry, Paris is sunny.'"),
        ("reply does not mention 'sorry'", False, "it said 'Sorry, Paris is sunny.'"),
        ('tool get_weather called with {"city": "Rome"}', False,
         'tool calls: get_weather({"city": "Paris"})'),
        ("the reply was interrupted", False, "it played out"),
        ("first reply audio within 1 s", False, "1.50 s"),
    ]
    rome = ToolUse("get_weather", {"city": "ROME"})
    assert all(ok for _, ok, _ in turn_checks(
        expect, reply="Foggy in Rome.", tools=[rome], interrupted=True, first_audio=0.4))
    assert turn_checks(expect, replied=False) == [
        ("the agent replied", False, "no reply to this turn")
    ]


def test_conversation_checks_default_to_no_failed_reply():
    checks, verdict = check_conversation(
        Expect(ended=True, transferred="+1555", latency=LatencyBound(p50=1.0, p90=1.2)),
        reply="Bye.", tools=[], failures=[ReplyFailure("llm", "timeout")], ended=False,
        transferred="+1666", first_audio=[0.5, 0.9, 1.1, 2.0], verdict="the judge said nothing",
    )  # fmt: skip
    assert [(c.expectation, c.passed, c.message) for c in checks] == [
        ("the agent ended the call", False, "no HangUp"),
        ("the agent transferred the call to +1555", False, "transferred to +1666"),
        ("no reply failed", False, "llm: timeout"),
        ("median time to first reply audio ≤ 1 s", True, "1.00 s"),
        ("p90 time to first reply audio ≤ 1.2 s", False, "1.73 s"),
        ("the judge graded the conversation", False, "the judge said nothing"),
    ]
    assert verdict is None
    good = JudgeVerdict(4, "fine", True)
    checks, verdict = check_conversation(
        Expect(failed=True), reply="", tools=[], failures=[ReplyFailure("tts", "x")],
        ended=False, transferred=None, first_audio=[], verdict=good,
    )  # fmt: skip
    assert [(c.expectation, c.passed) for c in checks] == [("a reply failed", True)]
    assert verdict is good
