"""Questions as people type them: each question of a file also typed another way (traditional
characters, full-width letters and digits, spaces, Latin letters lower- or upper-cased, title
marks dropped, wrapped in chat, one character of the subject's name replaced by a homophone) and
answered as written and as typed, by this checkout and, beside it, by another (the code before).

    python benchmarks/variants.py --checkpoint CK [--questions DEV] [--limit N] [--seed 0]
        [--baseline-code DIR] [--baseline-cache DIR] [--baseline-checkpoint CK0]

How each variant is made (seeded; a question the variant leaves unchanged is not counted for it):
- traditional: OpenCC's simplified-to-traditional conversion of the whole question;
- full-width: every ASCII letter and digit as its full-width form (ＩＳＯ１４００１);
- spaces: a space after every 2–4 characters (drawn per gap);
- lower / upper: every ASCII letter lower- / upper-cased;
- no title marks: 《 and 》 dropped;
- chat: 「请问一下，」 before and 「谢谢」 after;
- homophone: one Chinese character of the gold subject's name, where the question spells it,
  replaced by another with the same toneless pinyin (the commonest such character in the file's
  questions, as a pinyin input method's wrong pick would be), counted apart for names of three
  characters or more and of two.
Each side answers every question in a fresh child process (`versus_child.py`), the questions in
batches of 32. Prints a table (share right = the object exactly right; the score is KgCLUE's) and
records it (benchmarks/results/variants.jsonl).
"""
from __future__ import annotations

import functools
import json
import random
import tempfile

import harness  # first: it puts kgqa on sys.path
from harness import arguments, missing, record, ROOT
from versus import baseline_commit, run

from kgqa.kb.triples import split_subject  # noqa: E402
from kgqa.metrics import score  # noqa: E402
from kgqa.spelling import Homophones  # noqa: E402
from kgqa.candidate import parse_answer  # noqa: E402


@functools.cache
def _to_traditional():
    import opencc

    return opencc.OpenCC("s2t")


def _traditional(question: str, rng: random.Random) -> str:
    return _to_traditional().convert(question)


def _full_width(question: str, rng: random.Random) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in question)


def _spaces(question: str, rng: random.Random) -> str:
    parts, at = [], 0
    while at < len(question):
        step = rng.randint(2, 4)
        parts.append(question[at:at + step])
        at += step
    return " ".join(parts)


def _lower(question: str, rng: random.Random) -> str:
    return "".join(c.lower() if c.isascii() else c for c in question)


def _upper(question: str, rng: random.Random) -> str:
    return "".join(c.upper() if c.isascii() else c for c in question)


def _no_marks(question: str, rng: random.Random) -> str:
    return question.replace("《", "").replace("》", "")


def _chat(question: str, rng: random.Random) -> str:
    return f"请问一下，{question}谢谢"


KINDS = {"traditional": _traditional, "full-width": _full_width, "spaces": _spaces, "lower": _lower,
         "upper": _upper, "no title marks": _no_marks, "chat": _chat}


def variants(questions: list, seed: int) -> dict[str, list[tuple[int, str]]]:
    """Per kind, (question's place, its variant) of every question the kind changes."""
    rng = random.Random(seed)
    made: dict[str, list[tuple[int, str]]] = {}
    for kind, vary in KINDS.items():
        made[kind] = [(i, typed) for i, q in enumerate(questions) if (typed := vary(q.question, rng)) != q.question]
    homophones = Homophones([q.question for q in questions])
    for kind, long_names in (("homophone in a name of 3+ characters", True), ("homophone in a 2-character name", False)):
        made[kind] = []
        for i, q in enumerate(questions):
            name = split_subject(parse_answer(q.answer)[0])[0]
            if (len(name) >= 3) == long_names and len(name) >= 2:
                typed = homophones.typo(q.question, name, rng)
                if typed:
                    made[kind].append((i, typed))
    return made


def main() -> None:
    parser = arguments(__doc__, limit=0, seed=True)
    parser.add_argument("--baseline-code", help="another checkout answering the same questions beside this one")
    parser.add_argument("--baseline-checkpoint", help="the checkpoint the baseline reads (default: --checkpoint)")
    parser.add_argument("--baseline-cache", help="KGQA_CACHE for the baseline (an older index format)")
    parser.add_argument("--cache", help="KGQA_CACHE for this checkout")
    args = parser.parse_args()
    if missing(args.kb, args.questions):
        return
    asked = harness.questions(args, need_answers=True)
    made = variants(asked, args.seed)
    texts = [q.question for q in asked] + [typed for pairs in made.values() for _, typed in pairs]
    sides = {"current": (ROOT, args.checkpoint, args.cache)}
    if args.baseline_code:
        sides["baseline"] = (args.baseline_code, args.baseline_checkpoint or args.checkpoint, args.baseline_cache)
    with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8") as handle:
        json.dump(texts, handle, ensure_ascii=False)
        handle.flush()
        answered = {side: run(code, checkpoint, cache, None, args.kb, handle.name, 32)["answers"]
                    for side, (code, checkpoint, cache) in sides.items()}
    golds = [q.answer for q in asked]
    figures: dict = {"questions": len(asked)}
    print(f"{len(asked)} questions of {args.questions}\n")
    print("| the question … | changed | " + " | ".join(f"{side}: right as written → as typed (score)"
                                                       for side in sides) + " |")
    print("|---|---|" + "---|" * len(sides))
    start = len(asked)
    for kind, pairs in made.items():
        places = [i for i, _ in pairs]
        typed_at, start = start, start + len(pairs)
        if not pairs:
            continue
        row = {"changed": len(pairs)}
        cells = []
        for side, answers in answered.items():
            written = score([answers[i] for i in places], [golds[i] for i in places])
            typed = score(answers[typed_at:typed_at + len(pairs)], [golds[i] for i in places])
            row[side] = {"written": written["EM_O"], "typed": typed["EM_O"],
                         "written_score": written["score"], "typed_score": typed["score"]}
            cells.append(f"{written['EM_O']:.1f} → **{typed['EM_O']:.1f}** ({written['score']:.1f} → "
                         f"{typed['score']:.1f})")
        figures[kind] = row
        print(f"| {kind} | {len(pairs)} | " + " | ".join(cells) + " |")
    for side, answers in answered.items():
        figures[f"{side}_all"] = score(answers[:len(asked)], golds)["score"]
    if args.baseline_code:
        figures["baseline_commit"] = baseline_commit(args.baseline_code)
        same = sum(a == b for a, b in zip(answered["current"][:len(asked)], answered["baseline"][:len(asked)]))
        figures["same_as_written"] = same
        print(f"\nas written: the same top answer from both sides for {same}/{len(asked)}")
    worst = min((row["current"]["typed"] - row["current"]["written"], kind) for kind, row in figures.items()
                if isinstance(row, dict) and "current" in row)
    record("variants", figures, f"{len(asked)} questions typed other ways: the largest fall as typed "
                                f"{worst[0]:+.1f} points ({worst[1]}); all as written: score {figures['current_all']:.2f}")


if __name__ == "__main__":
    main()
