"""Word error rate: how far a transcript is from what was said."""

from __future__ import annotations

import re

__all__ = ["normalise_words", "word_error_rate"]

_ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
]  # fmt: skip
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def _number_words(n: int) -> list[str]:
    """English words for 0 ≤ n < 1000 (larger numbers stay digits)."""
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + ([_ONES[n % 10]] if n % 10 else [])
    if n < 1000:
        return [_ONES[n // 100], "hundred"] + (_number_words(n % 100) if n % 100 else [])
    return [str(n)]


def normalise_words(text: str) -> list[str]:
    """Lower-case words with punctuation and hyphens dropped and numbers below 1000 spelled out.

    >>> normalise_words("It's 22 degrees, sunny-ish!")
    ["it's", 'twenty', 'two', 'degrees', 'sunny', 'ish']
    """
    out: list[str] = []
    for token in re.sub(r"[^\w\s']|_", " ", text.lower()).split():
        out += _number_words(int(token)) if token.isdigit() else [token.strip("'")]
    return [word for word in out if word]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / words in ``reference``, after normalising both.

    >>> word_error_rate("It's 22 degrees.", "it's twenty two degrees")
    0.0
    >>> word_error_rate("the cat sat", "the bat sat down")
    0.6666666666666666
    """
    ref, hyp = normalise_words(reference), normalise_words(hypothesis)
    previous = list(range(len(hyp) + 1))  # edit distances from the empty reference prefix
    for i, word in enumerate(ref, 1):
        current = [i]
        for j, heard in enumerate(hyp, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != heard))
            )
        previous = current
    return previous[-1] / max(1, len(ref))
