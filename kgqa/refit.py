"""Fitting a checkpoint's models again (`kgqa fit-reranker`), and the fit training closes with:
the answer kinds, naming weights, question wording and noisy channel on the questions the model
trained on, then the reranker and the confidence calibrator on the questions training held out
(by predicate, and by question where it did), read through the model being fitted for
(`rank.fitted.fit`), saved beside it.
"""
from __future__ import annotations

import torch

from kgqa.data import Pairs, Question, read_questions, training_pairs, training_split
from kgqa.settings import DecodeSettings
from kgqa.errors import KgqaError
from kgqa.kb.build import ensure_index
from kgqa.kb.index import KBIndex
from kgqa.model.checkpoint import load_checkpoint
from kgqa.model.checkpoint_settings import checkpoint_tokenizer, trained_with
from kgqa.model.seq2seq import pick_device
from kgqa.pipeline import KGQA
from kgqa.rank.fitted import Fitted, fit
from kgqa.rank.features import CandidateSet
from kgqa.reading import read_pairs
from kgqa.source import Source


def held_out_candidates(qa: KGQA, questions: list[str]) -> list[CandidateSet]:
    """Each question's candidates (held-out ones, for a fit), from the beam of the model being fitted for."""
    candidate_sets: list[CandidateSet] = []
    size = qa.settings.batch_size
    for start in range(0, len(questions), size):
        candidate_sets.extend(qa.candidate_sets(questions[start:start + size]))
    return candidate_sets


def refit(source: Source, train_file: str, channel_epochs: int | None = None) -> tuple[Fitted, float, int]:
    """Fit `source`'s checkpoint's models (`rank.fitted.fit`) again over its KB, the reranker and
    calibrator on the same predicates and questions its training held out (the split re-drawn
    from its saved shares and seed), the channel trained `channel_epochs` passes (None: as its
    training says): for a checkpoint an older kgqa fitted. Returns (what was fitted, gold reach,
    held-out questions); each model is saved beside the weights."""
    tokenizer, _ = checkpoint_tokenizer(source.checkpoint)
    trained = trained_with(source.checkpoint)
    if trained is None or not trained.holdout:
        raise KgqaError("the checkpoint records no held-out split (trained with --holdout 0?)", source.checkpoint)
    kept, held, asked = training_split(read_questions(train_file, need_answers=True), trained.holdout,
                                       trained.holdout_questions, trained.seed)
    index = ensure_index(source.kb, tokenizer, source.index_dir, source.skip_bad_lines)
    decoding = DecodeSettings(beams=trained.beams, max_question_tokens=trained.max_question_tokens, int8=False)
    fitted, reach = fit_beside(source.checkpoint, index, pick_device(source.device), decoding,
                               read_pairs(index, training_pairs(kept)), held, trained.seed,
                               trained.channel_epochs if channel_epochs is None else channel_epochs, asked)
    return fitted, reach, len(held) + len(asked)


def fit_beside(checkpoint: str, index: KBIndex, device: torch.device, decoding: DecodeSettings, pairs: Pairs,
               held: list[Question], seed: int, channel_epochs: int, asked: list[Question]) -> tuple[Fitted, float]:
    """`rank.fitted.fit` for the checkpoint's model (opened without `Source.open`: its fitted
    models are the ones being replaced) over the questions held out by predicate (`held`) and by
    question (`asked`), saved beside it; and the gold reach."""
    model, _, _ = load_checkpoint(checkpoint)
    model.to(device)
    trained = trained_with(checkpoint)
    object_tokens = trained.object_tokens if trained else 0
    fitted, reach = fit(index, pairs, held, seed, lambda evidence, over, questions: held_out_candidates(
        KGQA(model, over.tokenizer, over, decoding, evidence, object_tokens), questions), channel_epochs, device,
        asked)
    fitted.save(checkpoint)
    return fitted, reach
