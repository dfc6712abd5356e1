"""Recorded calls as input: each recording is a conversation of one audio turn.

A folder with no scenario files in it stands for its recordings (``.wav``, ``.flac``,
``.ogg``, ``.mp3``; not its subfolders), in name order. A text file beside a recording, with
the same name (``call-7.wav`` → ``call-7.txt``), is the reference transcript: the result then
holds the word error rate of what the agent heard. Every recording is checked for a reply, and
that no reply failed.

>>> import pathlib, tempfile
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "a.wav").write_bytes(b"RIFF"); _ = (folder / "a.txt").write_text("Hello there")
>>> s = recording_scenario(folder / "a.wav")
>>> s.name, s.turns[0].kind, s.turns[0].text
('a', 'audio', 'Hello there')
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ._scenario import (
    SCENARIO_SUFFIXES,
    Scenario,
    ScenarioError,
    Turn,
    default_seed,
    load_scenarios,
)

__all__ = ["AUDIO_SUFFIXES", "RECORDING_SILENCE", "expand_inputs", "recording_scenario"]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3")
"""The files that are recordings."""

RECORDING_SILENCE = 3.5
"""Seconds of silence played after a recording: enough for the turn detector to end the turn
even when Smart Turn judges the last words unfinished (its fallback is 3 s of silence)."""


def recording_scenario(
    path: str | Path, *, realtime: bool = False, time_limit: float = 60.0
) -> Scenario:
    """The scenario of one recording (the reference transcript from the ``.txt`` beside it)."""
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(f"{path}: no such recording")
    reference_file = path.with_suffix(".txt")
    reference = None
    if reference_file.is_file():
        try:
            reference = " ".join(reference_file.read_text(encoding="utf-8").split())
        except (OSError, UnicodeDecodeError) as exc:
            raise ScenarioError(f"{reference_file}: cannot read the reference: {exc}") from exc
    turn = Turn(
        "audio",
        text=reference,
        audio=str(path.resolve()),
        silence=RECORDING_SILENCE,
        realtime=realtime,
    )
    return Scenario(
        name=path.stem,
        turns=(turn,),
        source=str(path),
        tags=("recording",),
        seed=default_seed(path.stem),
        time_limit=time_limit,
    )


def _is_scenario(path: Path) -> bool:
    return path.suffix.lower() in SCENARIO_SUFFIXES


def _is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_SUFFIXES


def expand_inputs(
    paths: Iterable[str | Path], *, realtime: bool = False, time_limit: float = 60.0
) -> list[Scenario]:
    """The scenarios that ``paths`` stand for: scenario files, recordings, and folders (a folder
    with scenario files anywhere in it stands for those; one without, for its recordings).
    ``realtime`` plays recordings at their pace (the latency a live caller would live
    through); ``time_limit`` is each recording's."""
    out: list[Scenario] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            scenario_files = sorted(p for p in path.rglob("*") if p.is_file() and _is_scenario(p))
            if scenario_files:
                for file in scenario_files:
                    out += load_scenarios(file)
                continue
            recordings = sorted(p for p in path.iterdir() if p.is_file() and _is_audio(p))
            if not recordings:
                raise ScenarioError(f"{path}: no scenario files (.yaml, .yml, .json) or recordings")
            out += [
                recording_scenario(p, realtime=realtime, time_limit=time_limit) for p in recordings
            ]
        elif path.is_file() and _is_scenario(path):
            out += load_scenarios(path)
        elif path.is_file() and _is_audio(path):
            out.append(recording_scenario(path, realtime=realtime, time_limit=time_limit))
        elif path.is_file():
            raise ScenarioError(
                f"{path}: not a scenario file (.yaml, .yml, .json) or a recording "
                f"({', '.join(AUDIO_SUFFIXES)})"
            )
        else:
            raise ScenarioError(f"{path}: no such file or folder")
    names: dict[str, str] = {}
    for scenario in out:
        if scenario.name in names:
            raise ScenarioError(
                f"{scenario.source}: the scenario name {scenario.name!r} is also used in "
                f"{names[scenario.name]}: names must be unique in a run (results are keyed by them)"
            )
        names[scenario.name] = scenario.source
    return out
