"""KgCLUE's official metric (`baselines/evaluate_f1_em.py` of CLUEbenchmark/KgCLUE), to the digit:
exact match and F1 on S, P, O and on S + P + O concatenated ("All").

Strings are lower-cased and whitespace-folded; F1 = 2 · LCS / (len a + len b), LCS the longest
common *subsequence* of the two normalised strings, character by character (spaces included),
and 0 when both are empty. score = (EM_O + F1_O) / 2, in percent (the scorer's EMF1). Where the
scorer pairs lines by position and fails on an answer without two ` ||| `, this pairs by id and
reads a missing or malformed answer as empty parts.
"""
from __future__ import annotations

import json

from kgqa.data import read_predictions, read_questions
from kgqa.candidate import parse_answer
from kgqa.spelling import normalize
from kgqa.text import common_subsequence

FIELDS = tuple(f"{kind}_{part}" for kind in ("EM", "F1") for part in ("All", "S", "P", "O"))


def f1(prediction: str, gold: str) -> float:
    """The scorer's f1_sim over normalised strings."""
    a, b = normalize(prediction), normalize(gold)
    if not a and not b:
        return 0.0
    return 2.0 * common_subsequence(a, b) / (len(a) + len(b))


def exact(prediction: str, gold: str) -> float:
    return float(normalize(prediction) == normalize(gold))


def score(predictions: list[str], golds: list[str]) -> dict[str, float]:
    """Metric table over paired answer strings `S ||| P ||| O`; a missing answer is ''."""
    if len(predictions) != len(golds):
        raise ValueError("predictions and gold answers differ in number")
    totals = dict.fromkeys(FIELDS, 0.0)
    for prediction, gold in zip(predictions, golds):
        pred_parts = [normalize(part) for part in parse_answer(prediction)]
        gold_parts = [normalize(part) for part in parse_answer(gold)]
        for name, p, g in zip(("S", "P", "O"), pred_parts, gold_parts):
            totals[f"EM_{name}"] += float(p == g)
            totals[f"F1_{name}"] += f1(p, g)
        totals["EM_All"] += float(pred_parts == gold_parts)
        totals["F1_All"] += f1("".join(pred_parts), "".join(gold_parts))
    n = max(len(golds), 1)
    table = {name: round(100 * value / n, 3) for name, value in totals.items()}
    table["score"] = round(100 * (totals["EM_O"] + totals["F1_O"]) / 2 / n, 3)
    table["n"] = len(golds)
    return table


def score_files(predictions_path: str, gold_path: str) -> tuple[dict[str, float], list[tuple[object, object]]]:
    """`kgqa evaluate`: the metric table of a prediction file against a gold file, lines paired by
    id as JSON values (1, "1" and 1.0 differ, as to KgCLUE's scorer); a gold id with no prediction
    counts as wrong (`missing` in the table). Also (gold id, prediction id) for each missing gold
    id that a prediction's id equals as text, which a caller should warn about."""
    golds = read_questions(gold_path, need_answers=True)
    predictions = read_predictions(predictions_path)
    predicted = {json.dumps(q.id): q.answer or "" for q in predictions}
    table = score([predicted.get(json.dumps(q.id), "") for q in golds], [q.answer for q in golds])
    missing = [q.id for q in golds if json.dumps(q.id) not in predicted]
    table["missing"] = len(missing)
    as_text = {str(q.id): q.id for q in predictions}
    return table, [(g, as_text[str(g)]) for g in missing if str(g) in as_text]
