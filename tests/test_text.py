"""voicekit.text: streaming sentence splitting for TTS, and markdown clean-up."""

from __future__ import annotations

import asyncio
import itertools
import time
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voicekit import ConfigError, StageError
from voicekit.events import Finish, Sentence, Token, ToolCall, Transcript, Usage
from voicekit.ops import Flow, Stage
from voicekit.text import (
    TERMINATORS,
    SentenceSplitter,
    _is_closer,
    clean_for_speech,
    sentences,
    split_sentences,
)

# -- helpers ----------------------------------------------------------------------------------


def feed(pieces: list[str], **options) -> list[str]:
    """Push ``pieces`` one by one into a fresh splitter, then flush."""
    splitter = SentenceSplitter(**options)
    out: list[str] = []
    for piece in pieces:
        out += splitter.push(piece)
    return out + splitter.flush()


def cut(text: str, cuts: list[int]) -> list[str]:
    bounds = [0, *sorted(set(cuts)), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def at_terminator(prefix: str) -> bool:
    """Whether ``prefix`` ends with a terminator run (closers and white space after it allowed):
    where an eager splitter may bet that the sentence ends (see "Releasing at once")."""
    rest = prefix.rstrip()
    while rest and _is_closer(rest[-1]) and rest[-1] not in TERMINATORS:
        rest = rest[:-1]
    return bool(rest) and rest[-1] in TERMINATORS


def unbet(text: str, cuts: list[int]) -> list[int]:
    """``cuts`` without those where an eager splitter bets: with these, the sentences must be
    the same whatever the pieces, eager or not."""
    return [c for c in cuts if not at_terminator(text[:c])]


def squash(text: str) -> str:
    return "".join(text.split())


def released(prefix: str, **options) -> list[str]:
    """What a splitter has released after receiving ``prefix`` (no flush)."""
    return SentenceSplitter(**options).push(prefix)


async def drive(pieces: list[object], **options) -> tuple[list[list[object]], list[object]]:
    """Run ``sentences`` on a queue-fed source, one piece at a time.

    Before each piece is sent, wait until the stage has asked the source for it (so everything it
    was going to yield for the pieces so far has reached the consumer) and record the output so
    far. Returns those snapshots and the complete output.
    """
    inbox: asyncio.Queue[object] = asyncio.Queue()
    requests: asyncio.Queue[None] = asyncio.Queue()
    end = object()

    async def source():
        while True:
            requests.put_nowait(None)
            item = await inbox.get()
            if item is end:
                return
            yield item

    out: list[object] = []

    async def consume() -> None:
        async for item in source() | sentences(**options):
            out.append(item)

    task = asyncio.ensure_future(consume())
    snapshots: list[list[object]] = []
    for piece in [*pieces, end]:
        await asyncio.wait_for(requests.get(), 5)
        snapshots.append(list(out))
        inbox.put_nowait(piece)
    await asyncio.wait_for(task, 5)
    return snapshots, out


# -- table of cases -----------------------------------------------------------------------------

CASES: list[tuple[str, list[str]]] = [
    # basics
    ("Hello. How are you?", ["Hello.", "How are you?"]),
    ("Hello world", ["Hello world"]),
    ("  Hello.   How are you?  ", ["Hello.", "How are you?"]),
    ("Stop! Go.", ["Stop!", "Go."]),
    ("What?! No way!!! Really?? Yes.", ["What?!", "No way!!!", "Really??", "Yes."]),
    ("", []),
    (" \n\t ", []),
    # abbreviations that never end a sentence
    ("Mr. Smith and Mrs. Jones met Ms. Lee.", ["Mr. Smith and Mrs. Jones met Ms. Lee."]),
    ("Dr. Who and Prof. X. Then.", ["Dr. Who and Prof. X.", "Then."]),
    ("Apples vs. Oranges. Fine.", ["Apples vs. Oranges.", "Fine."]),
    ("Fruit, e.g. Apples, i.e. Good. Yes.", ["Fruit, e.g. Apples, i.e. Good.", "Yes."]),
    ("E.g. Rome. Ok.", ["E.g. Rome.", "Ok."]),
    ("Sgt. Pepper. Gen. Lee.", ["Sgt. Pepper.", "Gen. Lee."]),
    # abbreviations that may end one: decided by the next word
    ("It is 3:00 a.m. The sun is up.", ["It is 3:00 a.m.", "The sun is up."]),
    ("Meet at 5 p.m. tomorrow. Ok.", ["Meet at 5 p.m. tomorrow.", "Ok."]),
    ("I moved to the U.S. The weather is nice.", ["I moved to the U.S.", "The weather is nice."]),
    ("The U.S. Army is big.", ["The U.S. Army is big."]),
    ("The U.S.A. and the U.K. Both. Yes", ["The U.S.A. and the U.K.", "Both.", "Yes"]),
    ("U.S.A. and N.A.S.A. are agencies.", ["U.S.A. and N.A.S.A. are agencies."]),
    ("He works at Apple Inc. The firm is big.", ["He works at Apple Inc.", "The firm is big."]),
    ("Acme Ltd. Makes things.", ["Acme Ltd. Makes things."]),
    ("Martin Luther King Jr. Day is soon.", ["Martin Luther King Jr. Day is soon."]),
    ("I met John Smith Jr. He was tall.", ["I met John Smith Jr.", "He was tall."]),
    ("John Smith Sr. And his son.", ["John Smith Sr.", "And his son."]),
    (
        "St. Louis is nice. I live on Main St. It is red.",
        ["St. Louis is nice.", "I live on Main St.", "It is red."],
    ),
    ("J. K. Rowling wrote it.", ["J. K. Rowling wrote it."]),
    ("George W. Bush spoke. He left.", ["George W. Bush spoke.", "He left."]),
    ("He got a Ph.D. In physics.", ["He got a Ph.D.", "In physics."]),
    (
        "In Jan. 2020 we met. In Feb. The snow came.",
        ["In Jan. 2020 we met.", "In Feb.", "The snow came."],
    ),
    ("Due Sept. 5 or Oct. The end.", ["Due Sept. 5 or Oct.", "The end."]),
    ("Apples, pears, etc. and more.", ["Apples, pears, etc. and more."]),
    ("Apples, pears, etc. Then more.", ["Apples, pears, etc.", "Then more."]),
    ("See No. 5 and Fig. 3 on p. 12. Done.", ["See No. 5 and Fig. 3 on p. 12.", "Done."]),
    ("No. I won't.", ["No.", "I won't."]),
    ("(Mr. Smith) agreed.", ["(Mr. Smith) agreed."]),
    # numbers
    ("Pi is 3.14. It is irrational.", ["Pi is 3.14.", "It is irrational."]),
    ("It costs $2.50. Cheap.", ["It costs $2.50.", "Cheap."]),
    ("It costs $3. Cheap.", ["It costs $3.", "Cheap."]),
    ("Version 1.2.3 is out. Try v2.0.1 too.", ["Version 1.2.3 is out.", "Try v2.0.1 too."]),
    (
        "Call +1 555.123.4567 now. Or 555-1234. Bye",
        ["Call +1 555.123.4567 now.", "Or 555-1234.", "Bye"],
    ),
    ("My number is 123-456-7890.", ["My number is 123-456-7890."]),
    ("3.14159.", ["3.14159."]),
    ("It grew 5. 6 more came.", ["It grew 5. 6 more came."]),
    ("We have 42. The rest left.", ["We have 42.", "The rest left."]),
    ("1,000.50 dollars. Wow.", ["1,000.50 dollars.", "Wow."]),
    # e-mail and URLs
    ("Mail john.doe@example.com. Thanks.", ["Mail john.doe@example.com.", "Thanks."]),
    ("foo.bar@pipecat.ai.", ["foo.bar@pipecat.ai."]),
    ("See https://example.com/a.b?c=1 now. Ok.", ["See https://example.com/a.b?c=1 now.", "Ok."]),
    (
        "Go to www.example.org. Or example.com. Bye.",
        ["Go to www.example.org.", "Or example.com.", "Bye."],
    ),
    ("Is it example.com? Yes!", ["Is it example.com?", "Yes!"]),
    ("Open http://x.io/#!/a?b=1&c=2. Done", ["Open http://x.io/#!/a?b=1&c=2.", "Done"]),
    # ellipses
    ("Wait... what? Ok.", ["Wait... what?", "Ok."]),
    ("Wait... What? Ok.", ["Wait...", "What?", "Ok."]),
    ("Hmm… Okay… fine.", ["Hmm…", "Okay… fine."]),
    ("So... 5 of them.", ["So... 5 of them."]),
    ("Hello. ... Anyway. Bye", ["Hello. ...", "Anyway.", "Bye"]),
    ("... and so on. Yes.", ["... and so on.", "Yes."]),
    # semicolons
    ("I came; I saw; I won.", ["I came;", "I saw;", "I won."]),
    ("Tom &amp; Jerry; cartoon.", ["Tom &amp; Jerry;", "cartoon."]),
    ("a;b;c stays.", ["a;b;c stays."]),
    # quotes and brackets after terminators
    ('He said "hi." Then he left.', ['He said "hi."', "Then he left."]),
    ("He said 'hi.' Then left.", ["He said 'hi.'", "Then left."]),
    ("“Stop!” She ran.", ["“Stop!”", "She ran."]),
    ('"Really?" she asked.', ['"Really?" she asked.']),
    ("(See fig. 3.) Then go.", ["(See fig. 3.)", "Then go."]),
    ("**Done.** Next step.", ["**Done.**", "Next step."]),
    ("It's the U.S.'s law. Ok.", ["It's the U.S.'s law.", "Ok."]),
    ('Hi. "Quoted start." End', ["Hi.", '"Quoted start."', "End"]),
    ("«Bonjour.» Il part.", ["«Bonjour.»", "Il part."]),
    ("„Hallo.“ Er geht.", ["„Hallo.“", "Er geht."]),
    ("¿Qué? ¡Hola! Bien.", ["¿Qué?", "¡Hola!", "Bien."]),
    # line breaks
    ("Title\nBody text. More", ["Title", "Body text.", "More"]),
    ("Here:\n\n- one\n- two\n", ["Here:", "- one", "- two"]),
    ("Steps:\n1. Open it\n2. Close it. Done", ["Steps:", "1. Open it", "2. Close it.", "Done"]),
    ("1. Apples. 2. Pears.", ["1. Apples.", "2. Pears."]),
    ("Options: 1. Tea. 2. Coffee. 3) Juice.", ["Options: 1. Tea.", "2. Coffee.", "3) Juice."]),
    ("Pick: b. Tea. Fine", ["Pick: b. Tea.", "Fine"]),
    ("Step 1. Open it.", ["Step 1.", "Open it."]),
    ("See No. 5. Then go.", ["See No. 5.", "Then go."]),
    ("Born in 1990. 2020 was bad.", ["Born in 1990. 2020 was bad."]),
    ("Really? 2. Coffee", ["Really?", "2. Coffee"]),
    ("iv. Fourth point. ok", ["iv. Fourth point. ok"]),
    ("Mr.\nSmith", ["Mr.", "Smith"]),
    ("Hello\r\nWorld", ["Hello", "World"]),
    ("line\u2028next", ["line", "next"]),
    # CJK: no space needed
    ("こんにちは。元気？はい！", ["こんにちは。", "元気？", "はい！"]),
    ("你好吗？我很好。", ["你好吗？", "我很好。"]),
    ("「はい。」そう", ["「はい。」", "そう"]),
    ("三；四", ["三；", "四"]),
    ("１．５ です", ["１．５ です"]),
    ("半角｡次", ["半角｡", "次"]),
    # Devanagari, Arabic, Urdu, Armenian, Ethiopic, Myanmar, Khmer
    ("नमस्ते। आप कैसे हैं? ठीक॥ हाँ", ["नमस्ते।", "आप कैसे हैं?", "ठीक॥", "हाँ"]),
    ("हैलो।अ", ["हैलो।", "अ"]),
    ("هل أنت بخير؟ نعم؛ شكرا", ["هل أنت بخير؟", "نعم؛", "شكرا"]),
    ("یہ اچھا ہے۔ شکریہ", ["یہ اچھا ہے۔", "شکریہ"]),
    ("Բարեւ։ Ինչպես", ["Բարեւ։", "Ինչպես"]),
    ("ሰላም። እንዴት ነህ፧ ደህና", ["ሰላም።", "እንዴት ነህ፧", "ደህና"]),
    ("မင်္ဂလာပါ။ နေကောင်းလား", ["မင်္ဂလာပါ။", "နေကောင်းလား"]),
    ("ကား၊ ရထား", ["ကား၊ ရထား"]),  # U+104A is a comma
    ("សួស្តី។ បាទ", ["សួស្តី។", "បាទ"]),
    ("Mixed 中文。Then English. 再见", ["Mixed 中文。", "Then English.", "再见"]),
    # mixed scripts and other
    ("Hello.你好", ["Hello.你好"]),
    ("Good! 你好", ["Good!", "你好"]),
    ("🎉 Done! 👍", ["🎉 Done!", "👍"]),
    ("... !!! ???", ["... !!! ???"]),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[repr(c[0])[:40] for c in CASES])
def test_split_cases(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[repr(c[0])[:40] for c in CASES])
def test_split_cases_streamed_char_by_char(text: str, expected: list[str]) -> None:
    assert feed(list(text)) == expected


def test_patter_quirk_char_streaming_keeps_domain_whole() -> None:
    text = "Please visit our site example.com today. Thanks."
    assert feed(list(text)) == ["Please visit our site example.com today.", "Thanks."]


def test_no_leading_space_after_short_sentence() -> None:
    assert feed(["Yes.", " Then he left.", " Ok"]) == ["Yes.", "Then he left.", "Ok"]


# -- Unicode Sentence_Terminal ------------------------------------------------------------------

# An independent sample of Sentence_Terminal characters (PropList.txt), by name.
STERM_SAMPLE = [
    "IDEOGRAPHIC FULL STOP",
    "FULLWIDTH EXCLAMATION MARK",
    "FULLWIDTH QUESTION MARK",
    "FULLWIDTH FULL STOP",
    "HALFWIDTH IDEOGRAPHIC FULL STOP",
    "DEVANAGARI DANDA",
    "DEVANAGARI DOUBLE DANDA",
    "ARABIC QUESTION MARK",
    "ARABIC FULL STOP",
    "ARMENIAN FULL STOP",
    "ETHIOPIC FULL STOP",
    "ETHIOPIC QUESTION MARK",
    "ETHIOPIC PARAGRAPH SEPARATOR",
    "MYANMAR SIGN SECTION",
    "KHMER SIGN KHAN",
    "KHMER SIGN BARIYOOSAN",
    "MONGOLIAN FULL STOP",
    "SYRIAC END OF PARAGRAPH",
    "NKO EXCLAMATION MARK",
    "CANADIAN SYLLABICS FULL STOP",
    "TAI THAM SIGN KAAN",
    "LEPCHA PUNCTUATION TA-ROL",
    "OL CHIKI PUNCTUATION MUCAAD",
    "VAI FULL STOP",
    "BAMUM FULL STOP",
    "SAURASHTRA DANDA",
    "CHAM PUNCTUATION DANDA",
    "MEETEI MAYEK CHEIKHEI",
    "BRAHMI DANDA",
    "SHARADA DANDA",
    "DUPLOYAN PUNCTUATION CHINOOK FULL STOP",
    "SIGNWRITING FULL STOP",
    "PRESENTATION FORM FOR VERTICAL IDEOGRAPHIC FULL STOP",
]
LATIN_LIKE = ["!", "?", ".", "DOUBLE EXCLAMATION MARK", "INTERROBANG", "SMALL QUESTION MARK"]


@pytest.mark.parametrize("name", STERM_SAMPLE + LATIN_LIKE)
def test_sentence_terminal_characters_are_terminators(name: str) -> None:
    char = name if len(name) == 1 else unicodedata.lookup(name)
    assert char in TERMINATORS
    assert split_sentences(f"Word{char} Next") == [f"Word{char}", "Next"]


@pytest.mark.parametrize("name", STERM_SAMPLE)
def test_non_latin_terminators_need_no_space(name: str) -> None:
    char = unicodedata.lookup(name)
    assert split_sentences(f"ab{char}cd") == [f"ab{char}", "cd"]
    assert feed(list(f"ab{char}cd")) == [f"ab{char}", "cd"]


@pytest.mark.parametrize("char", [",", "、", ":", "\u104a", "-", "—", "·"])
def test_not_terminators(char: str) -> None:
    assert char not in TERMINATORS
    assert split_sentences(f"Word{char} Next") == [f"Word{char} Next"]


def test_terminator_table_is_sentence_terminal_punctuation() -> None:
    # Everything in the table that this Python's Unicode database knows is punctuation (Po),
    # except the ellipsis, which voicekit adds.
    for char in TERMINATORS - {"…"}:
        if unicodedata.name(char, ""):
            assert unicodedata.category(char) == "Po", (hex(ord(char)), unicodedata.name(char))
    assert len(TERMINATORS) > 150


# -- properties ---------------------------------------------------------------------------------

WORDS = (
    "Hello world it is The He I You the a A x 5 42 3.14 $2.50 12:30 Louis Army Smith "
    "Mr Mrs Dr Prof St Jr Inc Ltd U.S U.S.A a.m p.m e.g i.e vs etc No Fig Jan iv 1 2. 3) "
    "example.com john.doe@example.com https://x.io/a.b?c=1 555-1234 &amp"
)
FRAGMENTS = [
    *WORDS.split(),
    ".", ".", ".", "...", "…", "!", "?", "?!", ";", ",", ":",
    " ", " ", " ", " ", "  ", "\n", "\n\n", "\t",
    '"', "'", "(", ")", "“", "”", "«", "»", "**", "_",
    "。", "！", "？", "「", "」", "；", "１", "你好", "こんにちは",
    "।", "॥", "नमस्ते", "؟", "۔", "؛", "مرحبا", "։", "።", "፧", "။", "៕",
    "🎉", "\u00a0", "\u3000",
]  # fmt: skip

texts = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=3)), max_size=40).map(
    "".join
)


