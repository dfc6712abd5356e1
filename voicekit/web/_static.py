"""Where the page's files are, and their text."""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).parent
"""The folder of the page's static files (served at ``/static/`` by :func:`voicekit.serve.app`)."""

_FILES = frozenset(
    ("index.html", "page.js", "audio.js", "capture-worklet.js", "playback-worklet.js",
     "widget.js", "page.css", "webrtc.js")
)


def source(name: str) -> str:
    """The text of one of the page's files.

    >>> "registerProcessor" in source("capture-worklet.js")
    True
    """
    if name not in _FILES:
        raise ValueError(f"web: no file {name!r}; the files are {', '.join(sorted(_FILES))}")
    return (STATIC / name).read_text(encoding="utf-8")
