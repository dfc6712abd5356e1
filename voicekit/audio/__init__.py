"""Audio in and out of voicekit streams: files, numpy arrays, resampling, framing, pacing, μ-law.

Streams carry :class:`~voicekit.events.AudioChunk` s: mono int16 samples, their rate, and their
start time ``t``. Sources make them (:func:`read`, :func:`from_array`), stages transform them
(:func:`resample`, :func:`reframe`, :func:`paced`, :func:`telephone`) and sinks consume them
(:func:`write`, :func:`to_array`)::

    import voicekit.audio as vka

    flow = vka.read("call.flac", rate=16000) | vka.reframe(ms=30) | vka.paced()
    await vka.write(flow, "copy.wav")

Plain functions convert samples (:func:`to_int16`, :func:`to_float32`) and telephony payloads
(:func:`ulaw_encode_chunk`, :func:`ulaw_decode_bytes`). Bad audio raises
:class:`~voicekit.AudioError`, saying what was wrong and where (a NaN names its file or array
index and its frame); audio that is used but is not what it claims — a file shorter than its
header, channels that cancel out when averaged — gives an :class:`~voicekit.AudioWarning`.

Several channels become one by their mean (or ``channel=`` picks one). Arrays may be
(frames, channels) or (channels, frames): the shorter axis holds the channels.
"""

from ._arrays import from_array, to_array
from ._convert import to_float32, to_int16
from ._data import sample_path
from ._io import AudioInfo, AudioInput, info, load, read, to_wav_bytes, write
from ._stages import paced, reframe, resample, telephone
from ._ulaw import ulaw_decode, ulaw_decode_bytes, ulaw_encode, ulaw_encode_chunk

__all__ = [
    "AudioInfo",
    "AudioInput",
    "from_array",
    "info",
    "load",
    "paced",
    "read",
    "reframe",
    "resample",
    "sample_path",
    "telephone",
    "to_array",
    "to_float32",
    "to_int16",
    "to_wav_bytes",
    "ulaw_decode",
    "ulaw_decode_bytes",
    "ulaw_encode",
    "ulaw_encode_chunk",
    "write",
]
