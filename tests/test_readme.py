"""Every Python example in the README runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import soundfile as sf

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_the_readme_has_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
async def test_readme_example_runs(index, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    source = "async def _example():\n" + "".join(
        f"    {line}\n" for line in BLOCKS[index].splitlines()
    )
    namespace: dict = {}
    exec(compile(source, f"README.md example {index + 1}", "exec"), namespace)
    await namespace["_example"]()
    written = sorted(tmp_path.glob("*.wav"))
    assert written, "every README example writes its audio"
    for path in written:
        data, rate = sf.read(path, dtype="int16")
        assert rate in (8000, 16000, 22050) and len(data) > rate  # more than a second of sound
    out = capsys.readouterr().out
    if "SessionUpdated" in BLOCKS[index]:
        assert "('assistant', \"Foggy in Rome." in out
    if "text.sentences" in BLOCKS[index]:
        assert "Hello Dr. Smith." in out and "It is 3:00 p.m. now." in out