@st.composite
def text_and_cuts(draw: st.DrawFn) -> tuple[str, list[int]]:
    text = draw(texts)
    cuts = draw(st.lists(st.integers(0, len(text)), max_size=len(text)))
    return text, cuts


@settings(max_examples=400, deadline=None)
@given(text_and_cuts())
def test_output_is_the_input_modulo_white_space(case: tuple[str, list[int]]) -> None:
    text, cuts = case
    out = feed(cut(text, cuts))
    assert squash("".join(out)) == squash(text)
    assert all(s and s == s.strip() for s in out)


@settings(max_examples=400, deadline=None)
@given(text_and_cuts())
def test_output_does_not_depend_on_token_boundaries(case: tuple[str, list[int]]) -> None:
    text, cuts = case
    whole = split_sentences(text)
    assert feed([text]) == whole
    assert feed(list(text)) == whole
    assert feed(cut(text, cuts), eager=False) == whole
    # eager: the same unless a piece ends right at a terminator (the bet)
    assert feed(cut(text, unbet(text, cuts))) == whole


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), min_size=200, max_size=400).map("".join), st.data())
def test_long_texts_do_not_depend_on_token_boundaries(text: str, data: st.DataObject) -> None:
    # long enough that the splitter's internal buffer is trimmed many times over
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=len(text) // 3))
    whole = split_sentences(text)
    assert feed(cut(text, cuts), eager=False) == whole
    assert feed(cut(text, unbet(text, cuts))) == whole
    assert feed(list(text)) == whole


