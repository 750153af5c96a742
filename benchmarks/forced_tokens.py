"""How many of the constrained beam's tokens the trie forces: the measure issue 23's forced-token
passes start from (a token the trie leaves no alternative to need not wait for its own decoder step).

    python benchmarks/forced_tokens.py --checkpoint CK [--kb KB] [--questions DEV] [--limit 256] [--batch-size 32]
    python benchmarks/forced_tokens.py --checkpoint CK --pass-cost

Answers the first N questions of the file with the default beam, counting at every decoder step,
after `TrieConstraint`, each beam row's allowed tokens: a row is *forced* when one token is allowed
and it is not a finished row repeating EOS; a step is forced for a question when all its
unfinished rows are (outside the beam's jumps over steps where every row is). Prints the shares of
(row, step) pairs and of (question, step) pairs forced, and what the forced runs make of them: the
steps the beam jumped, the decoder passes it ran against its steps (before forced runs, one pass a
step), and the positions those passes fed against the (row, step) pairs.

--pass-cost times one decoder pass over R rows × W positions instead: what `forced_runs.PASS_COST`
(a pass's cost beyond its positions, in positions) is read from on a machine.
"""
from __future__ import annotations

import collections
import time
from dataclasses import replace

import torch

import harness  # first: it puts kgqa on sys.path
from harness import arguments, missing

from kgqa.decode import forced_runs, processors  # noqa: E402
from kgqa.model import stepper  # noqa: E402
from kgqa.model.checkpoint import load_checkpoint  # noqa: E402
from kgqa.model.seq2seq import encode_questions  # noqa: E402
from kgqa.source import Source  # noqa: E402


@torch.no_grad()
def pass_cost(checkpoint: str) -> None:
    model, tokenizer, _ = load_checkpoint(checkpoint)
    model.eval()
    print(f"one decoder pass, {torch.get_num_threads()} threads (mean of 10):\n")
    print("| rows | positions a row | ms a pass | ms a position |")
    print("|---|---|---|---|")
    for questions in (1, 8, 32):
        encoded = stepper.Encoded(model, *encode_questions(tokenizer, ["刘晓华主要讲什么课啊？"] * questions, 128))
        for width in (1, 2, 4, 8, 16):
            decoder = stepper.Stepper(model, encoded, 4, 97)
            decoder.step(torch.full((4 * questions, 1), 5), 0)
            started = time.perf_counter()
            for _ in range(10):
                decoder.step(torch.full((4 * questions, width), 5), 1)
            ms = (time.perf_counter() - started) * 100
            print(f"| {4 * questions} | {width} | {ms:.2f} | {ms / (4 * questions * width):.3f} |")


def main() -> None:
    parser = arguments(__doc__, limit=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pass-cost", action="store_true", help="time decoder passes by rows and positions")
    args = parser.parse_args()
    if args.pass_cost:
        pass_cost(args.checkpoint)
        return
    if missing(args.questions, args.kb):
        return
    questions = [q.question for q in harness.questions(args)]
    qa = Source(args.checkpoint, args.kb, device="cpu").open()
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

    step, log_probs, forced = stepper.Stepper.step, forced_runs.ForcedRuns.log_probs, forced_runs.ForcedRuns.forced

    def counted_pass(self, tokens: torch.Tensor, *args) -> torch.Tensor:
        counts["passes"] += 1
        counts["positions"] += tokens.numel()
        return step(self, tokens, *args)

    def counted_step(self, prefixes: torch.Tensor) -> torch.Tensor:
        counts["steps"] += 1
        counts["rows"] += len(prefixes)
        return log_probs(self, prefixes)

    def counted_jump(self, length: int, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        counts["jumps"] += 1
        counts["steps jumped"] += steps
        return forced(self, length, steps)

    processors.TrieConstraint.__call__ = counted
    stepper.Stepper.step, forced_runs.ForcedRuns.log_probs = counted_pass, counted_step
    forced_runs.ForcedRuns.forced = counted_jump
    try:
        qa.beam(qa.read(questions[:1]), 1)  # warm
        counts.clear()
        for start in range(0, len(questions), args.batch_size):
            qa.beam(qa.read(questions[start:start + args.batch_size]), beams)
    finally:
        processors.TrieConstraint.__call__ = original
        stepper.Stepper.step, forced_runs.ForcedRuns.log_probs = step, log_probs
        forced_runs.ForcedRuns.forced = forced
    print(f"{len(questions)} questions, {beams} beams, batches of {args.batch_size}:")
    print(f"  (row, step) pairs forced: {counts['row steps forced']} of {counts['row steps']} "
          f"({100 * counts['row steps forced'] / max(counts['row steps'], 1):.1f}%)")
    print(f"  (question, step) pairs with every live row forced: {counts['question steps forced']} of "
          f"{counts['question steps']} ({100 * counts['question steps forced'] / max(counts['question steps'], 1):.1f}%)")
    steps = counts["steps"] + counts["steps jumped"]
    print(f"  beam steps: {steps}, of which {counts['steps jumped']} taken in {counts['jumps']} jumps (every row "
          f"forced: no pass, no processor); decoder passes: {counts['passes']} ({steps / max(counts['passes'], 1):.2f} "
          f"steps a pass); positions fed {counts['positions']} for {counts['rows']} (row, step) pairs outside jumps, "
          f"padding and filler rows included")


if __name__ == "__main__":
    main()
