"""A checkpoint is a directory transformers opens as it is, plus `tokenizer/` and `kgqa.json`
(read without torch by `kgqa.model.checkpoint_settings`).

Written whole into a temporary directory and renamed into place, so a kill mid-save leaves
the previous checkpoint intact.
"""
from __future__ import annotations

import json
import os
from typing import Any

import torch
from transformers import PreTrainedModel

from kgqa.errors import KgqaError, first_line
from kgqa.files import atomic_directory, recover_directory
from kgqa.model.checkpoint_settings import SETTINGS, checkpoint_tokenizer, is_checkpoint
from kgqa.model.seq2seq import load_model
from kgqa.model.tokenizer import Tokenizer

TRAINER_STATE = "trainer_state.pt"


def save_checkpoint(directory: str, model: PreTrainedModel, tokenizer: Tokenizer, settings: dict[str, Any],
                    trainer_state: dict[str, Any] | None = None) -> None:
    with atomic_directory(directory, is_checkpoint, "checkpoint") as temp:
        model.save_pretrained(temp)
        tokenizer.save(os.path.join(temp, "tokenizer"))
        with open(os.path.join(temp, SETTINGS), "w", encoding="utf-8") as handle:
            json.dump({**settings, "tokenizer_sha256": tokenizer.sha256}, handle, ensure_ascii=False, indent=1)
        if trainer_state is not None:
            torch.save(trainer_state, os.path.join(temp, TRAINER_STATE))


def load_checkpoint(directory: str) -> tuple[PreTrainedModel, Tokenizer, dict[str, Any]]:
    """Model, tokenizer and settings; refuses a tokenizer that is not the one trained with."""
    tokenizer, settings = checkpoint_tokenizer(directory)
    model = load_model(directory, tokenizer)
    model.eval()
    return model, tokenizer, settings


def load_trainer_state(directory: str) -> dict[str, Any] | None:
    """The optimizer, scheduler and RNG state to resume from, as tensors and plain values only:
    a pickle may run code, and a checkpoint can come from anyone."""
    recover_directory(directory)
    path = os.path.join(directory, TRAINER_STATE)
    if not os.path.isfile(path):
        return None
    try:
        return torch.load(path, weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ... by damage
        raise KgqaError("unreadable trainer state, or one holding more than tensors and plain values "
                        f"({first_line(error)})",
                        path) from None
