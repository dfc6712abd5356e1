"""Sample recordings bundled with voicekit, for examples, notebooks and tests."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from .._errors import AudioError

__all__ = ["sample_path"]


def sample_path(name: str = "question.wav") -> Path:
    """The path of a recording bundled in ``voicekit/data``.

    ``question.wav`` is a man asking "What is the weather like in Rome today?" (16 kHz mono,
    16-bit PCM, about 2.9 s).

    >>> sample_path().name
    'question.wav'
    """
    if not isinstance(name, str):
        raise TypeError(f"sample_path takes a file name (str), got {type(name).__name__}")
    folder = files("voicekit") / "data"
    resource = folder / name
    if not name or "/" in name or "\\\\" in name or not resource.is_file():
        available = sorted(
            entry.name for entry in folder.iterdir() if entry.name.endswith((".wav", ".flac"))
        )
        raise AudioError(f"no bundled sample named {name!r}; there are: {', '.join(available)}")
    return Path(str(resource))
