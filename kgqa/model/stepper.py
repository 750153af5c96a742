"""A T5 decoder run a few positions at a time over fixed-size key/value buffers: what beam search
calls at every step (each row's next token, or the run of tokens the trie forces on it), without
Hugging Face's per-call machinery.

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


class Encoded:
    """A batch of questions read once by the encoder: their ids, padding mask, and each decoder
    layer's cross-attention keys and values over them — what every decoder pass over these
    questions reads, the beam's and the reranker's likelihoods' alike, so it is computed once."""

    def __init__(self, model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        encoded = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        self.source = input_ids
        self.lengths = attention_mask.sum(1)
        mask = attention_mask[:, None, :].to(encoded.dtype)
        self.cross_mask = (1.0 - mask) * torch.finfo(encoded.dtype).min  # (questions, 1, source)
        first = model.decoder.block[0].layer[0].SelfAttention
        heads, head_dim = first.n_heads, first.key_value_proj_dim

        def split(states: torch.Tensor) -> torch.Tensor:
            return states.view(states.shape[0], -1, heads, head_dim).transpose(1, 2)

        self.cross = []  # per layer: keys (questions, heads, head_dim, source) and values (questions, heads, source, head_dim)
        for block in model.decoder.block:
            attention = block.layer[1].EncDecAttention
            keys = split(attention.k(encoded)).transpose(-1, -2).contiguous()  # laid out for the matmul
            self.cross.append((keys, split(attention.v(encoded)).contiguous()))

    def rows(self, questions: torch.Tensor | None, rows_per_question: int
             ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """(source ids, cross mask, per-layer cross keys and values) for `rows_per_question` decoder
        rows per question of `questions` (None: all), cut to the longest of them."""
        if questions is None:
            questions = torch.arange(len(self.source), device=self.source.device)
        width = int(self.lengths[questions].max())
        rows = questions.repeat_interleave(rows_per_question)
        return (self.source[rows, :width], self.cross_mask[rows, :, :width],
                [(keys[rows, :, :, :width], values[rows, :, :width]) for keys, values in self.cross])


class T5Stepper:
    """Decoder state for `rows` hypotheses, `rows_per_question` to each question of `encoded`
    (or of the subset `questions`)."""

    @staticmethod
    def handles(model: PreTrainedModel) -> bool:
        """Whether the stepper can run `model`: T5-family seq2seq models (T5, mT5, CopyT5)."""
        return getattr(model.config, "model_type", None) in ("t5", "mt5") and hasattr(model, "decoder")

    def __init__(self, model: PreTrainedModel, encoded: Encoded, rows_per_question: int, max_length: int,
                 questions: torch.Tensor | None = None) -> None:
        self.model = model
        self.blocks = model.decoder.block
        first = self.blocks[0].layer[0].SelfAttention
        self.heads, self.head_dim = first.n_heads, first.key_value_proj_dim
        self.source, self.cross_mask, self.cross = encoded.rows(questions, rows_per_question)
        rows = self.source.shape[0]
        dtype, device = self.cross_mask.dtype, self.source.device
        # per layer: the rows' self-attention keys and values, (rows, heads, capacity, head_dim);
        # the capacity doubles as needed (answers run 5-45 tokens; reordering copies all of it)
        self.keys = [torch.zeros((rows, self.heads, min(16, max_length), self.head_dim), dtype=dtype, device=device)
                     for _ in self.blocks]
        self.values = [k.clone() for k in self.keys]
        # (heads, query position, key position): the decoder's relative position bias, computed once,
        # with the positions after the query masked (attention runs over the whole buffer: a
        # slice of it would be copied to contiguous memory at every step)
        bias = first.compute_bias(max_length, max_length, device=device)[0].to(dtype)
        later = torch.ones(max_length, max_length, dtype=torch.bool, device=device).triu(1)
        self.bias = bias.masked_fill(later, torch.finfo(dtype).min)
        self.max_length = max_length

    def _split(self, states: torch.Tensor) -> torch.Tensor:
        """(rows, n, heads*head_dim) -> (rows, heads, n, head_dim)."""
        return states.view(states.shape[0], -1, self.heads, self.head_dim).transpose(1, 2)

    def step(self, tokens: torch.Tensor, position: int, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The model's next-token logits (n, m, vocab) after each row's prefix + `tokens[:, :j+1]`,
        for `tokens` (n, m) written at positions `position`..`position + m - 1` of `rows` (None:
        every row, in order), whose earlier positions were written before: what its forward gives
        at those positions (CopyT5: the log of its mixture). Rows of one call may be any; the
        beam feeds a row's forced run of tokens in one call (`decode/forced_runs.py`)."""
        end = position + tokens.shape[1]
        while self.keys[0].shape[2] < end:
            grow = min(self.keys[0].shape[2], self.max_length - self.keys[0].shape[2])
            self.keys = [torch.cat((k, k.new_zeros(k.shape[:2] + (grow,) + k.shape[3:])), 2) for k in self.keys]
            self.values = [torch.cat((v, v.new_zeros(v.shape[:2] + (grow,) + v.shape[3:])), 2) for v in self.values]
        capacity = self.keys[0].shape[2]
        bias = self.bias[:, position:end, :capacity if rows is None else end]
        if rows is None:
            source, cross_mask, cross = self.source, self.cross_mask, self.cross
        else:
            source, cross_mask = self.source[rows], self.cross_mask[rows]
            cross = [(keys[rows], values[rows]) for keys, values in self.cross]

        def cached(layer: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, ...]:
            if rows is None:
                self.keys[layer][:, :, position:end] = key
                self.values[layer][:, :, position:end] = value
                return self.keys[layer], self.values[layer], bias
            self.keys[layer][rows, :, position:end] = key
            self.values[layer][rows, :, position:end] = value
            # the rows' buffers are copied for the matmul anyway: only their written positions
            return self.keys[layer][rows, :, :end], self.values[layer][rows, :, :end], bias

        hidden, copy = self._decode(tokens, cached, cross, cross_mask)
        logits, gate = self.head(hidden)
        if gate is None:
            return logits
        copied = copy.to(logits.dtype) * (1 - gate)  # the copy share, on the question's tokens
        index = source[:, None, :].expand(-1, tokens.shape[1], -1)
        return logits.softmax(-1).mul_(gate).scatter_add_(-1, index, copied).clamp_min_(1e-12).log_()

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
        return self._decode(tokens, lambda layer, key, value: (key, value, bias), self.cross, self.cross_mask)

    def _decode(self, tokens: torch.Tensor, attend: Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]],
                cross: list[tuple[torch.Tensor, torch.Tensor]], cross_mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder's final hidden states (rows, n, d_model) at `tokens` (rows, n), and the last
        layer's cross-attention averaged over heads (rows, n, source): what the copy path mixes in.
        `attend(layer, keys, values)` of the n new positions gives the self-attention's keys,
        values and bias (the cache of earlier steps, or the tree's own); `cross` and `cross_mask`
        are the rows' cross-attention keys, values and mask."""
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
            keys, values = cross[i]
            scores = self._split(attention.q(layer.layer_norm(hidden))) @ keys + cross_mask[:, None]
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
