"""The stepper and our beam search against Hugging Face's: the same next-token logits as the
model's forward (also after beams are reordered), the same hypotheses and scores as `generate`."""
import numpy as np
import pytest
import torch
from transformers import BartConfig, BartForConditionalGeneration, T5Config, T5ForConditionalGeneration

from kgqa.model import stepper
from kgqa.decode import forced_runs
from kgqa.decode.generate import constrained_generate
from kgqa.decode.processors import TrieWalker
from kgqa.model.seq2seq import encode_questions, extra_inputs, scratch_model
from kgqa.settings import ScratchShape
from kgqa.settings import DecodeSettings

SHAPE = ScratchShape(d_model=32, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4)
QUESTIONS = ["高军英是在哪里出生的？", "马磊静的配偶是谁？", "完全无关的问题，长一些的一句话"]


def _model(tokenizer, kind: str, seed: int = 0):
    if kind == "bart":  # learned positions, post-norm layers, scaled queries, a bias on the output layer
        torch.manual_seed(seed)
        config = BartConfig(vocab_size=len(tokenizer), d_model=32, encoder_layers=2, decoder_layers=2,
                            encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
                            decoder_ffn_dim=64, max_position_embeddings=128, scale_embedding=True,
                            pad_token_id=tokenizer.pad_id, eos_token_id=tokenizer.eos_id, bos_token_id=None,
                            decoder_start_token_id=tokenizer.eos_id, forced_eos_token_id=None)
        model = BartForConditionalGeneration(config).eval()
        torch.nn.init.normal_(model.final_logits_bias, std=0.5)  # zero as initialised: give it a part
        return model
    if kind == "t5 v1.1":  # gated feed-forward, untied output layer: as mT5 and T5 v1.1 checkpoints
        torch.manual_seed(seed)
        config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                          feed_forward_proj="gated-gelu", tie_word_embeddings=False, pad_token_id=tokenizer.pad_id,
                          eos_token_id=tokenizer.eos_id, decoder_start_token_id=tokenizer.pad_id)
        return T5ForConditionalGeneration(config).eval()
    return scratch_model(tokenizer, SHAPE, seed, copy=kind == "copy").eval()


