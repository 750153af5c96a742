"""Which reranker features carry over to unseen predicates: held-out 2-fold cross-validation of the
reranker over feature sets, the measure every feature is kept or dropped by (never dev).

    python benchmarks/reranker_cv.py --checkpoint CK [--kb KB] [--train TRAIN] [--questions DEV]
        [--without kind_fit,kind_share --without named,named_share,named_per_character,best_named ...]

The checkpoint's held-out questions (its training's share and seed) are answered once with the
checkpoint's answer kinds and naming weights; the reranker is then fitted on the questions of one
half of their predicates and judged on the other's (folds by a hash of the predicate, as the
penalty's choice does), for each weight penalty the fit chooses from, for all the features and for
each `--without` list. Prints each set's share of held-out questions whose gold key it ranks first
(at its best penalty), and, only to show, not to choose by, the same on dev with the reranker
fitted on all held-out questions.
"""
from __future__ import annotations

import os

import numpy as np

from harness import arguments, DATA, missing  # first: it puts kgqa on sys.path

from kgqa.data import hold_out_predicates, read_questions  # noqa: E402
from kgqa.model.checkpoint_settings import read_settings  # noqa: E402
from kgqa.source import Source  # noqa: E402
from kgqa.rank.features import FEATURE_NAMES, CandidateSet  # noqa: E402
from kgqa.rank.reranker import L2_GRID, Reranker, cross_validated  # noqa: E402
from kgqa.refit import held_out_candidates  # noqa: E402


def examples(found: list[CandidateSet], golds: list[tuple[str, str, str]], columns: list[int]
             ) -> tuple[list[tuple[np.ndarray, int]], list[str]]:
    """(features in `columns`, gold position) of the questions whose gold key is a candidate, and their predicates."""
    kept = [(f.features[:, columns], f.position(s, p), p) for f, (s, p, _) in zip(found, golds) if f.keys]
    kept = [(x, k, p) for x, k, p in kept if k is not None]
    return [(x, k) for x, k, _ in kept], [p for _, _, p in kept]


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--train", default=os.path.join(DATA, "train.json"))
    parser.add_argument("--without", action="append", default=[], help="comma-separated features left out")
    args = parser.parse_args()
    if missing(args.kb, args.train, args.questions):
        return
    saved = read_settings(args.checkpoint).get("train", {})
    _, held = hold_out_predicates(read_questions(args.train, need_answers=True), saved["holdout"], saved["seed"])
    dev = read_questions(args.questions, need_answers=True)
    qa = Source(args.checkpoint, args.kb, device="cpu").open()
    found, dev_found = held_out_candidates(qa, [q.question for q in held]), held_out_candidates(qa, [q.question for q in dev])
    golds, dev_golds = [q.gold() for q in held], [q.gold() for q in dev]
    print(f"{len(held)} held-out questions, {len(dev)} dev; S+P ranked first:\n")
    print("| features | held-out 2-fold CV | by penalty " + " / ".join(f"{l2:g}" for l2 in L2_GRID) + " | dev (not used) |")
    print("|---|---|---|---|")
    for without in [""] + args.without:
        dropped = [name for name in without.split(",") if name]
        unknown = set(dropped) - set(FEATURE_NAMES)
        if unknown:
            raise SystemExit(f"no such feature: {', '.join(sorted(unknown))}")
        names = [name for name in FEATURE_NAMES if name not in dropped]
        columns = [FEATURE_NAMES.index(name) for name in names]
        pairs, predicates = examples(found, golds, columns)
        right = [cross_validated(pairs, predicates, l2) for l2 in L2_GRID]
        best = int(np.argmax(right))
        fitted = Reranker.fit(pairs, L2_GRID[best])
        dev_right = sum(int(f.keys != [] and f.position(s, p) is not None
                            and int(np.argmax(fitted.scores(f.features[:, columns]))) == f.position(s, p))
                        for f, (s, p, _) in zip(dev_found, dev_golds))
        label = f"all {len(FEATURE_NAMES)}" + (f" without {', '.join(dropped)}" if dropped else "")
        print(f"| {label} | {100 * right[best] / len(held):.2f} | "
              + " / ".join(f"{100 * r / len(held):.2f}" for r in right) + f" | {100 * dev_right / len(dev):.2f} |")


if __name__ == "__main__":
    main()
