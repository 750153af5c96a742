"""The seq2seq model: a small T5 built from a config (no weights to download), or any local or
hub checkpoint transformers can open (T5, mT5, BART), resized to its tokenizer."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from transformers import AutoModelForSeq2SeqLM, PreTrainedModel, T5Config, T5ForConditionalGeneration

from kgqa.errors import KgqaError
from kgqa.tokenizer import Tokenizer


@dataclass
class ScratchShape:
    """Size of the from-scratch T5; defaults fit a 60-minute training budget on 2 CPU cores."""

    d_model: int = 256
    d_ff: int = 1024
    num_layers: int = 3
    num_decoder_layers: int = 3
    num_heads: int = 4
    dropout_rate: float = 0.1


def scratch_model(tokenizer: Tokenizer, shape: ScratchShape, seed: int) -> PreTrainedModel:
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_kv=shape.d_model // shape.num_heads,
        pad_token_id=tokenizer.pad_id,
        eos_token_id=tokenizer.eos_id,
        decoder_start_token_id=tokenizer.pad_id,
        tie_word_embeddings=True,
        **asdict(shape),
    )
    return T5ForConditionalGeneration(config)


def load_model(name_or_path: str, tokenizer: Tokenizer | None = None) -> PreTrainedModel:
    """Open a checkpoint; with a tokenizer, grow the embeddings for ids it added (`[SEP]`)."""
    try:
        model = AutoModelForSeq2SeqLM.from_pretrained(name_or_path)
    except (OSError, ValueError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise KgqaError(f"cannot load model: {first}", name_or_path) from None
    if tokenizer is not None and len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    return model


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
