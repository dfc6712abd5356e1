"""From LLM tokens to speakable sentences.

An LLM streams text in small pieces; speech synthesis wants whole sentences, as early as possible.
:func:`sentences` is the stage between the two. It releases a sentence the moment the text that
has arrived makes its end certain, and never later than that: each piece is scanned once, and
every sentence the piece completes is yielded before the next piece is read.

>>> import asyncio
>>> pieces = ["Dr. Sm", "ith paid $2", ".50 at 3 p.m. ", "Then he left", "... Why?"]
>>> asyncio.run((pieces | sentences()).list())
['Dr. Smith paid $2.50 at 3 p.m.', 'Then he left...', 'Why?']

The same rules, on a whole string at once:

>>> split_sentences("Mr. Smith visited the U.S. in Jan. 2020. He liked it! 你好。再见。")
['Mr. Smith visited the U.S. in Jan. 2020.', 'He liked it!', '你好。', '再见。']

Where a sentence ends depends only on the text, never on where the pieces were cut: feeding the
same text whole, character by character or in any other pieces gives the same sentences.

The rules
---------
A sentence ends after a *terminator run*: sentence-ending punctuation plus any closing quotes and
brackets stuck to it (``He said "hi." Then`` ends after the closing quote; ``**Done.**`` after
the asterisks). What decides whether a run ends the sentence:

* **Line breaks** end a sentence wherever they are: LLMs put list items, headings and paragraphs
  on their own lines, and each is a unit of speech.
* **Full stop** ``.``: only when followed by white space (so ``3.14``, ``v1.2.3``,
  ``555.123.4567``, ``john.doe@example.com``, ``example.com/a.b`` never split), and then decided
  by the next non-space character. A lower-case letter continues the sentence (``etc. and``). A
  digit continues it too (``grew 5. 6 more``, ``No. 5``, ``Jan. 5``) unless it starts a list
  item such as ``2.`` or ``2)`` (``Tea. 2. Coffee`` splits). Anything else ends it, except after

  - a title or Latin abbreviation that never ends a sentence (``Mr.``, ``Dr.``, ``Prof.``,
    ``e.g.``, ``i.e.``, ``vs.`` …), which never splits;
  - a list number at the start of a sentence or after a colon (``1. Apples``,
    ``options: iv. Pears``);
  - an abbreviation that may end one (``Inc.``, ``Jr.``, ``St.``, ``Jan.``, single initials
    like ``J.``, dotted acronyms like ``U.S.A.``, ``a.m.``, ``Ph.D.``): the sentence ends only if
    the next word is a common sentence opener (``The``, ``He``, ``I``, ``However`` …). So
    ``the U.S. Army`` stays whole and ``in the U.S. The`` splits; ``St. Louis`` stays whole and
    ``Main St. Then`` splits. This needs the whole next word, a few characters more.

* **Ellipsis** (``...`` or ``…``) and ``!`` ``?`` (with ``‼ ‽ ⁇ ⁈ ⁉``): when followed by white
  space and then anything but a lower-case letter, or a digit that does not start a list item.
  So ``Wait... What?`` splits and ``Wait... what?`` does not; ``"Really?" she asked`` stays
  whole; ``?c=1`` in a URL never splits.
* ``;`` ends a clause, which is a fine place for speech to pause: it splits when followed by
  white space (but not after an HTML entity such as ``&amp;``).
* **Other scripts**: every other character with the Unicode ``Sentence_Terminal`` property
  (``。！？`` ``। ॥`` ``؟ ۔`` ``։`` ``። ፧`` ``။`` ``។`` …, see :data:`TERMINATORS`) and the
  full-width and Arabic semicolons ``；`` ``؛`` end a sentence with no space needed, as soon as
  the next character arrives — except between two digits.

* **Long sentences** are not held back until they end: speech synthesis makes a sentence's
  audio all at once, so a 300-word sentence would be minutes of silence. Once a sentence is
  ``clause_chars`` (120) long, the next *soft boundary* ends it: a comma, a dash (``—``, ``–``,
  or `` - ``) or a semicolon followed by white space. At ``max_chars`` (240) with no boundary
  it is cut at a word boundary, before a conjunction (``and``, ``but``, ``so`` …) when there is
  one in its second half. Both are decided by the text alone, like every other rule.

A piece of text with no letter or digit in it (``...``, ``**``) is never a sentence of its own: it
stays with the text that follows. At the end of the stream whatever remains is released,
stripped; nothing empty is ever yielded.

Releasing at once
-----------------
A full stop is decided by what follows it, so the text alone would release ``Sure, I can
help.`` only when the next token (`` The``) arrives — one token gap (tens of milliseconds) of
dead air before the first audio. Instead, when a piece ends with a terminator run (and maybe
white space) whose end is unambiguous, the sentence is released with that piece:

* ``?`` ``!`` (and relatives) — unless the word before looks like a URL, a path or an address
  (``a.b?``, ``/#!``), where the run may go on;
* ``.`` after a *plain word*: two letters or more, not a title, Latin abbreviation, month,
  suffix (``Jr``, ``Inc``), initial (``J.``), dotted acronym (``U.S.``), number (``3.`` may be
  ``3.5``), number word (``No.``, ``Fig.``), a lower-case abbreviation a sentence goes on after
  (``etc.``, ``oz.``), nor a list marker at the start of a sentence (``iv.``);
* ``。`` and the other terminators that need no space — unless after a digit (``１．５``);
* never an ellipsis or a semicolon, and never while a quote, bracket or emphasis opened in the
  sentence is still open (``He said "hi.`` waits for the ``"``).

>>> SentenceSplitter().push("Sure, I can help.")
['Sure, I can help.']
>>> SentenceSplitter().push("It costs $3."), SentenceSplitter().push("I met Dr.")
([], [])

This is a bet on the next piece, and with LLM tokens it is a safe one: a tokenizer sends a
full stop that goes on (``example.com``, ``Node.js``) together with what follows it
(``.com``), and a sentence-ending one alone or with the white space after it. A source that
streams one character at a time (the piece and the one before it both a single character)
gets no bet. So the sentences depend on where the pieces were cut only when a piece ends right
after a terminator (``example.`` | ``com`` splits there). ``eager=False`` turns the bet off:
then a sentence ending in ``.`` is released when the first non-space character after it
arrives (or a line break, or the end of the stream), one ending in ``。`` when any character
after it arrives, and pieces never matter.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from ._errors import ConfigError
from .events import Finish, Sentence, Token, ToolCall
from .ops import stage

__all__ = [
    "TERMINATORS",
    "SentenceSplitter",
    "clean_for_speech",
    "sentences",
    "split_sentences",
]


# ---------------------------------------------------------------------------------------------
# Character tables

# Every code point with the Unicode property Sentence_Terminal (PropList.txt, Unicode 17.0), as
# ranges. The property has no accessor in Python's unicodedata, hence the table. One deliberate
# omission: U+104A MYANMAR SIGN LITTLE SECTION, which is used as a comma.
_SENTENCE_TERMINAL = """
0021 002E 003F 0589 061D-061F 06D4 0700-0702 07F9 0837 0839 083D-083E 0964-0965 104B 1362
1367-1368 166E 1735-1736 17D4-17D5 1803 1809 1944-1945 1AA8-1AAB 1B4E-1B4F 1B5A-1B5B
1B5E-1B5F 1B7D-1B7F 1C3B-1C3C 1C7E-1C7F 2024 203C-203D 2047-2049 2CF9-2CFB 2E2E 2E3C
2E53-2E54 3002 A4FF A60E-A60F A6F3 A6F7 A876-A877 A8CE-A8CF A92F A9C8-A9C9 AA5D-AA5F
AAF0-AAF1 ABEB FE12 FE15-FE16 FE52 FE56-FE57 FF01 FF0E FF1F FF61 10A56-10A57 10F55-10F59
10F86-10F89 11047-11048 110BE-110C1 11141-11143 111C5-111C6 111CD 111DE-111DF 11238-11239
1123B-1123C 112A9 113D4-113D5 1144B-1144C 115C2-115C3 115C9-115D7 11641-11642 1173C-1173E
11944 11946 11A42-11A43 11A9B-11A9C 11C41-11C42 11EF7-11EF8 11F43-11F44 16A6E-16A6F 16AF5
16B37-16B38 16B44 16D6E-16D6F 16E98 1BC9F 1DA88
"""


def _code_points(table: str) -> frozenset[str]:
    chars: set[str] = set()
    for item in table.split():
        first, _, last = item.partition("-")
        chars.update(chr(cp) for cp in range(int(first, 16), int(last or first, 16) + 1))
    return frozenset(chars)


# How a terminator behaves; a run of several takes the strongest kind present (lowest value).
_UNSPACED = 1  # ends the sentence with or without a following space: 。 ！ । ؟ and the like
_MARK = 2  # ! ? and their Latin relatives: need a following space
_STOP = 4  # full stop: needs a following space, then abbreviation rules
_CLAUSE = 8  # semicolon: needs a following space

_MARKS = "!?\u203c\u203d\u2047\u2048\u2049\u2e2e\u2e53\u2e54\ufe56\ufe57"
_STOPS = ".\u2024\u2026\u2e3c\ufe52"  # . ․ … ⸼ ﹒
_CLAUSES = ";\ufe54"  # ; ﹔
_UNSPACED_CLAUSES = "\uff1b\u061b"  # ； ؛

_KIND: dict[str, int] = dict.fromkeys(_code_points(_SENTENCE_TERMINAL), _UNSPACED)
_KIND.update(dict.fromkeys(_UNSPACED_CLAUSES, _UNSPACED))
_KIND.update(dict.fromkeys(_MARKS, _MARK))
_KIND.update(dict.fromkeys(_STOPS, _STOP))
_KIND.update(dict.fromkeys(_CLAUSES, _CLAUSE))

TERMINATORS: frozenset[str] = frozenset(_KIND)
"""Every character that can end a sentence (see the module documentation for when it does)."""

_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines() splits on

# Characters worth stopping at while scanning: terminators and line breaks.
_INTERESTING = re.compile("[" + re.escape("".join(sorted(TERMINATORS)) + _LINE_BREAKS) + "]")
_ALNUM = re.compile(r"[^\W_]")
_NON_SPACE = re.compile(r"\S")

_CLOSERS_ASCII = "\"')]}*_`~\uff02\uff07"  # plus every Pe, Pf and Pi character
_OPENERS_ASCII = "\"'([{*_`~\u00bf\u00a1"  # ¿ ¡ ; plus every Ps and Pi character


def _is_closer(c: str) -> bool:
    return c in _CLOSERS_ASCII or unicodedata.category(c) in ("Pe", "Pf", "Pi")


def _is_opener(c: str) -> bool:
    return c in _OPENERS_ASCII or unicodedata.category(c) in ("Ps", "Pi")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words before a full stop. Titles and Latin abbreviations that never end a sentence:
_NEVER_LAST = _words(
    "Mr Mrs Ms Mx Messrs Mmes Mme Mlle Dr Prof Rev Hon Fr Sra Srta Ste Mt Gen Col Capt Lt Maj "
    "Sgt Cpl Pvt Cmdr Adm Gov Sen Rep Pres Supt"
)
_NEVER_LAST_LOWER = _words("e.g i.e vs cf viz approx ca esp incl resp a.k.a w.r.t")
# Abbreviations that may end a sentence, or not (decided by the next word):
_MAYBE_LAST = _words(
    "Inc Ltd Co Corp Jr Sr Bros St Ave Blvd Rd Ft Dept Univ Est "
    "Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec"
)
# Words that start a new sentence after such an abbreviation ("in the U.S. The ...").
_SENTENCE_OPENERS = _words(
    "I You He She It We They My Your His Her Its Our Their This That These Those There Here The "
    "An But And So Or Yet Then Now Also However Therefore Thus Meanwhile Still If When While What "
    "Why How Where Who Which Let Please Thanks Thank Yes No Well Oh Sure Okay OK In On At For "
    "After Before As Do Does Did Is Are Was Were Can Could Would Should Will Just Note Finally "
    "First Next Otherwise Although Though Because Since Once Every Each Some Many Most All Both "
    "Not To With From By Unfortunately Fortunately Actually Today Tomorrow Tonight"
)
_EG_IE = ("e.g", "i.e")
# Words that a number follows (No. 5, Fig. 3): a digit after them never starts a sentence.
_BEFORE_NUMBER = _words(
    "No Nos Nr Vol Vols Fig Figs Pp Art Sec Sect Ch Chap Ex Op Eq Eqs Ref Tab Pt Para"
)
_ROMAN = re.compile(r"(?:[ivxlc]{1,5}|[IVXLC]{1,5})")
# Lower-case abbreviations that a sentence may go on after ("etc. and", "3 oz. of"): a full
# stop after them is never taken as an end before the next word is seen.
_MAY_GO_ON = _words(
    "etc al approx appt apt dept est min max mins hr hrs sec secs ft oz lb lbs yr yrs mo mos wk "
    "wks pg pp vol ch fig no nos ref tel ext pt pts qt sq st"
)
_URLISH = frozenset("/=&#.@:%+\\")  # in a word before "?" or "!": a URL, a path, an address
_QUOTES = frozenset("\"'*_`~\u201c\u201d\u2018\u2019\u00ab\u00bb\u201e\u201a\u2039\u203a")
_BALANCE_SPAN = 256  # how far back an open quote or bracket is looked for

# Soft boundaries: where a long sentence may end (see clause_chars). A hyphen counts only
# with a space on each side; a comma, dash or colon only with white space after it.
_SOFT = ",\u2014\u2013-\uff0c\u3001"  # , — – - ， 、
_INTERESTING_SOFT = re.compile(
    "[" + re.escape("".join(sorted(TERMINATORS)) + _LINE_BREAKS + _SOFT) + "]"
)
# Where a sentence cut at max_chars prefers to be cut: just before one of these words.
_CONJUNCTION = re.compile(
    r"\s(?=(?:and|but|or|so|because|then|which|while|when|where|although|though|if)\s)"
)
_SPACE = re.compile(r"\s")

_LOOKBACK = 64  # how far back the word before a full stop is looked for
_RUN_CAP = 16  # a longer run of terminators is looked at this many characters at a time
_SPACE_CAP = 16  # this much white space after a terminator counts as a paragraph break
_WORD_CAP = max(map(len, _SENTENCE_OPENERS))  # a longer word is not a sentence opener


def _continues(c: str) -> bool:
    """Whether ``c``, the first character after a terminator and white space, continues the
    sentence rather than starting a new one."""
    return c.islower() or c in ",;:" or c in _KIND


# ---------------------------------------------------------------------------------------------
# The incremental splitter


class SentenceSplitter:
    """Split text that arrives in pieces into sentences, releasing each as soon as it is certain.

    :meth:`push` a piece and get back the sentences it completed; :meth:`flush` at the end of
    the text to get the rest. A splitter is reusable after :meth:`flush` (or :meth:`reset`, which
    drops pending text). Each call costs time in proportion to the piece, not to the text so far.

    ``min_first_chars`` holds back the first sentence (after construction, :meth:`flush` or
    :meth:`reset`) until it is at least that long, joining the sentences that follow into it. The
    default, 0, releases it as soon as it is certain: the lowest latency to first audio.
    Something like 20 avoids a very short opening chunk ("Hi.") whose prosody some TTS voices
    render poorly, at the cost of waiting for the next sentence.

    ``clause_chars`` and ``max_chars`` bound how long a sentence can get before it is released
    (see the module documentation); ``None`` turns either off.

    ``eager`` (the default) releases a sentence the moment a piece ends with an unambiguous
    terminator, without waiting for the next piece (see "Releasing at once" in the module
    documentation); ``eager=False`` always waits until the text decides, so the sentences never
    depend on where the pieces were cut — for a source that streams text character by
    character (``example.`` then ``com``).

    >>> text = "We walked along the river for a while, then we crossed the old bridge and "
    >>> text += "the rain began so we ran home"
    >>> for part in split_sentences(text, clause_chars=30, max_chars=60):
    ...     print(part)
    We walked along the river for a while,
    then we crossed the old bridge and the rain began
    so we ran home
    >>> splitter = SentenceSplitter()
    >>> splitter.push("Hello. How are"), splitter.push(" you? I'm fine"), splitter.flush()
    (['Hello.'], ['How are you?'], ["I'm fine"])
    >>> SentenceSplitter(min_first_chars=20).push("Hi. I'm Ada. How can I help? Ask")
    ["Hi. I'm Ada. How can I help?"]
    """

    __slots__ = (
        "_emitted",
        "_head",
        "_ink",
        "_off",
        "_pieces",
        "_pos",
        "_speakable",
        "_start",
        "_tail",
        "clause_chars",
        "eager",
        "max_chars",
        "min_first_chars",
    )

    def __init__(
        self,
        *,
        min_first_chars: int = 0,
        clause_chars: int | None = 120,
        max_chars: int | None = 240,
        eager: bool = True,
    ) -> None:
        if not isinstance(eager, bool):
            raise ConfigError(f"eager must be True or False, got {eager!r}")
        self.eager = eager
        self.min_first_chars = _count("min_first_chars", min_first_chars, 0)
        self.clause_chars = None if clause_chars is None else _count("clause_chars", clause_chars)
        self.max_chars = None if max_chars is None else _count("max_chars", max_chars, 20)
        if self.clause_chars and self.max_chars and self.clause_chars > self.max_chars:
            raise ConfigError(
                f"clause_chars ({clause_chars}) must not be more than max_chars ({max_chars})"
            )
        self.reset()

    def reset(self) -> None:
        """Forget any pending text and start over (the next sentence counts as the first)."""
        # Positions are absolute offsets into the whole text pushed since the last reset.
        self._tail = ""  # the text from _off on: the current sentence's recent part, unscanned text
        self._off = 0
        self._head: list[str] = []  # the current sentence's text before _off, when it is long
        self._start = 0  # where the current sentence starts (its first non-space character)
        self._pos = 0  # everything before this has been scanned
        self._ink = 0  # just after the last non-space character of the current sentence
        self._speakable = False  # the current sentence has a letter or digit
        self._emitted = 0  # sentences released since the reset
        self._pieces = (0, 0)  # the lengths of the last two pieces pushed

    def push(self, text: str) -> list[str]:
        """Add a piece of text; return the sentences it completed (possibly none)."""
        if not isinstance(text, str):
            raise TypeError(f"SentenceSplitter.push() takes a str, got {type(text).__name__}")
        if text:
            self._tail += text
            self._pieces = (self._pieces[1], len(text))
        out: list[str] = []
        self._scan(out, final=False)
        self._trim()
        return out

    def flush(self) -> list[str]:
        """End of the text: return the sentences still pending, and reset."""
        out: list[str] = []
        self._scan(out, final=True)
        rest = self._take(self._off + len(self._tail), 0)
        if rest:
            out.append(rest)
        self.reset()
        return out

    # -- internals ----------------------------------------------------------------------------

    def _take(self, end: int, next_start: int) -> str:
        """Cut the current sentence at ``end``; the next one starts at ``next_start``."""
        start, off = self._start, self._off
        head = "".join(self._head)
        if end <= off:
            text = head[: end - start]
        else:
            text = head + self._tail[max(start, off) - off : end - off]
        self._head = []
        self._start = self._ink = next_start
        self._speakable = False
        self._emitted += 1
        return text.strip()

    def _may_end(self, end: int) -> bool:
        """Whether the current sentence may end at ``end``."""
        if not self._speakable:
            return False
        return self._emitted > 0 or end - self._start >= self.min_first_chars

    def _scan(self, out: list[str], *, final: bool) -> None:
        t, off = self._tail, self._off
        n = off + len(t)
        k = self._pos
        pattern = _INTERESTING if self.clause_chars is None else _INTERESTING_SOFT
        while k < n:
            cap = None if self.max_chars is None else self._start + self.max_chars
            if cap is not None and k >= cap and self._speakable:
                out.append(self._cut_long(k))
                continue
            found = pattern.search(t, k - off)
            stop = found.start() + off if found else n
            if cap is not None and k < cap < stop:
                stop = cap  # look again there: the sentence may have to be cut
            if stop > k:  # ordinary characters: keep the bookkeeping up to date
                if self._start == k:  # skip white space at the start of a sentence
                    ink = _NON_SPACE.search(t, k - off, stop - off)
                    self._start = ink.start() + off if ink else stop
                if not self._speakable and _ALNUM.search(t, k - off, stop - off):
                    self._speakable = True
                kept = len(t[k - off : stop - off].rstrip())
                if kept:
                    self._ink = k + kept
                k = stop
                continue
            c = t[k - off]
            if c in _SOFT:
                soft = self._soft_end(k, final)
                if soft is None:
                    break  # wait for the next character
                if soft and self._may_end(k + 1):
                    out.append(self._take(k + 1, k + 1))
                else:
                    self._ink = k + 1
                k += 1
                continue
            if c in _LINE_BREAKS:
                if self._may_end(self._ink):
                    out.append(self._take(self._ink, k + 1))
                elif self._start == k:
                    self._start = k + 1
                k += 1
                continue
            decision = self._decide(k, final)
            if decision is None:  # wait for more text
                break
            end, ends = decision
            if ends and self._may_end(end):
                out.append(self._take(end, end))
            else:
                self._ink = end
            k = end
        self._pos = k

    def _soft_end(self, i: int, final: bool) -> bool | None:
        """Whether the soft boundary at ``i`` ends a long sentence (None: cannot tell yet)."""
        if self.clause_chars is None or i + 1 - self._start < self.clause_chars:
            return False
        t, off = self._tail, self._off
        if i + 1 >= off + len(t):
            return False if final else None
        if t[i - off] == "-" and (i == self._start or t[i - 1 - off] != " "):
            return False  # e-mail, 555-1234: a hyphen inside a word
        return t[i + 1 - off].isspace()

    def _cut_long(self, k: int) -> str:
        """Cut the current sentence, which reached ``max_chars`` at ``k``, at a word boundary
        (before a conjunction in its second half if there is one) and return the part before."""
        t, off, start = self._tail, self._off, self._start
        lo = max(start, off)
        seg = t[lo - off : k - off]
        half = max(1, (start + (self.max_chars or 0) // 2) - lo)
        cut = None
        for m in _CONJUNCTION.finditer(seg, half):
            cut = m.start()
        if cut is None:
            spaces = [m.start() for m in _SPACE.finditer(seg, 1)]
            cut = spaces[-1] if spaces else len(seg)  # one endless word: cut it where it is
        at = lo + cut
        text = self._take(at, at)
        rest = t[at - off : k - off]
        ink = _NON_SPACE.search(rest)
        self._start = at + ink.start() if ink else k
        self._ink = at + len(rest.rstrip()) if ink else self._start
        self._speakable = _ALNUM.search(rest) is not None
        return text

    def _decide(self, i: int, final: bool) -> tuple[int, bool] | None:
        """Decide the terminator run starting at ``i``: ``(end of the run, ends a sentence)``,
        or None when the text so far cannot tell."""
        t, off = self._tail, self._off
        n = off + len(t)
        kind, dots, ellipsis = _CLAUSE * 2, 0, False
        j = i
        while j < n and j - i < _RUN_CAP:
            c = t[j - off]
            this = _KIND.get(c)
            if this is not None:
                kind = min(kind, this)
                dots += c == "."
                ellipsis = ellipsis or c == "\u2026"
            elif not _is_closer(c):
                break
            j += 1
        else:
            if j - i >= _RUN_CAP:
                return j, False  # "!!!!!!…": the rest of the run is decided on its own
            if final or self._unambiguous(i, j, kind, dots, ellipsis):
                return j, True  # the text ends with the run
            return None
        end = j
        nxt = t[j - off]
        if kind == _UNSPACED:
            between_digits = (
                end - i == 1 and i > self._start and t[i - 1 - off].isdigit() and nxt.isdigit()
            )
            return end, not between_digits
        if not nxt.isspace():
            return end, False  # 3.14, example.com, ?c=1, a;b
        if kind == _CLAUSE:
            word, _ = self._word_before(i)
            entity = word is not None and word[:1] == "&" and word[1:].replace("#", "").isalnum()
            return end, not entity  # "&amp;" is an HTML entity, not a clause end
        # Look at the first non-space character after the run.
        m = j
        while m < n and t[m - off].isspace():
            if t[m - off] in _LINE_BREAKS or m - j >= _SPACE_CAP:
                return end, True
            m += 1
        if m >= n:
            if final or self._unambiguous(i, end, kind, dots, ellipsis):
                return end, True
            return None
        x = t[m - off]
        full_stop = kind == _STOP and not ellipsis and dots <= 1
        word = lead = None
        if full_stop:
            word, lead = self._word_before(i)
            if word and (
                _never_last(word)
                or (lead in ("", ":") and _is_list_marker(word))  # "1. Apples", "Pick: b. Tea"
            ):
                return end, False
        if x.isdigit():
            if word and (_maybe_last(word) or _capitalized(word) in _BEFORE_NUMBER):
                return end, False  # Jan. 5, No. 5, p. 12
            ahead = self._list_marker_ahead(m, final)  # "Tea. 2. Coffee" ends; "grew 5. 6 more"
            return None if ahead is None else (end, ahead)
        if _continues(x):
            return end, False
        if not word or not _maybe_last(word) or not x.isupper():
            return end, True
        # An abbreviation that may end the sentence: read the next word.
        p = m
        while p < n and t[p - off].isalpha() and p - m <= _WORD_CAP:
            p += 1
        if p >= n and p - m <= _WORD_CAP and not final:
            return None
        return end, t[m - off : p - off] in _SENTENCE_OPENERS

    def _unambiguous(self, i: int, end: int, kind: int, dots: int, ellipsis: bool) -> bool:
        """Whether the terminator run from ``i`` to ``end``, with nothing but white space after
        it so far, ends the sentence whatever comes next (see "Releasing at once")."""
        if not self.eager or max(self._pieces) <= 1:
            return False  # a source that streams character by character: no bet on it
        t, off = self._tail, self._off
        before = t[i - 1 - off] if i > max(self._start, off) else ""
        if kind == _UNSPACED:
            return not (end - i == 1 and before.isdigit())  # "１．" may be "１．５"
        if kind == _CLAUSE or ellipsis or (kind == _STOP and dots != 1):
            return False  # "a;b", "Wait... what", "U.S.", "..."
        word, lead = self._word_before(i)
        if not word:
            return False
        if kind == _MARK:
            if any(c in _URLISH for c in word):
                return False  # "?c=1" in a URL, "example.com?" (harmless to wait)
        elif not _plain_word(word) or (lead in ("", ":") and _is_list_marker(word)):
            return False  # "3.", "J.", "Dr.", "Jan.", "etc.", "No.", "iv. Pears"
        return self._balanced(end)

    def _balanced(self, end: int) -> bool:
        """Whether no quote, bracket or emphasis is left open in the sentence before ``end``
        (``He said "hi.`` may go on with ``"``). Looks at the last characters only."""
        t, off = self._tail, self._off
        lo = max(self._start, off, end - _BALANCE_SPAN)
        depth = 0
        prev = " " if lo == self._start else t[lo - 1 - off]
        for c in t[lo - off : end - off]:
            if c in _QUOTES:
                if prev.isspace() or (_is_opener(prev) and prev not in _QUOTES):
                    depth += 1
                elif prev in _QUOTES and depth and prev == c:
                    pass  # the second character of "**" or "''"
                elif depth:
                    depth -= 1
            elif unicodedata.category(c) == "Ps":
                depth += 1
            elif unicodedata.category(c) == "Pe" and depth:
                depth -= 1
            prev = c
        return depth == 0

    def _word_before(self, i: int) -> tuple[str | None, str | None]:
        """The word just before position ``i`` in the current sentence, without its opening
        punctuation, and the last non-space character before that word ("" when the word starts
        the sentence). None for what cannot be known from the last characters only."""
        start, off = self._start, self._off
        lo = max(start, i - _LOOKBACK)
        seg = self._tail[lo - off : i - off]
        cut = len(seg)
        while cut and not seg[cut - 1].isspace():
            cut -= 1
        if cut == 0 and lo > start:
            return None, None  # longer than any abbreviation
        rest = seg[:cut].rstrip()
        lead = rest[-1] if rest else ("" if lo == start else None)
        word = seg[cut:]
        k = 0
        while k < len(word) and _is_opener(word[k]):
            k += 1
        return word[k:], lead

    def _list_marker_ahead(self, m: int, final: bool) -> bool | None:
        """Whether a list marker such as ``2.`` or ``3)`` followed by space starts at ``m``."""
        t, off = self._tail, self._off
        n = off + len(t)
        p = m
        while p < n and p - m <= 3 and t[p - off].isdigit():
            p += 1
        if p - m > 3:
            return False
        if p < n and t[p - off] in ".)":
            p += 1
        elif p < n:
            return False
        if p >= n:
            return False if final else None
        return t[p - off].isspace()

    def _trim(self) -> None:
        """Keep only the text still needed for scanning; move older text of the sentence to
        the head, so that pushing stays proportional to the piece."""
        off = self._off
        keep = _LOOKBACK if self.max_chars is None else _LOOKBACK + self.max_chars
        new_off = max(self._start, self._pos - keep)
        if new_off <= off:
            return
        if self._start < new_off:
            self._head.append(self._tail[max(self._start, off) - off : new_off - off])
        self._tail = self._tail[new_off - off :]
        self._off = new_off


def _count(name: str, value: object, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an int, got {value!r}")
    if value < least:
        raise ConfigError(f"{name} must be >= {least}, got {value}")
    return value


def _never_last(word: str) -> bool:
    """Titles and Latin abbreviations: Mr, Dr, e.g, vs (also E.g, Vs, E.G)."""
    return (
        word in _NEVER_LAST
        or word[:1].lower() + word[1:] in _NEVER_LAST_LOWER
        or word.lower() in _EG_IE
    )


def _plain_word(word: str) -> bool:
    """A word that a full stop after surely ends a sentence: two letters or more (apostrophes
    and hyphens inside), not an abbreviation of any kind (``help``, ``don't``, ``well-known``;
    not ``J``, ``Dr``, ``Jan``, ``etc``, ``No``, ``U.S``, ``3``, ``v2``)."""
    letters = word.replace("'", "").replace("\u2019", "").replace("-", "")
    return (
        len(word) >= 2
        and letters.isalpha()
        and word[-1].isalpha()
        and not _never_last(word)
        and not _maybe_last(word)
        and _capitalized(word) not in _BEFORE_NUMBER
        and word.lower() not in _MAY_GO_ON
    )


def _capitalized(word: str) -> str:
    return word[:1].upper() + word[1:]


def _is_list_marker(word: str) -> bool:
    """``1``, ``12``, ``b``, ``iv``: what numbers a list item."""
    return (
        (word.isdigit() and len(word) <= 3)
        or (len(word) == 1 and word.isalpha())
        or _ROMAN.fullmatch(word) is not None
    )


def _maybe_last(word: str) -> bool:
    """Abbreviations that may or may not end a sentence: initials, dotted acronyms, suffixes."""
    if word in _MAYBE_LAST:
        return True
    if len(word) == 1:
        return word.isalpha()
    parts = word.split(".")
    return len(parts) > 1 and all(part.isalpha() and len(part) <= 3 for part in parts)


def split_sentences(
    text: str,
    *,
    min_first_chars: int = 0,
    clause_chars: int | None = 120,
    max_chars: int | None = 240,
) -> list[str]:
    """Split a whole string into sentences, by the same rules as :func:`sentences`.

    >>> split_sentences("Wait... what? It's 3:00 a.m. I'll call 555-1234; or e-mail a.b@c.org.")
    ['Wait... what?', "It's 3:00 a.m.", "I'll call 555-1234;", 'or e-mail a.b@c.org.']
    >>> split_sentences("Prices:\\n1. Tea $2.50\\n2. Coffee $3. Enjoy!")
    ['Prices:', '1. Tea $2.50', '2. Coffee $3.', 'Enjoy!']
    >>> split_sentences("   ")
    []
    """
    splitter = SentenceSplitter(
        min_first_chars=min_first_chars, clause_chars=clause_chars, max_chars=max_chars
    )
    return splitter.push(text) + splitter.flush()


# ---------------------------------------------------------------------------------------------
# The stage


@stage
async def sentences(
    source: AsyncIterable[Any],
    /,
    *,
    min_first_chars: int = 0,
    clause_chars: int | None = 120,
    max_chars: int | None = 240,
    eager: bool = True,
) -> AsyncIterator[Any]:
    """Turn a stream of text pieces into a stream of sentences ready for speech synthesis.

    Two kinds of stream are accepted:

    * plain ``str`` pieces give plain ``str`` sentences;
    * :class:`~voicekit.events.Token` events give :class:`~voicekit.events.Sentence` events, and
      every other event is passed on in its place in the stream. A
      :class:`~voicekit.events.Finish` or a :class:`~voicekit.events.ToolCall` ends the text
      before it: the pending text is released as a sentence first, then the event — so "Let me
      check that." is spoken before the tool runs. Other events (``Usage`` …) pass straight
      through and leave pending text pending. The first sentence after such an end counts as a
      first sentence again for ``min_first_chars``.

    Mixing ``str`` pieces and ``Token`` events in one stream is a ``TypeError``. At the end of
    the stream, the remaining text is released. See the module documentation for the splitting
    rules (long sentences are released at a soft boundary or ``max_chars``), and
    :class:`SentenceSplitter` for ``min_first_chars``, ``clause_chars``, ``max_chars`` and
    ``eager``.

    >>> import asyncio
    >>> from voicekit.events import Usage
    >>> events = [Token("Sure. Let me ch"), Token("eck."), Usage(5, 3), Finish("stop")]
    >>> for event in asyncio.run((events | sentences()).list()):
    ...     print(event)
    Sentence(text='Sure.')
    Sentence(text='Let me check.')
    Usage(prompt_tokens=5, completion_tokens=3, cached_tokens=0, reasoning_tokens=0)
    Finish(reason='stop', response_id=None)

    To strip markdown before speaking, map :func:`clean_for_speech` over the sentences, e.g.
    with a small stage that also drops sentences left empty::

        @vk.stage
        async def speakable(source, /):
            async for s in source:
                text = clean_for_speech(s if isinstance(s, str) else s.text)
                if text:
                    yield text
    """
    splitter = SentenceSplitter(
        min_first_chars=min_first_chars,
        clause_chars=clause_chars,
        max_chars=max_chars,
        eager=eager,
    )
    wrap: Any = None
    async for item in source:
        if isinstance(item, str | Token):
            kind = str if isinstance(item, str) else Sentence
            if wrap is None:
                wrap = kind
            elif wrap is not kind:
                raise TypeError(
                    "sentences() takes either str pieces or Token events, not both in one stream"
                )
            for text in splitter.push(item if isinstance(item, str) else item.text):
                yield wrap(text)
        elif isinstance(item, Finish | ToolCall):
            for text in splitter.flush():
                yield wrap(text)
            yield item
        else:
            yield item
    for text in splitter.flush():
        yield wrap(text)


# ---------------------------------------------------------------------------------------------
# Markdown that TTS would read aloud

_FENCED_BLOCK = re.compile(
    r"^[ \t]*(?P<fence>`{3,}|~{3,})[^\n]*\n.*?^[ \t]*(?P=fence)[ \t]*$\n?", re.M | re.S
)
_FENCE_LINE = re.compile(r"^[ \t]*(?:`{3,}|~{3,}).*$\n?", re.M)
_IMAGE = re.compile(r"!\[([^\]\n]*)\]\([^)\n]*\)")
_LINK = re.compile(r"\[([^\]\n]+)\](?:\([^)\n]*\)|\[[^\]\n]*\])")
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^>\s]+)>")
_INLINE_CODE = re.compile(r"(`+)(?=\S)(.+?)(?<=\S)\1")
_HEADER = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$", re.M)
_QUOTE = re.compile(r"^[ \t]*(?:>[ \t]?)+", re.M)
_RULE = re.compile(r"^[ \t]*([-*_])(?:[ \t]*\1){2,}[ \t]*$\n?", re.M)
_BULLET = re.compile(r"^([ \t]*)[-*+•][ \t]+", re.M)
_TABLE_RULE = re.compile(
    r"^[ \t]*\|?[ \t]*:?-{3,}:?[ \t]*(?:\|[ \t]*:?-{3,}:?[ \t]*)*\|?[ \t]*$\n?", re.M
)
_BOLD = re.compile(r"(?<![\w*])(\*\*|__)(?=\S)(.+?)(?<=\S)\1(?![\w*])", re.S)
_ITALIC_STAR = re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])", re.S)
_ITALIC_UNDERSCORE = re.compile(r"(?<![\w_])_(?=[^\s_])(.+?)(?<=[^\s_])_(?![\w_])", re.S)
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~", re.S)
_SPACES = re.compile(r"[ \t]+")
_BLANK_LINES = re.compile(r"\n[ \t]*(?:\n[ \t]*)+")


def clean_for_speech(text: str) -> str:
    """Remove the markdown an LLM writes and a TTS voice would otherwise read out.

    Fenced code blocks are dropped whole (a voice should not read code; a lone fence line is
    dropped too); inline code, emphasis (``**bold**``, ``*italic*``, ``_italic_``,
    ``~~struck~~``) and links keep their text (``[text](url)`` → ``text``, images keep their
    alt text); heading marks, bullets, block quotes, horizontal rules and table rules go. Line
    breaks are kept, so the result still splits into the same lines; runs of spaces collapse.
    Numbered list markers (``1.``) are kept: they read well.

    >>> clean_for_speech("## Plan\\n- **Book** the [flight](https://x.example/f) *today*\\n- Pay")
    'Plan\\nBook the flight today\\nPay'
    >>> clean_for_speech("Run `ls`:\\n```sh\\nls -la\\n```\\nDone. 2 * 3 = 6, my_var_name ok.")
    'Run ls:\\nDone. 2 * 3 = 6, my_var_name ok.'
    """
    text = _FENCED_BLOCK.sub("", text)
    text = _FENCE_LINE.sub("", text)
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _AUTOLINK.sub(r"\1", text)
    text = _INLINE_CODE.sub(r"\2", text)
    text = _RULE.sub("", text)
    text = _TABLE_RULE.sub("", text)
    text = _HEADER.sub(r"\1", text)
    text = _QUOTE.sub("", text)
    text = _BULLET.sub(r"\1", text)
    text = _BOLD.sub(r"\2", text)
    text = _STRIKE.sub(r"\1", text)
    text = _ITALIC_STAR.sub(r"\1", text)
    text = _ITALIC_UNDERSCORE.sub(r"\1", text)
    lines = (_SPACES.sub(" ", line).strip() for line in text.splitlines())
    return _BLANK_LINES.sub("\n", "\n".join(line for line in lines if line)).strip()
