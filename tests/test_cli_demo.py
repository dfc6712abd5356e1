"""`voicekit demo`, the README's main job, and the README's composition example."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]


def test_demo_writes_its_outputs_and_says_where(tmp_path):
    out = tmp_path / "demo-out"
    result = subprocess.run(
        [sys.executable, "-m", "voicekit.cli", "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert str(out) in result.stdout
    phone, rate = sf.read(out / "telephone-8k-ulaw.wav", dtype="int16")
    original, original_rate = sf.read(out / "input-16k.wav", dtype="int16")
    assert (rate, original_rate) == (8000, 16000)
    assert abs(len(phone) / rate - len(original) / original_rate) < 0.03
    assert np.abs(phone).max() > 5000  # speech, not silence
    snr = float(re.search(r"SNR ([\d.]+) dB", result.stdout).group(1))
    assert 30 < snr < 45
    assert "· Dr. Rossi says the U.S.A. forecast at 3:00 p.m. is different;" in result.stdout


def test_readme_composition_example_runs(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Composing stages", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    source = "async def _example():\n" + "".join(f"    {line}\n" for line in block.splitlines())
    namespace: dict = {}
    exec(compile(source, "README.md", "exec"), namespace)
    import asyncio

    asyncio.run(namespace["_example"]())
    data, rate = sf.read(tmp_path / "phone-quality.wav", dtype="int16")
    assert rate == 8000 and len(data) > 8000
