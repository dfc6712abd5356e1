"""G.711 μ-law: bit-exactness with libsndfile, payload helpers, the telephone stage."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from voicekit import AudioChunk, AudioError, Sentence
from voicekit.audio import (
    from_array,
    read,
    telephone,
    to_array,
    ulaw_decode,
    ulaw_decode_bytes,
    ulaw_encode,
    ulaw_encode_chunk,
)

EVERY_INT16 = np.arange(-32768, 32768).astype(np.int16)
EVERY_CODE = np.arange(256).astype(np.uint8)


def libsndfile_encode(samples: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    sf.write(buffer, samples, 8000, format="RAW", subtype="ULAW")
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8)


def libsndfile_decode(codes: np.ndarray) -> np.ndarray:
    raw = io.BytesIO(codes.tobytes())
    samples, _ = sf.read(
        raw, format="RAW", samplerate=8000, channels=1, subtype="ULAW", dtype="int16"
    )
    return samples


def test_encoder_matches_libsndfile_on_every_int16_value() -> None:
    ours = ulaw_encode(EVERY_INT16)
    theirs = libsndfile_encode(EVERY_INT16)
    assert ours.dtype == np.uint8 and ours.shape == (65536,)
    mismatches = np.flatnonzero(ours != theirs)
    assert mismatches.size == 0, f"differs at int16 values {EVERY_INT16[mismatches[:10]]}"


def test_decoder_matches_libsndfile_on_every_code() -> None:
    ours = ulaw_decode(EVERY_CODE)
    assert ours.dtype == np.int16
    assert np.array_equal(ours, libsndfile_decode(EVERY_CODE))


def test_decoding_an_encoding_is_within_one_quantisation_step() -> None:
    back = ulaw_decode(ulaw_encode(EVERY_INT16)).astype(np.int32)
    error = np.abs(back - EVERY_INT16.astype(np.int32))
    # the step doubles in each of the 8 segments: 8 at the bottom, 1024 at the top (half of it)
    assert error[np.abs(EVERY_INT16.astype(np.int32)) < 100].max() <= 4
    assert error.max() <= 1024 + 128  # plus clipping above 32635 + bias


def test_decoded_levels_encode_to_the_same_code() -> None:
    again = ulaw_encode(ulaw_decode(EVERY_CODE))
    differ = EVERY_CODE[again != EVERY_CODE]
    assert differ.tolist() == [0x7F]  # "negative zero" decodes to 0, which is coded 0xFF


def test_encode_keeps_shape_and_works_on_strided_views() -> None:
    x = EVERY_INT16[::7].reshape(-1, 1)[:900].reshape(30, 30)
    assert np.array_equal(ulaw_encode(x[:, ::2]).reshape(-1), libsndfile_encode(x[:, ::2].ravel()))


def test_wrong_dtypes_are_audio_errors() -> None:
    with pytest.raises(AudioError, match="int16"):
        ulaw_encode(np.zeros(3, dtype=np.float32))
    with pytest.raises(AudioError, match="uint8"):
        ulaw_decode(np.zeros(3, dtype=np.int16))
    with pytest.raises(AudioError, match="bytes"):
        ulaw_decode_bytes("ÿÿ")  # type: ignore[arg-type]


def test_payload_helpers_round_trip() -> None:
    samples = EVERY_INT16[::331]
    chunk = AudioChunk(samples, rate=8000, t=2.5)
    payload = ulaw_encode_chunk(chunk)
    assert isinstance(payload, bytes) and len(payload) == chunk.frames
    assert payload == libsndfile_encode(samples).tobytes()
    back = ulaw_decode_bytes(payload, t=2.5)
    assert back.rate == 8000 and back.t == 2.5
    assert np.array_equal(back.samples, libsndfile_decode(np.frombuffer(payload, np.uint8)))
    assert ulaw_decode_bytes(bytearray(payload), rate=16000).rate == 16000


def test_encode_chunk_refuses_a_rate_other_than_8k() -> None:
    with pytest.raises(AudioError, match=r"16000 Hz.*resample\(rate=8000\)"):
        ulaw_encode_chunk(AudioChunk(np.zeros(4, dtype=np.int16), rate=16000))


async def test_telephone_sounds_like_a_phone_line() -> None:
    rate = 16000
    n = np.arange(rate)
    low = 0.3 * np.sin(2 * np.pi * 300 * n / rate)  # passes a phone line
    high = 0.3 * np.sin(2 * np.pi * 6000 * n / rate)  # above 4 kHz: removed
    items = [Sentence("hello"), *await from_array(low + high, rate).list()]
    out = await telephone(items).list()
    assert out[0] == Sentence("hello")
    samples, out_rate = await to_array(out)
    assert out_rate == 8000 and samples.shape[0] == 8000
    assert {c.rate for c in out if isinstance(c, AudioChunk)} == {8000}
    # every sample sits on a μ-law quantisation level
    assert np.isin(samples, ulaw_decode(EVERY_CODE)).all()
    spectrum = np.abs(np.fft.rfft(samples[1000:7000] / 32768.0))
    freqs = np.fft.rfftfreq(6000, 1 / 8000)
    tone = spectrum[np.argmin(np.abs(freqs - 300))]
    assert tone > 0.25 * 3000  # the 300 Hz tone survives (amplitude 0.3 → ~0.3 * N/2)
    alias = spectrum[np.argmin(np.abs(freqs - 2000))]  # where 6 kHz would fold back to
    assert alias < 0.01 * tone


async def test_errors_through_telephone_name_the_stage_they_came_from() -> None:
    with pytest.raises(AudioError, match=r"^\[read\] cannot read <5 bytes>"):
        await (read(b"junk!") | telephone()).list()
