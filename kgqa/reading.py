"""A question read against the KB: the KB's names found in it however they are typed, and the
text the model reads, with each of those names spelled as the KB spells it.

People type a name their own way: in traditional characters (劉曉華), full-width (ＩＳＯ１４００１),
in another case (iso14001认证), with spaces (刘 晓 华), without the marks around a title, with a
character an input method picked wrongly (三栋屋存 for 三栋屋村), or short (兰利号航母 for
兰利号航空母舰). The model was trained on questions that spell each name as the KB does, and the
decoder may only write the KB's keys, so the question is rewritten before the tokenizer, and
training reads its questions the same way:
- a span whose spelling key (`kgqa.spelling.fold`) is a KB subject's, which the question does not
  already spell as some KB subject, gets that subject's spelling where it is at least as long as
  the longest name the question spells as the KB does (and, where the script differs, the KB
  holds as much of it as of the names the question spells outside it);
- a span that sounds like a KB name (at least `GATED_SOUND` characters, one character off; two
  from eight on), or that is a short form of one (its first `SHORT_PREFIX` characters, then some
  of the others in order, some left out between them), gets that name's spelling where it is
  longer than any name the question spells as the KB does and the KB holds more of it than of
  the names of about its length the question spells (`_read_as`: 三栋屋村, but not 十几号 for
  「巴彻的球衣号是几号」 nor 墨尔本市 for 「墨尔本是…」).
Longer spans first; where spans overlap, the longer wins, and at equal length the question's own
spelling, then a spelling variant, then a sound-alike, then a short form. A span never begins or
ends inside a run of Latin letters and digits (und of Found). The other characters are read as
`spelling.model_text` reads them, and whitespace between two characters that are not both Latin
letters or digits is dropped (刘 晓 华 → 刘晓华; Adobe Photoshop keeps its space). A question that
spells every name as the KB does is read as typed, but for full-width letters and traditional
characters outside every name.

The gates keep a question that spells its names as the KB does as written; they also hold back
some real typos (半坡存 for 半坡村 beside the question's longer 平均气温; 请水塘村 for 清水塘村, whose
水塘村 the KB knows more of), and never read a two-character sound-alike (流华 for 刘华: the KB's
words have too many homophones). And a typo may spell another KB name (里昂 for 利昂). So the
reading carries `near` readings, one near name each on top of the gated reading, for the pipeline
to weigh (`KGQA.read_and_chosen` takes one only where its best answer is about that name and surer
by a margin: the model and the calibrator weigh the evidence the gates cannot):
- each near name the gates held back, read as the KB's (never inside a Latin word nor inside a
  longer name the question spells, within the near limits; of the two-character ones only the one
  the KB holds most of, since ordinary words sound like many short names: 说冥 for 说明);
- then each name the question spells that sounds like a KB name the KB holds more of, read as that.
Where a span is as near to several KB names, it is read as the one the KB holds most of.

Every other KB subject sharing a rewritten name's spelling key (iPhone 4 / IPHONE4) is a mention
too, so each stays answerable. What was rewritten is said (`Match`), for `kgqa ask`, the page and
the service's explanation.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Callable, TypeVar

from rapidfuzz.distance import Levenshtein

from kgqa.kb.index import KBIndex
from kgqa.kb.spellings import NEAR_CHARS
from kgqa.spelling import differing, fold, folded, how_spelled, model_text, same_script, sound

_EXACT, _SPELLING, _SOUND, _SHORT = 0, 1, 2, 3  # how a span matched, best first
SHORT_PREFIX = 3  # a short form begins with its name's first characters
GATED_SOUND = 3  # the shortest sound-alike the gates may read; shorter ones only in the near reading
_OPENING, _CLOSING = "《「『“‘〈【〖\"'", "》」』”’〉】〗\"'"


@dataclass
class Match:
    """A KB name the question gives in another spelling."""

    typed: str  # the question's characters, as typed
    surface: str  # the KB subject's spelling, which the model reads instead
    how: str  # in words: "script", "width, case", "one character (sounds alike)"
    differing: int  # characters that differ once both are folded (0: the same name, spelt otherwise)

    def __str__(self) -> str:
        return f"the question's {self.typed} {'≈' if self.differing else 'matched'} the KB's {self.surface} ({self.how})"


@dataclass
class Reading:
    """A question as typed, the text the model reads, and the KB names matched in other spellings."""

    question: str
    text: str
    matches: list[Match] = field(default_factory=list)
    mentions: list[int] = field(default_factory=list)  # its KB subjects' surface ids, longest first: those
    # `text` spells, and the others sharing a rewritten name's spelling key
    near: list[Reading] = field(default_factory=list)  # the question read otherwise, one near name each
    # (see the module): first the near names the gates held back, then the alike ones
    near_name: str = ""  # in a near reading: the KB name it reads that the reading it is near to does not
    near_typed: str = ""  # in a near reading: the question's characters it reads as `near_name`
    near_kind: str = ""  # in a near reading: "held" (a name the gates held back), "short" (one of two
    # characters) or "alike" (a name the question spells, read as one that sounds alike)

    def as_json(self) -> dict:
        return {"read_as": self.text, "matches": [asdict(m) | {"said": str(m)} for m in self.matches]}


@dataclass
class _Span:
    start: int  # in the folded question
    stop: int
    how: int  # _EXACT, _SPELLING, _SOUND or _SHORT
    sids: list[int]
    typed: tuple[int, int] | None = None  # where the question spells it as the KB does (_EXACT)
    alike: list[int] = field(default_factory=list)  # _EXACT: the sids of names that sound like it


def read(index: KBIndex, question: str, ordinary: Callable[[str], bool] = lambda typed: False) -> Reading:
    """The question as the model reads it, its KB names in the KB's spelling, with its `near`
    readings (see the module); `ordinary` says which typed two characters are question wording,
    never a near name (`rank.wording.Wording.ordinary`; by default none is)."""
    text, origin = folded(question)
    spans = _spans(index, question, text, origin)
    gated = _chosen(index, question, text, origin, spans)
    reading = _rewritten(index, question, text, origin, gated)
    held = [("short" if _short(span) else "held", span)
            for span in _held(index, question, text, origin, spans, gated, ordinary)]
    alike = [("alike", replace(span, how=_SOUND, sids=span.alike)) for span in gated if span.alike]
    texts = {reading.text}
    for kind, span in held + alike:
        other = _rewritten(index, question, text, origin,
                           sorted([s for s in gated if not _overlap(s, span)] + [span], key=lambda s: s.start))
        other.near_typed = _as_typed(question, origin, span)
        other.near_name = _closest(index, other.near_typed, span.sids)
        other.near_kind = kind
        if other.text not in texts:
            texts.add(other.text)
            reading.near.append(other)
    return reading


def _spans(index: KBIndex, question: str, text: str, origin: list[int]) -> list[_Span]:
    """Every span of the folded question that spells, sounds like or shortens a KB name."""
    spans: dict[tuple[int, int], _Span] = {}
    for start, stop, sid in index.names.spelled(text):
        span = spans.setdefault((start, stop), _Span(start, stop, _SPELLING, []))
        span.sids.append(sid)
        typed = _typed(question, origin, start, stop, index.names.surface(sid))
        if typed is not None:
            span.how, span.typed = _EXACT, min(typed, span.typed or typed)
    if len(text) >= NEAR_CHARS:
        for start, stop, sid in index.names.sounded(sound(text)):
            if (start, stop) not in spans or spans[start, stop].how == _SOUND:
                spans.setdefault((start, stop), _Span(start, stop, _SOUND, [])).sids.append(sid)
            elif spans[start, stop].how == _EXACT:
                spans[start, stop].alike.append(sid)
    for span in spans.values():  # a name spelt as the KB does sounds like another the KB holds more of
        if span.alike:
            size = max(map(index.surface_size, span.sids))
            span.alike = [sid for sid in span.alike if index.surface_size(sid) > size and
                          _near_enough(text, replace(span, how=_SOUND), index.names.surface(sid))]
    for start in range(len(text) - SHORT_PREFIX):
        for sid in index.names.completed(text[start:start + SHORT_PREFIX]):
            stop = _short_form(text, start, fold(index.names.surface(sid)))
            if stop and ((start, stop) not in spans or spans[start, stop].how == _SHORT):
                spans.setdefault((start, stop), _Span(start, stop, _SHORT, [])).sids.append(sid)
    return list(spans.values())


def _chosen(index: KBIndex, question: str, text: str, origin: list[int], spans: list[_Span]) -> list[_Span]:
    """The spans the gates read, in the question's order: longer first, none overlapping another, a
    near one only where the evidence says so (`_read_as`)."""
    longest = max((s.stop - s.start for s in spans if s.how == _EXACT), default=0)
    exact = [s for s in spans if s.how == _EXACT and s.stop - s.start > 1]
    chosen: list[_Span] = []
    taken = [False] * len(text)
    for span in sorted(spans, key=lambda s: (s.start - s.stop, s.how, s.start)):
        if any(taken[span.start:span.stop]):
            continue
        if span.how != _EXACT:
            if span.stop - span.start < longest + (span.how != _SPELLING) or _short(span) or \
                    _cuts_a_word(question, origin, span):
                continue  # the question's longest name spelt as the KB does stands
            sids = [sid for sid in span.sids if _near_enough(text, span, index.names.surface(sid)) and
                    _read_as(index, text, span, exact, chosen, index.names.surface(sid))]
            if not sids:
                continue
            span = replace(span, sids=sids)
        taken[span.start:span.stop] = [True] * (span.stop - span.start)
        chosen.append(span)
    return sorted(chosen, key=lambda s: s.start)


def _held(index: KBIndex, question: str, text: str, origin: list[int], spans: list[_Span],
          gated: list[_Span], ordinary: Callable[[str], bool]) -> list[_Span]:
    """The near spans the gates held back, each with the names it is near enough to, longer first:
    never one the gated reading reads, one inside a longer name the question spells, one that
    begins or ends inside a Latin word, nor a two-character one typed as `ordinary` wording."""
    read_at = {(span.start, span.stop) for span in gated}
    held = []
    for span in sorted(spans, key=lambda s: (s.start - s.stop, s.how, s.start)):
        if span.how == _EXACT or (span.start, span.stop) in read_at or _cuts_a_word(question, origin, span) or \
                any(other.how == _EXACT and other.stop - other.start > span.stop - span.start and _overlap(other, span)
                    for other in spans) or \
                _short(span) and ordinary(_as_typed(question, origin, span)):
            continue
        sids = [sid for sid in span.sids if _near_enough(text, span, index.names.surface(sid))]
        if sids:
            held.append(replace(span, sids=sids))
    short = [span for span in held if _short(span)]
    if short:  # ordinary words sound like many short names: only the one the KB holds most of
        most = max(short, key=lambda span: max(map(index.surface_size, span.sids)))
        held = [span for span in held if span is most or not _short(span)]
    return held


def _as_typed(question: str, origin: list[int], span: _Span) -> str:
    """The question's characters, as typed, that a span of its folded text covers."""
    return question[origin[span.start]:origin[span.stop - 1] + 1]


