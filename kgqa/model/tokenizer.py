"""Text <-> token ids, and the one place that knows how (S, P, M) is linearised for the decoder.

The target is `S [SEP] P [SEP] M [EOS]`, then, for a model trained to, the object's first tokens
(`encode_object`: after the end, so decoding a key stops where it did): each part is encoded on
its own and joined with one separator id, so the ids the model writes, the ids in the index and
the ids of training labels are the same by construction (encoding a joined string could merge
tokens across a boundary).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from typing import Iterable, Iterator

import sentencepiece as spm

from kgqa.errors import KgqaError, first_line

SEP = "[SEP]"
_SP_FILE = "spm.model"


class Tokenizer:
    """Common surface of the scratch sentencepiece tokenizer and a checkpoint's own tokenizer."""

    pad_id: int
    eos_id: int
    sep_id: int
    decoder_start_id: int  # what the decoder reads before the first label token
    # Ids every label starts with (BART's <s>); generation forces them before the constraint.
    target_prefix: list[int]

    def encode(self, text: str) -> list[int]:
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

    def encode_object(self, obj: str, tokens: int) -> list[int]:
        """What follows a key's end in a target: the first `tokens` of the object and its own end
        (where it is that short), so the model's likelihood of it says how well an object answers."""
        return (self.encode(obj) + [self.eos_id])[:tokens]


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
        self.decoder_start_id = self.pad_id  # T5's convention

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 6000) -> "SentencePieceTokenizer":
        model = io.BytesIO()
        # 256 byte pieces and the control ids come out of the budget before any character.
        vocab_size = max(vocab_size, 512)
        failed: list[KgqaError] = []

        def read() -> Iterator[str]:
            """The texts, a user's error kept to be raised as itself (sentencepiece turns an
            exception of its iterator into a RuntimeError that names no file)."""
            try:
                yield from texts
            except KgqaError as error:
                failed.append(error)

        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=read(),
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
        except RuntimeError:
            if failed:  # too little read before it to train on
                raise failed[0] from None
            raise
        if failed:
            raise failed[0]
        return cls(model.getvalue())

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

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


SEP_ALTERNATIVE = "[KGQA_SEP]"  # the separator where a tokenizer's own `[SEP]` plays a part (BERT vocabularies)
# what a tokenizer is saved as: transformers' own file, a BERT vocabulary, sentencepiece, byte-level BPE
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model",
                    "vocab.json")
_ROLES_FILE = "kgqa_tokens.json"  # beside a saved tokenizer: the decoder start its model's config names


