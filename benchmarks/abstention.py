"""Does kgqa know when it doesn't know? The confidence of a checkpoint's answers, beside the raw
reranker score and the raw beam score, on dev over kb.tsv and over a copy of kb.tsv with facts and
entities taken out.

    python benchmarks/abstention.py --checkpoint CK [--kb KB] [--questions DEV] [--seed 0] [--out runs/abstention]
        [--svg docs/abstention.svg]

The copy (seeded): a tenth of dev's gold subjects removed with all their triples (their questions
are "missing entity"; apart, as "entity by a homonym", where another entity of its name keeps the
asked predicate: the question names the name alone, so the KB still answers it), then half of the
remaining questions' gold keys (S, P) removed with all their objects ("missing fact"; counted also
apart where the subject keeps no near synonym of the removed predicate, `near_synonym`, and no other
entity of its name keeps the predicate itself: a reader would answer the others with it, as the
question names the name alone); every other question is answerable. Printed, for each signal:
expected calibration error on answerable dev questions (15 bins; the reranker's reading is its
softmax share of the top object, the beam's the exp of its mean token log-probability), accuracy at
80% and 90% coverage of dev over kb.tsv, AUROC of its right vs wrong answers, AUROC of answerable
vs unanswerable over the copy, the
risk-coverage curve's area (AURC) over the copy (an answered unanswerable question is wrong), and
at the threshold that still answers 90% of the copy's answerable questions, the share of
missing-fact and missing-entity questions below it, and of the missing-entity questions typed
with one character of the entity's name replaced by a homophone (`variants.py`'s typo: the KB may
hold a name that sounds alike, which must not be answered with confidence either). Then, at the
checkpoint's own refusal threshold (what `kgqa ask` and `kgqa serve` refuse below), the share of dev
answered and right, and of the copy's missing facts and entities refused. A reliability table and,
with --svg, the risk-coverage curves as an SVG.
"""
from __future__ import annotations

import os
import random

import numpy as np

import harness  # first: it puts kgqa on sys.path
from harness import arguments, missing, record

from kgqa.kb.triples import join_subject, read_kb, split_subject  # noqa: E402
from kgqa.spelling import normalize  # noqa: E402
from kgqa.pipeline import KGQA  # noqa: E402
from kgqa.source import Source  # noqa: E402
from kgqa.rank.synonyms import synonym_covered  # noqa: E402
from kgqa.rank.confidence import SIGNAL_NAMES  # noqa: E402
from kgqa.spelling import Homophones  # noqa: E402

SIGNALS = ("confidence", "reranker", "beam")
BINS = 15


def near_synonym(removed: str, gold_object: str, predicate: str, obj: str) -> bool:
    """Whether a reader who sees only a subject's facts would answer a question about its `removed`
    predicate with its fact (`predicate`, `obj`): it holds the gold object, or each predicate says
    at least three quarters of the other as itself or in Cilin synonyms (出生日期 / 出生时间; not
    出生日期 / 出生地)."""
    return normalize(obj) == normalize(gold_object) or (
        synonym_covered(removed, predicate) >= 0.75 and synonym_covered(predicate, removed) >= 0.75)


