"""Refactors preserve answers: write the top-k answers and scores of the first N dev questions,
or compare them with a file written before the change.

    python benchmarks/same_answers.py --checkpoint CK -o before.json [--limit 200] [--top-k 5]
    python benchmarks/same_answers.py --checkpoint CK --compare before.json

Scores are compared to 1e-4 (as printed by `kgqa predict`), answers exactly.
"""
from __future__ import annotations

import json

import harness  # first: it puts kgqa on sys.path
from harness import arguments, missing


def main() -> None:
    parser = arguments(__doc__, limit=200)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("-o", "--output")
    parser.add_argument("--compare")
    args = parser.parse_args()
    if missing(args.kb, args.questions):
        return
    questions = [q.question for q in harness.questions(args)]
    qa = harness.pipeline(args, top_k=args.top_k)
    found = [[c.as_json() for c in candidates] for candidates in qa.ask(questions)]
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            json.dump(found, out, ensure_ascii=False)
        print(f"{args.output}: top-{args.top_k} of {len(found)} questions (reranker: {qa.reranking})")
    if args.compare:
        with open(args.compare, encoding="utf-8") as handle:
            before = json.load(handle)
        differ = [i for i, (a, b) in enumerate(zip(before, found))
                  if [c["answer"] for c in a] != [c["answer"] for c in b]
                  or any(abs(x["score"] - y["score"]) > 1e-4 for x, y in zip(a, b))]
        print(f"same top-{args.top_k} answers and scores: {len(found) - len(differ)}/{len(found)}"
              + (f"; first differing question: {differ[0]}" if differ else ""))


if __name__ == "__main__":
    main()
