"""A synthetic KB of any size in KgCLUE's `S<TAB>P<TAB>O` format, with the shape of a reference KB.

    python benchmarks/make_kb.py -o /tmp/kb20m.tsv [--triples N] [--subjects N] [--predicates N]
                                 [--disambiguated 0.25] [--seed 0]

The real KgCLUE KB (20,559,652 triples, 3,121,457 subjects, 245,838 predicates) cannot be
downloaded here, so scale is proven on this one. Taken from the reference (by default
../shared/data/kgclue/kb.tsv): the distribution of triples per subject (rescaled to the asked
mean), how many homonyms share a surface, the
predicates' rank-frequency curve (a power law fitted to it, extended to the asked count), string
lengths and character frequencies of surfaces, predicates and disambiguations, and the objects
themselves (drawn from the reference's). The share of subjects with a disambiguation is the real
KB's, about a quarter (kb.tsv has 5%: it was cut around the QA questions' subjects). Seeded: the
same arguments give the same file.
"""
from __future__ import annotations

import argparse
import collections
import os
import time

import numpy as np

from harness import DATA, missing  # first: it puts kgqa on sys.path

from kgqa.files import atomic_file  # noqa: E402
from kgqa.kb.triples import read_kb  # noqa: E402

REFERENCE = os.path.join(DATA, "kb.tsv")
REAL = {"triples": 20_559_652, "subjects": 3_121_457, "predicates": 245_838}


class Strings:
    """Lengths and characters of one kind of reference string, to draw new ones alike."""

    def __init__(self, samples: list[str]) -> None:
        self.lengths = np.array([len(s) for s in samples])
        counts = collections.Counter("".join(samples))
        self.chars = np.array(list(counts))
        self.weights = np.array(list(counts.values()), dtype=np.float64)
        self.weights /= self.weights.sum()

    def draw(self, rng: np.random.Generator, count: int, avoid: set[str]) -> list[str]:
        """`count` new distinct strings, none in `avoid` (which grows with them)."""
        out: list[str] = []
        while len(out) < count:
            need = count - len(out)
            lengths = rng.choice(self.lengths, need)
            chars = rng.choice(self.chars, int(lengths.sum()), p=self.weights)
            ends = np.cumsum(lengths)
            for start, end in zip(ends - lengths, ends):
                text = "".join(chars[start:end])
                if text.strip() == text and text not in avoid:  # a name of spaces, or padded, is no KB name
                    avoid.add(text)
                    out.append(text)
        return out


def profile(path: str) -> dict:
    per_subject: collections.Counter = collections.Counter()
    predicates: collections.Counter = collections.Counter()
    variants: dict[str, set[str]] = collections.defaultdict(set)
    objects: list[str] = []
    for t in read_kb(path):
        per_subject[(t.surface, t.disambiguation)] += 1
        predicates[t.predicate] += 1
        variants[t.surface].add(t.disambiguation)
        objects.append(t.obj)
    with_m = [m for ms in variants.values() for m in ms if m]
    frequency = np.array(sorted(predicates.values(), reverse=True), dtype=np.float64)
    ranks = np.arange(1, len(frequency) + 1)
    slope = -np.polyfit(np.log(ranks), np.log(frequency), 1)[0]
    return {
        "per_subject": np.array(list(per_subject.values())),
        "m_share": len(with_m) / len(per_subject),
        "homonyms": np.array([len([m for m in ms if m]) for ms in variants.values() if any(ms)]),
        "zipf": float(slope),
        "predicates": [p for p, _ in predicates.most_common()],
        "surface": Strings(list(variants)),
        "predicate": Strings(list(predicates)),
        "disambiguation": Strings(with_m or ["无"]),
        "objects": objects,
    }


def generate(ref: dict, triples: int, subjects: int, n_predicates: int, disambiguated: float, seed: int):
    """Yield KB lines: `subjects` subjects, `triples` lines, predicates drawn from `n_predicates`."""
    rng = np.random.default_rng(seed)
    counts = rng.choice(ref["per_subject"], subjects).astype(np.float64)
    counts = np.maximum(1, np.round(counts * triples / counts.sum())).astype(np.int64)
    while counts.sum() != triples:  # rounding leaves a small remainder: spread it
        diff = int(triples - counts.sum())
        picks = rng.choice(subjects, min(abs(diff), subjects), replace=False)
        counts[picks] = np.maximum(1, counts[picks] + np.sign(diff))
    # subjects with a disambiguation come in homonym sets that share a surface
    n_with_m = int(round(subjects * disambiguated))
    drawn = rng.choice(ref["homonyms"], n_with_m)  # more sets than needed: cut where they cover n_with_m
    ends = np.cumsum(drawn)
    used = int(np.searchsorted(ends, n_with_m)) + 1
    set_sizes = [int(size) for size in drawn[:used]]
    if set_sizes:
        set_sizes[-1] -= int(ends[used - 1]) - n_with_m
    set_sizes = [size for size in set_sizes if size > 0]
    taken: set[str] = set()
    surfaces = ref["surface"].draw(rng, subjects - n_with_m + len(set_sizes), taken)
    plain, homonym_surfaces = surfaces[: subjects - n_with_m], surfaces[subjects - n_with_m:]
    m_pool = ref["disambiguation"].draw(rng, max(set_sizes, default=1) * 64, set())
    names = list(ref["predicates"][:n_predicates])
    names += ref["predicate"].draw(rng, n_predicates - len(names), set(names))
    weights = 1.0 / np.arange(1, n_predicates + 1) ** ref["zipf"]
    predicate_of = rng.choice(n_predicates, triples, p=weights / weights.sum())
    object_of = rng.integers(0, len(ref["objects"]), triples)
    subject_names = list(plain)
    for surface, size in zip(homonym_surfaces, set_sizes):
        for m in rng.choice(len(m_pool), size, replace=False):
            subject_names.append(f"{surface}（{m_pool[m]}）")
    order = rng.permutation(subjects)
    at = 0
    for k in order:
        subject = subject_names[k]
        for i in range(at, at + int(counts[k])):
            yield f"{subject}\t{names[predicate_of[i]]}\t{ref['objects'][object_of[i]]}\n"
        at += int(counts[k])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--reference", default=REFERENCE)
    parser.add_argument("--triples", type=int, default=REAL["triples"])
    parser.add_argument("--subjects", type=int, default=REAL["subjects"])
    parser.add_argument("--predicates", type=int, default=REAL["predicates"])
    parser.add_argument("--disambiguated", type=float, default=0.25, help="share of subjects with an M")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if missing(args.reference):
        return
    if not 0 < args.subjects <= args.triples:
        parser.error("need 0 < subjects <= triples")
    started = time.time()
    ref = profile(args.reference)
    print(f"reference {args.reference}: {len(ref['objects'])} triples, {len(ref['per_subject'])} subjects, "
          f"{len(ref['predicates'])} predicates, {100 * ref['m_share']:.1f}% of subjects disambiguated, "
          f"predicate frequency ~ rank^-{ref['zipf']:.2f}")
    written = 0
    with atomic_file(args.output) as out:
        lines = []
        for line in generate(ref, args.triples, args.subjects, args.predicates, args.disambiguated,
                                 args.seed):
            lines.append(line)
            if len(lines) == 100_000:
                out.write("".join(lines))
                written += len(lines)
                lines = []
        out.write("".join(lines))
        written += len(lines)
    size = os.path.getsize(args.output)
    print(f"{args.output}: {written} triples, {args.subjects} subjects, {args.predicates} predicates, "
          f"{size / 2**30:.2f} GiB, {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