@pytest.mark.parametrize("kind", ["copy", "t5", "t5 v1.1", "bart"])
@torch.no_grad()
def test_the_stepper_gives_the_models_logits_also_after_a_reorder(sample_kb, kind):
    _, _, tokenizer, _ = sample_kb
    model = _model(tokenizer, kind)
    assert stepper.Stepper.handles(model)
    ids, mask = encode_questions(tokenizer, QUESTIONS[:2], 128)
    torch.manual_seed(1)
    tokens = torch.randint(5, len(tokenizer), (4, 9))
    tokens[:, 0] = model.config.decoder_start_token_id
    rows = torch.tensor([1, 1, 3, 2])  # within each question's two rows
    expected_tokens = torch.cat((tokens[rows, :5], tokens[:, 5:]), 1)  # rows after the reorder at step 5
    source, source_mask = ids.repeat_interleave(2, 0), mask.repeat_interleave(2, 0)
    expected = model(input_ids=source, attention_mask=source_mask, decoder_input_ids=expected_tokens,
                     **extra_inputs(model, source)).logits
    decoder = stepper.Stepper(model, stepper.Encoded(model, ids, mask), 2, 32)
    got = [decoder.step(tokens[:, t: t + 1], t)[:, 0] for t in range(5)]
    decoder.reorder(rows)
    got = torch.stack([g[rows] for g in got] + [decoder.step(tokens[:, t: t + 1], t)[:, 0] for t in range(5, 9)], 1)
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()
    # several positions of some rows in one call, after one position of all: the same logits
    decoder = stepper.Stepper(model, stepper.Encoded(model, ids, mask), 2, 32)
    first = decoder.step(expected_tokens[:, :1], 0)
    some = torch.tensor([2, 0])
    ahead = decoder.step(expected_tokens[some, 1:6], 1, some)
    rest = decoder.step(expected_tokens[:, 6:9], 6)
    assert torch.allclose(first[:, 0], expected[:, 0], atol=1e-4)
    assert torch.allclose(ahead, expected[some, 1:6], atol=1e-4), (ahead - expected[some, 1:6]).abs().max()
    assert torch.allclose(rest[some], expected[some, 6:9], atol=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kind", ["copy", "t5 v1.1", "bart"])
def test_our_beam_search_keeps_the_hypotheses_generate_keeps(sample_kb, monkeypatch, seed, kind):
    _, _, tokenizer, index = sample_kb
    model = _model(tokenizer, kind, seed)
    settings = DecodeSettings(beams=4, top_k=4, restrict_mentions=seed != 2)  # look-ahead on, as by default
    ours = constrained_generate(model, tokenizer, index, QUESTIONS, settings)
    monkeypatch.setattr(stepper.Stepper, "handles", staticmethod(lambda model: False))
    theirs = constrained_generate(model, tokenizer, index, QUESTIONS, settings)
    assert [[c.key for c in found] for found in ours] == [[c.key for c in found] for found in theirs]
    assert [c.score for found in ours for c in found] == pytest.approx(
        [c.score for found in theirs for c in found], abs=1e-4)
    assert all(len(found) == 4 for found in ours)


@pytest.mark.parametrize("kind", ["copy", "t5 v1.1", "bart"])
def test_forced_runs_take_fewer_decoder_passes_for_the_same_beam(sample_kb, monkeypatch, kind):
    _, _, tokenizer, index = sample_kb
    model = _model(tokenizer, kind, 3)
    settings = DecodeSettings(beams=4, top_k=4)
    passes = []
    step = stepper.Stepper.step
    monkeypatch.setattr(stepper.Stepper, "step", lambda self, *args: passes.append(args[0].shape) or step(self, *args))
    runs = constrained_generate(model, tokenizer, index, QUESTIONS[:1], settings)
    with_runs = list(passes)
    passes.clear()
    monkeypatch.setattr(forced_runs, "MAX_RUN", 0)  # each row one position a step: the beam before forced runs
    steps = constrained_generate(model, tokenizer, index, QUESTIONS[:1], settings)
    assert [c.key for c in runs[0]] == [c.key for c in steps[0]] and len(runs[0]) == 4
    assert [c.score for c in runs[0]] == pytest.approx([c.score for c in steps[0]], abs=1e-4)
    assert all(shape[1] == 1 for shape in passes)
    assert len(with_runs) < len(passes) * 0.7, (len(with_runs), len(passes))
    assert max(shape[1] for shape in with_runs) > 2


def test_a_pass_is_as_wide_as_its_rows_runs_where_passes_cost_more_than_positions():
    runs = np.array([6, 1, 3, 6])  # four rows of one question: each takes its whole run
    assert forced_runs._width(runs, pass_cost=64) == 6
    many = np.array([6] + [1] * 127)  # a batch's rows mostly at a choice: padding would cost more
    assert forced_runs._width(many, pass_cost=64) == 1
    assert forced_runs._width(many, pass_cost=100_000) == 6  # a GPU: the pass is the cost


def test_the_walker_names_the_forced_run_up_to_a_choice_or_through_eos(sample_kb):
    _, _, tokenizer, index = sample_kb
    mentions = index.names.mentions("马磊静的配偶是谁？")
    walker = TrieWalker(index, tokenizer, [mentions])
    _, predicate, disambiguation = next(index.keys(mentions[0]))
    ids = [tokenizer.pad_id] + tokenizer.encode_target(index.names.surface(mentions[0]), predicate, disambiguation)
    for cut in range(1, len(ids)):
        prefix = ids[:cut]
        run = walker.forced_run(0, prefix, 100)
        for token in run:  # each token of the run is the one allowed after what comes before it
            assert walker.allowed(0, prefix) == [token]
            prefix = prefix + [token]
        assert run[-1:] == [tokenizer.eos_id] or len(walker.allowed(0, prefix)) > 1
        assert walker.forced_run(0, ids[:cut], 1) == run[:1]
