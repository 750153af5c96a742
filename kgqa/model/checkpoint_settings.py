"""What a checkpoint holds besides its model: `kgqa.json` (its settings) and `tokenizer/`, read
without torch: the index commands tokenize with a checkpoint's tokenizer and never load a model."""
from __future__ import annotations

import json
import os
from typing import Any

from kgqa.errors import KgqaError
from kgqa.files import recover_directory
from kgqa.model.tokenizer import Tokenizer, load_tokenizer
from kgqa.settings import TrainConfig

SETTINGS = "kgqa.json"


def is_checkpoint(directory: str) -> bool:
    return os.path.isfile(os.path.join(directory, SETTINGS))


def read_settings(directory: str) -> dict[str, Any]:
    recover_directory(directory)
    path = os.path.join(directory, SETTINGS)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise KgqaError("is a file, expected a checkpoint directory", directory)
    if not os.path.isdir(directory):
        raise KgqaError("no such checkpoint directory", directory)
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise KgqaError(f"not a kgqa checkpoint (no {SETTINGS})", directory) from None
    except ValueError as error:
        raise KgqaError(f"unreadable ({error})", path) from None


def trained_with(directory: str) -> TrainConfig | None:
    """How the checkpoint was trained (`kgqa.json`'s "train", typed); None for one kgqa did not train."""
    record = read_settings(directory).get("train")
    return TrainConfig.saved(record) if isinstance(record, dict) else None


def checkpoint_tokenizer(directory: str) -> tuple[Tokenizer, dict[str, Any]]:
    """The checkpoint's tokenizer and settings; refuses a tokenizer that is not the one its model
    was trained with."""
    settings = read_settings(directory)
    tokenizer = load_tokenizer(os.path.join(directory, "tokenizer"))
    if settings.get("tokenizer_sha256") not in (None, tokenizer.sha256):
        raise KgqaError("tokenizer differs from the one this model was trained with", directory)
    return tokenizer, settings
