"""Training throughput on this machine, and data parallelism checked against one process.

    python benchmarks/train_speed.py [--steps 40] [--examples 2048]

1. Tokens per second (question + target tokens, padding excluded) of the default model and batch
   (64) on train.json, in this process, after a few warm-up steps.
2. `kgqa train` on the first `--examples` questions for one epoch, twice with the same seed: one
   process with batch 64, then two gloo processes (torchrun) with batch 32 each, so both see the
   same global batches; the epoch's mean training loss of each, which must agree within noise.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

from harness import CLI, DATA, missing, ROOT  # first: it puts kgqa on sys.path

from kgqa.data import read_questions, training_pairs  # noqa: E402
from kgqa.model.seq2seq import count_parameters, scratch_model  # noqa: E402
from kgqa.model.tokenizer import SentencePieceTokenizer  # noqa: E402
from kgqa.train import teacher_forced_batch  # noqa: E402
from kgqa.settings import ScratchShape, TrainConfig  # noqa: E402


def throughput(pairs: list, steps: int, batch_size: int) -> None:
    tokenizer = SentencePieceTokenizer.train((q + "".join(spm) for q, spm in pairs), TrainConfig.vocab_size)
    model = scratch_model(tokenizer, ScratchShape(), 0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens, started = 0, 0.0
    for step in range(steps + 3):
        if step == 3:  # warm-up steps excluded
            tokens, started = 0, time.perf_counter()
        batch = teacher_forced_batch(tokenizer, pairs[step * batch_size:(step + 1) * batch_size], 128)
        logits = model(**batch).logits
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), batch["labels"].view(-1), ignore_index=-100)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        tokens += int(batch["attention_mask"].sum()) + int((batch["labels"] >= 0).sum())
    seconds = time.perf_counter() - started
    print(f"| default model ({count_parameters(model) / 1e6:.1f}M parameters), batch {batch_size}, "
          f"{torch.get_num_threads()} threads | {tokens / seconds:.0f} tokens/s | {seconds / steps:.2f} s/step |")


def data_parallel(train: str, kb: str, examples: int) -> None:
    work = tempfile.mkdtemp(prefix="kgqa-ddp-")
    subset = os.path.join(work, "train.json")
    with open(train, encoding="utf-8") as source, open(subset, "w", encoding="utf-8") as out:
        for _, line in zip(range(examples), source):
            out.write(line)
    common = ["train", "--train", subset, "--kb", kb, "--epochs", "1", "--kb-questions", "0", "--holdout", "0",
              "--seed", "0"]
    runs = {
        "1 process, batch 64": CLI + common + ["--batch-size", "64"],
        "2 processes (gloo), batch 32 each": [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                                              "--master_port", "29541", os.path.join(ROOT, "cli.py")]
                                             + common + ["--batch-size", "32"],
    }
    for name, command in runs.items():
        output = os.path.join(work, name.split(",")[0].replace(" ", "-"))
        env = dict(os.environ, OMP_NUM_THREADS="2" if "1 process" in name else "1")
        started = time.time()
        subprocess.run(command + ["--output", output], check=True, env=env, capture_output=True)
        record = json.loads(open(os.path.join(output, "metrics.jsonl"), encoding="utf-8").readlines()[-1])
        print(f"| {name} | {record['step']} steps | mean loss {record['loss']:.4f} | {time.time() - started:.0f} s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default=os.path.join(DATA, "train.json"))
    parser.add_argument("--kb", default=os.path.join(DATA, "kb.tsv"))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--examples", type=int, default=2048)
    args = parser.parse_args()
    if missing(args.train, args.kb):
        return
    pairs = training_pairs(read_questions(args.train, need_answers=True))
    throughput(pairs, args.steps, TrainConfig.batch_size)
    data_parallel(args.train, args.kb, args.examples)


if __name__ == "__main__":
    main()