def _short(span: _Span) -> bool:
    """Whether a span is a sound-alike too short for the gates to read (two characters)."""
    return span.how == _SOUND and span.stop - span.start < GATED_SOUND


def _overlap(span: _Span, other: _Span) -> bool:
    return other.start < span.stop and span.start < other.stop


def _inside(other: _Span, span: _Span) -> bool:
    return span.start <= other.start and other.stop <= span.stop


def _crosses(span: _Span, other: _Span) -> bool:
    """Whether `other` overlaps `span` without lying inside it."""
    return other.start < span.stop and span.start < other.stop and not _inside(other, span)


def _cuts_a_word(question: str, origin: list[int], span: _Span) -> bool:
    """Whether the span begins or ends inside a run of Latin letters and digits (und of Found)."""
    first, last = origin[span.start], origin[span.stop - 1]
    return first > 0 and _latin(question[first - 1]) and _latin(question[first]) or \
        last + 1 < len(question) and _latin(question[last]) and _latin(question[last + 1])


def _short_form(text: str, start: int, name: str) -> int | None:
    """Where a short form of the folded `name` that begins at `start` of the folded question ends:
    its first SHORT_PREFIX characters the name's, then as many of the question's as occur in the
    name in order, leaving some of the name's out between them (兰利号航母 of 兰利号航空母舰, 沙特阿伯
    of 沙特阿拉伯; not a name cut short: 达·芬奇的 is not 达·芬奇的恶魔); None where there is none."""
    at, stop, gap = SHORT_PREFIX, start + SHORT_PREFIX, False
    while stop < len(text) and (found := name.find(text[stop], at)) >= 0:
        gap, at, stop = gap or found > at, found + 1, stop + 1
    return stop if gap and stop - start < len(name) else None


