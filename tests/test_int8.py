"""int8 answering on a CPU: a row's result is its own whatever rows are batched beside it, close to
the float layer's; a question's confidence is the same alone or in batches of 4 and 32."""
import json

import numpy as np
import pytest
import torch

from kgqa.settings import DecodeSettings
from kgqa.model.int8 import Int8Linear, quantized_int8
from kgqa.model.seq2seq import scratch_model
from kgqa.pipeline import KGQA
from kgqa.rank.fitted import Fitted
from kgqa.rank.confidence import SIGNAL_NAMES, Calibrator
from kgqa.rank.features import FEATURE_NAMES
from kgqa.rank.reranker import Reranker

from conftest import SAMPLE, TINY_SHAPE


def test_a_rows_output_is_its_own_alone_or_beside_rows_of_any_scale():
    torch.manual_seed(0)
    linear = torch.nn.Linear(48, 24)
    layer = Int8Linear(linear)
    row = torch.randn(1, 48)
    beside = torch.cat([row, 100 * torch.randn(31, 48), 1e-3 * torch.randn(4, 48)])  # scales far from the row's
    assert torch.equal(layer(beside)[:1], layer(row))
    assert torch.equal(layer(beside.view(3, 12, 48)).view(36, 24), layer(beside))  # any leading shape
    exact = linear(beside)
    with torch.no_grad():
        error = (layer(beside) - exact).abs().amax(dim=1) / exact.abs().amax(dim=1)
    assert float(error.max()) < 0.03  # per-row int8 stays within a few hundredths of the float layer
    assert layer(torch.zeros(0, 48)).shape == (0, 24)


def test_quantising_leaves_the_model_given_as_it_was():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    quantised = quantized_int8(model)
    assert [type(m) for m in model] == [torch.nn.Linear, torch.nn.ReLU, torch.nn.Linear]
    assert [type(m) for m in quantised] == [Int8Linear, torch.nn.ReLU, Int8Linear]


def test_a_questions_confidence_is_the_same_alone_and_in_batches_of_4_and_32(sample_kb):
    _, _, tokenizer, index = sample_kb
    with open(f"{SAMPLE}/dev.json", encoding="utf-8") as handle:
        questions = [json.loads(line)["question"] for line in handle][:32]
    model = scratch_model(tokenizer, TINY_SHAPE, 3).eval()
    width = len(FEATURE_NAMES)
    reranker = Reranker([0.0] * width, [1.0] * width, list(np.linspace(-0.5, 0.5, width)))
    # a calibrator reading the reranker's score and the model's likelihoods: what int8 changes
    weights = {"score": 0.2, "margin": 1.0, "mean_log_likelihood": 1.0}
    calibrator = Calibrator([0.0] * len(SIGNAL_NAMES), [1.0] * len(SIGNAL_NAMES),
                            [weights.get(name, 0.0) for name in SIGNAL_NAMES], 3.0)
    found = {}
    for batch_size in (1, 4, 32):
        qa = KGQA(model, tokenizer, index, DecodeSettings(beams=2, top_k=3, batch_size=batch_size, int8=True),
                  Fitted(reranker, calibrator))
        found[batch_size] = qa.ask(questions)
    alone = found[1]
    for batch_size in (4, 32):
        assert [[c.key for c in q] for q in found[batch_size]] == [[c.key for c in q] for q in alone]
        assert [c.confidence for q in found[batch_size] for c in q] == pytest.approx(
            [c.confidence for q in alone for c in q], abs=1e-3)
    spread = [c.confidence for q in alone for c in q]
    assert max(spread) - min(spread) > 0.1  # the confidences compared say something