@settings(max_examples=200, deadline=None)
@given(text_and_cuts(), st.integers(0, 40))
def test_min_first_chars_properties(case: tuple[str, list[int]], minimum: int) -> None:
    text, cuts = case
    out = feed(cut(text, unbet(text, cuts)), min_first_chars=minimum)
    assert out == split_sentences(text, min_first_chars=minimum)
    assert feed(cut(text, cuts), min_first_chars=minimum, eager=False) == out
    assert squash("".join(out)) == squash(text)
    if len(out) > 1:
        assert len(out[0]) >= minimum
    assert len(out) <= len(split_sentences(text))


# -- nothing splits inside numbers, e-mail addresses, URLs --------------------------------------

label = st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)
digits = st.integers(0, 9999).map(str)
tld = st.sampled_from(["com", "org", "io", "co.uk", "ai", "de", "Net"])
numbers = st.one_of(
    st.builds("{}.{}".format, digits, digits),
    st.builds("${}.{:02d}".format, digits, st.integers(0, 99)),
    st.builds("{}:{:02d}".format, st.integers(0, 23), st.integers(0, 59)),
    st.builds("v{}.{}.{}".format, digits, digits, digits),
    st.builds("{}.{}.{}".format, digits, digits, digits),
    st.builds("+1 {:03d}.{:03d}.{:04d}".format, *[st.integers(0, 999)] * 2, st.integers(0, 9999)),
    st.builds("{:03d}-{:04d}".format, st.integers(0, 999), st.integers(0, 9999)),
    st.builds("{}-{}-{}".format, digits, digits, digits),
    st.builds("{},{:03d}.{:02d}".format, digits, st.integers(0, 999), st.integers(0, 99)),
)
emails = st.builds("{}.{}@{}.{}".format, label, label, label, tld)
urls = st.one_of(
    st.builds("https://{}.{}/{}.{}?{}={}".format, label, tld, label, label, label, digits),
    st.builds("http://www.{}.{}/{}/".format, label, tld, label),
    st.builds("www.{}.{}".format, label, tld),
    st.builds("{}.{}".format, label, tld),
    st.builds("https://{}.{}/#!/{}?q={}!".format, label, tld, label, label),
)
things = st.one_of(numbers, emails, urls)
words = st.lists(st.sampled_from(["The", "price", "is", "Mr.", "see", "It", "at", "a.m."]))
templates = st.sampled_from(
    [
        "{before} {thing} {after}.",
        "{before} {thing}. {after}.",
        "{before} {thing}? {after}!",
        "{thing} {after}. {before}.",
        "{before}; {thing}; {after}",
        '{before} "{thing}." {after}',
        "{before} ({thing}). {after}",
        "{before}\n{thing}\n{after}",
    ]
)


