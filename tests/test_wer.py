"""voicekit.stt.word_error_rate, the measure the round-trip tests and benchmarks rely on."""

from __future__ import annotations

import pytest

from voicekit.stt import normalise_words, word_error_rate

CASES = [
    ("the cat sat", "the cat sat", 0.0),
    ("the cat sat", "the bat sat", 1 / 3),  # a substitution
    ("the cat sat", "the cat", 1 / 3),  # a deletion
    ("the cat sat", "the cat sat down", 1 / 3),  # an insertion
    ("the cat sat", "", 1.0),
    ("one two", "two one", 1.0),
    ("a b c d e", "a b x d e", 0.2),
    ("It's 22 degrees.", "it's twenty two degrees", 0.0),
    ("A high of seventy-two degrees!", "a high of 72 degrees", 0.0),
    ("It's 105.", "it's one hundred five", 0.0),
    ("", "", 0.0),
]


@pytest.mark.parametrize(("reference", "hypothesis", "expected"), CASES)
def test_word_error_rate(reference, hypothesis, expected):
    assert word_error_rate(reference, hypothesis) == pytest.approx(expected)


def test_normalise_words():
    assert normalise_words("Hello, WORLD -- it's 3!") == ["hello", "world", "it's", "three"]
    assert normalise_words("1999 and 40") == ["1999", "and", "forty"]
