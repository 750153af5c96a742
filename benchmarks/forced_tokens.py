"""How many of the constrained beam's tokens the trie forces: the measure issue 23's forced-token
passes start from (a token the trie leaves no alternative to need not wait for its own decoder step).

    python benchmarks/forced_tokens.py --checkpoint CK [--kb KB] [--file DEV] [--questions 256] [--batch-size 32]

Answers the first N questions of the file with the default beam, counting at every decoder step,
after `TrieConstraint`, each beam row's allowed tokens: a row is *forced* when one token is allowed
and it is not a finished row repeating EOS; a step is forced for a question when all its
unfinished rows are. Prints the shares of (row, step) pairs and of (question, step) pairs forced.
"""
from __future__ import annotations

import argparse
import collections
import os
from dataclasses import replace

import torch

from shared_data import DATA, missing  # first: it puts kgqa on sys.path

from kgqa.data import read_questions  # noqa: E402
from kgqa.decode import processors  # noqa: E402
from kgqa.pipeline import KGQA  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--kb", default=os.path.join(DATA, "kb.tsv"))
    parser.add_argument("--file", default=os.path.join(DATA, "dev.json"))
    parser.add_argument("--questions", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    if missing(args.file, args.kb):
        return
    questions = [q.question for q in read_questions(args.file)][: args.questions]
    qa = KGQA.from_checkpoint(args.checkpoint, args.kb, device="cpu")
    qa.settings = replace(qa.settings, batch_size=args.batch_size)
    beams = qa.settings.beams
    counts: collections.Counter = collections.Counter()
    original = processors.TrieConstraint.__call__

    def counted(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        masked = original(self, input_ids, scores)
        allowed = torch.isfinite(masked).sum(-1)
        finished = [state is not None and state.trie is None for _, state in self.walker.row_states(input_ids, beams)]
        for question in range(len(finished) // beams):
            rows = range(question * beams, (question + 1) * beams)
            live = [row for row in rows if not finished[row]]
            forced = [row for row in live if int(allowed[row]) == 1]
            counts["question steps"] += bool(live)
            counts["question steps forced"] += bool(live) and len(forced) == len(live)
            counts["row steps"] += len(live)
            counts["row steps forced"] += len(forced)
        return masked

    processors.TrieConstraint.__call__ = counted
    try:
        qa.beam(questions[:1], top_k=1)  # warm
        counts.clear()
        for start in range(0, len(questions), args.batch_size):
            qa.beam(questions[start:start + args.batch_size], top_k=beams)
    finally:
        processors.TrieConstraint.__call__ = original
    print(f"{len(questions)} questions, {beams} beams, batches of {args.batch_size}:")
    print(f"  (row, step) pairs forced: {counts['row steps forced']} of {counts['row steps']} "
          f"({100 * counts['row steps forced'] / max(counts['row steps'], 1):.1f}%)")
    print(f"  (question, step) pairs with every live row forced: {counts['question steps forced']} of "
          f"{counts['question steps']} ({100 * counts['question steps forced'] / max(counts['question steps'], 1):.1f}%)")


if __name__ == "__main__":
    main()
