"""Training and decoding throughput of the scratch model and of a T5-base-sized model on one
device (random weights: speed does not depend on what they learned), with the trie constraint's
share of the constrained decode.

    python benchmarks/device_speed.py --tokenizer CK/tokenizer [--fitted CK] [--device auto] [--kb KB] [--questions DEV]
        [--limit 256]

For each model: training tokens/s (question + target tokens, padding excluded; batch 64, AdamW,
bf16 autocast on a GPU) after warm-up; questions/s of the trie-constrained beam (4 beams, batches
of 32) and of the default pipeline (the reranker, calibrator and the evidence they read, borrowed
from checkpoint `--fitted`, by default the tokenizer's: random weights read them as a trained
model's would be read, so the work is the same); the seconds spent in the constraint and the
look-ahead (CPU work on the trie, then one transfer a step) as a share of the constrained decode.
"""
from __future__ import annotations

import os
import time
from dataclasses import replace

import torch

import harness  # first: it puts kgqa on sys.path
from harness import arguments, DATA, missing, SPENT, timing

from kgqa.decode import processors  # noqa: E402
from kgqa.data import read_questions, training_pairs  # noqa: E402
from kgqa.kb.build import ensure_index  # noqa: E402
from kgqa.model.seq2seq import count_parameters, pick_device, scratch_model  # noqa: E402
from kgqa.settings import ScratchShape  # noqa: E402
from kgqa.pipeline import KGQA, DecodeSettings  # noqa: E402
from kgqa.rank.fitted import Fitted  # noqa: E402
from kgqa.model.tokenizer import load_tokenizer  # noqa: E402
from kgqa.train import teacher_forced_batch, forward_backward  # noqa: E402

MODELS = {  # name -> (shape, copy path)
    "scratch CopyT5 (default)": (ScratchShape(), True),
    "T5-base-sized (d 768, 12+12 layers)": (ScratchShape(d_model=768, d_ff=3072, num_layers=12,
                                                         num_decoder_layers=12, num_heads=12), False),
}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_speed(model, tokenizer, pairs, device: torch.device, steps: int) -> float:
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    batches = [teacher_forced_batch(tokenizer, pairs[i * 64:(i + 1) * 64], 128, device) for i in range(steps + 3)]
    tokens = 0
    for k, batch in enumerate(batches):
        if k == 3:  # after warm-up
            synchronize(device)
            started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        forward_backward(model, [batch], autocast)
        optimizer.step()
        if k >= 3:
            tokens += int(batch["attention_mask"].sum()) + int((batch["labels"] != -100).sum())
    synchronize(device)
    return tokens / (time.perf_counter() - started)


def decoding_speed(qa: KGQA, questions: list[str], device: torch.device) -> tuple[float, float, float]:
    """(constrained beam questions/s, full pipeline questions/s, constraint share of the beam)."""
    beam_only = KGQA(qa.model, qa.tokenizer, qa.index, replace(qa.settings, rerank=False))
    beam_only.ask(questions[:32])  # warm-up
    SPENT.clear()
    with timing(processors.TrieConstraint, "__call__", "constraint"), timing(processors.Lookahead, "__call__", "lookahead"):
        synchronize(device)
        started = time.perf_counter()
        beam_only.ask(questions)
        synchronize(device)
        beam = time.perf_counter() - started
    share = (SPENT["constraint"] + SPENT["lookahead"]) / beam
    synchronize(device)
    started = time.perf_counter()
    qa.ask(questions)
    synchronize(device)
    full = time.perf_counter() - started
    return len(questions) / beam, len(questions) / full, share


def main() -> None:
    parser = arguments(__doc__, checkpoint=False, limit=256, device="auto")
    parser.add_argument("--tokenizer", required=True, help="A checkpoint's tokenizer/ directory.")
    parser.add_argument("--fitted", help="the checkpoint whose fitted models the default pipeline borrows "
                                         "(default: the tokenizer's)")
    parser.add_argument("--train", default=os.path.join(DATA, "train.json"))
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    if missing(args.kb, args.train, args.questions):
        return
    device = pick_device(args.device)
    tokenizer = load_tokenizer(args.tokenizer)
    index = ensure_index(args.kb, tokenizer)
    pairs = training_pairs(read_questions(args.train, need_answers=True))
    questions = [q.question for q in harness.questions(args)]
    fitted = Fitted.load(args.fitted or os.path.dirname(os.path.normpath(args.tokenizer)))
    if fitted.reranker is None:
        raise SystemExit(f"{args.fitted or args.tokenizer}: no fitted reranker to borrow (kgqa fit-reranker)")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}\n")
    print("| model | parameters | training tokens/s | constrained beam questions/s | default pipeline questions/s "
          "| constraint + look-ahead share of the beam |")
    print("|---|---|---|---|---|---|")
    for label, (shape, copy) in MODELS.items():
        torch.manual_seed(0)
        model = scratch_model(tokenizer, shape, 0, copy=copy).to(device)
        tokens_per_s = training_speed(model, tokenizer, pairs, device, args.steps)
        qa = KGQA(model, tokenizer, index, DecodeSettings(), fitted)
        beam, full, share = decoding_speed(qa, questions, device)
        print(f"| {label} | {count_parameters(model) / 1e6:.1f}M | {tokens_per_s:,.0f} | {beam:.1f} | {full:.1f} | "
              f"{100 * share:.1f}% |", flush=True)


if __name__ == "__main__":
    main()
