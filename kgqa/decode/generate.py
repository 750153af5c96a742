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
from kgqa.settings import DecodeSettings
from kgqa.kb.index import KBIndex
from kgqa.model.seq2seq import encode_questions, extra_inputs
from kgqa.model.stepper import Encoded, Stepper
from kgqa.model.tokenizer import Tokenizer
from kgqa.candidate import Candidate


@torch.no_grad()
def constrained_generate(model: PreTrainedModel, tokenizer: Tokenizer, index: KBIndex, questions: list[str],
                         settings: DecodeSettings, returned: int | None = None,
                         encoded: Encoded | None = None, mentions: list[list[int]] | None = None
                         ) -> list[list[Candidate]]:
    """`returned` KB answers per question (default: `settings.top_k`; at most `settings.beams`: the
    beam's hypotheses), best first, from one beam search of `settings.beams`; a question with no reachable key gets []. `encoded`: the questions as the
    encoder read them, where the caller has them (models the stepper runs; else they are encoded here).
    `mentions`: each question's KB subjects, longest first, where the caller read them
    (`kgqa.reading`); else those the question spells as the KB does."""
    beams = settings.beams
    returned = min(settings.top_k if returned is None else returned, beams)
    input_ids, attention = encode_questions(tokenizer, questions, settings.max_question_tokens, model.device)
    if mentions is None:
        mentions = [index.names.mentions(q) for q in questions]
    walker = TrieWalker(index, tokenizer, mentions if settings.restrict_mentions else [[] for _ in questions])
    processors: list[LogitsProcessor] = [TrieConstraint(walker, beams)]
    if settings.lookahead or settings.mention_lookahead:
        processors.append(Lookahead(walker, questions, beams, settings.lookahead, settings.mention_lookahead))
    sequences, scores = _search(model, tokenizer, input_ids, attention, LogitsProcessorList(processors), beams, returned,
                                walker, encoded)
    results: list[list[Candidate]] = []
    for q in range(len(questions)):
        candidates: list[Candidate] = []
        for k in range(q * returned, (q + 1) * returned):
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
            processors: LogitsProcessorList, beams: int, returned: int,
            walker: TrieWalker, encoded: Encoded | None) -> tuple[list[list[int]], list[float]]:
    """(sequences, scores), `returned` per question: models the stepper runs through it and our
    copy of HF's beam search (the same hypotheses, without `generate`'s per-step wrapping);
    others, and greedy search, through `generate`."""
    if beams > 1 and Stepper.handles(model):
        stepper = Stepper(model, encoded or Encoded(model, input_ids, attention), beams, 1 + _MAX_NEW_TOKENS)
        decoder = ForcedRuns(stepper, walker, beams, model.config.vocab_size)
        sequences, scores = beam_search(decoder, processors, len(input_ids), beams,
                                        model.config.decoder_start_token_id, tokenizer.eos_id,
                                        1 + _MAX_NEW_TOKENS, returned, on_keep=walker.keep)
        return sequences.tolist(), scores.tolist()
    output = model.generate(
        **extra_inputs(model, input_ids),
        input_ids=input_ids,
        attention_mask=attention,
        num_beams=beams,
        num_return_sequences=returned,
        max_new_tokens=_MAX_NEW_TOKENS,
        do_sample=False,
        logits_processor=processors,
        return_dict_in_generate=True,
        output_scores=True,
        pad_token_id=tokenizer.pad_id,
        eos_token_id=tokenizer.eos_id,
    )
    sequences = output.sequences.tolist()
    return sequences, output.sequences_scores.tolist() if beams > 1 else [0.0] * len(sequences)