def _near_enough(text: str, span: _Span, surface: str) -> bool:
    """Whether a span could be KB name `surface` typed otherwise: a spelling of it always; a
    sound-alike differing by at least one character and at most `_near_limit`; a short form
    leaving out no more than it keeps past the prefix."""
    typed, name = text[span.start:span.stop], fold(surface)
    if span.how == _SOUND:
        return 0 < differing(typed, name) <= _near_limit(len(typed))
    return span.how != _SHORT or len(name) - len(typed) <= max(1, len(typed) - SHORT_PREFIX)


def _read_as(index: KBIndex, text: str, span: _Span, exact: list[_Span], chosen: list[_Span], surface: str) -> bool:
    """Whether a span the question does not spell as the KB does, near enough to KB name `surface`,
    is read as it.

    A spelling of it in the same script (width, case, spaces, marks) always is; one in another
    script where the KB holds as much of it as of any name the question spells outside it (not
    适用於 for the 适用于 of 「原根适用于哪些领域」). A sound-alike or a short form is evidence, not
    certainty: it must cross no name of about its length the question spells, and the KB must hold
    more of it than of any such name the question spells or was read to spell, outside the span or
    inside it away from what differs (not 十几号 for the 是几号 of 「巴彻的球衣号是几号」, not
    墨尔本市 for 「墨尔本是…」). A name of about its length: one character shorter or more, all of
    them for a short form."""
    typed, name, size = text[span.start:span.stop], fold(surface), index.surface_size(index.names.surface_id(surface))
    if span.how == _SPELLING:
        outside = [sid for other in exact if not _inside(other, span) for sid in other.sids]
        return same_script(typed, surface) or size >= max(map(index.surface_size, outside), default=0)
    if span.how == _SOUND:
        wrong = [span.start + i for i, (a, b) in enumerate(zip(typed, name)) if a != b]
    else:
        wrong = list(range(span.start + SHORT_PREFIX, span.stop))
    rivals = [other for other in exact + chosen
              if span.how == _SHORT or other.stop - other.start >= span.stop - span.start - 1]
    if any(_crosses(span, other) for other in rivals):
        return False
    known = [sid for other in rivals if not _inside(other, span) or not any(other.start <= i < other.stop for i in wrong)
             for sid in other.sids]
    return size > max(map(index.surface_size, known), default=0)