@settings(max_examples=400, deadline=None)
@given(templates, things, words, words, st.data())
def test_never_split_inside_numbers_emails_urls(template, thing, before, after, data) -> None:
    text = template.format(thing=thing, before=" ".join(before), after=" ".join(after))
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=len(text)))
    eager_cuts = unbet(text, cuts)  # a cut right after "example." is the eager bet, lost
    for out in (
        split_sentences(text),
        feed(list(text)),
        feed(cut(text, eager_cuts)),
        feed(cut(text, cuts), eager=False),
    ):
        assert any(thing in sentence for sentence in out), (text, out)


# -- release timing -----------------------------------------------------------------------------

# Continuations that can change how the end of a prefix is read.
PROBES = [
    "", " ", "  ", "\n", "a", "A", "5", ".", "!", "?", ";", ",", '"', ")", "」", "。", "你", "*",
    " a", " A", " 5", " .", " ,", " (", ' "', " 你", " The ", " The", " Then", " I ", " I'm",
    " Army ", " Smith", " the", " Louis", "e ", "en ", "rone ", "he ", "com", ".com", "14",
    "e.", "\u3000", "x. The", ". A", " ok", " Ok",
]  # fmt: skip


def certain(prefix: str) -> list[str]:
    """The leading sentences that every probed continuation of ``prefix`` agrees on."""
    outcomes = [split_sentences(prefix + probe) for probe in PROBES]
    agreed: list[str] = []
    for k in range(min(map(len, outcomes))):
        if len({tuple(o[: k + 1]) for o in outcomes}) > 1:
            break
        agreed.append(outcomes[0][k])
    return agreed


