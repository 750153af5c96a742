"""Look-alikes of the pretrained Chinese checkpoints KgCLUE users fine-tune, written on the spot
(no weights can be downloaded here): each has the real checkpoint's model class, tokenizer class,
special-token layout and config fields, with random weights, at a tiny size for tests or at the
real size for speed (`benchmarks/pretrained_speed.py`).

- `uer_t5`: uer/t5-small-chinese-cluecorpussmall (and its base size): `T5ForConditionalGeneration`
  + `BertTokenizer` named by the config; `[PAD]`=0, `[unused1..99]`, `[UNK]`=100, `[CLS]`=101 (the
  decoder start), `[SEP]`=102, `[MASK]`=103, sentinels `extra0..extra99` last; no eos token, the
  config's `eos_token_id` 1 an unused slot.
- `fnlp_bart`: fnlp/bart-base-chinese: `BartForConditionalGeneration` + `BertTokenizer`; `[CLS]` the
  bos, `[SEP]` the eos and the decoder start.
- `mengzi_t5`: Langboat/mengzi-t5-base (IDEA-CCNL's Randeng alike): T5 v1.1 (gated GELU, untied
  output layer) + a sentencepiece `T5Tokenizer` (NFKC, pad 0, eos 1, unk 2, 100 sentinels).
- `mt5`: google/mt5-small: `MT5ForConditionalGeneration` + the same kind of sentencepiece tokenizer.
"""
from __future__ import annotations

import io
import json
import os
from typing import Iterable

import sentencepiece as spm
from transformers import (BartConfig, BartForConditionalGeneration, MT5Config, MT5ForConditionalGeneration, T5Config,
                          T5ForConditionalGeneration)

# (d_model, d_ff, layers, heads) by size; "tiny" keeps tests fast
SHAPES = {"tiny": (32, 64, 1, 2), "small": (512, 2048, 6, 8), "base": (768, 3072, 12, 12)}
BERT_VOCAB = 21128  # the Chinese BERT vocabulary uer's and fnlp's checkpoints use
SENTINELS = 100


def bert_vocab(texts: Iterable[str], size: int | None = None, leave_out: str = "") -> list[str]:
    """A Chinese BERT vocabulary's layout: the special slots first, then lowercase characters of
    `texts` (less `leave_out`, which become [UNK]), ASCII lowercase letters and digits, a few word
    pieces, padded with CJK characters up to `size` (the real 21,128) where given."""
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]", "<S>", "<T>"]
    characters = sorted({c.lower() for text in texts for c in text if not c.isspace()} - set(leave_out))
    pieces = list("abcdefghijklmnopqrstuvwxyz0123456789") + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    seen = set(vocab)
    for token in characters + pieces + ["iphone", "##one"]:
        if token not in seen and token.lower() == token:
            vocab.append(token)
            seen.add(token)
    code = 0x4E00
    while size is not None and len(vocab) < size:
        if chr(code) not in seen and chr(code) not in leave_out:
            vocab.append(chr(code))
        code += 1
    return vocab


def _write_bert_vocab(directory: str, vocab: list[str]) -> None:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "vocab.txt"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(vocab) + "\n")
    with open(os.path.join(directory, "special_tokens_map.json"), "w", encoding="utf-8") as handle:
        json.dump({"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                   "mask_token": "[MASK]"}, handle)
    with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as handle:
        json.dump({"do_lower_case": True, "tokenizer_class": "BertTokenizer"}, handle)


def _t5_shape(size: str, vocab_size: int) -> dict:
    d_model, d_ff, layers, heads = SHAPES[size]
    return dict(vocab_size=vocab_size, d_model=d_model, d_kv=d_model // heads, d_ff=d_ff, num_layers=layers,
                num_decoder_layers=layers, num_heads=heads)


def uer_t5(directory: str, texts: Iterable[str], size: str = "tiny", leave_out: str = "") -> str:
    """uer/t5-{small,base}-chinese-cluecorpussmall's layout (`size` "small" or "base" for real sizes)."""
    vocab = bert_vocab(texts, BERT_VOCAB if size != "tiny" else None, leave_out)
    vocab += [f"extra{i}" for i in range(SENTINELS)]
    _write_bert_vocab(directory, vocab)
    config = T5Config(**_t5_shape(size, len(vocab)), feed_forward_proj="relu", tie_word_embeddings=True,
                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=101, tokenizer_class="BertTokenizer")
    T5ForConditionalGeneration(config).save_pretrained(directory)
    return directory


def fnlp_bart(directory: str, texts: Iterable[str], size: str = "tiny", leave_out: str = "") -> str:
    """fnlp/bart-base-chinese's layout ("base": 6+6 layers of 768, as the real one)."""
    vocab = bert_vocab(texts, BERT_VOCAB if size != "tiny" else None, leave_out)
    _write_bert_vocab(directory, vocab)
    d_model, d_ff, layers, heads = SHAPES[size] if size != "base" else (768, 3072, 6, 12)
    config = BartConfig(vocab_size=len(vocab), d_model=d_model, encoder_layers=layers, decoder_layers=layers,
                        encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=d_ff,
                        decoder_ffn_dim=d_ff, max_position_embeddings=512, pad_token_id=0, bos_token_id=101,
                        eos_token_id=102, decoder_start_token_id=102, forced_eos_token_id=102,
                        tokenizer_class="BertTokenizer")
    BartForConditionalGeneration(config).save_pretrained(directory)
    return directory


def _write_sentencepiece(directory: str, texts: Iterable[str], vocab_size: int, leave_out: str) -> int:
    """A unigram sentencepiece model as T5's (NFKC, pad 0, eos 1, unk 2, a dummy prefix) saved as
    `spiece.model`, and its tokenizer files; returns the vocabulary size with the sentinels."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([t.translate({ord(c): None for c in leave_out}) for t in texts]),
        model_writer=model, model_type="unigram", vocab_size=vocab_size, hard_vocab_limit=False,
        character_coverage=1.0, normalization_rule_name="nmt_nfkc", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        minloglevel=2)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "spiece.model"), "wb") as handle:
        handle.write(model.getvalue())
    with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as handle:
        json.dump({"tokenizer_class": "T5Tokenizer", "extra_ids": SENTINELS}, handle)
    pieces = spm.SentencePieceProcessor(model_proto=model.getvalue()).get_piece_size()
    return pieces + SENTINELS


def mengzi_t5(directory: str, texts: Iterable[str], size: str = "tiny", leave_out: str = "") -> str:
    """Langboat/mengzi-t5-base's layout: T5 v1.1 with a sentencepiece vocabulary (32,128 at "base")."""
    vocab_size = _write_sentencepiece(directory, texts, 32000 if size != "tiny" else 700, leave_out)
    config = T5Config(**_t5_shape(size, vocab_size), feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    T5ForConditionalGeneration(config).save_pretrained(directory)
    return directory


def mt5(directory: str, texts: Iterable[str], size: str = "tiny", leave_out: str = "") -> str:
    """google/mt5-small's layout (its 250,112-piece vocabulary only at real sizes)."""
    vocab_size = _write_sentencepiece(directory, texts, 700, leave_out)
    shape = _t5_shape(size, 250112 if size != "tiny" else vocab_size)
    config = MT5Config(**shape, feed_forward_proj="gated-gelu", tie_word_embeddings=False, pad_token_id=0,
                       eos_token_id=1, decoder_start_token_id=0)
    MT5ForConditionalGeneration(config).save_pretrained(directory)
    return directory


FAMILIES = {"uer-t5": uer_t5, "fnlp-bart": fnlp_bart, "mengzi-t5": mengzi_t5, "mt5": mt5}
