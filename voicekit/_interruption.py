"""When the user's speech over a reply is an interruption: the barge-in strategy of the agent.

A cough, a laugh or an "uh-huh" while the agent speaks is not the user taking the floor. The
agent therefore *pauses* its reply when the user starts to speak over it (it sends nothing
more), and decides with an :class:`Interruption` value:

* the reply is **cut** (``Interrupted``, as a barge-in always was) as soon as the user has said
  ``min_words`` words that are not backchannels (a transcript, a pending or an ended turn), or
  has been speaking for ``min_speech`` seconds of stream time;
* the reply **resumes** where it was when the speech is over with no such words: the
  recogniser's answer came with only backchannels or nothing ("[cough]", a
  :class:`~voicekit.events.NoWords`), or, with no answer, the wait ran out.

How long the agent waits for that answer depends on what the stream has shown of its
recogniser. voicekit's STT stages answer every utterance (a final transcript, or ``NoWords``
when there were no words); once the stream has carried such an answer, a paused reply waits for
the answer to the speech that paused it, however slow the recogniser is — a "stop" that takes
1.5 s to recognise still cuts — but at most ``max_pause`` seconds of stream time after the
speech stopped (a hung recogniser must not leave the caller in silence). Before that (no
recogniser seen yet, or one that says nothing about a noise), ``resume_after`` seconds after
the speech stopped.

>>> strategy = Interruption()
>>> strategy.confirms("uh-huh"), strategy.confirms("Mm hmm, okay."), strategy.confirms("[coughs]")
(False, False, False)
>>> strategy.confirms("stop"), strategy.confirms("wait"), strategy.confirms("yeah but no")
(True, True, True)
>>> Interruption.immediate().cuts_at_once
True
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ._errors import ConfigError

__all__ = ["BACKCHANNELS", "Interruption"]

BACKCHANNELS: frozenset[str] = frozenset(
    [
        "uh-huh", "uh", "huh", "mm-hmm", "mhm", "mm", "hmm", "hm", "mmm", "um", "ah", "oh",
        "yeah", "yep", "yup", "yes", "ok", "okay", "right", "sure", "alright", "aha", "ha",
        "haha", "hah", "heh", "wow", "nice", "cool", "great", "gotcha", "i", "see",
    ]
)  # fmt: skip
"""Words that, alone, acknowledge the speaker without taking the floor ("uh-huh", "yeah",
"okay", a laugh's "haha"). Lower case; punctuation and case of what was said are ignored."""

_NOISE = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*")  # "[coughs]", "(laughs)", "*sigh*"
_WORD = re.compile(r"[^\W_]+(?:['\u2019-][^\W_]+)*")


@dataclass(frozen=True, slots=True)
class Interruption:
    """How the agent tells an interruption from a backchannel or a noise (see the module doc).

    ``min_words``: words that are not in ``backchannels`` needed to cut the reply (1: "stop" or
    "wait" cuts it; 0 with ``min_speech=None``: any turn start cuts it at once, see
    :meth:`immediate`). ``min_speech``: seconds of continuous speech that cut the reply
    even before any words are recognised (None: words only). ``resume_after``: seconds after
    the speech stopped with no words recognised at which the reply resumes anyway (for a
    recogniser that says nothing at all about a noise). ``max_pause``: the longest the reply
    waits after the speech stopped for a recogniser known to answer every utterance.
    """

    min_words: int = 1
    min_speech: float | None = None
    resume_after: float = 1.0
    max_pause: float = 3.0
    backchannels: frozenset[str] = BACKCHANNELS

    def __post_init__(self) -> None:
        if isinstance(self.min_words, bool) or not isinstance(self.min_words, int):
            raise ConfigError(f"Interruption: min_words must be an int ≥ 0, got {self.min_words!r}")
        if self.min_words < 0:
            raise ConfigError(f"Interruption: min_words must be ≥ 0, got {self.min_words}")
        for name in ("min_speech", "resume_after", "max_pause"):
            value = getattr(self, name)
            if value is None and name == "min_speech":
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ConfigError(
                    f"Interruption: {name} must be a positive number of seconds, got {value!r}"
                )
        if not isinstance(self.backchannels, frozenset) or not all(
            isinstance(w, str) for w in self.backchannels
        ):
            raise ConfigError("Interruption: backchannels must be a frozenset of str")

    @classmethod
    def immediate(cls) -> Interruption:
        """The strategy that cuts a reply at the first ``TurnStarted`` (or ``TurnEnded``): any
        sound that starts a turn is an interruption (voicekit's behaviour before strategies)."""
        return cls(min_words=0)

    @property
    def cuts_at_once(self) -> bool:
        """Whether a turn start cuts the reply at once (no pause, no resuming)."""
        return self.min_words == 0 and self.min_speech is None

    def words(self, text: str) -> int:
        """How many words of ``text`` count toward an interruption (not backchannels, not a
        bracketed noise tag such as ``[coughs]``)."""
        said = _WORD.findall(_NOISE.sub(" ", text).lower())
        return sum(1 for word in said if word not in self.backchannels)

    def confirms(self, text: str) -> bool:
        """Whether ``text``, said over a reply, is an interruption."""
        return self.words(text) >= max(1, self.min_words)

