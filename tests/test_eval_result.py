"""The per-conversation result value of ``voicekit eval``: its JSON round trip, JSONL files,
the JUnit XML for CI (parsed back and checked against the usual JUnit shape), and the
latencies it keeps, read from a real conversation's metrics."""

from __future__ import annotations

import dataclasses
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicekit import agent
from voicekit._metrics import MILESTONES, TurnMetrics, turn_metrics
from voicekit.conversation import run_conversation, say, scripted_llm
from voicekit.eval import (
    FORMAT,
    Check,
    JudgeVerdict,
    Line,
    ReplyFailure,
    ResultError,
    ScenarioResult,
    ToolUse,
    TurnResult,
    junit_xml,
    latencies,
    read_jsonl,
    steps,
    write_jsonl,
    write_junit,
)
from voicekit.events import ToolCall
from voicekit.tts import tones


def full_result(**changes) -> ScenarioResult:
    fields = dict(
        turns=[
            TurnResult(0, "What's the weather in Rome?", "Foggy in Rome. 22 degrees.",
                       {"first_audio": 0.91, "vad_stop": 0.2, "transcript": 0.45,
                        "turn_end": 0.8, "llm_first_token": 0.82, "first_sentence": 0.85},
                       checks=[Check("reply mentions 'Rome'", True),
                               Check("tool get_weather called", True, "city=Rome")]),
            TurnResult(1, "stop", "", {"turn_end": 0.0}, interrupted=True,
                       checks=[Check("reply does not mention 'sorry'", True)]),
        ],
        checks=[Check("the call ended", True), Check("latency p90 ≤ 2.5 s", True, "p90 0.91 s")],
        transcript=[Line("user", "What's the weather in Rome?", 0.0),
                    Line("agent", "Foggy in Rome.", 3.1, interrupted=True),
                    Line("user", "stop — «ça va?» 日本", 4.2)],
        tool_calls=[ToolUse("get_weather", {"city": "Rome", "units": ["c", {"deep": None}]},
                            '{"temp": 22}', 0),
                    ToolUse("raw", "not json {", None, 1)],
        ended=True, transferred="+15550100",
        failures=[ReplyFailure("llm", "ProviderTimeout: no answer in 5 s", True, 1),
                  ReplyFailure("tts", "boom", False, None)],
        wer=0.125, judge=JudgeVerdict(4, "polite, gave the weather", True), error=None,
        attempts=2, wall_time=12.5, seed=7, labels={"llm": "local", "turns": "timeout 0.6"},
    )
    fields.update(changes)
    return ScenarioResult("weather in Rome", "evals/sample/weather.yaml", **fields)


# ---------------------------------------------------------------------------------------------
# the value


def test_a_full_result_round_trips_through_json_on_one_line():
    r = full_result()
    text = r.to_json()
    assert "\n" not in text
    data = json.loads(text)
    assert data["format"] == FORMAT and data["passed"] is True
    assert data["tool_calls"][0]["arguments"] == {"city": "Rome", "units": ["c", {"deep": None}]}
    assert data["turns"][0]["latencies"] == {
        "vad_stop": 0.2, "transcript": 0.45, "turn_end": 0.8, "llm_first_token": 0.82,
        "first_sentence": 0.85, "first_audio": 0.91}  # in pipeline order
    assert list(data["turns"][0]["latencies"]) == [name for name, _ in MILESTONES]
    back = ScenarioResult.from_json(text)
    assert back == r and hash(back) == hash(r)
    assert ScenarioResult.from_dict(data) == r
    assert back.tool_calls[1].arguments == "not json {"
    assert back.transcript[2].text == "stop — «ça va?» 日本"


