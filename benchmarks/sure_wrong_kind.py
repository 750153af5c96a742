"""Sure answers of the wrong kind: answers given at a confidence of at least AT whose object is of
another kind than the question asks for (a job for 「哪所学校」), counted in a `kgqa predict` file
against its gold file.

    python benchmarks/sure_wrong_kind.py PRED GOLD [--at 0.5]

In the sample KB every predicate draws its objects from a list of its own (data/make_sample.py:
schools, jobs, places, dates, ...), so an answer from another predicate than the gold one is of
another kind; that is what is counted, with the questions listed.
"""
from __future__ import annotations

import argparse
import json

import harness  # noqa: F401  (first: it puts kgqa on sys.path)
from kgqa.candidate import parse_answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pred")
    parser.add_argument("gold")
    parser.add_argument("--at", type=float, default=0.5, help="Confidence from which an answer counts as sure.")
    args = parser.parse_args()
    with open(args.gold, encoding="utf-8") as handle:
        gold = {record["id"]: parse_answer(record["answer"]) for record in map(json.loads, handle)}
    with open(args.pred, encoding="utf-8") as handle:
        predictions = [json.loads(line) for line in handle]
    sure = [p for p in predictions if p.get("answer") and p.get("confidence", 0.0) >= args.at]
    wrong = [p for p in sure if parse_answer(p["answer"])[1] != gold[p["id"]][1]]
    print(f"{args.pred}: {len(predictions)} answers, {len(sure)} at confidence >= {args.at:g}, "
          f"{len(wrong)} of them of another kind than asked (another predicate than the gold one)")
    for p in wrong:
        print(f"  {p['confidence']:.2f}  {p['question']}  ->  {p['answer']}  (gold: {gold[p['id']][1]})")


if __name__ == "__main__":
    main()