def _differing(typed: str, surface: str, how: int) -> int:
    """Characters by which a folded `typed` differs from a KB name: 0 for a spelling of it."""
    return {_SPELLING: 0, _SOUND: differing(typed, fold(surface)), _SHORT: len(fold(surface)) - len(typed)}[how]


def _near_limit(length: int) -> int:
    """How many characters a sound-alike of `length` folded characters may differ by."""
    return 1 if length < 8 else 2


def _typed(question: str, origin: list[int], start: int, stop: int, surface: str) -> tuple[int, int] | None:
    """The range of `question` that spells `surface` as it is at folded span [start, stop) (its
    own characters, or with the marks or spaces around them), or None where it is spelt otherwise."""
    first, last = origin[start], origin[stop - 1] + 1
    if question[first:last] == surface:
        return first, last
    wide_first, wide_last = first, last
    while wide_first > 0 and not fold(question[wide_first - 1]):
        wide_first -= 1
    while wide_last < len(question) and not fold(question[wide_last]):
        wide_last += 1
    for a in range(wide_first, first + 1):
        for b in range(last, wide_last + 1):
            if question[a:b] == surface:
                return a, b
    return None


def _rewritten(index: KBIndex, question: str, text: str, origin: list[int], chosen: list[_Span]) -> Reading:
    """The reading: the chosen spans that the question spells otherwise get the KB's spelling
    (of their subjects, `_closest`), the rest `model_text`."""
    parts: list[str] = []
    matches: list[Match] = []
    extra: list[int] = []
    at = 0
    for span in chosen:
        first, last = origin[span.start], origin[span.stop - 1] + 1
        if span.how == _EXACT:  # as typed, to the character: a name's own characters are never read otherwise
            first, last = span.typed
            parts.extend((_outside(question[at:first], parts), question[first:last]))
            at = last
            continue
        typed = question[first:last]
        best = _closest(index, typed, span.sids)
        if best[:1] in _OPENING and first > at and not fold(question[first - 1]):
            first -= 1  # the KB's name carries its marks: the typed ones go
        if best[-1:] in _CLOSING and last < len(question) and not fold(question[last]):
            last += 1
        parts.extend((_outside(question[at:first], parts), best))
        at = last
        matches.append(Match(typed, best, how_spelled(typed, best), _differing(text[span.start:span.stop], best, span.how)))
        extra.extend(sid for sid in span.sids if index.names.surface(sid) != best)
    parts.append(_outside(question[at:], parts))
    text = "".join(parts)
    mentions = index.names.mentions(text)
    if extra:
        mentions = sorted(set(mentions) | set(extra), key=lambda sid: (-len(index.names.surface(sid)), index.names.surface(sid)))
    return Reading(question, text, matches, mentions)