def test_the_value_is_frozen_and_its_lists_are_tuples():
    r = full_result(turns=[TurnResult(0, "hi")])
    assert isinstance(r.turns, tuple) and isinstance(r.checks, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.error = "boom"  # type: ignore[misc]
    with pytest.raises(TypeError):
        r.tool_calls[0].arguments["city"] = "Paris"
    with pytest.raises(TypeError):
        r.labels["llm"] = "other"  # type: ignore[index]


def test_passed_is_derived_from_error_checks_and_judge():
    assert full_result().passed
    assert not full_result(error="TimeoutError: not finished after 60 s").passed
    assert not full_result(checks=[Check("the call ended", False, "it did not")]).passed
    bad_turn = TurnResult(0, "hi", "hello", checks=[Check("reply mentions 'Rome'", False)])
    r = full_result(turns=[bad_turn])
    assert not r.passed and not bad_turn.passed
    assert r.failed_checks() == [(0, bad_turn.checks[0])]
    assert r.why() == "turn 1: reply mentions 'Rome'"
    judged = full_result(judge=JudgeVerdict(2, "rude", False))
    assert not judged.passed and judged.why() == "judge: score 2: rude"
    crashed = full_result(error="boom", checks=[Check("ended", False, "no")])
    assert crashed.why().splitlines() == ["error: boom", "conversation: ended: no"]
    # the derived flag in the JSON is not trusted on the way back
    data = json.loads(full_result(error="x").to_json())
    data["passed"] = True
    assert not ScenarioResult.from_dict(data).passed


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: Line("bot", "hi"), "role: expected one of user, agent, got 'bot'"),
        (lambda: TurnResult(0, "hi", latencies={"vad": 0.2}),
         "latencies: expected milestones among vad_stop, transcript"),
        (lambda: TurnResult(0, "hi", latencies={"first_audio": float("nan")}),
         "latencies.first_audio: expected seconds"),
        (lambda: TurnResult(-1, "hi"), "index: expected a turn index"),
        (lambda: ScenarioResult("", "x.yaml"), "scenario: expected a non-empty string"),
        (lambda: ScenarioResult("a", "x.yaml", attempts=0), "attempts: expected an integer ≥ 1"),
        (lambda: ScenarioResult("a", "x.yaml", checks=["ok"]), "checks[0]: expected a Check"),
        (lambda: ScenarioResult("a", "x.yaml", wer=-0.1), "wer: expected a number ≥ 0"),
        (lambda: ScenarioResult("a", "x.yaml", labels={"n": 3}), "labels: expected a mapping"),
        (lambda: JudgeVerdict(float("inf"), "x", True), "score: expected a finite number"),
    ],
)
def test_bad_values_are_refused_naming_the_field(build, message):
    with pytest.raises(ResultError, match=re.escape(message)):
        build()
    assert issubclass(ResultError, ValueError)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.pop("source"), "result: missing field 'source'"),
        (lambda d: d.update(colour="red"), "result: unknown field 'colour'"),
        (lambda d: d.update(format="other/2"), "format: expected 'voicekit.eval.result/1'"),
        (lambda d: d["turns"][1]["checks"][0].pop("passed"),
         "turns[1].checks[0]: missing field 'passed'"),
        (lambda d: d["turns"][0]["latencies"].update(first_audio="fast"),
         "turns[0].latencies.first_audio: expected seconds"),
        (lambda d: d["transcript"][2].update(role="system"), "transcript[2].role: expected one"),
        (lambda d: d.update(tool_calls={"name": "x"}), "tool_calls: expected a list"),
        (lambda d: d["judge"].pop("reason"), "judge: missing field 'reason'"),
        (lambda d: d.update(ended="yes"), "ended: expected true or false"),
    ],
)
def test_bad_json_is_refused_naming_the_field(edit, message):
    data = json.loads(full_result().to_json())
    edit(data)
    with pytest.raises(ResultError) as caught:
        ScenarioResult.from_json(json.dumps(data))
    assert str(caught.value).startswith(message), str(caught.value)


def test_text_that_is_not_json_is_a_result_error():
    with pytest.raises(ResultError, match="not JSON"):
        ScenarioResult.from_json("{nope")


_texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
_seconds = st.floats(min_value=0, max_value=100, allow_nan=False, allow_infinity=False)
_checks = st.lists(st.builds(Check, st.text(min_size=1, max_size=10), st.booleans(), _texts),
                   max_size=3)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | _texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_texts, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def results(draw):
    turns = [
        TurnResult(k, draw(_texts), draw(_texts),
                   draw(st.dictionaries(st.sampled_from([n for n, _ in MILESTONES]), _seconds)),
                   draw(st.booleans()), draw(_checks))
        for k in range(draw(st.integers(0, 3)))
    ]
    return ScenarioResult(
        draw(st.text(min_size=1, max_size=12)), draw(_texts), turns=turns, checks=draw(_checks),
        transcript=draw(st.lists(st.builds(Line, st.sampled_from(["user", "agent"]), _texts,
                                           st.none() | _seconds, st.booleans()), max_size=4)),
        tool_calls=draw(st.lists(st.builds(ToolUse, st.text(min_size=1, max_size=8), _json,
                                           st.none() | _texts, st.none() | st.integers(0, 5)),
                                 max_size=3)),
        ended=draw(st.booleans()), transferred=draw(st.none() | _texts),
        failures=draw(st.lists(st.builds(ReplyFailure, _texts, _texts, st.booleans(),
                                         st.none() | st.integers(0, 5)), max_size=2)),
        wer=draw(st.none() | _seconds),
        judge=draw(st.none() | st.builds(JudgeVerdict, _seconds, _texts, st.booleans())),
        error=draw(st.none() | _texts), attempts=draw(st.integers(1, 3)), wall_time=draw(_seconds),
        seed=draw(st.none() | st.integers(0, 2**31)),
        labels=draw(st.dictionaries(_texts, _texts, max_size=3)),
    )


