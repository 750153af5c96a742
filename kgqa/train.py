"""Training: question -> `S [SEP] P [SEP] M [EOS]` (then the object's first tokens, where asked),
teacher-forced; a predicate-disjoint slice of train is held out and scored each epoch with the
same constrained decoding `kgqa predict` uses; the best checkpoint is kept by the official score
on it, and the reranker is fitted on it.

Short and linear on purpose (nanoGPT's loop). Under `torchrun` each process takes every
world_size-th example of the same seeded order and gradients are averaged (DDP: NCCL between
GPUs, gloo between CPU processes).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from dataclasses import asdict
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import PreTrainedModel

from kgqa.data import Pairs, Question, read_questions, training_pairs, training_split
from kgqa.settings import DecodeSettings
from kgqa.errors import KgqaError
from kgqa.files import check_replaceable
from kgqa.kb.build import ensure_index
from kgqa.kb.index import KBIndex
from kgqa.kb.triples import read_kb
from kgqa.kbquestions import kb_questions
from kgqa.metrics import score
from kgqa.model.checkpoint import load_checkpoint, load_trainer_state, save_checkpoint
from kgqa.model.checkpoint_settings import is_checkpoint
from kgqa.model.seq2seq import (count_parameters, encode_questions, pad_targets, pick_device,
                                pretrained_start, scratch_model)
from kgqa.model.tokenizer import SentencePieceTokenizer, Tokenizer
from kgqa.reading import read_pairs
from kgqa.pipeline import KGQA
from kgqa.process_group import join, leave, shard
from kgqa.candidate import best_answer
from kgqa.refit import fit_beside
from kgqa.settings import TrainConfig, recipe


def _target_texts(config: TrainConfig, pairs: Pairs) -> Iterator[str]:
    """Training questions and every KB string the decoder may write: what the vocabulary must encode."""
    for question, _ in pairs:
        yield question
    for triple in read_kb(config.kb, config.skip_bad_lines):
        yield triple.surface
        yield triple.predicate
        if triple.disambiguation:
            yield triple.disambiguation


def teacher_forced_batch(tokenizer: Tokenizer, pairs: Pairs, max_question_tokens: int,
                         device: torch.device | str = "cpu", object_tokens: int = 0) -> dict[str, torch.Tensor]:
    """A teacher-forced batch: the questions (cut as decoding cuts them) and their targets, each
    key followed by its object's first `object_tokens`."""
    input_ids, attention = encode_questions(tokenizer, [q for q, _ in pairs], max_question_tokens, device)
    labels = [tokenizer.encode_target(t.surface, t.predicate, t.disambiguation) + tokenizer.encode_object(t.obj, object_tokens)
              for _, t in pairs]
    return {"input_ids": input_ids, "attention_mask": attention, "labels": pad_targets(labels).to(device)}


def forward_backward(model: torch.nn.Module, parts: list[dict[str, torch.Tensor]], autocast: torch.autocast,
             label_smoothing: float = 0.0) -> float:
    """Accumulate one batch's gradient from its micro-batches (`--grad-accum`: less memory), each
    loss weighted by the micro-batch's share of the batch's target tokens, so the gradient is the
    whole batch's token-mean loss's; under DDP gradients are all-reduced once, after the last.
    Returns the batch's loss."""
    tokens = sum(int((part["labels"] != -100).sum()) for part in parts)
    distributed = isinstance(model, torch.nn.parallel.DistributedDataParallel)
    loss = 0.0
    for k, part in enumerate(parts):
        sync = not distributed or k == len(parts) - 1
        with (contextlib.nullcontext() if sync else model.no_sync()), autocast:
            logits = model(**part).logits
            share = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), part["labels"].view(-1),
                                    ignore_index=-100, label_smoothing=label_smoothing, reduction="sum") / tokens
        share.backward()
        loss += share.item()
    return loss


def _lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 10%: a high peak rate gets the model copying early."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def evaluate(qa: KGQA, dev: list[Question], limit: int | None) -> dict[str, float]:
    """The official metric of `qa`'s answers to the first `limit` questions (0: all)."""
    subset = dev[:limit] if limit else dev
    answered = qa.ask([q.question for q in subset])
    return score([best_answer(candidates) for candidates in answered], [q.answer for q in subset])