TIMING_TEXTS = [
    "Hello. How are you? I'm fine!",
    "Mr. Smith met Dr. Jones at 3 p.m. They talked.",
    "I moved to the U.S. The U.S. Army is big.",
    "Pi is 3.14. It costs $2.50; wow.",
    'He said "hi." Then he left... What? ok',
    "こんにちは。元気？「はい。」そう",
    "नमस्ते। आप? ठीक",
    "Visit example.com. Mail a.b@c.io now.\n- one\n- two",
    "1. Apples\n2. Pears. Done",
    "St. Louis is in Mo. The end.",
    "Wait... What? No. 5 is it.",
]


def eager_ok(prefix: str) -> None:
    """What an eager splitter released after ``prefix``: what is certain, plus at most the
    sentence the prefix ends with when it ends at a terminator — the one that a continuation
    starting a new sentence ("The end.") gives."""
    sure, got = certain(prefix), released(prefix)
    if got == sure:
        return
    assert at_terminator(prefix), (prefix, got, sure)
    assert got == split_sentences(prefix + " The end.")[: len(sure) + 1], (prefix, got, sure)
    assert got == split_sentences(prefix)[: len(sure) + 1], (prefix, got, sure)


@pytest.mark.parametrize("text", TIMING_TEXTS)
def test_released_exactly_when_certain(text: str) -> None:
    # After every prefix, what a splitter that never bets (eager=False) has released is
    # exactly what no continuation can change: nothing early (it is never taken back) and
    # nothing late. The eager splitter releases that, or one sentence more where it bets.
    for end in range(len(text) + 1):
        prefix = text[:end]
        assert released(prefix, eager=False) == certain(prefix), repr(prefix)
        eager_ok(prefix)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=10).map("".join))
def test_released_exactly_when_certain_random(text: str) -> None:
    for end in range(len(text) + 1):
        prefix = text[:end]
        assert released(prefix, eager=False) == certain(prefix), repr(prefix)
        eager_ok(prefix)


def test_release_timing_table_without_bets() -> None:
    pieces = ["Hello", ".", " How", " are", " you", "?", " Fine", ".", " 你好。", "再见"]
    snapshots, out = asyncio.run(drive(pieces, eager=False))
    new = [snapshots[k + 1][len(snapshots[k]) :] for k in range(len(pieces))]
    assert new == [
        [],  # Hello
        [],  # .            could still be "Hello.5" or "Hello. world"
        ["Hello."],  # How  now certain
        [],
        [],
        [],  # ?
        ["How are you?"],  # Fine
        [],  # .
        ["Fine."],  # 你好。  a non-space character after "Fine. "
        ["你好。"],  # 再见   CJK needs no space
    ]
    assert out == ["Hello.", "How are you?", "Fine.", "你好。", "再见"]


def test_release_timing_table_eager() -> None:
    # The default: a sentence is released with the token that completes it when its end is
    # unambiguous; only the ambiguous ones wait for the next token.
    pieces = ["Hello", ".", " It", " costs", " $3", ".", " Dr", ".", " Smith", " asks", "?",
              ' "Yes', '."', " See", " example", ".com", " or", " the", " U.S", ".", " Then",
              " 你好。", "１．", "５"]  # fmt: skip
    snapshots, out = asyncio.run(drive(pieces))
    new = [snapshots[k + 1][len(snapshots[k]) :] for k in range(len(pieces))]
    assert new == [
        [],  # Hello
        ["Hello."],  # .          a plain word: at once
        [], [], [],
        [],  # .          "$3." may be "$3.50"
        ["It costs $3."],  # Dr
        [],  # .          "Dr." never ends a sentence
        [], [],
        ["Dr. Smith asks?"],  # ?
        [],  # "Yes
        ['"Yes."'],  # ."         the quote is closed
        [], [],
        [],  # .com       a tokenizer sends ".com" whole: no bet there
        [], [], [],
        [],  # .          "U.S." is an initialism: "the U.S. Army" goes on
        [],  # Then       the whole word is needed ("Thence" would go on)
        ["See example.com or the U.S.", "Then 你好。"],  # "Then" opens a sentence; 。 at once
        [],  # １．        may be "１．５"
        [],  # ５
    ]  # fmt: skip
    assert out == [
        "Hello.", "It costs $3.", "Dr. Smith asks?", '"Yes."', "See example.com or the U.S.",
        "Then 你好。", "１．５",
    ]  # fmt: skip
    assert out == split_sentences("".join(pieces))