@settings(max_examples=150, deadline=None)
@given(results())
def test_any_result_round_trips(r):
    assert ScenarioResult.from_json(r.to_json()) == r


# ---------------------------------------------------------------------------------------------
# JSONL


def test_jsonl_writes_each_result_as_it_comes_and_reads_them_back(tmp_path):
    path = tmp_path / "run.jsonl"
    a, b = full_result(), full_result(error="boom", attempts=1)
    seen_on_disk = []

    def stream():
        yield a
        seen_on_disk.append(path.read_text(encoding="utf-8"))  # the first is already written
        yield b

    assert write_jsonl(stream(), path) == 2
    assert seen_on_disk == [a.to_json() + "\n"]
    assert read_jsonl(path) == [a, b]
    assert write_jsonl([a], path, append=True) == 1
    with path.open("a", encoding="utf-8") as out:
        out.write("\n   \n")  # blank lines are skipped
    assert read_jsonl(path) == [a, b, a]
    # JSON leaves these line separators unescaped: a line is still one result
    odd = full_result(transcript=[Line("user", "one\u2028two\x85three\x0cfour\r\n", 0.0)])
    write_jsonl([odd, a], path)
    assert read_jsonl(path) == [odd, a]


def test_a_bad_jsonl_line_names_the_file_and_the_line(tmp_path):
    path = tmp_path / "run.jsonl"
    good = full_result().to_json()
    bad = json.loads(good)
    del bad["turns"][0]["user"]
    path.write_text(f"{good}\n\n{json.dumps(bad)}\n", encoding="utf-8")
    with pytest.raises(ResultError) as caught:
        read_jsonl(path)
    assert str(caught.value) == f"{path}, line 3: turns[0]: missing field 'user'"
    with pytest.raises(ResultError, match="no such results file"):
        read_jsonl(tmp_path / "missing.jsonl")
    with pytest.raises(ResultError, match="not a ScenarioResult"):
        write_jsonl([{"scenario": "a"}], tmp_path / "x.jsonl")  # type: ignore[list-item]


# ---------------------------------------------------------------------------------------------
# JUnit XML

_CHILDREN = {
    "testsuites": {"testsuite"},
    "testsuite": {"properties", "testcase", "system-out", "system-err"},
    "testcase": {"skipped", "error", "failure", "system-out", "system-err"},
}
_REQUIRED = {
    "testsuite": {"name", "tests"},
    "testcase": {"name", "classname"},
    "failure": {"message", "type"},
    "error": {"message", "type"},
}


def junit_shape(root: ET.Element) -> None:
    """The usual JUnit XML shape (Ant/Jenkins/GitLab/GitHub readers): elements only where the
    schema allows them, required attributes, numbers that parse, counts that add up."""
    assert root.tag == "testsuites"
    cases_all = 0
    for element in root.iter():
        allowed = _CHILDREN.get(element.tag)
        if allowed is not None:
            assert {child.tag for child in element} <= allowed, element.tag
        missing = _REQUIRED.get(element.tag, set()) - set(element.attrib)
        assert not missing, (element.tag, missing)
        for attribute in ("tests", "failures", "errors", "skipped"):
            if attribute in element.attrib:
                assert int(element.attrib[attribute]) >= 0
        if "time" in element.attrib:
            assert float(element.attrib["time"]) >= 0
    for suite in root.findall("testsuite"):
        cases = suite.findall("testcase")
        cases_all += len(cases)
        assert int(suite.get("tests")) == len(cases)
        assert int(suite.get("failures")) == sum(c.find("failure") is not None for c in cases)
        assert int(suite.get("errors")) == sum(c.find("error") is not None for c in cases)
        for case in cases:
            assert len(case.findall("failure")) + len(case.findall("error")) <= 1
    assert int(root.get("tests")) == cases_all


