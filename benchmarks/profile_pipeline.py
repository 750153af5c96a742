"""Where one question's milliseconds go in the default pipeline (beam + reranker): each stage timed
where it runs, over N dev questions in the default batches, as ms per question.

    python benchmarks/profile_pipeline.py --checkpoint CKPT [--kb KB] [--questions DEV] [--limit 512] [--batch-size 32] [--baseline rows|generate|no-confidence] [--constant-forward]

Stages: the KB mention scan, the per-batch subject tries, `generate` (encoder, decoder steps and
beam bookkeeping) less the two logits processors, which are timed on their own; then the
reranker's candidate keys, their KB answers, the answer kinds and naming weights, the model's
log-likelihoods, the named features, the
linear score, and the answers' confidence. With --batch-size 1 it is one interactive question's cost. --baseline first
runs the same questions as an earlier pipeline did, for the two side by side: `rows` scores the
candidates one padded row each instead of as a prefix tree; `generate` does that and decodes with
Hugging Face's `generate` in place of the stepper; `no-confidence` answers without the checkpoint's
confidence calibrator (and so without the answers' confidences and alternatives).
--constant-forward replaces the model's arithmetic (the encoder, every decoder pass, the output
layer) by constant tensors of the shapes it returns: what is left is the work around the model —
the trie walks, the beam's bookkeeping, the forced runs, the candidates and the reranker — which a
GPU does not speed up, and so what bounds a GPU's rate where the model's passes take no time.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from types import SimpleNamespace

import torch

import harness  # first: it puts kgqa on sys.path
from harness import arguments, CALLS, missing, SPENT, timing

from kgqa import pipeline  # noqa: E402
from kgqa.decode import generate, processors  # noqa: E402
from kgqa.model import stepper  # noqa: E402
from kgqa.model import likelihood  # noqa: E402
from kgqa.rank import fitted, confidence, features, likelihoods, reranker  # noqa: E402
from kgqa.kb.index import KBIndex  # noqa: E402
from kgqa.pipeline import KGQA  # noqa: E402
from kgqa.source import Source  # noqa: E402

STAGES = [  # (owner, attribute, label), outermost first: inner stages are subtracted from outer ones
    (KGQA, "read", "reading (the KB's names however typed)"),
    (KBIndex, "mentions", "mention scan"),
    (processors.TrieWalker, "__init__", "subject tries"),
    (processors.TrieConstraint, "__call__", "TrieConstraint"),
    (processors.Lookahead, "__call__", "Lookahead"),
    (stepper.Encoded, "__init__", "encoder + cross-attention keys"),
    (stepper.Stepper, "step", "decoder steps"),
    (stepper.Stepper, "reorder", "beam cache reorder"),
    (pipeline, "constrained_generate", "beam search (the rest)"),
    (pipeline, "candidate_keys", "candidate keys"),
    (KBIndex, "fact", "KB answers"),
    (fitted.Fitted, "evidence", "answer kinds + naming weights"),
    (fitted.Fitted, "channel_gains", "noisy channel"),
    (likelihoods, "token_log_probs", "model log-likelihoods"),
    (features, "candidate_features", "features"),
    (reranker.Reranker, "scores", "reranker score"),
    (fitted, "signal_rows", "confidence signals"),
    (confidence.Calibrator, "probabilities", "confidence"),
]


def profile(qa: KGQA, questions: list[str]) -> tuple[float, dict[str, float]]:
    SPENT.clear()
    CALLS.clear()
    stack = [timing(owner, name, label) for owner, name, label in STAGES]
    for manager in stack:
        manager.__enter__()
    try:
        started = time.perf_counter()
        qa.ask(questions)
        wall = time.perf_counter() - started
    finally:
        for manager in reversed(stack):
            manager.__exit__(None, None, None)
    spent = dict(SPENT)
    inner = sum(spent.get(label, 0.0) for label in ("mention scan", "subject tries", "TrieConstraint", "Lookahead",
                                                    "decoder steps", "beam cache reorder"))
    spent["beam search (the rest)"] = spent.get("beam search (the rest)", 0.0) - inner
    spent["other (Python between stages)"] = wall - sum(spent.values())
    return wall, spent


class ConstantForward:
    """The stepper's model arithmetic replaced by constants of the right shapes (a context)."""

    def __init__(self, model: torch.nn.Module) -> None:
        generator = torch.Generator().manual_seed(0)
        vocabulary, width = model.config.vocab_size, model.config.d_model
        self.logits = torch.randn(vocabulary, generator=generator).to(model.device)
        self.hidden = torch.zeros(width, device=model.device)
        first = model.decoder.block[0].layer[0].SelfAttention
        self.heads, self.head_dim, self.layers = first.n_heads, first.key_value_proj_dim, len(model.decoder.block)
        self.saved: list[tuple[object, str, object]] = []

    def __enter__(self) -> "ConstantForward":
        constant = self

        def encoded(self, model, input_ids, attention_mask) -> None:
            self.source, self.lengths = input_ids, attention_mask.sum(1)
            rows, length = input_ids.shape
            self.cross_mask = torch.zeros((rows, 1, length), device=input_ids.device)
            keys = torch.zeros((1, constant.heads, constant.head_dim, length), device=input_ids.device)
            self.cross = [(keys.expand(rows, -1, -1, -1), keys.transpose(-1, -2).expand(rows, -1, -1, -1))
                          for _ in range(constant.layers)]

        def step(self, tokens, position, rows=None):
            return constant.logits.expand(tokens.shape + constant.logits.shape)

        def tree(self, tokens, depths, ancestors):
            return (constant.hidden.expand(tokens.shape + constant.hidden.shape),
                    torch.zeros(tokens.shape + (self.source.shape[1],), device=tokens.device))

        def head(self, hidden):
            return constant.logits.expand(hidden.shape[:-1] + constant.logits.shape), None

        for owner, name, replacement in ((stepper.Encoded, "__init__", encoded), (stepper.Stepper, "step", step),
                                         (stepper.Stepper, "tree", tree), (stepper.Stepper, "head", head)):
            self.saved.append((owner, name, getattr(owner, name)))
            setattr(owner, name, replacement)
        return self

    def __exit__(self, *_: object) -> None:
        for owner, name, original in reversed(self.saved):
            setattr(owner, name, original)


