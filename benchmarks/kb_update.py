"""Changed triples applied to a built index in place (`kgqa update`) beside the baseline, a full
rebuild of the changed KB (`kgqa index`): seconds and peak memory of each, and whether the two
indexes answer alike.

    python benchmarks/kb_update.py --checkpoint CK [--kb KB] [--index BUILT] [--changes 10000] [--rounds 1]
                                   [--questions dev.json] [--answer N] [--surfaces 2000] [--seed 0] [--work DIR]
                                   [--time-only]

BUILT is an index of KB already built (else it is built first); the update runs on a hard-linked
copy, so BUILT stays as it was; ROUNDS updates are applied in turn, each drawn from the KB the one before
left, and the last compared. The changes (seeded) are half removals — single triples, every
triple of some whole subjects, and the gold triple of some questions — and half additions:
objects and new predicates of existing subjects (some of them the questions' gold subjects), new
subjects and new homonyms. The changed KB is KB with the removed lines dropped and the added ones
appended, as a user would write it. Each command runs as a child process timed by
`/usr/bin/time` (wall seconds, peak resident memory). Then both indexes are compared: `contents`
of every changed surface, SURFACES others and the questions' gold subjects, every predicate the
changes touch and the questions' mentions; and the first N questions (all by default) answered
with each (top-5 answers, scores and confidences).
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import tempfile

from harness import arguments, CLI, missing, record  # first: it puts kgqa on sys.path

from kgqa.data import read_questions  # noqa: E402
from kgqa.kb.contents import contents  # noqa: E402
from kgqa.kb.index import KBIndex  # noqa: E402
from kgqa.kb.triples import join_subject, split_subject  # noqa: E402
from kgqa.model.tokenizer import load_tokenizer  # noqa: E402
from kgqa.source import Source, DecodeSettings  # noqa: E402


def timed(command: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout) of a child command."""
    found = subprocess.run(["/usr/bin/time", "-f", "%e %M"] + command, capture_output=True, text=True, check=True)
    seconds, kb = found.stderr.strip().splitlines()[-1].split()
    return float(seconds), int(kb) / 1024, found.stdout.strip()


def fields(line: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in line.rstrip("\n").split("\t"))


