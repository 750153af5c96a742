"""Constrained beam search: question -> the top-k KB keys the model writes under the decoding
rules (`processors.py`), as candidates. T5-family and BART models step through `Stepper` under
our copy of HF's beam search; other families and greedy search go through `generate`.
"""
from __future__ import annotations

import torch
from transformers import LogitsProcessor, LogitsProcessorList, PreTrainedModel

from kgqa.decode.beam_search import beam_search, is_real
from kgqa.decode.forced_runs import ForcedRuns
from kgqa.decode.processors import Lookahead, TrieConstraint, TrieWalker
from kgqa.decode.settings import DecodeSettings
from kgqa.kb.index import KBIndex
from kgqa.model.seq2seq import encode_questions, extra_inputs
from kgqa.model.stepper import Encoded, Stepper
from kgqa.model.tokenizer import Tokenizer
from kgqa.candidate import Candidate


@torch.no_grad()
def constrained_generate(model: PreTrainedModel, tokenizer: Tokenizer, index: KBIndex, questions: list[str],
                         settings: DecodeSettings, top_k: int | None = None,
                         encoded: Encoded | None = None, mentions: list[list[int]] | None = None
                         ) -> list[list[Candidate]]:
    """Top-k (default: `settings.top_k`) KB answers per question, best first, from one beam search
    of `settings.beams`; a question with no reachable key gets []. `encoded`: the questions as the
    encoder read them, where the caller has them (models the stepper runs; else they are encoded here).
    `mentions`: each question's KB subjects, longest first, where the caller read them
    (`kgqa.reading`); else those the question spells as the KB does."""
    num_beams = settings.beams
    top_k = min(settings.top_k if top_k is None else top_k, num_beams)
    input_ids, attention = encode_questions(tokenizer, questions, settings.max_question_tokens, model.device)
    if mentions is None:
        mentions = [index.mentions(q) for q in questions]
    walker = TrieWalker(index, tokenizer, mentions if settings.restrict_mentions else [[] for _ in questions])
    processors: list[LogitsProcessor] = [TrieConstraint(walker, num_beams)]
    if settings.lookahead or settings.mention_lookahead:
        processors.append(Lookahead(walker, questions, num_beams, settings.lookahead, settings.mention_lookahead))
    sequences, scores = _search(model, tokenizer, input_ids, attention, LogitsProcessorList(processors), num_beams, top_k,
                                walker, encoded)
    results: list[list[Candidate]] = []
    for q in range(len(questions)):
        candidates: list[Candidate] = []
        for k in range(q * top_k, (q + 1) * top_k):
            ids = sequences[k][walker.skip:]
            if tokenizer.eos_id not in ids or not is_real(scores[k]):
                continue
            state = walker.state(q, tuple(ids[: ids.index(tokenizer.eos_id) + 1]))
            if state.key is None or any(c.key == state.key for c in candidates):
                continue
            candidates.append(Candidate.from_fact(index.fact(state.key), state.key, float(scores[k])))
        results.append(candidates)
    return results


_MAX_NEW_TOKENS = 96


def _search(model: PreTrainedModel, tokenizer: Tokenizer, input_ids: torch.Tensor, attention: torch.Tensor,
            processors: LogitsProcessorList, num_beams: int, top_k: int,
            walker: TrieWalker, encoded: Encoded | None) -> tuple[list[list[int]], list[float]]:
    """(sequences, scores), `top_k` per question: models the stepper runs through it and our
    copy of HF's beam search (the same hypotheses, without `generate`'s per-step wrapping);
    others, and greedy search, through `generate`."""
    if num_beams > 1 and Stepper.handles(model):
        stepper = Stepper(model, encoded or Encoded(model, input_ids, attention), num_beams, 1 + _MAX_NEW_TOKENS)
        decoder = ForcedRuns(stepper, walker, num_beams, model.config.vocab_size)
        sequences, scores = beam_search(decoder, processors, len(input_ids), num_beams,
                                        model.config.decoder_start_token_id, tokenizer.eos_id,
                                        1 + _MAX_NEW_TOKENS, top_k, on_keep=walker.keep)
        return sequences.tolist(), scores.tolist()
    output = model.generate(
        **extra_inputs(model, input_ids),
        input_ids=input_ids,
        attention_mask=attention,
        num_beams=num_beams,
        num_return_sequences=top_k,
        max_new_tokens=_MAX_NEW_TOKENS,
        do_sample=False,
        logits_processor=processors,
        return_dict_in_generate=True,
        output_scores=True,
        pad_token_id=tokenizer.pad_id,
        eos_token_id=tokenizer.eos_id,
    )
    sequences = output.sequences.tolist()
    return sequences, output.sequences_scores.tolist() if num_beams > 1 else [0.0] * len(sequences)