def _model_and_tokenizer(config: TrainConfig, pairs: list, state: dict | None, rank: int
                         ) -> tuple[PreTrainedModel, Tokenizer]:
    """The model and tokenizer training starts from: `last/` when resuming, else a new character
    tokenizer and a scratch model, else the named checkpoint's own with the characters of the
    KB and the questions its vocabulary lacks added as tokens."""
    if state is not None:
        model, tokenizer, _ = load_checkpoint(os.path.join(config.output, "last"))
        return model.train(), tokenizer
    if config.model == "scratch":
        tokenizer = SentencePieceTokenizer.train(_target_texts(config, pairs), config.vocab_size)
        return scratch_model(tokenizer, config.shape, config.seed), tokenizer
    model, tokenizer, lost = pretrained_start(config.model, _target_texts(config, pairs))
    if lost and rank == 0:
        tqdm.write(f"added {len(lost)} characters the checkpoint's tokenizer loses (unknown, dropped or normalised) "
                   f"as tokens: {lost[:20]!r}")
    return model, tokenizer


def _optimizer(model: PreTrainedModel, config: TrainConfig, total: int
               ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW at the recipe's peak rate, warmed up over `warmup_steps` (a fifth of a short run at
    most, so it still reaches the peak), then decayed along `_lr_factor` over `total` steps."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    warmup = min(config.warmup_steps, total // 5)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, warmup, total))


def _restored(state: dict | None, optimizer: torch.optim.Optimizer,
              scheduler: torch.optim.lr_scheduler.LambdaLR) -> tuple[int, dict[str, float]]:
    """(step, best held-out metrics) to go on from: `last/`'s when resuming (its optimizer,
    schedule and random state restored too), else a fresh start."""
    if state is None:
        return 0, {}
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return state["step"], state["best"]


def _mean_loss(losses: list[float], world: int) -> float:
    """The epoch's mean batch loss, over every process's share of the batches."""
    mean = torch.tensor(float(np.mean(losses)) if losses else float("nan"))
    if world > 1:
        torch.distributed.all_reduce(mean)
        mean /= world
    return round(mean.item(), 4)


def _parallel(model: PreTrainedModel, device: torch.device, world: int
              ) -> tuple[torch.nn.Module, torch.autocast]:
    """The model as each step calls it (DDP across torchrun's processes), and the autocast it runs
    under: bf16 on a GPU that has it (weights and optimizer stay fp32), fp32 elsewhere."""
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world > 1 else model
    return ddp, torch.autocast(device.type, dtype=torch.bfloat16,
                               enabled=device.type == "cuda" and torch.cuda.is_bf16_supported())


def _judge_epoch(qa: KGQA, record: dict, dev: list[Question], held: list[Question], best: dict[str, float],
                 config: TrainConfig) -> bool:
    """Score the epoch's model into `record` (dev for the log only; the held-out questions choose);
    whether it is the best so far (always, with nothing held out)."""
    if dev:
        record["dev"] = evaluate(qa, dev, config.dev_limit)
    if held:
        record["held_out"] = evaluate(qa, held, config.holdout_limit)
    return not held or record["held_out"]["score"] >= best.get("score", -1.0)


