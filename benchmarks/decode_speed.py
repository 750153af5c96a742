"""Decoding speed at 4 beams: unconstrained `generate`, the trie-constrained beam, and the full
default pipeline (beam + reranker), on the same model and questions in one run, with the share
of the constrained decode spent in constraint logic.

    python benchmarks/decode_speed.py --checkpoint CKPT [--kb KB] [--questions DEV] [--limit 512]

Constraint logic is timed where it runs: the mention scan (`KBIndex.mentions`), the subject tries
built per batch (`TrieWalker.__init__`), and the `TrieConstraint` and `Lookahead` logits processors; mapping
finished beams back to KB keys (not timed: one memoised lookup per returned beam).
"""
from __future__ import annotations

import time
from dataclasses import replace

import torch

import harness  # first: it puts kgqa on sys.path
from harness import arguments, CALLS, missing, SPENT, timing

from kgqa.decode import processors  # noqa: E402
from kgqa.model.checkpoint import load_checkpoint  # noqa: E402
from kgqa.kb.index import KBIndex  # noqa: E402
from kgqa.kb.build import ensure_index  # noqa: E402
from kgqa.model.seq2seq import encode_questions, extra_inputs  # noqa: E402
from kgqa.pipeline import KGQA, DecodeSettings  # noqa: E402
from kgqa.rank.fitted import Fitted  # noqa: E402

def main() -> None:
    parser = arguments(__doc__, limit=512)
    args = parser.parse_args()
    if missing(args.questions, args.kb):
        return
    model, tokenizer, _ = load_checkpoint(args.checkpoint)
    index = ensure_index(args.kb, tokenizer)
    questions = [q.question for q in harness.questions(args)]
    settings = DecodeSettings()
    size = settings.batch_size
    batches = [questions[i:i + size] for i in range(0, len(questions), size)]
    print(f"{len(questions)} questions, batches of {size}, {settings.beams} beams, "
          f"{torch.get_num_threads()} threads, checkpoint {args.checkpoint}\n")

    def unconstrained(batch: list[str], steps: int) -> float:
        """Seconds for plain beam search forced to run the same number of steps."""
        input_ids, attention = encode_questions(tokenizer, batch, settings.max_question_tokens)
        start = time.perf_counter()
        with torch.no_grad():
            model.generate(input_ids=input_ids, attention_mask=attention,
                           num_beams=settings.beams, min_new_tokens=steps, max_new_tokens=steps, do_sample=False,
                           pad_token_id=tokenizer.pad_id, eos_token_id=tokenizer.eos_id,
                           **extra_inputs(model, input_ids))
        return time.perf_counter() - start

    plain = KGQA(model, tokenizer, index, replace(settings, rerank=False))
    constrained = free = 0.0
    steps = 0
    with timing(KBIndex, "mentions", "mention scan"), \
            timing(processors.TrieWalker, "__init__", "subject tries"), \
            timing(processors.TrieConstraint, "__call__", "TrieConstraint"), \
            timing(processors.Lookahead, "__call__", "Lookahead"):
        for batch in batches:
            calls = CALLS["TrieConstraint"]
            started = time.perf_counter()
            plain.ask(batch)
            constrained += time.perf_counter() - started
            batch_steps = CALLS["TrieConstraint"] - calls
            steps += batch_steps
            free += unconstrained(batch, batch_steps)
    logic = sum(SPENT.values())

    fitted = Fitted.load(args.checkpoint)  # the default pipeline: every model the checkpoint fitted
    full = None
    if fitted.reranker is not None:
        started = time.perf_counter()
        KGQA(model, tokenizer, index, settings, fitted).ask(questions)
        full = time.perf_counter() - started

    n = len(questions)
    print("| decoding | questions/s | s per 100 questions |")
    print("|---|---|---|")
    print(f"| unconstrained `generate`, same steps per batch ({steps} in all) | "
          f"{n / free:.1f} | {100 * free / n:.2f} |")
    print(f"| trie-constrained beam + look-ahead | {n / constrained:.1f} | {100 * constrained / n:.2f} |")
    if full is not None:
        print(f"| default pipeline (beam + reranker) | {n / full:.1f} | {100 * full / n:.2f} |")
    print(f"\nconstraint logic: {logic:.2f} s of {constrained:.2f} s constrained decode "
          f"= {100 * logic / constrained:.1f}%")
    for label in ("mention scan", "subject tries", "TrieConstraint", "Lookahead"):
        print(f"  {label}: {SPENT[label]:.2f} s")
    print(f"constrained vs unconstrained wall: {100 * (constrained - free) / constrained:+.1f}% of constrained")


if __name__ == "__main__":
    main()
