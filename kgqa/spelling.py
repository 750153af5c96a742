"""When two strings name the same thing: the one rule kgqa matches a question's words against the
KB's strings by, applied to both sides.

`fold` is a string's spelling key: Unicode width and compatibility forms (NFKC: ＩＳＯ１４００１ is
ISO14001), case, script (traditional characters as simplified, by OpenCC's tables: 劉曉華 is
刘晓华), whitespace and the marks around a title or a quotation (《活着》 is 活着) all fold away.
It works character by character, so every character of a folded string comes from one character
of the original (`folded` says which) and a match found in folded text is a span of the text as
typed. `sound` goes one step further, for the typos a pinyin input method makes: each Chinese
character becomes its toneless syllable (三栋屋存 sounds like 三栋屋村), one character still.

`model_char` is what the model reads for a character of the question outside every KB name: its
width and script folded as `fold` does, its case and punctuation kept (training questions are
written that way; the KB's names in a question are given the KB's own spelling, `kgqa.reading`).

The tables come from OpenCC (traditional to simplified) and pypinyin (each character's first
reading); `FINGERPRINT` names their versions, so an index built with other tables is rebuilt.

`normalize` is the other rule, KgCLUE's scorer's: an answer is compared lower-cased, its whitespace
folded (`fold_whitespace`, also how the KB reader stores an object, so a stored object compares
equal to a gold answer); the metric and the calibrator's right-or-wrong read it.
"""
from __future__ import annotations

import collections
import functools
import random
import unicodedata
from importlib.metadata import version

import opencc

MARKS = frozenset("《》〈〉「」『』“”‘’\"'【】〖〗")  # around a title or a quotation: not part of a name
FINGERPRINT = f"opencc {version('opencc')}, pypinyin {version('pypinyin')}"
_SOUND_BASE = 0xF0000  # the supplementary private use area: one code point per syllable


@functools.cache
def _simplified() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


_RULES = {  # each folds one way of spelling a name away, in the order `fold` applies them
    "spacing": lambda c: "" if c.isspace() else c,
    "marks": lambda c: "" if c in MARKS else c,
    "width": lambda c: unicodedata.normalize("NFKC", c),
    "case": str.casefold,
    "script": lambda c: _simplified().convert(c),  # OpenCC's first choice for a lone character
}


def _through(text: str, ways) -> str:
    """`text` with the spelling stages named `ways` applied in turn, character by character."""
    for way in ways:
        text = "".join(map(_RULES[way], text))
    return text


def fold_char(char: str) -> str:
    """One character's spelling key: "" for whitespace and title or quotation marks; else its
    NFKC form, case-folded, in simplified script."""
    return _through(char, _RULES)


class _Table(dict):
    """A `str.translate` table filled on first sight of each character (translate looks hits up
    in C; only a character never seen before runs Python)."""

    def __init__(self, rule) -> None:
        super().__init__()
        self.rule = rule

    def __missing__(self, codepoint: int) -> str:
        value = self[codepoint] = self.rule(chr(codepoint))
        return value


_FOLD = _Table(fold_char)


def fold(text: str) -> str:
    """`text`'s spelling key: two strings name the same thing where their folds are equal."""
    return text.translate(_FOLD)


def folded(text: str) -> tuple[str, list[int]]:
    """(`fold(text)`, for each of its characters the index in `text` of the character it comes
    from). A character whose fold is longer than one (NFKC's ㎏ is kg) gives each of its parts the
    same origin."""
    parts = [(index, part) for index, char in enumerate(text) for part in _FOLD[ord(char)]]
    return "".join(part for _, part in parts), [index for index, _ in parts]


def _model_char(char: str) -> str:
    if not (unicodedata.east_asian_width(char) == "F" and char.isalnum()) and not is_han(char):
        return char  # half-width text and punctuation as typed (training questions hold 「？」)
    return _through(char, ("width", "script"))


_MODEL = _Table(_model_char)


def model_text(text: str) -> str:
    """`text` as the model reads a question's words outside KB names: full-width letters and
    digits narrowed, traditional characters simplified; case, punctuation and spaces as typed."""
    return text.translate(_MODEL)


def is_han(char: str) -> bool:
    return unicodedata.name(char, "").startswith("CJK ")