def _closest(index: KBIndex, typed: str, sids: list[int]) -> str:
    """Of the KB names `sids`, the one a span typed `typed` is read as: the closest to what was
    typed, where a name typed in one case (caps lock, an input method's lower case) is as close
    to the KB's in any case (BLINGBLING is blingbling before BLING BLING, a space away but ten
    letters in another case) and a name typed in mixed case (iPhone4) is read by its case too; of
    those, the one the KB holds most of (the name more likely meant)."""
    one_case = typed in (typed.lower(), typed.upper())

    def distance(sid: int) -> tuple[int, int, int, str]:
        surface = index.names.surface(sid)
        blind = Levenshtein.distance(typed.casefold(), surface.casefold()) if one_case else 0
        return blind, Levenshtein.distance(typed, surface), -index.surface_size(sid), surface

    return index.names.surface(min(sids, key=distance))


def _outside(piece: str, before: list[str]) -> str:
    """Characters outside every rewritten name as the model reads them: `model_text`, and
    whitespace kept only between two Latin letters or digits (what precedes is `before`'s end)."""
    kept: list[str] = []
    previous = "".join(before)[-1:]
    for i, char in enumerate(piece):
        if char.isspace():
            after = piece[i + 1:].lstrip()[:1]
            if not (_latin(previous) and _latin(after)) or (kept and kept[-1].isspace()):
                continue
        kept.append(char)
        previous = char
    return model_text("".join(kept))


def _latin(char: str) -> bool:
    return bool(char) and char.isascii() and char.isalnum()


# a question's near readings are decoded only where its answer as gated is less sure than this, by
# the near reading's kind (`Reading.near_kind`): a name the gates held back; a two-character one (never
# where the two characters are ordinary question wording: `Wording`); a name the question spells,
# read as one that sounds alike
NEAR_TRIED_BELOW = {"held": 0.8, "short": 0.8, "alike": 0.5}
# an answer from a near reading is as sure as the calibrator says only where the near name is the one
# meant, not where the name typed is one the KB lacks: its confidence is scaled down, so that a
# missing entity typed like a KB name is refused as often as were no near reading tried
NEAR_TRUST = 0.75

Answers = TypeVar("Answers")  # what a reading's decode gives: a candidate set
T = TypeVar("T")  # a training pair's target


def near_chosen(readings: list[Reading], answers: list[Answers], surest: Callable[[Answers], tuple[str, float]],
                decode: Callable[[list[Reading]], list[Answers]], margin: float
                ) -> tuple[list[Reading], list[Answers], list[int]]:
    """Each question's reading and its `answers` (the gated readings' decodes): the reading as
    gated, or one of its `near` readings (a name typed with a sound-alike character or short, read
    as the KB's) where the best answer that gives (`surest`: its subject's surface and confidence)
    is about the near name and surer by `margin` than the gated reading's (of several, the surest),
    so a near name is evidence the model and the calibrator weigh, not a rewrite taken on trust.
    Near readings are decoded (`decode`) only where the gated reading's best answer is less sure
    than `NEAR_TRIED_BELOW` says. Also which questions took a near reading."""
    readings, answers = list(readings), list(answers)
    sure = {i: surest(answers[i])[1] for i, r in enumerate(readings) if r.near}
    # a near reading cannot be surer than 1: none is tried where the margin leaves it no room
    tried = [(i, near) for i, confidence in sure.items() for near in readings[i].near
             if confidence < min(NEAR_TRIED_BELOW[near.near_kind], 1.0 - margin)]
    best = {i: sure[i] + margin for i in sure}
    taken: set[int] = set()
    for (i, near), other in zip(tried, decode([near for _, near in tried])):
        surface, confidence = surest(other)
        if surface == near.near_name and confidence > best[i]:
            readings[i], answers[i], best[i] = near, other, confidence
            taken.add(i)
    return readings, answers, sorted(taken)


def read_pairs(index: KBIndex, pairs: list[tuple[str, T]]) -> list[tuple[str, T]]:
    """(question, target) pairs with each question as the model reads it when answering
    (`kgqa.reading`: the KB's names in the KB's spelling), so it learns from what it will see."""
    return [(read(index, question).text, target) for question, target in pairs]
