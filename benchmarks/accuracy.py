"""Dev accuracy ablation for a checkpoint: the peer, then each decoding lever switched on in
turn, with decode time per row, and the errors of the default decoding sorted into kinds.

    python benchmarks/accuracy.py --checkpoint checkpoints/kgclue/best [--questions DEV] [--limit N]

Reads ../shared/data/kgclue/ (skips cleanly without it). Prints a markdown table; records the
default decoding's and the peer's scores (benchmarks/results/accuracy.jsonl).
"""
from __future__ import annotations

import collections
import json
import os
import time
from dataclasses import replace

import harness  # first: it puts kgqa on sys.path
from harness import arguments, missing, record

from kgqa.candidate import parse_answer  # noqa: E402
from kgqa.model.checkpoint import load_checkpoint  # noqa: E402
from kgqa.kb.build import ensure_index  # noqa: E402
from kgqa.kb.triples import split_subject  # noqa: E402
from kgqa.metrics import score  # noqa: E402
from kgqa.model.seq2seq import pick_device  # noqa: E402
from kgqa.peer import peer_answer  # noqa: E402
from kgqa.pipeline import KGQA, DecodeSettings  # noqa: E402
from kgqa.rank.fitted import Fitted  # noqa: E402

COLUMNS = ("EM_S", "EM_P", "EM_O", "F1_S", "F1_P", "F1_O", "score")


def error_kind(index, question: str, predicted: str, gold: str) -> str:
    """Why one answer is wrong, in the order the decoder makes its choices."""
    p_s, p_p, p_o = parse_answer(predicted)
    g_s, g_p, g_o = parse_answer(gold)
    if p_o == g_o:
        return "correct"
    g_surface, g_m = split_subject(g_s)
    if g_surface not in {index.names.surface(sid) for sid in index.names.mentions(question)}:
        return "unreachable: gold subject not in the question"
    if not predicted:
        return "no answer"
    p_surface, _ = split_subject(p_s)
    if p_surface != g_surface:
        return "wrong mention"
    if p_p != g_p:
        return "wrong predicate"
    if p_s != g_s:
        shares = (g_p, split_subject(p_s)[1]) in {(p, m) for _, p, m in index.keys(index.names.surface_id(p_surface))}
        return "wrong homonym (shares the gold predicate)" if shares else "wrong homonym"
    return "same key, another object"


def main() -> None:
    parser = arguments(__doc__, limit=0, device="auto")
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--mention-lookahead", type=float, nargs="*", default=[1.0, 2.0])
    args = parser.parse_args()
    default = DecodeSettings()
    if default.mention_lookahead not in args.mention_lookahead:
        args.mention_lookahead.append(default.mention_lookahead)
    if missing(args.kb, args.questions):
        return
    dev = harness.questions(args, need_answers=True)
    golds = [q.answer for q in dev]
    model, tokenizer, _ = load_checkpoint(args.checkpoint)
    model.to(pick_device(args.device))
    index = ensure_index(args.kb, tokenizer)
    rows = []
    started = time.time()
    peer = [peer_answer(index, q.question) for q in dev]
    rows.append(("non-neural peer (longest mention + LCS predicate)", [c.answer() if c else "" for c in peer],
                 time.time() - started))
    beam_only = replace(default, beams=args.beams, rerank=False)
    configs = [("model, trie only", replace(beam_only, restrict_mentions=False, lookahead=0.0, mention_lookahead=0.0)),
               ("+ subject restricted to mentions", replace(beam_only, lookahead=0.0, mention_lookahead=0.0)),
               ("+ predicate look-ahead 1.0", replace(beam_only, lookahead=1.0, mention_lookahead=0.0))]
    configs += [(f"+ mention look-ahead {w}", replace(beam_only, mention_lookahead=w)) for w in args.mention_lookahead]
    default = replace(default, beams=args.beams)
    fitted = Fitted.load(args.checkpoint)  # what `kgqa predict` answers with
    reranker = fitted.reranker
    if reranker is not None:
        configs.append(("+ reranker (the default)", default))
    for name, settings in configs:
        qa = KGQA(model, tokenizer, index, settings, fitted if settings.rerank else None)
        started = time.time()
        found = qa.ask([q.question for q in dev])
        rows.append((name, [c[0].answer() if c else "" for c in found], time.time() - started))
    print(f"dev questions: {len(dev)}, beams: {args.beams}, checkpoint: {args.checkpoint}\n")
    print("| system | " + " | ".join(COLUMNS) + " | decode s |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    tables = {}
    for name, predictions, seconds in rows:
        tables[name] = table = score(predictions, golds)
        print(f"| {name} | " + " | ".join(f"{table[c]:.1f}" for c in COLUMNS) + f" | {seconds:.0f} |")
    chosen = rows[-1][1] if reranker is not None else next(
        predictions for name, predictions, _ in rows if name == f"+ mention look-ahead {default.mention_lookahead}")
    kinds = collections.Counter(error_kind(index, q.question, p, q.answer) for q, p in zip(dev, chosen))
    print(f"\nerrors of the default decoding (beams {args.beams}, predicate look-ahead {default.lookahead}, "
          f"mention look-ahead {default.mention_lookahead}, reranker {'on' if reranker else 'absent'}):\n")
    print("| kind | count |\n|---|---|")
    for kind, count in kinds.most_common():
        print(f"| {kind} | {count} |")
    print(json.dumps({"kinds": dict(kinds)}, ensure_ascii=False))
    default_row, peer_row = rows[-1][0], rows[0][0]
    record("accuracy", {"questions": len(dev), "default": tables[default_row], "peer": tables[peer_row],
                        "rows": {name: table["score"] for name, table in tables.items()}, "errors": dict(kinds)},
           f"{os.path.basename(args.questions)} score {tables[default_row]['score']:.2f} (EM_O "
           f"{tables[default_row]['EM_O']:.1f}) on {len(dev)} questions; the non-neural peer "
           f"{tables[peer_row]['score']:.2f}")


if __name__ == "__main__":
    main()