def kb_copy(kb: str, golds: list[tuple[str, str, str]], seed: int, path: str) -> list[str]:
    """Write the copy of `kb` without the chosen entities and facts; each question's kind: a missing
    entity's or fact's "... by a homonym" where another entity of its subject's name (the question
    names the name alone) keeps the asked predicate, else "entity", else a missing fact's "fact
    with a synonym" where its subject keeps a near synonym of it (`near_synonym`), else "fact"."""
    rng = random.Random(seed)
    subjects = sorted({s for s, _, _ in golds})
    gone_entities = set(rng.sample(subjects, round(len(subjects) / 10)))
    rest = sorted({(s, p) for s, p, _ in golds if s not in gone_entities})
    gone_facts = set(rng.sample(rest, len(rest) // 2))
    kept: dict[str, list[tuple[str, str]]] = {s: [] for s, _ in gone_facts}  # what each such subject keeps
    # the (predicate, entity) pairs kept under each removed entity's or fact's subject's name
    named: dict[str, set[tuple[str, str]]] = {split_subject(s)[0]: set() for s in
                                              [*gone_entities, *(s for s, _ in gone_facts)]}
    with open(path, "w", encoding="utf-8") as out:
        for t in read_kb(kb):
            subject = join_subject(t.surface, t.disambiguation)
            if subject not in gone_entities and (subject, t.predicate) not in gone_facts:
                out.write(f"{subject}\t{t.predicate}\t{t.obj}\n")
                if subject in kept:
                    kept[subject].append((t.predicate, t.obj))
                if t.surface in named:
                    named[t.surface].add((t.predicate, subject))

    def by_homonym(subject: str, predicate: str) -> bool:
        return any(q == predicate and other != subject for q, other in named[split_subject(subject)[0]])

    return [("entity by a homonym" if by_homonym(s, p) else "entity") if s in gone_entities
            else "answerable" if (s, p) not in gone_facts
            else "fact by a homonym" if by_homonym(s, p)
            else "fact with a synonym" if any(near_synonym(p, o, *fact) for fact in kept[s]) else "fact"
            for s, p, o in golds]


def readings(qa: KGQA, questions: list[str], golds: list[tuple[str, str, str]]) -> dict[str, np.ndarray]:
    """Per question: whether the answer's object is the gold one, each signal of the answer, and
    the text of the reading it was answered from."""
    right, found, texts = [], {name: [] for name in SIGNALS}, []
    size = qa.settings.batch_size
    share = SIGNAL_NAMES.index("log_object_share")
    for start in range(0, len(questions), size):
        batch = questions[start:start + size]
        for candidates, gold in zip(qa.candidate_sets(batch), golds[start:start + size]):
            texts.append(candidates.question)
            if not candidates.keys:
                right.append(False)
                for name in SIGNALS:
                    found[name].append(-np.inf)
                continue
            ranked = qa.fitted.rank(candidates, confident=1)  # as `kgqa ask` ranks them
            top = candidates.facts[ranked.order[0]]
            right.append(normalize(top.objects[0]) == normalize(gold[2]))
            found["confidence"].append(float(ranked.confidence[0]))
            found["reranker"].append(float(np.exp(ranked.signals[0, share])))
            found["beam"].append(float(np.exp(candidates.beam[0].score)) if candidates.beam else 0.0)
    return {"right": np.array(right), "read": np.array(texts),
            **{name: np.array(values) for name, values in found.items()}}


def ece(probability: np.ndarray, right: np.ndarray) -> tuple[float, list[tuple[float, float, float, int]]]:
    """Expected calibration error over equal-width bins, and (low, mean probability, accuracy, n) per bin."""
    table, total = [], 0.0
    edges = np.linspace(0, 1, BINS + 1)
    for k in range(BINS):
        inside = (probability >= edges[k]) & ((probability < edges[k + 1]) | (k == BINS - 1))
        if inside.any():
            gap = abs(probability[inside].mean() - right[inside].mean())
            total += gap * inside.sum() / len(probability)
            table.append((edges[k], probability[inside].mean(), right[inside].mean(), int(inside.sum())))
    return float(total), table


def accuracy_at(signal: np.ndarray, right: np.ndarray, coverage: float) -> float:
    order = np.argsort(-signal, kind="stable")
    kept = order[: max(1, round(coverage * len(order)))]
    return float(right[kept].mean())


def auroc(signal: np.ndarray, positive: np.ndarray) -> float:
    """The probability a positive outscores a negative (ties half)."""
    pos, neg = signal[positive], signal[~positive]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


def risk_coverage(signal: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-signal, kind="stable")
    answered = np.arange(1, len(order) + 1)
    return answered / len(order), 1 - np.cumsum(right[order]) / answered


def svg(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str) -> None:
    """The risk-coverage curves, coverage across, risk up."""
    width, height, pad = 520, 340, 50
    colours = {"confidence": "#c0392b", "reranker": "#2471a3", "beam": "#7d8c8d"}
    top = max(risk.max() for _, risk in curves.values())
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="12"><rect width="100%" height="100%" fill="white"/>',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - 20}" y2="{height - pad}" stroke="black"/>',
             f'<line x1="{pad}" y1="20" x2="{pad}" y2="{height - pad}" stroke="black"/>',
             f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">coverage (share of questions answered)</text>',
             f'<text x="14" y="{height / 2}" transform="rotate(-90 14 {height / 2})" text-anchor="middle">'
             f'risk (share of answers wrong)</text>']
    for tick in range(0, 11, 2):
        x = pad + (width - pad - 20) * tick / 10
        parts.append(f'<text x="{x}" y="{height - pad + 16}" text-anchor="middle">{tick / 10:.1f}</text>')
        y = height - pad - (height - pad - 20) * tick / 10
        parts.append(f'<text x="{pad - 6}" y="{y + 4}" text-anchor="end">{top * tick / 10:.2f}</text>')
    for row, (name, (coverage, risk)) in enumerate(curves.items()):
        points = " ".join(f"{pad + (width - pad - 20) * c:.1f},{height - pad - (height - pad - 20) * r / top:.1f}"
                          for c, r in zip(coverage[::4], risk[::4]))
        parts.append(f'<polyline fill="none" stroke="{colours[name]}" stroke-width="2" points="{points}"/>')
        parts.append(f'<text x="{pad + 12}" y="{34 + 16 * row}" fill="{colours[name]}">{name}</text>')
    with open(path, "w", encoding="utf-8") as out:
        out.write("\n".join(parts + ["</svg>"]) + "\n")


def main() -> None:
    parser = arguments(__doc__, seed=True)
    parser.add_argument("--out", default="runs/abstention")
    parser.add_argument("--svg")
    args = parser.parse_args()
    if missing(args.kb, args.questions):
        return
    dev = harness.questions(args, need_answers=True)
    questions, golds = [q.question for q in dev], [q.gold() for q in dev]
    os.makedirs(args.out, exist_ok=True)
    copy = os.path.join(args.out, f"kb-missing-seed{args.seed}.tsv")
    kinds = np.array(kb_copy(args.kb, golds, args.seed, copy))
    any_fact = np.isin(kinds, ("fact", "fact with a synonym", "fact by a homonym"))  # every missing fact
    any_entity = np.isin(kinds, ("entity", "entity by a homonym"))  # every missing entity
    print(f"{len(dev)} dev questions; over the copy: {(kinds == 'answerable').sum()} answerable, "
          f"{any_fact.sum()} missing fact "
          f"({(kinds == 'fact by a homonym').sum()} whose name another entity of it holds, "
          f"{(kinds == 'fact with a synonym').sum()} of the rest whose subject keeps a near synonym of it), "
          f"{any_entity.sum()} missing entity "
          f"({(kinds == 'entity by a homonym').sum()} whose name another entity holds with the predicate asked)")
    qa = Source(args.checkpoint, args.kb).open(progress=True)
    if qa.fitted.reranker is None or qa.fitted.calibrator is None:
        raise SystemExit(f"{args.checkpoint} has no reranker or no confidence calibrator: run kgqa fit-reranker")
    full = readings(qa, questions, golds)
    qa_copy = Source(args.checkpoint, copy).open(progress=True)
    cut = readings(qa_copy, questions, golds)
    answerable = kinds == "answerable"
    right_cut = cut["right"] & answerable
    homophones, rng = Homophones(questions), random.Random(args.seed)
    # a homophone typed in the name: no entity of the KB is named so, homonyms of the name or not
    typos = [(typed, gold) for q, gold, kind in zip(questions, golds, kinds) if kind.startswith("entity")
             and (typed := homophones.typo(q, split_subject(gold[0])[0], rng))]
    typed = readings(qa_copy, [q for q, _ in typos], [gold for _, gold in typos])
    respelled = sum(any(m.differing for m in next(n for n in [r, *r.near] if n.text == text).matches)
                    for r, text in zip(qa_copy.read([q for q, _ in typos]), typed["read"]))
    print(f"{len(typos)} missing-entity questions typed with a homophone; {respelled} of them read as another "
          "KB name that sounds alike (as gated or from a near reading)")
    missing_entity = np.flatnonzero(any_entity).tolist()
    near_read = sum(r.text != cut["read"][i] for i, r in zip(missing_entity, qa_copy.read([questions[i] for i in missing_entity])))
    print(f"{len(missing_entity)} missing-entity questions as written; {near_read} of them answered from a near reading")
    print(f"\ndev over kb.tsv: {100 * full['right'].mean():.1f}% of answers right\n")
    print("| signal | ECE (answerable dev) | accuracy at 80% / 90% coverage | AUROC right vs wrong (dev) | "
          "AUROC answerable vs not (copy) | AURC (copy) | below the 90%-of-answerable threshold: missing fact "
          "(its subject keeping no near synonym) / missing entity (its name held by no other entity with the "
          "predicate asked) / missing entity typed with a homophone |")
    print("|---|---|---|---|---|---|---|")
    curves, figures = {}, {}
    for name in SIGNALS:
        error, _ = ece(full[name], full["right"])
        threshold = np.quantile(cut[name][answerable], 0.10)
        below = {kind: float((cut[name][kinds == kind] < threshold).mean())
                 for kind in ("fact", "fact with a synonym", "entity")}
        below["any fact"] = float((cut[name][any_fact] < threshold).mean())
        below["any entity"] = float((cut[name][any_entity] < threshold).mean())
        below["entity typo"] = float((typed[name] < threshold).mean()) if typos else float("nan")
        curves[name] = risk_coverage(cut[name], right_cut)
        figures[name] = {"ece": error, "accuracy_at_80": accuracy_at(full[name], full["right"], 0.8),
                         "auroc_right": auroc(full[name], full["right"]), "aurc_copy": float(curves[name][1].mean()),
                         "missing_fact_refused": below["any fact"], "missing_fact_no_synonym_refused": below["fact"],
                         "missing_entity_refused": below["any entity"], "missing_entity_no_homonym_refused": below["entity"],
                         "missing_entity_typo_refused": below["entity typo"]}
        print(f"| {name} | {error:.3f} | {100 * accuracy_at(full[name], full['right'], 0.8):.1f}% / "
              f"{100 * accuracy_at(full[name], full['right'], 0.9):.1f}% | {auroc(full[name], full['right']):.3f} | "
              f"{auroc(cut[name], answerable):.3f} | "
              f"{curves[name][1].mean():.3f} | {100 * below['any fact']:.1f}% ({100 * below['fact']:.1f}%) / "
              f"{100 * below['any entity']:.1f}% ({100 * below['entity']:.1f}%) / "
              f"{100 * below['entity typo']:.1f}% |")
    refuse = qa.fitted.calibrator.refuse_below  # what `kgqa ask` and `kgqa serve` refuse below by default
    answered = full["confidence"] >= refuse
    at_default = {"refuse_below": refuse, "dev_answered": float(answered.mean()),
                  "dev_answered_right": float(full["right"][answered].mean()) if answered.any() else float("nan"),
                  **{f"{kind.replace(' ', '_')}_refused_at_default": float((cut["confidence"][kinds == kind] < refuse).mean())
                     for kind in ("fact", "entity")}}
    print(f"\nat the checkpoint's refusal threshold ({refuse:.3f}, the default of ask and serve): dev over kb.tsv "
          f"{100 * at_default['dev_answered']:.1f}% answered, {100 * at_default['dev_answered_right']:.1f}% of them right; "
          f"over the copy {100 * at_default['fact_refused_at_default']:.1f}% of missing facts (subject keeping no near "
          f"synonym) and {100 * at_default['entity_refused_at_default']:.1f}% of missing entities (name held by no "
          "other entity with the predicate) refused")
    print("\nreliability of the confidence on dev over kb.tsv (bin from, mean confidence, accuracy, questions):")
    for low, mean, accuracy, n in ece(full["confidence"], full["right"])[1]:
        print(f"| {low:.2f} | {mean:.3f} | {accuracy:.3f} | {n} |")
    if args.svg:
        svg(curves, args.svg)
        print(f"\n{args.svg}: the risk-coverage curves over the copy")
    mine = figures["confidence"]
    record("abstention", {"right": float(full["right"].mean()), "typos": len(typos), "typos_respelled": respelled,
                          **figures, "at_default": at_default},
           f"confidence: ECE {mine['ece']:.3f}, {100 * mine['accuracy_at_80']:.1f}% right at 80% coverage, "
           f"{100 * mine['missing_fact_refused']:.1f}% of missing facts ({100 * mine['missing_fact_no_synonym_refused']:.1f}% "
           f"of those whose subject keeps no near synonym) and {100 * mine['missing_entity_refused']:.1f}% "
           f"of missing entities ({100 * mine['missing_entity_no_homonym_refused']:.1f}% of those whose name no other "
           f"entity holds with the predicate asked) refused ({100 * mine['missing_entity_typo_refused']:.1f}% typed "
           f"with a homophone; "
           f"threshold answering 90% of the answerable)")


if __name__ == "__main__":
    main()