def test_eager_bets_and_waits() -> None:
    bets = ["Sure, I can help.", "Done!", "Why?", "I don't know.", "It's well-known.",
            "He said \"hi.\"", "(See the note.)", "**Done.**", "Really?!", "我很好。",
            "Sure, I can help. "]  # fmt: skip
    for text in bets:
        assert SentenceSplitter().push(text) == [text.strip()], text
    waits = ["It costs $3.", "Call me at 5.", "I met Dr.", "Apples, pears, etc.", "See No.",
             "Meet J.", "The U.S.", "In Jan.", "Wait...", "Hmm…", "I came;", 'He said "hi.',
             "(See the note.", "**Done.", "Go to /a?", "https://x.io/#!", "iv.", "１．",
             "Is it example.com?"]  # fmt: skip
    for text in waits:
        assert SentenceSplitter().push(text) == [], text
        # and the next word decides, as the text rules say
        later = text + " The end"
        assert SentenceSplitter().push(later) == split_sentences(later)[:-1], text
    # a character-by-character source gets no bet: "example." then "com"
    splitter = SentenceSplitter()
    assert [s for c in "Visit example.com now." for s in splitter.push(c)] == []
    assert splitter.flush() == ["Visit example.com now."]
    # with eager=False a full stop always waits for the next character
    assert SentenceSplitter(eager=False).push("Sure, I can help.") == []
    with pytest.raises(ConfigError, match="eager"):
        SentenceSplitter(eager=1)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text_and_cuts())
def test_stage_yields_each_sentence_before_reading_the_next_token(case) -> None:
    text, cuts = case
    pieces = [p for p in cut(text, cuts) if p]
    snapshots, out = asyncio.run(drive(pieces, eager=False))
    for k, snapshot in enumerate(snapshots):
        assert snapshot == released("".join(pieces[:k]), eager=False)
    assert out == split_sentences(text)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(TIMING_TEXTS), st.data())
def test_stage_timing_with_tokens(text: str, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=len(text)))
    pieces = [p for p in cut(text, cuts) if p]
    snapshots, out = asyncio.run(drive([Token(p) for p in pieces], eager=False))
    for k, snapshot in enumerate(snapshots):
        assert snapshot == [Sentence(s) for s in certain("".join(pieces[:k]))]
    assert out == [Sentence(s) for s in split_sentences(text)]
    # eager: never later than that, and the same sentences when no piece ends at a terminator
    pieces = [p for p in cut(text, unbet(text, cuts)) if p]
    snapshots, out = asyncio.run(drive([Token(p) for p in pieces]))
    for k, snapshot in enumerate(snapshots):
        sure = [Sentence(s) for s in certain("".join(pieces[:k]))]
        assert snapshot[: len(sure)] == sure
    assert out == [Sentence(s) for s in split_sentences(text)]


# -- the stage ----------------------------------------------------------------------------------


async def test_str_pieces_give_str_sentences() -> None:
    out = await (["Hel", "lo. Wor", "ld"] | sentences()).list()
    assert out == ["Hello.", "World"]
    assert all(type(s) is str for s in out)


async def test_tokens_give_sentence_events_and_other_events_pass_in_order() -> None:
    call = ToolCall("c1", "weather", '{"city": "Rome"}')
    items = [
        Transcript("hi"),
        Token("Sure. Let me "),
        Usage(1, 2),
        Token("check. The"),
        call,
        Token("Done"),
        Finish("tool_calls"),
    ]
    out = await (items | sentences()).list()
    assert out == [
        Transcript("hi"),
        Sentence("Sure."),
        Usage(1, 2),  # passes without flushing "Let me"
        Sentence("Let me check."),
        Sentence("The"),  # ToolCall ends the text before it
        call,
        Sentence("Done"),  # Finish flushes too
        Finish("tool_calls"),
    ]


async def test_finish_flushes_then_splitting_starts_over() -> None:
    items = [Token("Hi. Ok"), Finish(), Token("Yo. There."), Finish("stop", "r2")]
    out = await (items | sentences(min_first_chars=5)).list()
    assert out == [
        Sentence("Hi. Ok"),
        Finish(),
        Sentence("Yo. There."),  # first sentence of the new response is held back again
        Finish("stop", "r2"),
    ]


async def test_other_events_do_not_flush() -> None:
    out = await ([Token("Wait"), Usage(), Token(" here.")] | sentences()).list()
    assert out == [Usage(), Sentence("Wait here.")]


async def test_end_of_stream_flushes_and_nothing_empty_is_yielded() -> None:
    assert await ([Token(" "), Token("\n"), Token("")] | sentences()).list() == []
    assert await (["  ", "x  "] | sentences()).list() == ["x"]
    assert await ([Finish()] | sentences()).list() == [Finish()]


