"""What a pretrained checkpoint of real size costs on this machine, beside the scratch CopyT5, in
one run: random-weight look-alikes (`tests/lookalikes.py`) of uer/t5-small-chinese-cluecorpussmall
(L6/H512, d_ff 2048, BERT vocabulary of 21,228), its base size (L12/H768) and fnlp/bart-base-chinese.

    python benchmarks/pretrained_speed.py --fitted CK
        [--models scratch,uer-small,uer-base,bart-base,bart-base-generate]
        [--questions DEV] [--limit 64] [--alone 16] [--steps 2] [--no-int8]

Per model, each in a child process of its own (so each peak RSS is its own):
- training: seconds a step of batch 64 on train.json (AdamW, fp32, after one warm-up step);
- answering dev questions as `kgqa predict` does (beam 4, reranked: the reranker, calibrator, answer
  kinds and naming weights of the scratch checkpoint `--fitted CK` are borrowed, so every part of
  the pipeline runs): questions/s in batches of 32, one question alone (p50, p90 ms);
- the same with `--int8` (linear layers dynamically quantised), and how many top answers agree
  with fp32's;
- peak RSS of the answering process and of the training one.
The scratch row is `--fitted CK`'s own model; `bart-base-generate` answers with the stepper off
(`generate` and one row per candidate), as BART did before the stepper ran it. Skips without KgCLUE's files.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from harness import arguments, DATA, missing, ROOT  # first: it puts kgqa on sys.path

sys.path.insert(0, os.path.join(ROOT, "tests"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import lookalikes  # noqa: E402
from kgqa.data import read_questions, training_pairs  # noqa: E402
from kgqa.settings import DecodeSettings  # noqa: E402
from kgqa.kb.build import ensure_index  # noqa: E402
from kgqa.kb.triples import read_kb  # noqa: E402
from kgqa.model.checkpoint import load_checkpoint  # noqa: E402
from kgqa.model.seq2seq import count_parameters, pretrained_start  # noqa: E402
from kgqa.model.stepper import Stepper  # noqa: E402
from kgqa.pipeline import KGQA  # noqa: E402
from kgqa.candidate import best_answer  # noqa: E402
from kgqa.rank.fitted import Fitted  # noqa: E402
from kgqa.train import teacher_forced_batch, forward_backward  # noqa: E402

# NAME-generate: the same model answered through `generate` (the stepper off), its speed before the stepper ran BART
MODELS = {"uer-small": ("uer-t5", "small"), "uer-base": ("uer-t5", "base"), "bart-base": ("fnlp-bart", "base"),
          "bart-base-generate": ("fnlp-bart", "base")}


def _model(name: str, fitted: str, kb: str, pairs: list, workdir: str):
    """(model, tokenizer) as `kgqa train` starts them: the look-alike with the characters its
    tokenizer loses added; the scratch row is the fitted checkpoint's own."""
    if name == "scratch":
        model, tokenizer, _ = load_checkpoint(fitted)
        return model, tokenizer
    family, size = MODELS[name]
    texts = [q for q, _ in pairs] + [t.surface + t.predicate + t.disambiguation for t in read_kb(kb)]
    directory = lookalikes.FAMILIES[family](os.path.join(workdir, name), texts[:20000], size)
    model, tokenizer, _ = pretrained_start(directory, texts)
    return model, tokenizer


def train_child(args, workdir: str) -> dict:
    pairs = training_pairs(read_questions(os.path.join(DATA, "train.json"), need_answers=True))
    model, tokenizer = _model(args.model, args.fitted, args.kb, pairs, workdir)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)
    times = []
    for step in range(args.steps + 1):
        chosen = rng.choice(len(pairs), 64, replace=False)
        batch = teacher_forced_batch(tokenizer, [pairs[i] for i in chosen], DecodeSettings.max_question_tokens)
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        forward_backward(model, [batch], torch.autocast("cpu", enabled=False))
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        times.append(time.perf_counter() - started)
    return {"parameters_m": round(count_parameters(model) / 1e6, 1), "vocab": len(tokenizer),
            "train_s_per_step": round(float(np.mean(times[1:])), 2),
            "train_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}


def _answering(qa: KGQA, batched: list[str], alone: list[str]) -> tuple[dict, list[str]]:
    qa.ask(batched[:4])  # warm-up: first reads of the index and the answer kinds' profiles
    started = time.perf_counter()
    answers = [best_answer(found) for found in qa.ask(batched)]
    rate = len(batched) / (time.perf_counter() - started)
    latencies = []
    for question in alone:
        started = time.perf_counter()
        qa.ask([question])
        latencies.append(1000 * (time.perf_counter() - started))
    return {"questions_per_s": round(rate, 2), "alone_p50_ms": round(float(np.percentile(latencies, 50)), 1),
            "alone_p90_ms": round(float(np.percentile(latencies, 90)), 1)}, answers


def answer_child(args, workdir: str) -> dict:
    if args.model.endswith("-generate"):
        Stepper.handles = staticmethod(lambda model: False)
    pairs = training_pairs(read_questions(os.path.join(DATA, "train.json"), need_answers=True))
    model, tokenizer = _model(args.model, args.fitted, args.kb, pairs, workdir)
    model.eval()
    started = time.perf_counter()
    index = ensure_index(args.kb, tokenizer)
    index_s = time.perf_counter() - started
    questions = [q.question for q in read_questions(args.questions)]
    batched, alone = questions[: args.limit], questions[args.limit: args.limit + args.alone]
    borrowed = Fitted.load(args.fitted)
    result = {"index_s": round(index_s, 1)}
    fp32, answers = _answering(KGQA(model, tokenizer, index, DecodeSettings(int8=False), borrowed), batched, alone)
    result.update(fp32)
    if args.int8:
        int8, answers8 = _answering(KGQA(model, tokenizer, index, DecodeSettings(int8=True), borrowed), batched,
                                    alone)
        result.update({f"int8_{k}": v for k, v in int8.items()})
        result["int8_same_top1"] = f"{sum(a == b for a, b in zip(answers, answers8))}/{len(answers)}"
    result["answer_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    return result


def main() -> None:
    parser = arguments(__doc__, checkpoint=False, limit=64)
    parser.add_argument("--fitted", required=True,
                        help="a scratch kgqa checkpoint (the baseline; its reranker is borrowed)")
    parser.add_argument("--models", default="scratch,uer-small,uer-base,bart-base")
    parser.add_argument("--alone", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--int8", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--child", choices=["train", "answer"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if missing(args.kb, os.path.join(DATA, "train.json"), args.questions):
        return
    if args.child:
        with tempfile.TemporaryDirectory() as workdir:
            work = train_child if args.child == "train" else answer_child
            print(json.dumps(work(args, workdir)))
        return
    print(f"{torch.get_num_threads()} threads; {args.limit} questions in batches of 32, {args.alone} alone")
    for name in args.models.split(","):
        row = {"model": name}
        for child in ("answer",) if name.endswith("-generate") else ("train", "answer"):
            command = [sys.executable, __file__, "--child", child, "--model", name] + sys.argv[1:]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"{name} {child}: {done.stderr[-2000:]}")
            row.update(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