def make_changes(kb: str, questions: list, count: int, seed: int) -> tuple[list[str], set[str]]:
    """The change lines, and every subject surface they touch. Two passes over KB, no line kept
    but those picked."""
    rng = random.Random(seed)
    with open(kb, encoding="utf-8") as handle:
        total = sum(1 for _ in handle)
    golds = [q.gold() for q in questions if q.gold() is not None]
    rng.shuffle(golds)
    gold_removed = golds[: count // 50]  # their answer must change
    gold_added = golds[count // 50: count // 25]  # a predicate added to the subject asked about
    whole = count // 200  # subjects removed whole, their lines found in the second pass
    picked = set(rng.sample(range(total), count // 2))
    lines = []
    with open(kb, encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            if number in picked:
                lines.append(fields(line))
    rng.shuffle(lines)
    removed_whole = {subject for subject, _, _ in lines[:whole]}
    with open(kb, encoding="utf-8") as handle:
        changes = [("-",) + fields(line) for line in handle
                   if line.split("\t", 1)[0].strip() in removed_whole][:count // 10]
    changes += [("-", s, p, o) for s, p, o in gold_removed]
    single = [line for line in lines[whole:] if line[0] not in removed_whole]
    changes += [("-",) + line for line in single[: max(0, count // 2 - len(changes))]]
    predicates = [p for _, p, _ in lines]
    objects = [o for _, _, o in lines]
    subjects = [s for s, _, _ in lines[whole:]] + [s for s, _, _ in gold_added]
    for _ in range(count - len(changes)):
        roll = rng.random()
        if roll < 0.5:
            line = (rng.choice(subjects), rng.choice(predicates), rng.choice(objects))
        elif roll < 0.7:
            line = (rng.choice(subjects), f"新谓语{rng.randrange(count)}", rng.choice(objects))
        elif roll < 0.85:
            line = (f"新主语{rng.randrange(count)}", rng.choice(predicates), rng.choice(objects))
        else:  # a new homonym of an existing surface
            line = (join_subject(split_subject(rng.choice(subjects))[0], f"新身份{rng.randrange(9)}"),
                    rng.choice(predicates), rng.choice(objects))
        changes.append(("+",) + line)
    return ["\t".join(change) for change in changes], {split_subject(change[1])[0] for change in changes}


def write_changed_kb(kb: str, changes: list[str], path: str) -> None:
    """KB with removed triples' lines dropped and added triples appended (each once, where not there)."""
    removed = {fields(change[2:]) for change in changes if change[0] == "-"}
    added = list(dict.fromkeys(fields(change[2:]) for change in changes if change[0] == "+"))
    present = set(added)
    kept = set()
    with open(kb, encoding="utf-8") as source, open(path, "w", encoding="utf-8") as out:
        for line in source:
            triple = fields(line)
            if triple in removed:
                continue
            if triple in present:
                kept.add(triple)
            out.write(line if line.endswith("\n") else line + "\n")
        for triple in added:
            if triple not in kept:
                out.write("\t".join(triple) + "\n")


def answers(checkpoint: str, kb: str, index: str, questions: list[str]) -> list:
    qa = Source(checkpoint, kb, index, settings=DecodeSettings(top_k=5)).open()
    return [[c.as_json() for c in found] for found in qa.ask(questions)]


def main() -> None:
    parser = arguments(__doc__, seed=True)
    parser.add_argument("--index", help="An index of KB, built already.")
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=1, help="Updates applied one after another.")
    parser.add_argument("--answer", type=int, default=None, help="Questions answered with both (all).")
    parser.add_argument("--surfaces", type=int, default=2000, help="Unchanged surfaces compared.")
    parser.add_argument("--work", help="Directory for the copies (a temporary one, removed after).")
    parser.add_argument("--time-only", action="store_true", help="Only the updates: no rebuild, no comparison.")
    args = parser.parse_args()
    if missing(args.kb, args.questions):
        return
    work = args.work or tempfile.mkdtemp(prefix="kb_update.")
    os.makedirs(work, exist_ok=True)
    try:
        run(args, work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: str) -> None:
    """The updates, the rebuild and the comparison, in `work`."""
    questions = read_questions(args.questions)
    base = args.index or os.path.join(work, "base")
    if not args.index:
        seconds, mb, _ = timed(CLI + ["index", args.kb, "-o", base, "--checkpoint", args.checkpoint])
        print(f"base index built: {seconds:.1f} s, peak RSS {mb:.0f} MB")
    updated = os.path.join(work, "updated")
    shutil.rmtree(updated, ignore_errors=True)
    subprocess.run(["cp", "-al", base, updated], check=True)  # the base's files are never written: links suffice
    changed_kb, touched, changes, times = args.kb, set(), [], []
    for number in range(args.rounds):  # each round's changes drawn from the KB the one before left
        found, surfaces = make_changes(changed_kb, questions, args.changes, args.seed + number)
        changes += found
        touched |= surfaces
        path = os.path.join(work, f"changes{number}.tsv")
        with open(path, "w", encoding="utf-8") as out:
            out.write("\n".join(found) + "\n")
        write_changed_kb(changed_kb, found, os.path.join(work, f"changed{number}.tsv"))
        changed_kb = os.path.join(work, f"changed{number}.tsv")
        print(f"{len(found)} changes ({sum(c[0] == '-' for c in found)} removals), {len(surfaces)} subject surfaces")
        seconds, mb, said = timed(CLI + ["update", path, "--index", updated, "--checkpoint", args.checkpoint])
        times.append(seconds)
        print(f"kgqa update:          {seconds:6.1f} s, peak RSS {mb:6.0f} MB   ({said})")
    if args.rounds > 1:
        print(f"last update / first: {times[-1] / times[0]:.2f}; mean {sum(times) / len(times):.2f} s, "
              f"slowest {max(times):.2f} s (update {times.index(max(times)) + 1})")
    figures = {"changes": len(changes), "rounds": args.rounds, "update_s": times, "update_peak_mb": round(mb)}
    if args.time_only:
        record("kb_update", figures, f"{len(changes)} changes in {args.rounds} update(s): "
               f"mean {sum(times) / len(times):.2f} s, slowest {max(times):.2f} s")
        return
    rebuilt = os.path.join(work, "rebuilt")
    seconds_b, mb_b, said = timed(CLI + ["index", changed_kb, "-o", rebuilt, "--checkpoint", args.checkpoint])
    print(f"kgqa index (rebuild): {seconds_b:6.1f} s, peak RSS {mb_b:6.0f} MB   ({said})")
    print(f"update / rebuild: {seconds / seconds_b:.3f} of the time, {mb / mb_b:.3f} of the memory")

    tokenizer = load_tokenizer(os.path.join(args.checkpoint, "tokenizer"))
    a, b = KBIndex(updated, tokenizer), KBIndex(rebuilt, tokenizer)
    rng = random.Random(args.seed)
    others = set()
    for _ in range(args.surfaces):
        sid = rng.randrange(len(b.segments[0].surfaces))  # a rebuild is one segment
        others.add(b.names.surface(sid))
    golds = {split_subject(q.gold()[0])[0] for q in questions if q.gold() is not None}
    surfaces = sorted(touched | others | golds)
    predicates = {change.split("\t")[2].strip() for change in changes}
    for index in (a, b):
        for surface in touched:
            sid = index.names.surface_id(surface)
            predicates |= {p for _, p, _ in index.keys(sid)} if sid is not None else set()
    predicates = sorted(predicates)
    texts = [q.question for q in questions]
    same = contents(a, surfaces, predicates, texts, whole_trie=False) == contents(b, surfaces, predicates, texts,
                                                                                  whole_trie=False)
    print(f"contents of {len(surfaces)} surfaces, {len(predicates)} predicates, {len(texts)} questions' mentions: "
          f"{'the same' if same else 'DIFFERENT'}")
    asked = texts[: args.answer]
    first = answers(args.checkpoint, args.kb, updated, asked)
    second = answers(args.checkpoint, changed_kb, rebuilt, asked)
    differ = sum(x != y for x, y in zip(first, second))
    print(f"top-5 answers, scores and confidences of {len(asked)} questions: {len(asked) - differ} the same, {differ} differ")
    figures.update(rebuild_s=seconds_b, rebuild_peak_mb=round(mb_b), same_contents=same, questions=len(asked),
                   same_answers=len(asked) - differ)
    record("kb_update", figures, f"{len(changes)} changes: update {seconds:.1f} s, peak {mb:.0f} MB beside a rebuild's "
           f"{seconds_b:.1f} s, {mb_b:.0f} MB ({seconds / seconds_b:.3f} of the time); the same contents and the "
           f"same answers to {len(asked) - differ}/{len(asked)} questions as the rebuilt index")


if __name__ == "__main__":
    main()