def test_junit_xml_is_valid_and_says_what_failed(tmp_path):
    passing = full_result()
    failing = full_result(
        turns=[TurnResult(0, "weather?", "I don't know", checks=[
            Check("reply mentions 'Rome'", False, "the reply was: I don't know")])],
        transcript=[Line("user", "weather?", 0.0), Line("agent", "I don't know", 1.2)],
    )
    failing = ScenarioResult("no weather", "evals/sample/noweather.yaml",
                             turns=failing.turns, transcript=failing.transcript, wall_time=3.25)
    crashed = ScenarioResult("crash", "other/crash.json",
                             error="TimeoutError: not finished after 60 s\nat step 2")
    path = tmp_path / "junit.xml"
    write_junit([passing, failing, crashed], path, name="nightly")
    text = path.read_text(encoding="utf-8")
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.parse(path).getroot()
    junit_shape(root)
    assert (root.get("name"), root.get("tests"), root.get("failures"), root.get("errors")) == (
        "nightly", "3", "1", "1")
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {"voicekit.eval.sample", "voicekit.eval.other"}
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert cases["weather in Rome"].find("failure") is None
    assert cases["weather in Rome"].get("time") == "12.500"
    failure = cases["no weather"].find("failure")
    assert failure.get("message") == "turn 1: reply mentions 'Rome': the reply was: I don't know"
    assert "agent: I don't know" in failure.text
    assert cases["no weather"].get("file") == "evals/sample/noweather.yaml"
    error = cases["crash"].find("error")
    assert error.get("message") == "TimeoutError: not finished after 60 s"
    assert "at step 2" in error.text
    assert "user: What's the weather in Rome?" in cases["weather in Rome"].find("system-out").text


def test_junit_xml_survives_text_xml_cannot_hold():
    nasty = ScenarioResult(
        'a "quoted" <name> & more', "x.yaml",
        transcript=[Line("user", "bell \x07 nul \x00 esc \x1b ok <b>&amp;", 0.0)],
        checks=[Check("reply mentions '\x0c'", False, "]]> end")],
    )
    root = ET.fromstring(junit_xml([nasty]).encode("utf-8"))
    junit_shape(root)
    case = root.find("testsuite/testcase")
    assert case.get("name") == 'a "quoted" <name> & more'
    assert "bell \ufffd nul \ufffd esc \ufffd ok <b>&amp;" in case.find("system-out").text
    assert case.find("failure").get("message") == "conversation: reply mentions '\ufffd': ]]> end"


def test_an_empty_run_is_valid_junit():
    root = ET.fromstring(junit_xml([]))
    junit_shape(root)
    assert root.get("tests") == "0" and root.findall("testsuite") == []


# ---------------------------------------------------------------------------------------------
# latencies from the metrics


@settings(max_examples=200, deadline=None)
@given(st.lists(st.none() | st.floats(0, 10), min_size=7, max_size=7))
def test_steps_from_latencies_are_the_metrics_own_steps(times):
    end, *marks = times
    end = 1.0 if end is None else end
    names = [name for name, _ in MILESTONES]
    metrics = TurnMetrics(speech_end=end, **dict(zip(names, marks, strict=True)))
    ours = steps(latencies(metrics))
    theirs = {name: step for name, _, step, _ in metrics.steps() if step is not None}
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert ours[name] == pytest.approx(theirs[name], abs=2e-6)


async def test_latencies_of_a_real_conversation():
    """A typed conversation through the real agent (scripted LLM, tone TTS): latencies count
    from each turn's end, in pipeline order, and a TurnResult keeps them. (The agent yields no
    tokens, so its timeline has no LLM milestones: the runner's probe sees those.)"""
    bot = agent(llm=scripted_llm(["Let me ", 0.05, "check. It is sunny."], "Bye now."),
                tts=tones())
    conversation = await run_conversation(bot, [say("weather?"), say("bye")])
    for turn in (0, 1):
        metrics = turn_metrics(conversation.timeline, turn)
        got = latencies(metrics)
        assert list(got) == ["turn_end", "first_audio"]
        assert got["turn_end"] == 0.0 and 0 < got["first_audio"] < 5
        result = TurnResult(turn, metrics.text, metrics.sentence, got)
        assert result.voice_to_voice == got["first_audio"]
    first = latencies(turn_metrics(conversation.timeline, 0))
    assert first["first_audio"] >= 0.045  # the first sentence waits for the scripted pause


def test_tool_use_from_a_tool_call():
    use = ToolUse.of(ToolCall("c1", "get_weather", '{"city": "Rome"}'), '{"t": 22}', 0)
    assert (use.name, dict(use.arguments), use.result, use.turn) == (
        "get_weather", {"city": "Rome"}, '{"t": 22}', 0)
    assert ToolUse.of(ToolCall("c2", "x", "{broken")).arguments == "{broken"
    assert ToolUse.of(ToolCall("c3", "x", "")).arguments == {}


def test_write_junit_path(tmp_path: Path):
    out = tmp_path / "deep.xml"
    write_junit([full_result()], out)
    junit_shape(ET.parse(out).getroot())
