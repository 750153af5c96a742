"""Question files in and out: KgCLUE JSON lines, validated with the file and line named."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Iterable, Iterator, NamedTuple

from kgqa.candidate import SEPARATOR, parse_answer
from kgqa.errors import KgqaError
from kgqa.files import atomic_file, readable_file
from kgqa.kb.triples import split_subject

MAX_QUESTION_CHARS = 512  # no KgCLUE question comes near this; a longer one is cut, wherever it is asked


class Target(NamedTuple):
    """What the decoder is taught to write for a question: the key (S, P, M), then the start of
    its object (`Tokenizer.encode_object`)."""

    surface: str
    predicate: str
    disambiguation: str
    obj: str


Pairs = list[tuple[str, Target]]  # (question, its gold target): what training and the fitted models learn from


@dataclass
class Question:
    id: object  # KgCLUE ids are ints, other files may use strings; echoed back as given
    question: str
    answer: str | None = None
    line: int = 0

    def gold(self) -> tuple[str, str, str] | None:
        """(S, P, O) of the gold answer, S with its disambiguation."""
        if self.answer is None or self.answer.count(SEPARATOR) != 2:
            return None
        return parse_answer(self.answer)


def is_text(value: str) -> bool:
    """False for a string JSON let through that is not text (a lone surrogate such as "\\ud800"):
    it cannot be encoded, so it would fail later, inside a shared decode or an output write."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def asked_question(text: str) -> str:
    """The question as kgqa answers it: stripped, and cut to MAX_QUESTION_CHARS (the model reads
    its first 128 tokens; finding the KB mentions in the rest would only cost time). The one rule
    for question files, `kgqa ask` and the service. Raises ValueError, saying why, for a question
    that is not text (it would fail later, inside a shared decode or an output write) or is empty."""
    if not is_text(text):
        raise ValueError("the question holds a lone surrogate escape (not text)")
    if not text.strip():
        raise ValueError("empty question")
    return text.strip()[:MAX_QUESTION_CHARS]


def json_lines(path: str) -> Iterator[tuple[int, object]]:
    """(line number, parsed value) of each non-blank line; a line that is not UTF-8 or not JSON
    stops the read with its number. Shared by question, gold and prediction files."""
    readable_file(path, "a JSON-lines file")
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise KgqaError("bytes that are not UTF-8", path, number) from None
            if not text.strip():
                continue
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as error:
                raise KgqaError(f"not JSON ({error.msg})", path, number) from None
            except RecursionError:
                raise KgqaError("JSON nested too deeply", path, number) from None


def read_questions(path: str, need_answers: bool = False) -> list[Question]:
    """Read a question file; any malformed line stops the read with its line number.

    Blank lines are skipped; a duplicate id is an error, because the answer file must hold
    exactly one line per id.
    """
    questions: list[Question] = []
    seen: set[str] = set()
    for number, record in json_lines(path):
        if not isinstance(record, dict):
            raise KgqaError("expected a JSON object", path, number)
        if "id" not in record:
            raise KgqaError('missing "id"', path, number)
        question = record.get("question")
        if not isinstance(question, str):
            raise KgqaError('missing or non-string "question"', path, number)
        try:
            question = asked_question(question)
        except ValueError as problem:
            raise KgqaError(str(problem), path, number) from None
        key = json.dumps(record["id"])
        if key in seen:
            raise KgqaError(f"duplicate id {record['id']!r}", path, number)
        seen.add(key)
        answer = record.get("answer")
        if need_answers:
            if not isinstance(answer, str) or answer.count(SEPARATOR) != 2:
                raise KgqaError('missing "answer" of the form "S ||| P ||| O"', path, number)
        questions.append(Question(record["id"], question, answer if isinstance(answer, str) else None, number))
    if not questions:
        raise KgqaError("no questions in the file", path)
    return questions


def read_predictions(path: str) -> list[Question]:
    """Prediction lines (`kgqa evaluate`): `id` and `answer`, maybe no `question`."""
    out = []
    for number, record in json_lines(path):
        try:
            out.append(Question(record["id"], record.get("question", ""), str(record.get("answer", "")), number))
        except (KeyError, TypeError, AttributeError):
            raise KgqaError('expected a JSON object with "id" and "answer"', path, number) from None
    return out


def training_pairs(questions: Iterable[Question]) -> Pairs:
    """(question, gold target) pairs of the questions with an answer."""
    pairs = []
    for q in questions:
        gold = q.gold()
        if gold is not None:
            surface, disambiguation = split_subject(gold[0])
            pairs.append((q.question, Target(surface, gold[1], disambiguation, gold[2])))
    return pairs


def hold_out_predicates(questions: list[Question], fraction: float, seed: int) -> tuple[list[Question], list[Question]]:
    """Split off the questions of a seeded `fraction` of the predicates.

    KgCLUE's dev shares no predicate with train, so checkpoint choice and the reranker are fitted
    on questions whose predicates the model never trained on: the same situation as dev's.
    """
    predicates = sorted({q.gold()[1] for q in questions if q.gold() is not None})
    held = set(random.Random(seed).sample(predicates, round(len(predicates) * fraction)))
    kept = [q for q in questions if q.gold() is None or q.gold()[1] not in held]
    return kept, [q for q in questions if q.gold() is not None and q.gold()[1] in held]


def hold_out_questions(questions: list[Question], fraction: float, seed: int) -> tuple[list[Question], list[Question]]:
    """Split off a seeded `fraction` of the questions themselves (their predicates stay in the rest):
    what the reranker learns of questions about predicates the model trained on."""
    held = set(random.Random(seed).sample(range(len(questions)), round(len(questions) * fraction)))
    return ([q for i, q in enumerate(questions) if i not in held],
            [q for i, q in enumerate(questions) if i in held])


def training_split(questions: list[Question], predicates: float, asked: float, seed: int
                   ) -> tuple[list[Question], list[Question], list[Question]]:
    """(trained on, held out by predicate, held out by question): a seeded share `predicates` of the
    predicates held out (`hold_out_predicates`), then a share `asked` of the rest's questions
    (`hold_out_questions`), only where some predicates are (without them nothing is fitted, and a
    question held out would be lost to training); training and refitting split alike from the
    checkpoint's settings."""
    kept, held = hold_out_predicates(questions, predicates, seed)
    kept, by_question = hold_out_questions(kept, asked if held else 0.0, seed)
    return kept, held, by_question


def write_answers(path: str, records: Iterable[dict]) -> int:
    """JSON lines, written whole or not at all."""
    count = 0
    with atomic_file(path) as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count
