"""Text <-> token ids, and the one place that knows how (S, P, M) is linearised for the decoder.

The target is `S [SEP] P [SEP] M [EOS]`: each part is encoded on its own and joined with one
separator id, so the ids the model writes, the ids in the index and the ids of training labels
are the same by construction (encoding a joined string could merge tokens across a boundary).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from typing import Iterable

import sentencepiece as spm

from kgqa.errors import KgqaError

SEP = "[SEP]"
_SP_FILE = "spm.model"


class Tokenizer:
    """Common surface of the scratch sentencepiece tokenizer and a checkpoint's own tokenizer."""

    pad_id: int
    eos_id: int
    sep_id: int
    # Ids every label starts with (BART's <s>); generation forces them before the constraint.
    target_prefix: list[int]

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: list[int]) -> str:
        raise NotImplementedError

    def encode_question(self, text: str) -> list[int]:
        """Encoder input: the text with whatever special ids this tokenizer's model expects."""
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def sha256(self) -> str:
        raise NotImplementedError

    def save(self, directory: str) -> None:
        raise NotImplementedError

    def encode_target(self, surface: str, predicate: str, disambiguation: str) -> list[int]:
        return (
            self.target_prefix
            + self.encode(surface) + [self.sep_id]
            + self.encode(predicate) + [self.sep_id]
            + self.encode(disambiguation) + [self.eos_id]
        )

    def decode_target(self, ids: list[int]) -> tuple[str, str, str] | None:
        """Inverse of `encode_target`, cut at the first EOS; None when the ids are not 3 parts."""
        ids = list(ids)
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        if ids[: len(self.target_prefix)] == self.target_prefix:
            ids = ids[len(self.target_prefix):]
        parts: list[list[int]] = [[]]
        for token in ids:
            if token == self.sep_id:
                parts.append([])
            elif token != self.pad_id:
                parts[-1].append(token)
        if len(parts) != 3:
            return None
        surface, predicate, disambiguation = (self.decode(part) for part in parts)
        return surface, predicate, disambiguation


class SentencePieceTokenizer(Tokenizer):
    """Character-level pieces with byte fallback: a mention is copied one character per token,
    and no question or KB string (emoji, CJK extension B) ever becomes <unk>."""

    def __init__(self, proto: bytes) -> None:
        self.proto = proto
        self.sp = spm.SentencePieceProcessor(model_proto=proto)
        self.pad_id = self.sp.pad_id()
        self.eos_id = self.sp.eos_id()
        self.sep_id = self.sp.piece_to_id(SEP)
        self.target_prefix = []

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 6000) -> "SentencePieceTokenizer":
        model = io.BytesIO()
        # 256 byte pieces and the control ids come out of the budget before any character.
        vocab_size = max(vocab_size, 512)
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_writer=model,
            model_type="char",
            vocab_size=vocab_size,
            hard_vocab_limit=False,  # a small corpus may have fewer characters than asked
            byte_fallback=True,
            character_coverage=1.0,
            normalization_rule_name="identity",  # keep full-width brackets and traditional forms
            add_dummy_prefix=False,
            remove_extra_whitespaces=False,
            control_symbols=[SEP],  # never produced from text, so a question can't forge it
            pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
            minloglevel=2,
        )
        return cls(model.getvalue())

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode(ids)

    def encode_question(self, text: str) -> list[int]:
        return self.sp.encode(text) + [self.eos_id]

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.proto).hexdigest()

    def save(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, _SP_FILE), "wb") as handle:
            handle.write(self.proto)


class HFTokenizer(Tokenizer):
    """A pretrained checkpoint's own tokenizer, with `[SEP]` added when it has none."""

    def __init__(self, tokenizer) -> None:  # a transformers PreTrainedTokenizer(Fast)
        self.tok = tokenizer
        if SEP not in tokenizer.get_vocab():
            tokenizer.add_special_tokens({"additional_special_tokens": [SEP]})
        self.sep_id = tokenizer.convert_tokens_to_ids(SEP)
        self.pad_id = tokenizer.pad_token_id
        self.eos_id = tokenizer.eos_token_id
        probe = tokenizer("a")["input_ids"]
        bos = tokenizer.bos_token_id
        self.target_prefix = [bos] if bos is not None and probe[:1] == [bos] else []

    @classmethod
    def from_pretrained(cls, name_or_path: str) -> "HFTokenizer":
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(name_or_path))

    def add_unknown_characters(self, texts: Iterable[str]) -> list[str]:
        """Add, as tokens of their own, the characters of `texts` this vocabulary maps to its
        unknown token; returns them. Why: KB strings that differ only in such characters would
        encode alike, and the trie would keep one of the keys and make the others unreachable
        (an English T5's vocabulary holds few CJK characters). The model's embeddings grow to match."""
        unknown = self.tok.unk_token_id
        if unknown is None:  # byte-level vocabularies (BART's) encode every character
            return []
        characters = sorted({c for text in texts for c in text if not c.isspace()})
        missing = [c for c in characters if unknown in self.encode(c)]
        if missing:
            self.tok.add_tokens(missing)
        return missing

    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True).strip()

    def encode_question(self, text: str) -> list[int]:
        return self.tok(text)["input_ids"]

    def __len__(self) -> int:
        return len(self.tok)

    @property
    def sha256(self) -> str:
        vocab = json.dumps(sorted(self.tok.get_vocab().items()), ensure_ascii=False)
        return hashlib.sha256(vocab.encode("utf-8")).hexdigest()

    def save(self, directory: str) -> None:
        self.tok.save_pretrained(directory)


def load_tokenizer(directory: str) -> Tokenizer:
    """Open the tokenizer saved beside a checkpoint, whichever kind it is."""
    sp_path = os.path.join(directory, _SP_FILE)
    if os.path.isfile(sp_path):
        with open(sp_path, "rb") as handle:
            return SentencePieceTokenizer(handle.read())
    if not os.path.isdir(directory):
        raise KgqaError("no tokenizer directory in the checkpoint", directory)
    try:
        return HFTokenizer.from_pretrained(directory)
    except (OSError, ValueError) as error:
        raise KgqaError(f"cannot load tokenizer: {error}", directory) from None