async def test_mixing_str_and_tokens_is_an_error() -> None:
    with pytest.raises(StageError) as info:
        await (["a. B", Token("c")] | sentences()).list()
    assert isinstance(info.value.__cause__, TypeError)
    assert "sentences" in str(info.value)


async def test_bad_min_first_chars() -> None:
    for bad in (-1, 2.5, True, "3"):
        with pytest.raises(ConfigError):
            await (["x"] | sentences(min_first_chars=bad)).list()


def test_stage_forms() -> None:
    assert isinstance(sentences(min_first_chars=3), Stage)
    flow = sentences(["a"], min_first_chars=3)
    assert isinstance(flow, Flow)
    assert asyncio.run(flow.list()) == ["a"]
    with pytest.raises(TypeError):
        sentences(["a"], 3)
    with pytest.raises(TypeError):
        sentences(minimum=3)


# -- min_first_chars ----------------------------------------------------------------------------


def test_min_first_chars_merges_short_opening() -> None:
    text = "Hi. I'm Ada. How can I help you today? Ask away."
    assert split_sentences(text) == ["Hi.", "I'm Ada.", "How can I help you today?", "Ask away."]
    assert split_sentences(text, min_first_chars=10) == [
        "Hi. I'm Ada.",
        "How can I help you today?",
        "Ask away.",
    ]
    assert split_sentences(text, min_first_chars=13) == [
        "Hi. I'm Ada. How can I help you today?",
        "Ask away.",
    ]
    assert split_sentences(text, min_first_chars=1000) == [text]
    assert split_sentences("Hi.", min_first_chars=50) == ["Hi."]


def test_min_first_chars_counts_newline_breaks_too() -> None:
    assert split_sentences("Hi\nthere\nfriend", min_first_chars=6) == ["Hi\nthere", "friend"]


def test_splitter_is_reusable_after_flush_and_reset() -> None:
    splitter = SentenceSplitter(min_first_chars=4)
    assert splitter.push("Hi. Ok. Yes") == ["Hi. Ok."]
    assert splitter.flush() == ["Yes"]
    assert splitter.push("Hi. Ok") == []  # the minimum applies again: "Hi." is too short
    splitter.reset()
    assert splitter.push("Yo") == [] and splitter.flush() == ["Yo"]
    with pytest.raises(TypeError):
        splitter.push(Token("x"))  # type: ignore[arg-type]


# -- performance --------------------------------------------------------------------------------


def test_twenty_thousand_tokens_through_the_stage_well_under_a_second() -> None:
    words = ["Hello", " there", ",", " Mr", ".", " Smith", ". ", "How", " are", " you", "?", " "]
    tokens = [Token(words[i % len(words)]) for i in range(20_000)]
    start = time.perf_counter()
    out = asyncio.run((tokens | sentences()).list())
    elapsed = time.perf_counter() - start
    assert [s.text for s in out] == split_sentences("".join(t.text for t in tokens))
    assert len(out) == 3334
    assert elapsed < 0.5, elapsed


def test_one_huge_sentence_is_linear() -> None:
    # 300,000 tokens and no sentence end: a splitter that re-copied or rescanned its buffer on
    # every token would move hundreds of gigabytes here. (No length bounds: one sentence.)
    splitter = SentenceSplitter(clause_chars=None, max_chars=None)
    start = time.perf_counter()
    for _ in range(300_000):
        assert splitter.push(" word") == []
    (sentence,) = splitter.flush()
    elapsed = time.perf_counter() - start
    assert len(sentence) == 300_000 * 5 - 1
    assert elapsed < 5.0, elapsed


def test_scan_buffer_stays_small_in_a_long_sentence() -> None:
    # White-box: the part of the text the splitter rescans or copies per token is bounded, the
    # rest of a long sentence is kept aside until it is released.
    splitter = SentenceSplitter(clause_chars=None, max_chars=None)
    for k in range(5_000):
        splitter.push(" Mr. Smith" if k % 2 else " 3.14")
        assert len(splitter._tail) < 200
    assert splitter.flush()[0].startswith("3.14 Mr. Smith 3.14")


def test_many_pending_full_stops_are_linear() -> None:
    splitter = SentenceSplitter(max_chars=None)
    start = time.perf_counter()
    for _ in range(50_000):
        splitter.push("x.")  # each "." waits for the next token, which says "no end"
    assert splitter.flush() == ["x." * 50_000]
    assert time.perf_counter() - start < 2.0


def test_one_big_string() -> None:
    text = "Mr. Smith paid $2.50 at 3 p.m. on Jan. 5. He left. " * 20_000
    start = time.perf_counter()
    out = split_sentences(text)
    assert time.perf_counter() - start < 2.0
    assert out == ["Mr. Smith paid $2.50 at 3 p.m. on Jan. 5.", "He left."] * 20_000


# -- clean_for_speech ---------------------------------------------------------------------------

CLEAN_CASES = [
    ("**Bold** and __strong__ and *it* and _em_", "Bold and strong and it and em"),
    ("***both***", "both"),
    ("~~gone~~ here", "gone here"),
    ("# Title\n## Sub ##\nText", "Title\nSub\nText"),
    ("- one\n* two\n+ three\n• four", "one\ntwo\nthree\nfour"),
    ("  - nested", "nested"),
    ("1. first\n2. second", "1. first\n2. second"),
    ("See [the docs](https://x.io/a_b) now", "See the docs now"),
    ("An ![alt text](img.png) image", "An alt text image"),
    ("Ref [link][1] style", "Ref link style"),
    ("Go <https://example.com> now", "Go https://example.com now"),
    ("Use `print()` here", "Use print() here"),
    ("Code:\n```python\nx = 1\nprint(x)\n```\nAfter", "Code:\nAfter"),
    ("~~~\nfenced\n~~~\nok", "ok"),
    ("```python", ""),
    ("> quoted text\n> more", "quoted text\nmore"),
    ("Above\n---\nBelow\n* * *\nEnd", "Above\nBelow\nEnd"),
    ("| a | b |\n|---|:---:|\n| 1 | 2 |", "| a | b |\n| 1 | 2 |"),
    ("2 * 3 * 4 = 24", "2 * 3 * 4 = 24"),
    ("a*b*c and my_var_name and snake_case_x", "a*b*c and my_var_name and snake_case_x"),
    ("Price: $5 *each*", "Price: $5 each"),
    ("many    spaces\n\n\n\nand lines", "many spaces\nand lines"),
    ("", ""),
    ("Plain sentence.", "Plain sentence."),
]


