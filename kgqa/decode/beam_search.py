"""Beam search over a `Stepper`, fed by `ForcedRuns`: Hugging Face's beam search (transformers
5.x `_beam_search` with its defaults: length penalty 1, `early_stopping=False`, 2 × beams
candidates a step), step for step, so it keeps the hypotheses `generate` keeps; without
`generate`'s per-step wrapping.

The logits processors are the same objects `generate` is given (the trie constraint, the
look-ahead): each sees the rows' prefixes and their log-probabilities, as there.
"""
from __future__ import annotations

from typing import Callable

import torch
from transformers import LogitsProcessorList

from kgqa.decode.forced_runs import ForcedRuns

# HF's score for a slot that must not be chosen: the one "not a real score" of the beam.
NEVER = -1.0e9


def is_real(score: float) -> bool:
    """Whether a returned hypothesis's score is a real one: a mean of log-probabilities (plus the
    look-ahead's bonuses) is tens at worst, while a hypothesis that took a NEVER slot or a masked
    (-inf) step, as `generate` may return when fewer keys than beams exist, ends at NEVER divided
    by its length or below, far under -1e4."""
    return score > -1.0e4


def beam_search(decoder: ForcedRuns, processors: LogitsProcessorList, questions: int, beams: int,
                start_id: int, eos_id: int, max_length: int, num_return: int,
                on_keep: Callable[[list[int]], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(sequences, scores): `num_return` finished hypotheses per question, best first, as
    `generate(..., num_beams, num_return_sequences, return_dict_in_generate=True)` gives
    `sequences` and `sequences_scores` (the sum of log-probabilities over the generated length).

    Two differences, in time only: a question leaves the batch once nothing can change its finished
    hypotheses (no open beam can beat them, or every candidate ended), where `generate` computes
    its rows until the batch's last question is done; and steps where every row's next token is
    forced and known (`ForcedRuns.forced_steps`) are taken in one go, as each would go: the
    token's log-probability added, the rows sorted by score, the early stop checked at each length. What `generate` would still add for it
    scores below -1e8, as a slot that was never filled does. `on_keep(questions)` is told which
    questions the rows belong to after each such change (the logits processors map rows to
    questions: `TrieWalker.keep`)."""
    device = decoder.device
    out_sequences = torch.full((questions, num_return, max_length), eos_id, dtype=torch.long, device=device)
    out_scores = torch.full((questions, num_return), NEVER, device=device)
    alive = torch.arange(questions, device=device)
    running = torch.full((questions, beams, max_length), start_id, dtype=torch.long, device=device)
    running_scores = torch.zeros((questions, beams), device=device)
    running_scores[:, 1:] = NEVER
    finished = running.clone()
    finished_scores = torch.full((questions, beams), NEVER, device=device)
    is_finished = torch.zeros((questions, beams), dtype=torch.bool, device=device)
    improvable = torch.ones((questions, 1), dtype=torch.bool, device=device)
    length = 1
    while True:
        count = len(alive)
        prefixes = running[:, :, :length].reshape(count * beams, length)
        ahead = decoder.forced_steps(prefixes, max_length - 1 - length)
        if ahead and bool(torch.isfinite(running_scores).all()):
            running, running_scores, improvable = _forced_steps(
                decoder, ahead, running, running_scores, finished_scores, is_finished, improvable, length)
            length += ahead
            ends = torch.zeros((count, 1), dtype=torch.bool, device=device)
        else:
            running, running_scores, finished, finished_scores, is_finished, ends = _step(
                decoder, processors, prefixes, running, running_scores, finished, finished_scores, is_finished,
                improvable, length, beams, eos_id, max_length)
            length += 1
        worst = torch.where(is_finished, finished_scores.min(1, keepdim=True)[0], NEVER)
        improvable = improvable & (running_scores[:, :1] / (length - 1) > worst).any(1, keepdim=True)
        done = ~improvable[:, 0] | ends.all(1)
        if done.any():
            out_sequences[alive[done]] = finished[done, :num_return]
            out_scores[alive[done]] = finished_scores[done, :num_return]
            if done.all():
                break
            stay = (~done).nonzero()[:, 0]
            alive, running, running_scores = alive[stay], running[stay], running_scores[stay]
            finished, finished_scores, is_finished, improvable = (
                finished[stay], finished_scores[stay], is_finished[stay], improvable[stay])
            decoder.keep((stay[:, None] * beams + torch.arange(beams, device=device)).view(-1))
            if on_keep is not None:
                on_keep(alive.tolist())
    return (out_sequences[:, :, :length].reshape(questions * num_return, length), out_scores.reshape(-1))


def _step(decoder: ForcedRuns, processors: LogitsProcessorList, prefixes: torch.Tensor, running: torch.Tensor,
          running_scores: torch.Tensor, finished: torch.Tensor, finished_scores: torch.Tensor,
          is_finished: torch.Tensor, improvable: torch.Tensor, length: int, beams: int, eos_id: int,
          max_length: int) -> tuple[torch.Tensor, ...]:
    """One step of HF's beam search over the rows' `prefixes` (`running` up to `length`): the
    next (running, running_scores, finished, finished_scores, is_finished) and which of the
    top 2 × beams candidates ended."""
    count, device = running.shape[0], running.device
    keep = 2 * beams
    top_beams = torch.arange(keep, device=device) < beams
    log_probs = decoder.log_probs(prefixes)
    for rule in processors:  # as LogitsProcessorList calls them, without its signature check a call
        log_probs = rule(prefixes, log_probs)
    vocab = log_probs.shape[-1]
    totals = (log_probs.view(count, beams, vocab) + running_scores[:, :, None]).view(count, -1)
    top_scores, top_index = torch.topk(totals, keep)
    source_beam = top_index // vocab
    candidates = running.gather(1, source_beam[:, :, None].expand(-1, -1, max_length)).clone()
    candidates[:, :, length] = top_index % vocab
    ends = (candidates[:, :, length] == eos_id) | (length + 1 >= max_length)
    # the best beams that did not end run on
    open_scores = top_scores + ends.float() * NEVER
    survivors = torch.topk(open_scores, beams)[1]
    running = candidates.gather(1, survivors[:, :, None].expand(-1, -1, max_length))
    running_scores = open_scores.gather(1, survivors)
    # those among the top beams that ended join the finished, each scored per generated token
    ended = ends & top_beams[None, :]
    scored = top_scores / length  # generated tokens, the start token not counted
    scored = scored + (~improvable).float() * NEVER + (~ended).float() * NEVER
    merged_scores = torch.cat((finished_scores, scored), 1)
    best = torch.topk(merged_scores, beams)[1]
    finished = torch.cat((finished, candidates), 1).gather(1, best[:, :, None].expand(-1, -1, max_length))
    finished_scores = merged_scores.gather(1, best)
    is_finished = torch.cat((is_finished, ended), 1).gather(1, best)
    offsets = torch.arange(count, device=device)[:, None] * beams
    decoder.reorder((source_beam.gather(1, survivors) + offsets).view(-1))
    return running, running_scores, finished, finished_scores, is_finished, ends


def _forced_steps(decoder: ForcedRuns, steps: int, running: torch.Tensor, running_scores: torch.Tensor,
                  finished_scores: torch.Tensor, is_finished: torch.Tensor, improvable: torch.Tensor,
                  length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`steps` steps at which every row's next token is forced, as `_step` would take them: each
    keeps every row, adds its token's log-probability and sorts the rows by score, and ends no
    hypothesis (so the finished stay as they are); the early stop is checked at each length. The
    next (running, running_scores, improvable)."""
    count, beams, max_length = running.shape
    worst = torch.where(is_finished, finished_scores.min(1, keepdim=True)[0], NEVER)
    tokens, token_log_p = (t.reshape(count, beams, steps) for t in decoder.forced(length, steps))
    rows = torch.arange(beams, device=running.device).expand(count, -1)  # each slot's row before the steps
    for j in range(steps):
        running_scores, order = torch.topk(running_scores + token_log_p[:, :, j].gather(1, rows), beams)
        rows = rows.gather(1, order)
        improvable = improvable & (running_scores[:, :1] / (length + j) > worst).any(1, keepdim=True)
    running = running.gather(1, rows[:, :, None].expand(-1, -1, max_length)).clone()
    running[:, :, length: length + steps] = tokens.gather(1, rows[:, :, None].expand(-1, -1, steps))
    offsets = torch.arange(count, device=running.device)[:, None] * beams
    decoder.reorder((rows + offsets).view(-1))
    return running, running_scores, improvable
