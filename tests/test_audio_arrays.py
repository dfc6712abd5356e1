"""numpy arrays in and out of streams, the bundled sample, and the docstring examples."""

from __future__ import annotations

import doctest
import importlib
from typing import Any

import numpy as np
import pytest
import soundfile as sf

import voicekit.audio
from voicekit import AudioChunk, AudioError, Sentence
from voicekit.audio import from_array, info, read, sample_path, to_array, to_int16


async def test_from_array_chunks_and_times() -> None:
    samples = np.arange(1000, dtype=np.int16)
    chunks = await from_array(samples, 8000, chunk_ms=30).list()
    assert [c.frames for c in chunks] == [240, 240, 240, 240, 40]
    assert [c.t for c in chunks] == [0.0, 0.03, 0.06, 0.09, 0.12]
    back, rate = await to_array(chunks)
    assert rate == 8000 and np.array_equal(back, samples)


async def test_from_array_copies_so_later_changes_do_not_leak() -> None:
    samples = np.zeros(320, dtype=np.int16)
    flow = from_array(samples, 16000)
    samples[:] = 7
    (chunk,) = await flow.list()
    assert not chunk.samples.any()
    assert await flow.list() == [chunk]  # re-iterable


async def test_from_array_takes_float_and_channels() -> None:
    stereo = np.stack([np.full(160, 0.5), np.full(160, -0.25)], axis=1)
    (chunk,) = await from_array(stereo, 8000).list()
    assert chunk.samples.tolist() == [4096] * 160  # (0.5 - 0.25) / 2 * 32768
    (one,) = await from_array(np.full((160, 1), 0.5, dtype=np.float32), 8000).list()
    assert one.samples.tolist() == [16384] * 160
    stereo16 = np.array([[100, 201], [-3, -4]], dtype=np.int16)
    (mixed,) = await from_array(stereo16, 8000).list()
    assert mixed.samples.tolist() == [150, -4]  # 150.5 and -3.5: rounded half to even


@pytest.mark.parametrize(
    ("samples", "rate", "kwargs", "message"),
    [
        (np.array([0.0, np.inf]), 8000, {}, r"from_array: sample 1 \(samples\[1\], 0.000 s"),
        (np.array([[0.0, 0.0], [np.nan, 0.0]]), 8000, {}, r"frame 1, channel 0 \(samples\[1, 0"),
        (np.zeros(10, dtype=np.int32), 8000, {}, "unsupported dtype int32"),
        (np.zeros((2, 2, 2)), 8000, {}, "1-D or"),
        (np.zeros(0, dtype=np.int16), 8000, {}, "no samples"),
        (np.zeros(10), 0, {}, "rate must be a positive integer"),
        (np.zeros(10), -8000, {}, "rate must be a positive integer"),
        (np.zeros(10), 8000, {"chunk_ms": 0}, "chunk_ms must be a positive finite number"),
    ],
)
def test_from_array_bad_input(
    samples: np.ndarray, rate: int, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(AudioError, match=message):
        from_array(samples, rate, **kwargs)


async def test_to_array_skips_events_and_refuses_mixed_rates() -> None:
    a = AudioChunk(np.ones(10, dtype=np.int16), 8000)
    b = AudioChunk(np.ones(20, dtype=np.int16), 16000, 0.1)
    samples, rate = await to_array([Sentence("x"), a, a])
    assert rate == 8000 and samples.shape == (20,)
    with pytest.raises(AudioError, match=r"chunk 2 .*16000 Hz"):
        await to_array([a, Sentence("y"), a, b])
    with pytest.raises(AudioError, match=r"no AudioChunk \(1 other items\)"):
        await to_array([Sentence("z")])


# ---------------------------------------------------------------------------------------------
# the bundled recording


async def test_the_bundled_question() -> None:
    path = sample_path()
    assert path.name == "question.wav" and path.is_file()
    assert path.stat().st_size < 200_000
    described = info(path)
    assert (described.rate, described.channels, described.subtype) == (16000, 1, "PCM_16")
    assert 2.0 <= described.duration <= 4.0
    samples, _ = sf.read(path, dtype="int16")
    assert np.abs(samples[: int(0.25 * 16000)]).max() < 50  # leading silence
    assert np.abs(samples[-int(0.5 * 16000) :]).max() < 50  # trailing silence
    speech = samples[int(0.3 * 16000) : -int(0.6 * 16000)].astype(np.float64)
    assert np.sqrt(np.mean(speech**2)) > 1000 and np.abs(speech).max() < 32767  # loud, unclipped
    chunks = await read(path).list()
    assert sum(c.frames for c in chunks) == described.frames


def test_sample_path_names_what_exists() -> None:
    with pytest.raises(AudioError, match=r"no bundled sample named 'nope\.wav'.*question\.wav"):
        sample_path("nope.wav")
    with pytest.raises(AudioError, match="no bundled sample"):
        sample_path("../audio/__init__.py")
    with pytest.raises(TypeError, match=r"sample_path takes a file name \(str\), got NoneType"):
        sample_path(None)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# the examples in the docstrings run and are right


MODULES = [
    "_arrays",
    "_convert",
    "_data",
    "_framer",
    "_io",
    "_resampler",
    "_riff",
    "_stages",
    "_ulaw",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(f"voicekit.audio.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0


def test_public_api_is_listed() -> None:
    exported = set(voicekit.audio.__all__)
    public = {n for n in dir(voicekit.audio) if not n.startswith("_")} - {"annotations"}
    assert exported == public
    assert to_int16 is voicekit.audio.to_int16