def main() -> None:
    parser = arguments(__doc__, limit=512, device="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--baseline", choices=("rows", "generate", "no-confidence"),
                        help="first the same with the candidates scored as padded rows (and decoded by HF generate), "
                             "or without the confidence calibrator")
    parser.add_argument("--constant-forward", action="store_true",
                        help="the model's arithmetic replaced by constants: the host's work alone")
    args = parser.parse_args()
    if missing(args.questions, args.kb):
        return
    questions = [q.question for q in harness.questions(args)]
    qa = Source(args.checkpoint, args.kb, device=args.device).open()
    qa.settings = replace(qa.settings, batch_size=args.batch_size)
    constant = ConstantForward(qa.model) if args.constant_forward else contextlib.nullcontext()
    constant.__enter__()
    qa.ask(questions[: args.batch_size])  # warm: tail tries, allocator
    unhandled = SimpleNamespace(handles=lambda model: False)  # what a model the stepper cannot run sees
    calibrator = qa.fitted.calibrator
    for name in ([f"{args.baseline} (baseline)"] if args.baseline else []) + ["stepper + tree"]:
        generate.Stepper = unhandled if name == "generate (baseline)" else stepper.Stepper
        likelihood.Stepper = unhandled if name in ("rows (baseline)", "generate (baseline)") else stepper.Stepper
        qa.fitted.calibrator = None if name == "no-confidence (baseline)" else calibrator
        wall, spent = profile(qa, questions)
        n = len(questions)
        if args.constant_forward:
            name += ", the model's arithmetic replaced by constants"
        print(f"\n{name}: {n} questions on {args.device}, batches of {args.batch_size}, {torch.get_num_threads()} threads, reranker "
              f"{'on' if qa.reranking else 'absent'}, confidence {'on' if qa.fitted.calibrator else 'absent'}: {n / wall:.1f} questions/s, {1000 * wall / n:.1f} ms each\n")
        print("| stage | ms per question | share |")
        print("|---|---|---|")
        for label, seconds in sorted(spent.items(), key=lambda item: -item[1]):
            if seconds:
                print(f"| {label} | {1000 * seconds / n:.2f} | {100 * seconds / wall:.1f}% |")

if __name__ == "__main__":
    main()
