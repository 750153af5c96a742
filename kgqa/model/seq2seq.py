"""The seq2seq model: a small T5 built from a config (no weights to download), or any local or
hub checkpoint transformers can open (T5, mT5, BART), resized to its tokenizer."""
from __future__ import annotations

import os
from dataclasses import asdict
from typing import Iterable, Iterator

import torch
from torch.nn.utils.rnn import pad_sequence
from safetensors import SafetensorError
from transformers import (AutoConfig, AutoModelForSeq2SeqLM, PretrainedConfig, PreTrainedModel, T5Config,
                          T5ForConditionalGeneration)

from kgqa.errors import KgqaError, first_line
from kgqa.model.tokenizer import HFTokenizer, Tokenizer
from kgqa.settings import ScratchShape


class CopyT5(T5ForConditionalGeneration):
    """T5 with a copy (pointer) path: the output distribution mixes the vocabulary softmax with
    the last decoder layer's cross-attention over the question's tokens, gated per step.

    Why: from scratch, T5 learns to copy a mention only after a long plateau (the circuit that
    moves a source token to the output forms late); with a pointer, attending to the right
    question characters is itself the output, so the signal to learn it is direct. The returned
    `logits` are log-probabilities, so generation, beam scores and the loss work unchanged.
    Saved checkpoints still open as plain T5 in transformers (the gate is then ignored).
    """

    def __init__(self, config: T5Config) -> None:
        config.kgqa_copy = True
        super().__init__(config)
        self.copy_gate = torch.nn.Linear(config.d_model, 1)

    def _mixture_parts(self, input_ids, attention_mask, decoder_input_ids, labels, source_ids, kwargs):
        """The T5 output, the question ids copied from, the copy attention and the gate."""
        if labels is not None and decoder_input_ids is None:
            decoder_input_ids = self._shift_right(labels)
        kwargs.update(output_attentions=True, output_hidden_states=True, return_dict=True)
        out = super().forward(input_ids=input_ids, attention_mask=attention_mask,
                              decoder_input_ids=decoder_input_ids, **kwargs)
        source = input_ids if source_ids is None else source_ids
        attention = out.cross_attentions[-1].mean(dim=1).to(out.logits.dtype)  # (batch, target, source)
        gate = torch.sigmoid(self.copy_gate(out.decoder_hidden_states[-1]))
        return out, source, attention, gate

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, labels=None,
                source_ids=None, **kwargs):
        """`source_ids`: the question's ids; generate passes them on, as input_ids are not."""
        out, source, attention, gate = self._mixture_parts(input_ids, attention_mask, decoder_input_ids, labels,
                                                           source_ids, kwargs)
        copy = torch.zeros_like(out.logits).scatter_add_(
            -1, source.unsqueeze(1).expand(-1, attention.size(1), -1), attention)
        probs = gate * out.logits.softmax(-1) + (1 - gate) * copy
        out.logits = torch.log(probs.clamp_min(1e-12))
        out.cross_attentions = out.decoder_hidden_states = out.encoder_hidden_states = None
        out.decoder_attentions = out.encoder_attentions = None
        return out

    def target_log_probs(self, labels: torch.Tensor, source_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                         **kwargs) -> torch.Tensor:
        """log p(labels[t]) at each position (0 where labels are -100), equal to what `forward`'s
        log-probabilities give there, without building the vocabulary-sized mixture: only each
        target token's share of the softmax and of the copy attention is computed (the reranker
        scores every candidate key this way, and needs no other token's probability)."""
        out, source, attention, gate = self._mixture_parts(None, attention_mask, None, labels, source_ids, kwargs)
        target = labels.clamp_min(0)
        logits = out.logits
        generated = logits.gather(-1, target.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
        copied = (attention * (source.unsqueeze(1) == target.unsqueeze(-1))).sum(-1)
        return copy_mixture(generated, copied, gate.squeeze(-1)).masked_fill(labels < 0, 0.0)


def copy_mixture(generated: torch.Tensor, copied: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """CopyT5's log-probability of tokens from their vocabulary log-softmax (`generated`), the copy
    attention on the question's copies of them (`copied`) and the gate: what its forward gives."""
    return torch.log((gate * generated.exp() + (1 - gate) * copied).clamp_min(1e-12))


def encode_questions(tokenizer: Tokenizer, questions: list[str], max_tokens: int,
                     device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of a padded batch of questions, each cut to `max_tokens`, on `device`."""
    rows = [torch.tensor(tokenizer.encode_question(q)[:max_tokens], dtype=torch.long) for q in questions]
    return (pad_sequence(rows, batch_first=True, padding_value=tokenizer.pad_id).to(device),
            pad_sequence([torch.ones_like(row) for row in rows], batch_first=True).to(device))


def padded_batches(sizes: list[int], budget: int) -> Iterator[list[int]]:
    """Indices of `sizes`, smallest first, in groups whose count × largest size stays within
    `budget` (a group grows while its items, padded to the newest, largest one, fit; one item
    always goes): batches that waste little on padding, each of bounded work."""
    order = sorted(range(len(sizes)), key=sizes.__getitem__)
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and (end - start + 1) * sizes[order[end]] <= budget:
            end += 1
        yield order[start:end]
        start = end


def pad_targets(targets: list[list[int]]) -> torch.Tensor:
    """Decoder labels, padded with -100: the positions the loss ignores."""
    return pad_sequence([torch.tensor(t, dtype=torch.long) for t in targets], batch_first=True, padding_value=-100)


def target_log_probs(model: PreTrainedModel, encoder_outputs, attention_mask: torch.Tensor, labels: torch.Tensor,
                     question_ids: torch.Tensor) -> torch.Tensor:
    """log p(labels[t] | question, labels[:t]) per position (0 where labels are -100), from
    precomputed encoder outputs: how the reranker scores a candidate key."""
    if isinstance(model, CopyT5):
        return model.target_log_probs(labels, question_ids, encoder_outputs=encoder_outputs,
                                      attention_mask=attention_mask)
    logits = model(encoder_outputs=encoder_outputs, attention_mask=attention_mask, labels=labels).logits
    return -torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none")


def pick_device(name: str = "auto") -> torch.device:
    """`auto`: a CUDA GPU where one is present (under torchrun, this process's LOCAL_RANK one),
    else Apple's MPS, else the CPU; or exactly the device named."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda":
        name = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    try:
        device = torch.device(name)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as error:
        raise KgqaError(f"device {name!r} is not usable here ({str(error).splitlines()[0]})") from None
    return device


def extra_inputs(model: PreTrainedModel, question_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """What a model needs beside its usual inputs, the one place that knows: CopyT5 copies from
    the question's ids, which generate() and a call with precomputed encoder outputs do not pass."""
    return {"source_ids": question_ids} if isinstance(model, CopyT5) else {}


def scratch_model(tokenizer: Tokenizer, shape: ScratchShape, seed: int, copy: bool = True) -> PreTrainedModel:
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_kv=shape.d_model // shape.num_heads,
        pad_token_id=tokenizer.pad_id,
        eos_token_id=tokenizer.eos_id,
        decoder_start_token_id=tokenizer.decoder_start_id,
        tie_word_embeddings=True,
        attn_implementation="eager",  # the copy path reads attention weights
        **asdict(shape),
    )
    return CopyT5(config) if copy else T5ForConditionalGeneration(config)


def pretrained_config(name_or_path: str) -> PretrainedConfig:
    """The config of a checkpoint to fine-tune, refused in one line unless it is a sequence-to-
    sequence model kgqa can train (an encoder-only BERT or a causal LM writes no target)."""
    try:
        config = AutoConfig.from_pretrained(name_or_path)
    except (OSError, ValueError, KeyError) as error:
        raise KgqaError(f"cannot load model: {first_line(error)}", name_or_path) from None
    if not getattr(config, "is_encoder_decoder", False):
        kind = "a decoder-only (causal) language model" if getattr(config, "is_decoder", False) or any(
            a.endswith(("CausalLM", "LMHeadModel")) for a in getattr(config, "architectures", None) or []) \
            else "an encoder-only model"
        raise KgqaError(f"not a sequence-to-sequence checkpoint ({config.model_type}: {kind}); kgqa fine-tunes "
                        "encoder-decoder models such as T5, mT5 and BART", name_or_path)
    return config


def load_model(name_or_path: str, tokenizer: Tokenizer | None = None) -> PreTrainedModel:
    """Open a checkpoint; with a tokenizer, grow the embeddings for ids it added (`[SEP]`, the
    characters its vocabulary loses) and start the decoder where the tokenizer's rule says."""
    config = pretrained_config(name_or_path)
    try:
        if getattr(config, "kgqa_copy", False):
            model = CopyT5.from_pretrained(name_or_path, attn_implementation="eager")
        else:
            model = AutoModelForSeq2SeqLM.from_pretrained(name_or_path)
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:  # e.g. missing or truncated weights
        raise KgqaError(f"cannot load model: {first_line(error)}", name_or_path) from None
    if tokenizer is not None:
        if len(tokenizer) > model.get_input_embeddings().num_embeddings:
            model.resize_token_embeddings(len(tokenizer))
        model.config.decoder_start_token_id = tokenizer.decoder_start_id
    return model


def pretrained_start(name_or_path: str, texts: Iterable[str]) -> tuple[PreTrainedModel, HFTokenizer, str]:
    """(model, tokenizer, the characters added) fine-tuning starts from: a checkpoint kgqa can train
    (refused before its tokenizer is read otherwise), its own tokenizer with the characters of
    `texts` (the questions, every KB string the decoder may write) it loses added as tokens, the
    embeddings grown and those tokens seeded from what the tokenizer made of them."""
    pretrained_config(name_or_path)
    tokenizer = HFTokenizer.from_pretrained(name_or_path)
    lost = tokenizer.add_lost_characters(texts)
    model = load_model(name_or_path, tokenizer)
    _seed_embeddings(model, {tokenizer.tok.convert_tokens_to_ids(c): ids for c, ids in lost.items()},
                     tokenizer.tok.unk_token_id)
    return model, tokenizer, "".join(lost)


@torch.no_grad()
def _seed_embeddings(model: PreTrainedModel, origins: dict[int, list[int]], unknown_id: int | None) -> None:
    """Start each added token `id` from the mean embedding (and output row, where untied) of the
    ids `origins[id]` the checkpoint's tokenizer made of it before (an uppercase letter from its
    lowercase one): it keeps what pretraining knew of it. Tokens that were unknown or dropped keep
    the initialisation the resize gave them."""
    tables = [model.get_input_embeddings().weight]
    output = model.get_output_embeddings()
    if output is not None and output.weight.data_ptr() != tables[0].data_ptr():
        tables.append(output.weight)
    for new, old in origins.items():
        if old and unknown_id not in old:
            for table in tables:
                table[new] = table[old].mean(0)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