@pytest.mark.parametrize(("text", "expected"), CLEAN_CASES)
def test_clean_for_speech(text: str, expected: str) -> None:
    assert clean_for_speech(text) == expected


def test_clean_then_split() -> None:
    reply = "## Options\n- **Tea**: $2.50\n- *Coffee*. Hot!\n\nSee [menu](https://x.io/m)."
    assert split_sentences(clean_for_speech(reply)) == [
        "Options",
        "Tea: $2.50",
        "Coffee.",
        "Hot!",
        "See menu.",
    ]


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_clean_for_speech_never_grows_text_and_is_idempotent_on_plain_words(text: str) -> None:
    cleaned = clean_for_speech(text)
    assert len(squash(cleaned)) <= len(squash(text))
    plain = " ".join(w for w in text.split() if w.isalnum())
    assert clean_for_speech(plain) == plain


# -- long sentences: soft boundaries and the length cap (issue 9 item 5) -------------------------

LONG_WORDS = [
    "the", "cat", "and", "dog", "walked", "so", "far", "but", "then", "it", "rained", "or",
    "snowed", "which", "was", "odd",
]  # fmt: skip


def test_fifteen_hundred_unpunctuated_words_give_audio_early() -> None:
    # An LLM that never punctuates: the first sentence is released within max_chars of text,
    # every one is at most max_chars long, and nothing is lost.
    words = [LONG_WORDS[k % len(LONG_WORDS)] for k in range(1_500)]
    splitter = SentenceSplitter()
    out: list[str] = []
    first_at = None
    for k, word in enumerate(words):
        out += splitter.push(word + " ")
        if out and first_at is None:
            first_at = k
    out += splitter.flush()
    assert first_at is not None and first_at < 60, first_at  # ~240 chars is ~50 words
    assert all(len(s) <= 240 for s in out), max(map(len, out))
    assert " ".join(out).split() == words
    assert len(out) > 30


def test_a_long_sentence_is_cut_before_a_conjunction() -> None:
    text = " ".join(["word"] * 40) + " and " + " ".join(["more"] * 40)
    first = split_sentences(text)[0]
    assert first == " ".join(["word"] * 40)  # cut just before "and", in the second half


def test_a_long_sentence_is_released_at_a_comma_after_clause_chars() -> None:
    short = "Hi, there, friend."
    assert split_sentences(short) == [short]  # commas in short sentences are not boundaries
    clause = "a" * 30 + " " + "b" * 30
    text = f"{clause}, {clause} - {clause} — {clause}, e-mail 555-1234 1,000"
    assert split_sentences(text, clause_chars=40) == [
        f"{clause},", f"{clause} -", f"{clause} —", f"{clause},", "e-mail 555-1234 1,000"
    ]  # hyphens inside words and the comma inside a number are not boundaries


def test_one_endless_word_is_cut_at_max_chars() -> None:
    text = "x" * 1000
    out = split_sentences(text)
    assert "".join(out) == text
    assert all(len(s) <= 240 for s in out)


def test_bounds_off_keep_one_sentence() -> None:
    text = ", ".join(["word word word"] * 100)
    assert split_sentences(text, clause_chars=None, max_chars=None) == [text]


@pytest.mark.parametrize(
    "options",
    [{"clause_chars": 0}, {"max_chars": 5}, {"clause_chars": 100, "max_chars": 50},
     {"max_chars": 2.5}, {"clause_chars": True}],
)
def test_bad_length_bounds(options) -> None:
    with pytest.raises(ConfigError):
        SentenceSplitter(**options)


@settings(max_examples=400, deadline=None)
@given(text_and_cuts(), st.integers(1, 30), st.integers(20, 40))
def test_bounded_output_does_not_depend_on_token_boundaries(case, clause, cap) -> None:
    text, cuts = case
    options = {"clause_chars": min(clause, cap), "max_chars": cap}
    whole = split_sentences(text, **options)
    assert feed([text], **options) == whole
    assert feed(list(text), **options) == whole
    assert feed(cut(text, cuts), **options, eager=False) == whole
    assert feed(cut(text, unbet(text, cuts)), **options) == whole
    assert squash("".join(whole)) == squash(text)
    assert all(s and s == s.strip() for s in whole)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([*FRAGMENTS, *LONG_WORDS, " ", " ", "-", " - ", "—"]),
                min_size=200, max_size=400).map("".join), st.data())
def test_bounded_long_texts_do_not_depend_on_token_boundaries(text, data) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=len(text) // 3))
    options = {"clause_chars": 25, "max_chars": 50}
    whole = split_sentences(text, **options)
    assert feed(cut(text, cuts), **options, eager=False) == whole
    assert feed(cut(text, unbet(text, cuts)), **options) == whole
    assert feed(list(text), **options) == whole
    assert squash("".join(whole)) == squash(text)
