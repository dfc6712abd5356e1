"""Sample conversion: to_int16 / to_float32."""

from __future__ import annotations

import numpy as np
import pytest

from voicekit import AudioError
from voicekit.audio import to_float32, to_int16


def test_to_int16_rounds_to_nearest() -> None:
    x = np.array([0.4 / 32768, 0.6 / 32768, -0.6 / 32768, 100.5 / 32768, 0.25, -0.25])
    assert to_int16(x).tolist() == [0, 1, -1, 100, 8192, -8192]


def test_to_int16_clips_instead_of_wrapping() -> None:
    x = np.array([1.0, 1.2, 7.0, 1e300, -1.0, -1.2, -7.0, -1e300])
    naive = (x[:3] * 32767).astype(np.int16)
    assert naive[1] < 0  # what a plain cast does: 1.2 wraps around to a negative number
    assert to_int16(x).tolist() == [32767] * 4 + [-32768] * 4


def test_to_int16_keeps_shape_and_float_kinds() -> None:
    x = np.linspace(-1, 1, 12).reshape(6, 2)
    for dtype in (np.float16, np.float32, np.float64):
        out = to_int16(x.astype(dtype))
        assert out.dtype == np.int16 and out.shape == (6, 2)
        assert out[0, 0] == -32768 and out[-1, -1] == 32767


def test_to_int16_passes_int16_through() -> None:
    x = np.array([1, -2, 3], dtype=np.int16)
    assert to_int16(x) is x


@pytest.mark.parametrize(
    ("bad", "where"),
    [
        (np.array([0.0, 0.1, np.nan, np.inf]), "sample 2 is nan"),
        (np.array([0.0, -np.inf]), "sample 1 is -inf"),
        (np.array([[0.0, 0.0], [0.0, 0.0], [0.0, np.inf]], dtype=np.float32), "frame 2, channel 1"),
    ],
)
def test_to_int16_names_the_first_non_finite_sample(bad: np.ndarray, where: str) -> None:
    with pytest.raises(AudioError, match=where):
        to_int16(bad)


@pytest.mark.parametrize("dtype", [np.int32, np.int8, np.uint16, np.bool_, np.complex64, object])
def test_to_int16_rejects_other_dtypes(dtype: type) -> None:
    with pytest.raises(AudioError, match="unsupported dtype"):
        to_int16(np.zeros(4, dtype=dtype))


def test_to_float32_divides_by_32768() -> None:
    x = np.array([-32768, -16384, 0, 16384, 32767], dtype=np.int16)
    out = to_float32(x)
    assert out.dtype == np.float32
    assert out.tolist() == [-1.0, -0.5, 0.0, 0.5, pytest.approx(0.9999695, abs=1e-7)]


def test_int16_float32_round_trip_is_lossless() -> None:
    every = np.arange(-32768, 32768).astype(np.int16)
    assert np.array_equal(to_int16(to_float32(every)), every)


def test_to_float32_rejects_other_dtypes() -> None:
    with pytest.raises(AudioError, match="int32"):
        to_float32(np.zeros(3, dtype=np.int32))