@functools.cache
def _syllables() -> dict[str, str]:
    """Each toneless pinyin syllable's code point (private use area), numbered in sorted order so
    every process numbers them alike."""
    from pypinyin.constants import PINYIN_DICT  # 0.2 s: only where sounds are needed

    def toneless(reading: str) -> str:
        stripped = unicodedata.normalize("NFD", reading.replace("ü", "v"))
        return "".join(c for c in stripped if not unicodedata.combining(c))

    readings = {codepoint: toneless(value.split(",")[0]) for codepoint, value in PINYIN_DICT.items()}
    numbers = {syllable: chr(_SOUND_BASE + n) for n, syllable in enumerate(sorted(set(readings.values())))}
    return {chr(codepoint): numbers[syllable] for codepoint, syllable in readings.items()}


_SOUND = _Table(lambda char: _syllables().get(char, char))


def sound(folded_text: str) -> str:
    """A folded string as it sounds: each Chinese character as its toneless syllable (one code
    point each), everything else as it is; the same length as `folded_text`."""
    return folded_text.translate(_SOUND)


class Homophones:
    """The typo a pinyin input method makes: another character of the same toneless syllable, the
    commonest such in some questions (`questions`), as a wrong pick from the input method's list
    would be; a missing entity typed like a KB name is made this way to teach what it looks like."""

    def __init__(self, questions: list[str]) -> None:
        counts = collections.Counter(c for q in questions for c in q if is_han(c))
        self.by_sound: dict[str, list[str]] = collections.defaultdict(list)
        for char, _ in counts.most_common():
            self.by_sound[sound(char)].append(char)

    def typo(self, question: str, name: str, rng: random.Random) -> str | None:
        """The question with one character of `name` (where it spells it) replaced by a homophone;
        None where it does not spell it, or no character of it has one."""
        at = question.find(name)
        places = [i for i, c in enumerate(name) if len(self.by_sound.get(sound(c), [])) > 1]
        if at < 0 or not places:
            return None
        i = rng.choice(places)
        other = next(c for c in self.by_sound[sound(name[i])] if c != name[i])
        return question[:at + i] + other + question[at + i + 1:]


def same_script(folded_text: str, text: str) -> bool:
    """Whether a folded text is `text`'s fold without a change of script: the two differ only in
    width, case, whitespace or marks (iso14001认证 of ISO14001认证, not 适用于 of 适用於)."""
    return folded_text == _through(text, ("spacing", "marks", "width", "case"))


def differing(a: str, b: str) -> int:
    """Positions at which two strings of the same length differ."""
    return sum(x != y for x, y in zip(a, b))


def _in_order(short: str, name: str) -> bool:
    """Whether every character of `short` occurs in `name`, in order."""
    rest = iter(name)
    return all(char in rest for char in short)


def how_spelled(typed: str, kb: str) -> str:
    """How the question's `typed` differs from the KB's `kb`, in words for an explanation: the
    ways of spelling (`_RULES`) folded away before the two were equal ("width, case"), or where
    they are not, a short form ("a short form (2 characters left out)") or how many characters
    differ though they sound alike ("one character (sounds alike)")."""
    ways = []
    for way in _RULES:
        if typed == kb:
            break
        typed_now, kb_now = (_through(text, (way,)) for text in (typed, kb))
        if (typed_now, kb_now) != (typed, kb):
            ways.append(way)
        typed, kb = typed_now, kb_now
    if typed != kb and len(typed) < len(kb) and _in_order(typed, kb):
        left_out = len(kb) - len(typed)
        ways.append(f"a short form ({'one character' if left_out == 1 else f'{left_out} characters'} left out)")
    elif typed != kb:
        wrong = differing(typed, kb) if len(typed) == len(kb) else abs(len(typed) - len(kb))
        ways.append(f"{'one character' if wrong == 1 else f'{wrong} characters'} "
                    f"({'sounds alike' if sound(typed) == sound(kb) else 'a typo'})")
    return ", ".join(ways) or "as written"


def fold_whitespace(text: str) -> str:
    """Runs of whitespace as one space, none at the ends: how KgCLUE's scorer reads a string, so
    an object stored this way compares equal to a gold answer."""
    return " ".join(text.split())


def normalize(text: str) -> str:
    """A string as KgCLUE's scorer compares it: lower case, whitespace folded."""
    return fold_whitespace(text.lower())
