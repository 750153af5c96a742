"""The stepper and our beam search against Hugging Face's: the same next-token logits as the
model's forward (also after beams are reordered), the same hypotheses and scores as `generate`."""
import pytest
import torch
from transformers import T5Config, T5ForConditionalGeneration

from kgqa.model import stepper
from kgqa.decode.generate import constrained_generate
from kgqa.model.seq2seq import ScratchShape, encode_questions, extra_inputs, scratch_model
from kgqa.decode.settings import DecodeSettings

SHAPE = ScratchShape(d_model=32, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4)
QUESTIONS = ["高军英是在哪里出生的？", "马磊静的配偶是谁？", "完全无关的问题，长一些的一句话"]


def _model(tokenizer, kind: str, seed: int = 0):
    if kind == "t5 v1.1":  # gated feed-forward, untied output layer: as mT5 and T5 v1.1 checkpoints
        torch.manual_seed(seed)
        config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                          feed_forward_proj="gated-gelu", tie_word_embeddings=False, pad_token_id=tokenizer.pad_id,
                          eos_token_id=tokenizer.eos_id, decoder_start_token_id=tokenizer.pad_id)
        return T5ForConditionalGeneration(config).eval()
    return scratch_model(tokenizer, SHAPE, seed, copy=kind == "copy").eval()


@pytest.mark.parametrize("kind", ["copy", "t5", "t5 v1.1"])
@torch.no_grad()
def test_the_stepper_gives_the_models_logits_also_after_a_reorder(sample_kb, kind):
    _, _, tokenizer, _ = sample_kb
    model = _model(tokenizer, kind)
    assert stepper.T5Stepper.handles(model)
    ids, mask = encode_questions(tokenizer, QUESTIONS[:2], 128)
    torch.manual_seed(1)
    tokens = torch.randint(5, len(tokenizer), (4, 9))
    tokens[:, 0] = model.config.decoder_start_token_id
    rows = torch.tensor([1, 1, 3, 2])  # within each question's two rows
    expected_tokens = torch.cat((tokens[rows, :5], tokens[:, 5:]), 1)  # rows after the reorder at step 5
    source, source_mask = ids.repeat_interleave(2, 0), mask.repeat_interleave(2, 0)
    expected = model(input_ids=source, attention_mask=source_mask, decoder_input_ids=expected_tokens,
                     **extra_inputs(model, source)).logits
    decoder = stepper.T5Stepper(model, ids, mask, 2, 32)
    got = [decoder.step(tokens[:, t]) for t in range(5)]
    decoder.reorder(rows)
    got = torch.stack([g[rows] for g in got] + [decoder.step(tokens[:, t]) for t in range(5, 9)], 1)
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kind", ["copy", "t5 v1.1"])
def test_our_beam_search_keeps_the_hypotheses_generate_keeps(sample_kb, monkeypatch, seed, kind):
    _, _, tokenizer, index = sample_kb
    model = _model(tokenizer, kind, seed)
    settings = DecodeSettings(beams=4, top_k=4, restrict_mentions=seed != 2)  # look-ahead on, as by default
    ours = constrained_generate(model, tokenizer, index, QUESTIONS, settings)
    monkeypatch.setattr(stepper.T5Stepper, "handles", staticmethod(lambda model: False))
    theirs = constrained_generate(model, tokenizer, index, QUESTIONS, settings)
    assert [[c.key for c in found] for found in ours] == [[c.key for c in found] for found in theirs]
    assert [c.score for found in ours for c in found] == pytest.approx(
        [c.score for found in theirs for c in found], abs=1e-4)
    assert all(len(found) == 4 for found in ours)
