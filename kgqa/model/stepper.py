"""A T5 decoder run one token at a time over fixed-size key/value buffers: what beam search calls
at every step, without Hugging Face's per-call machinery.

Why: a step of a small model is a few dozen small tensor operations of real work, and
`model(...)` wraps them in many times more (output recorders, mask builders, cache objects,
kwargs checks), which for one question would be most of its answer time. The stepper calls the
model's own submodules (projections, layer norms, feed-forward blocks, relative position bias)
and adds nothing but the attention arithmetic, so it computes what the model computes. Models it
does not handle (BART) decode through `generate`.

The same state also runs a whole prefix tree of decoder inputs in one pass (`tree`): how the
reranker scores a question's candidate keys (`target_tree.py`).
"""
from __future__ import annotations

from typing import Callable

import torch
from transformers import PreTrainedModel

from kgqa.model.seq2seq import CopyT5


class T5Stepper:
    """Decoder state for `rows` hypotheses, `rows_per_question` to each question."""

    @staticmethod
    def handles(model: PreTrainedModel) -> bool:
        """Whether the stepper can run `model`: T5-family seq2seq models (T5, mT5, CopyT5)."""
        return getattr(model.config, "model_type", None) in ("t5", "mt5") and hasattr(model, "decoder")

    def __init__(self, model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 rows_per_question: int, max_length: int) -> None:
        self.model = model
        self.blocks = model.decoder.block
        first = self.blocks[0].layer[0].SelfAttention
        self.heads, self.head_dim = first.n_heads, first.key_value_proj_dim
        encoded = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        encoded = encoded.repeat_interleave(rows_per_question, dim=0)
        self.source = input_ids.repeat_interleave(rows_per_question, dim=0)
        rows, length = self.source.shape
        mask = attention_mask.repeat_interleave(rows_per_question, dim=0)[:, None, :].to(encoded.dtype)
        self.cross_mask = (1.0 - mask) * torch.finfo(encoded.dtype).min  # (rows, 1, source)
        self.cross = []  # per layer: keys (rows, heads, head_dim, source) and values (rows, heads, source, head_dim)
        for block in self.blocks:
            attention = block.layer[1].EncDecAttention
            keys = self._split(attention.k(encoded)).transpose(-1, -2).contiguous()  # laid out for the matmul
            self.cross.append((keys, self._split(attention.v(encoded)).contiguous()))
        # per layer: the rows' self-attention keys and values, (rows, heads, capacity, head_dim);
        # the capacity doubles as needed (answers run 5-45 tokens; reordering copies all of it)
        self.keys = [encoded.new_zeros((rows, self.heads, min(16, max_length), self.head_dim)) for _ in self.blocks]
        self.values = [encoded.new_zeros((rows, self.heads, min(16, max_length), self.head_dim)) for _ in self.blocks]
        # (heads, query position, key position): the decoder's relative position bias, computed once,
        # with the positions after the query masked (attention runs over the whole buffer: a
        # slice of it would be copied to contiguous memory at every step)
        bias = first.compute_bias(max_length, max_length, device=encoded.device)[0].to(encoded.dtype)
        later = torch.ones(max_length, max_length, dtype=torch.bool, device=encoded.device).triu(1)
        self.bias = bias.masked_fill(later, torch.finfo(encoded.dtype).min)
        self.max_length = max_length
        self.length = 0

    def _split(self, states: torch.Tensor) -> torch.Tensor:
        """(rows, n, heads*head_dim) -> (rows, heads, n, head_dim)."""
        return states.view(states.shape[0], -1, self.heads, self.head_dim).transpose(1, 2)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """The model's next-token logits (rows, vocab) after each row's prefix + `tokens`: what its
        forward gives at that position (CopyT5: the log of its mixture)."""
        t = self.length
        capacity = self.keys[0].shape[2]
        if t == capacity:
            grow = min(capacity, self.max_length - capacity)
            self.keys = [torch.cat((k, k.new_zeros(k.shape[:2] + (grow,) + k.shape[3:])), 2) for k in self.keys]
            self.values = [torch.cat((v, v.new_zeros(v.shape[:2] + (grow,) + v.shape[3:])), 2) for v in self.values]
            capacity += grow

        def cached(layer: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, ...]:
            self.keys[layer][:, :, t: t + 1] = key
            self.values[layer][:, :, t: t + 1] = value
            return self.keys[layer], self.values[layer], self.bias[:, t: t + 1, :capacity]

        hidden, copy = self._decode(tokens[:, None], cached)
        self.length += 1
        logits, gate = self.head(hidden[:, 0])
        if gate is None:
            return logits
        copied = copy[:, 0].to(logits.dtype) * (1 - gate)  # the copy share, on the question's tokens
        return logits.softmax(-1).mul_(gate).scatter_add_(-1, self.source, copied).clamp_min_(1e-12).log_()

    def tree(self, tokens: torch.Tensor, depths: torch.Tensor, ancestors: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass over a prefix tree of decoder inputs per row (rows_per_question 1): `tokens`
        (rows, n) whose node j sits at `depths[:, j]` and sees the nodes `ancestors[:, j]` marks
        (itself and the nodes on its path from the root). (final hidden states, copy attention
        over the question): each node's as the forward gives them after its path; `head` turns
        hidden states into logits (the caller takes them a slice at a time: rows × vocabulary
        floats at once are more memory traffic than arithmetic).

        Why exact: a causal decoder's position attends only to its own prefix, and T5's position
        bias depends only on the distance between two positions, which is the difference of their
        depths; so every target through a node shares its computation, done once."""
        bias = self.bias[:, depths[:, :, None], depths[:, None, :]].transpose(0, 1)  # (rows, heads, n, n)
        bias = bias.masked_fill(~ancestors[:, None], torch.finfo(bias.dtype).min)
        return self._decode(tokens, lambda layer, key, value: (key, value, bias))

    def _decode(self, tokens: torch.Tensor, attend: Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder's final hidden states (rows, n, d_model) at `tokens` (rows, n), and the last
        layer's cross-attention averaged over heads (rows, n, source): what the copy path mixes in.
        `attend(layer, keys, values)` of the n new positions gives the self-attention's keys,
        values and bias (the cache of earlier steps, or the tree's own)."""
        hidden = self.model.decoder.embed_tokens(tokens)
        rows, n = tokens.shape
        for i, block in enumerate(self.blocks):
            layer = block.layer[0]
            attention = layer.SelfAttention
            normed = layer.layer_norm(hidden)
            keys, values, bias = attend(i, self._split(attention.k(normed)), self._split(attention.v(normed)))
            scores = self._split(attention.q(normed)) @ keys.transpose(-1, -2) + bias
            weights = scores.float().softmax(-1).type_as(scores)
            hidden = hidden + attention.o(self._merge(weights @ values))
            layer = block.layer[1]
            attention = layer.EncDecAttention
            keys, values = self.cross[i]
            scores = self._split(attention.q(layer.layer_norm(hidden))) @ keys + self.cross_mask[:, None]
            weights = scores.float().softmax(-1).type_as(scores)  # (rows, heads, n, source)
            hidden = hidden + attention.o(self._merge(weights @ values))
            hidden = block.layer[2](hidden)  # layer norm, feed-forward, residual
        return self.model.decoder.final_layer_norm(hidden), weights.mean(dim=1)

    def head(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The output layer's logits at the final hidden states, and CopyT5's copy gate (None for
        other models)."""
        model = self.model
        # transformers' T5 scales the output when its config says so; configs of older releases
        # have no `scale_decoder_outputs`, and scale exactly when the embeddings are tied
        scale = getattr(model.config, "scale_decoder_outputs", model.config.tie_word_embeddings)
        logits = model.lm_head(hidden * model.model_dim ** -0.5 if scale else hidden)
        return logits, torch.sigmoid(model.copy_gate(hidden)) if isinstance(model, CopyT5) else None

    def _merge(self, states: torch.Tensor) -> torch.Tensor:
        """(rows, heads, n, head_dim) -> (rows, n, heads*head_dim)."""
        return states.transpose(1, 2).reshape(states.shape[0], states.shape[2], -1)

    def reorder(self, rows: torch.Tensor) -> None:
        """Row r continues from row `rows[r]`'s prefix, of the same question (beam search's survivors)."""
        self.keys = [k.index_select(0, rows) for k in self.keys]
        self.values = [v.index_select(0, rows) for v in self.values]

    def keep(self, rows: torch.Tensor) -> None:
        """Only `rows` go on, of any question (beam search drops the questions it has finished)."""
        self.reorder(rows)
        self.source, self.cross_mask = self.source[rows], self.cross_mask[rows]
        self.cross = [(keys[rows], values[rows]) for keys, values in self.cross]