def _append_metrics(output: str, record: dict) -> None:
    """The epoch's record, appended to metrics.jsonl once its checkpoints are saved, and shown."""
    with open(os.path.join(output, "metrics.jsonl"), "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    tqdm.write(json.dumps(record, ensure_ascii=False))


def _seeded(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _fit_and_report(best_dir: str, index: KBIndex, device: torch.device, decoding: DecodeSettings,
                    pairs: Pairs, held: list[Question], asked: list[Question], config: TrainConfig) -> None:
    """Training's last step: the best checkpoint's channel, reranker and calibrator, said in one line."""
    fitted, reach = fit_beside(best_dir, index, device, decoding, pairs, held, config.seed, config.channel_epochs,
                               asked)
    count = len(held) + len(asked)
    if fitted.reranker is None:
        tqdm.write(f"no reranker: too few held-out questions ({count}) to fit one")
    else:
        tqdm.write(f"reranker {'and confidence calibrator ' if fitted.calibrator else ''}fitted on {count} held-out "
                   f"questions (gold among candidates: {100 * reach:.1f}%)")


def train(config: TrainConfig) -> dict[str, float]:
    """Run training; returns the best held-out metrics (empty when nothing is held out)."""
    device = pick_device(config.device)
    rank, world = shard()
    if world > 1:
        join("nccl" if device.type == "cuda" else "gloo")
    _seeded(config.seed)
    kept, held, asked = training_split(read_questions(config.train, need_answers=True), config.holdout,
                                       config.holdout_questions, config.seed)
    pairs = training_pairs(kept)
    dev = read_questions(config.dev, need_answers=True) if config.dev else []
    last_dir, best_dir = os.path.join(config.output, "last"), os.path.join(config.output, "best")
    for directory in (last_dir, best_dir):  # refused now, not after the first epoch
        check_replaceable(directory, is_checkpoint, "checkpoint")
    state = load_trainer_state(last_dir) if config.resume else None
    if config.resume and state is None:
        raise KgqaError("nothing to resume (no last/trainer_state.pt)", config.output)
    model, tokenizer = _model_and_tokenizer(config, pairs, state, rank)
    config = recipe(config, getattr(model.config, "model_type", ""))
    index = ensure_index(config.kb, tokenizer, config.index_dir, config.skip_bad_lines,
                         progress=config.progress and rank == 0)
    pairs = read_pairs(index, pairs)
    decoding = DecodeSettings(beams=config.beams, max_question_tokens=config.max_question_tokens, int8=False)
    ddp, autocast = _parallel(model.to(device), device, world)
    # whole batches only: a ragged tail could leave a rank empty
    steps_per_epoch = max(1, (len(pairs) + config.kb_questions) // (config.batch_size * world))
    total = steps_per_epoch * config.epochs
    optimizer, scheduler = _optimizer(model, config, total)
    step, best = _restored(state, optimizer, scheduler)
    settings = {"source_model": config.model, "train": asdict(config) | {"shape": asdict(config.shape)}}
    os.makedirs(config.output, exist_ok=True)
    if rank == 0 and state is None:
        tqdm.write(f"model: {count_parameters(model) / 1e6:.1f}M parameters, vocab {len(tokenizer)}; "
                   f"{len(pairs)} QA + {config.kb_questions} KB questions an epoch, "
                   f"{len(held)} held out, {total} steps, peak learning rate {config.lr:g}")

    def save_last() -> None:
        save_checkpoint(last_dir, model, tokenizer, settings | {"step": step}, {
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "step": step, "best": best, "torch_rng": torch.get_rng_state()})

    started = time.time()
    for epoch in range(step // steps_per_epoch, config.epochs):
        epoch_pairs = pairs + read_pairs(index, kb_questions(index, config.kb_questions, config.seed * 1000 + epoch))
        order = np.random.default_rng(config.seed * 1000 + epoch).permutation(len(epoch_pairs))
        model.train()
        # `or None`: tqdm draws no bar where stderr is no terminal (a log)
        bar = tqdm(range(step % steps_per_epoch, steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}",
                   disable=not config.progress or rank != 0 or None, mininterval=5)
        losses = []
        for batch_no in bar:
            start = batch_no * config.batch_size * world
            chosen = order[start:start + config.batch_size * world][rank::world]
            parts = [teacher_forced_batch(tokenizer, [epoch_pairs[i] for i in part], config.max_question_tokens, device,
                                          config.object_tokens) for part in np.array_split(chosen, min(config.grad_accum, len(chosen)))]
            optimizer.zero_grad(set_to_none=True)
            losses.append(forward_backward(ddp, parts, autocast, config.label_smoothing))
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{scheduler.get_last_lr()[0]:.1e}")
            if rank == 0 and step % config.save_every == 0:
                save_last()
        record = {"epoch": epoch + 1, "step": step, "loss": _mean_loss(losses, world),
                  "minutes": round((time.time() - started) / 60, 2)}
        if rank == 0:
            if _judge_epoch(KGQA(model, tokenizer, index, decoding, object_tokens=config.object_tokens), record, dev, held, best, config):
                best = record.get("held_out", {})
                save_checkpoint(best_dir, model, tokenizer, settings | {"step": step, "held_out": best})
            save_last()
            _append_metrics(config.output, record)
    if rank == 0 and held:
        _fit_and_report(best_dir, index, device, decoding, pairs, held, asked, config)
    if world > 1:
        leave()
    return best