class HFTokenizer(Tokenizer):
    """A pretrained checkpoint's own tokenizer, with kgqa's separator added.

    Which ids play which part is one rule over the tokenizer and its model's config, the same for
    every family (T5 or BART, a sentencepiece, byte-level or BERT vocabulary):

    - **end** (`eos_id`): the tokenizer's `eos_token`; where it has none, its `sep_token` (a BERT
      vocabulary ends every text with `[SEP]`: uer's Chinese T5 and fnlp's Chinese BART). The
      config's `eos_token_id` is not read: configs derived from uer's T5 name an unused slot.
      Neither: the checkpoint is refused.
    - **decoder start**: the config's `decoder_start_token_id` (T5: pad; uer's T5: `[CLS]`; BART:
      its end token); where it names none, the tokenizer's pad token.
    - **label prefix** (`target_prefix`): the special ids the tokenizer puts before every text
      (BART's `<s>`, a BERT vocabulary's `[CLS]`), as the checkpoint was pretrained to write them
      first; none where the decoder already starts from them (uer's T5 starts from `[CLS]`).
    - **separator** (`sep_id`): a special token of kgqa's own, spelled `[SEP]` where the tokenizer
      gives that spelling no part of its own, else `[KGQA_SEP]`; never the end token.

    Text never produces the tokenizer's special tokens as such (`split_special_tokens`): a question
    or KB string that spells `[SEP]` or `[KGQA_SEP]` is read as characters, so no text forges the
    separator or a BERT vocabulary's end. (A sentencepiece vocabulary holds `</s>` as a piece of its
    own, which such a string still writes.)
    """

    def __init__(self, tokenizer, decoder_start_id: int | None = None) -> None:  # a transformers tokenizer
        self.tok = tokenizer
        self.pad_id = tokenizer.pad_token_id
        end = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
        if end is None:
            raise KgqaError("the checkpoint's tokenizer has no end token (neither an eos_token nor a sep_token)",
                            getattr(tokenizer, "name_or_path", ""))
        self.eos_id = end
        roles = {tokenizer.eos_token, tokenizer.sep_token, tokenizer.bos_token, tokenizer.cls_token,
                 tokenizer.pad_token, tokenizer.unk_token, tokenizer.mask_token}
        separator = SEP if SEP not in roles else SEP_ALTERNATIVE
        if separator not in tokenizer.get_vocab():
            tokenizer.add_special_tokens({"extra_special_tokens": [separator]}, replace_extra_special_tokens=False)
        self.sep_id = tokenizer.convert_tokens_to_ids(separator)
        self.decoder_start_id = self.pad_id if decoder_start_id is None else decoder_start_id
        text, framed = self.encode("a"), tokenizer("a", split_special_tokens=True)["input_ids"]
        lead = framed[: next(i for i in range(len(framed)) if framed[i:i + len(text)] == text)]
        self.target_prefix = [] if lead == [self.decoder_start_id] else lead

    @classmethod
    def from_pretrained(cls, name_or_path: str) -> "HFTokenizer":
        """The tokenizer of a checkpoint directory (or hub id), its roles read with the config beside
        it (a kgqa checkpoint keeps its tokenizer in `tokenizer/`, the config one level up)."""
        from transformers import AutoTokenizer

        if os.path.isdir(name_or_path) and not any(os.path.isfile(os.path.join(name_or_path, f)) for f in _TOKENIZER_FILES):
            # transformers would build an empty default tokenizer of the model's family instead
            raise KgqaError(f"cannot load the checkpoint's tokenizer: no tokenizer file ({', '.join(_TOKENIZER_FILES)})",
                            name_or_path)
        try:
            tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        except (OSError, ValueError, TypeError, KeyError) as error:
            raise KgqaError(f"cannot load the checkpoint's tokenizer: {first_line(error)}", name_or_path) from None
        return cls(tokenizer, _decoder_start(name_or_path))

    def add_lost_characters(self, texts: Iterable[str]) -> dict[str, list[int]]:
        """Add, as tokens of their own, the characters of `texts` this tokenizer does not keep: mapped
        to its unknown token, dropped (spaces in a BERT vocabulary), or changed (an uppercase letter
        lowercased, a full-width one narrowed, an accent stripped). Returns each added character
        with the ids it encoded to before (what its new embedding starts from).

        Why: KB strings that differ only in such characters ("iPhone 4" / "IPHONE4") would encode
        alike, and the trie would keep one of the keys and make the others unreachable. A
        character that survives on its own survives in any string (the tokenizers here normalise
        and split character by character, and an added token is matched before either), so once
        each one is kept, distinct strings encode to distinct ids."""
        characters = sorted({c for text in texts for c in text})
        lost = {}
        for c in characters:
            ids = self.encode(c)
            if not ids or self.tok.unk_token_id in ids or self.tok.decode(ids) != c:
                lost[c] = ids
        if lost:
            from tokenizers import AddedToken

            self.tok.add_tokens([AddedToken(c, normalized=False, lstrip=False, rstrip=False, single_word=False)
                                 for c in lost])
        return lost

    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]

    def encode_question(self, text: str) -> list[int]:
        return self.tok(text, split_special_tokens=True)["input_ids"]

    def __len__(self) -> int:
        return len(self.tok)

    @property
    def sha256(self) -> str:
        vocab = json.dumps(sorted(self.tok.get_vocab().items()), ensure_ascii=False)
        return hashlib.sha256(vocab.encode("utf-8")).hexdigest()

    def save(self, directory: str) -> None:
        self.tok.save_pretrained(directory)
        with open(os.path.join(directory, _ROLES_FILE), "w", encoding="utf-8") as handle:
            json.dump({"decoder_start_token_id": self.decoder_start_id}, handle)


def _decoder_start(name_or_path: str) -> int | None:
    """The `decoder_start_token_id` of the model a tokenizer belongs to: as kgqa saved it beside
    the tokenizer, else from the config in its directory (a pretrained checkpoint) or one level up
    (a kgqa checkpoint of an earlier release); a hub id's through transformers; None where none
    names one."""
    parent = os.path.dirname(os.path.normpath(name_or_path))
    for path in (os.path.join(name_or_path, _ROLES_FILE), os.path.join(name_or_path, "config.json"),
                 os.path.join(parent, "config.json")):
        if os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as handle:
                    return json.load(handle).get("decoder_start_token_id")
            except (OSError, ValueError, AttributeError):
                return None
    if os.path.isdir(name_or_path):
        return None
    from transformers import AutoConfig

    return getattr(AutoConfig.from_pretrained(name_or_path), "decoder_start_token_id", None)


def load_tokenizer(directory: str) -> Tokenizer:
    """Open the tokenizer saved beside a checkpoint, whichever kind it is."""
    sp_path = os.path.join(directory, _SP_FILE)
    if os.path.isfile(sp_path):
        with open(sp_path, "rb") as handle:
            return SentencePieceTokenizer(handle.read())
    if not os.path.isdir(directory):
        raise KgqaError("no tokenizer directory in the checkpoint", directory)
    return HFTokenizer.from_pretrained(directory)
