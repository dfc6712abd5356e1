"""``voicekit eval``: the sample suite in the repository passes against the offline agent, the
results files are what they claim (JSONL read back, JUnit XML valid), mistakes exit 2."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from voicekit.cli import main
from voicekit.eval._result import read_jsonl

SAMPLE = Path(__file__).parent.parent / "evals" / "sample"


def test_the_sample_suite_passes_against_the_offline_agent(tmp_path, capsys):
    jsonl, junit = tmp_path / "run.jsonl", tmp_path / "run.xml"
    code = main(["eval", str(SAMPLE), "--llm", "local", "--workers", "0", "--jsonl", str(jsonl),
                 "--junit", str(junit), "--label", "turns=default"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, out
    results = read_jsonl(jsonl)
    assert len(results) == 13 and all(r.passed for r in results), [r.why() for r in results]
    assert {r.labels["turns"] for r in results} == {"default"}
    names = {r.scenario for r in results}
    assert {"barge-in", "weather tool call", "keypad digits", "recorded question",
            "idle caller"} <= names  # fmt: skip
    idle = next(r for r in results if r.scenario == "idle caller")
    assert idle.ended and [x.text for x in idle.transcript][-2:] == [
        "Are you still there?", "I can't hear anyone, so I'll end the call now. Goodbye!"
    ]
    heard = next(r for r in results if r.scenario == "recorded question")
    assert heard.wer is not None and heard.wer <= 0.25
    cut = next(r for r in results if r.scenario == "barge-in")
    assert cut.turns[0].interrupted
    suites = ET.parse(junit).getroot()
    assert (suites.tag, suites.get("tests"), suites.get("failures"), suites.get("errors")) == (
        "testsuites", "13", "0", "0"
    )
    assert len(suites.findall("./testsuite/testcase")) == 13
    assert "passed 13 of 13, 0 crashed" in out
    assert "first reply audio after the user's turn: median" in out
    assert err.count("\r") == 0  # no progress bar outside a terminal


def test_a_failing_scenario_exits_1_and_says_why(tmp_path, capsys):
    (tmp_path / "a.yaml").write_text(
        "name: wrong city\nturns:\n  - say: weather in Oslo?\n    expect: {mentions: Rome}\n"
    )
    baseline = tmp_path / "before.jsonl"
    (tmp_path / "b.yaml").write_text("name: hello\nturns: [{say: hello}]\n")
    assert main(["eval", str(tmp_path / "b.yaml"), "--llm", "local", "--tts", "tones",
                 "--workers", "0", "--jsonl", str(baseline)]) == 0  # fmt: skip
    capsys.readouterr()
    report = tmp_path / "report.html"
    code = main(["eval", str(tmp_path), "--llm", "local", "--tts", "tones", "--workers", "0",
                 "--baseline", str(baseline), "--report", str(report)])  # fmt: skip
    out, _ = capsys.readouterr()
    assert code == 1
    assert "FAIL  wrong city" in out
    assert "turn 1: reply mentions 'Rome': it said" in out
    assert "passed 1 of 2, 0 crashed" in out
    assert "against the baseline: pass rate 100.0% → 50.0%" in out
    page = report.read_text(encoding="utf-8")
    assert "wrong city" in page and "reply mentions &#x27;Rome&#x27;" in page
    assert f"wrote {report}" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--llm", "nonsense"], "--llm: unknown LLM 'nonsense'"),
        (["--workers", "-1"], "--workers must be 0 or more"),
        (["--agent", "nocolon"], "give an importable factory as module:function"),
        (["--label", "novalue"], "--label 'novalue': give KEY=VALUE"),
    ],
)
def test_bad_options_exit_2(tmp_path, capsys, argv, message):
    (tmp_path / "a.yaml").write_text("turns: [{say: hi}]\n")
    assert main(["eval", str(tmp_path / "a.yaml"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_bad_scenario_file_exits_2_naming_file_and_field(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("turns:\n  - say: hi\n    expect: {tool: {arguments: {city: x}}}\n")
    assert main(["eval", str(bad), "--llm", "local"]) == 2
    assert f"{bad}: turns[0].expect.tool.name: is required" in capsys.readouterr().err


def test_a_rubric_needs_a_judge_or_no_judge(tmp_path, capsys):
    path = tmp_path / "j.yaml"
    path.write_text("turns: [{say: hi}]\njudge: Be polite.\n")
    assert main(["eval", str(path), "--llm", "local", "--tts", "tones", "--workers", "0"]) == 2
    assert "have a judge rubric (j): give the judge's LLM with --judge" in capsys.readouterr().err
    assert main(["eval", str(path), "--llm", "local", "--tts", "tones", "--workers", "0",
                 "--no-judge"]) == 0  # fmt: skip
