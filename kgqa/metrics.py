"""KgCLUE's official metric: exact match and LCS-based F1 on S, P, O and the whole triple.

Strings are lower-cased and whitespace-folded; F1 is computed over characters (CJK characters
one by one, other runs split on whitespace) from their longest common substring, as in the
CLUE/CMRC scorer KgCLUE uses. score = (EM_O + F1_O) / 2, in percent.
"""
from __future__ import annotations

import re

from kgqa.candidate import parse_answer
from kgqa.text import longest_common_substring

_CJK_OR_PUNCT = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff\u3000-\u303f\uff00-\uffef]|[^\s\w]")


def normalize(text: str) -> str:
    return " ".join(text.lower().split())


def segments(text: str) -> list[str]:
    """CJK characters and punctuation one by one; runs of anything else as words."""
    out: list[str] = []
    word = ""
    for char in normalize(text):
        if _CJK_OR_PUNCT.match(char) or char == " ":
            if word:
                out.append(word)
                word = ""
            if char != " ":
                out.append(char)
        else:
            word += char
    if word:
        out.append(word)
    return out


def f1(prediction: str, gold: str) -> float:
    pred, ref = segments(prediction), segments(gold)
    common = longest_common_substring(pred, ref)
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact(prediction: str, gold: str) -> float:
    return float(normalize(prediction) == normalize(gold))


def score(predictions: list[str], golds: list[str]) -> dict[str, float]:
    """Metric table over paired answer strings `S ||| P ||| O`; a missing answer is ''."""
    if len(predictions) != len(golds):
        raise ValueError("predictions and gold answers differ in number")
    totals = {f"{kind}_{part}": 0.0 for kind in ("EM", "F1") for part in ("S", "P", "O", "SPO")}
    for prediction, gold in zip(predictions, golds):
        pred_parts, gold_parts = parse_answer(prediction), parse_answer(gold)
        for name, p, g in zip(("S", "P", "O"), pred_parts, gold_parts):
            totals[f"EM_{name}"] += exact(p, g)
            totals[f"F1_{name}"] += f1(p, g)
        totals["EM_SPO"] += float(all(exact(p, g) for p, g in zip(pred_parts, gold_parts)))
        totals["F1_SPO"] += f1("".join(pred_parts), "".join(gold_parts))
    n = max(len(golds), 1)
    table = {name: round(100 * value / n, 2) for name, value in totals.items()}
    table["score"] = round((table["EM_O"] + table["F1_O"]) / 2, 2)
    table["n"] = len(golds)
    return table
