"""A seq2seq decoder (T5's or BART's) run a few positions at a time over fixed-size key/value
buffers: what beam search calls at every step (each row's next token, or the run of tokens the
trie forces on it), without Hugging Face's per-call machinery.

Why: a step of a small model is a few dozen small tensor operations of real work, and
`model(...)` wraps them in many times more (output recorders, mask builders, cache objects,
kwargs checks), which for one question would be most of its answer time. The stepper calls the
model's own submodules (projections, layer norms, feed-forward blocks, position embeddings or
bias) and adds nothing but the attention arithmetic, so it computes what the model computes. What
differs between the families (where the norms sit, how positions enter, the output layer) is a
`_Layers` object of each; models of other families decode through `generate`.

The same state also runs a whole prefix tree of decoder inputs in one pass (`tree`): how the
reranker scores a question's candidate keys (`target_tree.py`).
"""
from __future__ import annotations

from typing import Callable

import torch
from transformers import PreTrainedModel

from kgqa.model.seq2seq import CopyT5, encode_questions
from kgqa.model.tokenizer import Tokenizer


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
        layers = _layers(model)
        # per layer: keys (questions, heads, head_dim, source), laid out for the matmul, and values
        # (questions, heads, source, head_dim)
        self.cross = [(layers.split(keys).transpose(-1, -2).contiguous(), layers.split(values).contiguous())
                      for keys, values in layers.cross_projections(encoded)]

    @classmethod
    def of(cls, model: PreTrainedModel, tokenizer: Tokenizer, questions: list[str], max_question_tokens: int
           ) -> Encoded | None:
        """`questions` read by `model`'s encoder, for the beam and the likelihoods both (None for
        models the stepper does not run: they encode as they decode)."""
        if not Stepper.handles(model):
            return None
        return cls(model, *encode_questions(tokenizer, questions, max_question_tokens, model.device))

    def rows(self, questions: torch.Tensor | None, beams: int
             ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """(source ids, cross mask, per-layer cross keys and values) for `beams` decoder
        rows per question of `questions` (None: all), cut to the longest of them."""
        if questions is None:
            questions = torch.arange(len(self.source), device=self.source.device)
        width = int(self.lengths[questions].max())
        rows = questions.repeat_interleave(beams)
        return (self.source[rows, :width], self.cross_mask[rows, :, :width],
                [(keys[rows, :, :, :width], values[rows, :, :width]) for keys, values in self.cross])


class Stepper:
    """Decoder state for `rows` hypotheses, `beams` to each question of `encoded` (or of the
    subset `questions`; 1 for the likelihoods' prefix trees, whose rows are no beam)."""

    @staticmethod
    def handles(model: PreTrainedModel) -> bool:
        """Whether the stepper can run `model`: T5-family models (T5, mT5, CopyT5) and BART."""
        return _layers(model) is not None

    def __init__(self, model: PreTrainedModel, encoded: Encoded, beams: int, max_length: int,
                 questions: torch.Tensor | None = None) -> None:
        self.model = model
        self.layers = _layers(model)
        self.heads, self.head_dim = self.layers.heads, self.layers.head_dim
        self.source, self.cross_mask, self.cross = encoded.rows(questions, beams)
        rows = self.source.shape[0]
        dtype, device = self.cross_mask.dtype, self.source.device
        # per layer: the rows' self-attention keys and values, (rows, heads, capacity, head_dim);
        # the capacity doubles as needed (answers run 5-45 tokens; reordering copies all of it)
        self.keys = [torch.zeros((rows, self.heads, min(16, max_length), self.head_dim), dtype=dtype, device=device)
                     for _ in range(self.layers.count)]
        self.values = [k.clone() for k in self.keys]
        # (heads or 1, query position, key position): the decoder's position bias (T5's relative
        # one, none for BART), computed once, with the positions after the query masked (attention
        # runs over the whole buffer: a slice of it would be copied to contiguous memory at every step)
        bias = self.layers.position_bias(max_length, device).to(dtype)
        later = torch.ones(max_length, max_length, dtype=torch.bool, device=device).triu(1)
        self.bias = bias.masked_fill(later, torch.finfo(dtype).min)
        self.max_length = max_length

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

        positions = torch.arange(position, end, device=tokens.device)[None]
        hidden, copy = self._decode(tokens, positions, cached, cross, cross_mask)
        logits, gate = self.head(hidden)
        if gate is None:
            return logits
        copied = copy.to(logits.dtype) * (1 - gate)  # the copy share, on the question's tokens
        index = source[:, None, :].expand(-1, tokens.shape[1], -1)
        return logits.softmax(-1).mul_(gate).scatter_add_(-1, index, copied).clamp_min_(1e-12).log_()

    def tree(self, tokens: torch.Tensor, depths: torch.Tensor, ancestors: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass over a prefix tree of decoder inputs per row (`beams` 1): `tokens`
        (rows, n) whose node j sits at `depths[:, j]` and sees the nodes `ancestors[:, j]` marks
        (itself and the nodes on its path from the root). (final hidden states, copy attention
        over the question): each node's as the forward gives them after its path; `head` turns
        hidden states into logits (the caller takes them a slice at a time: rows × vocabulary
        floats at once are more memory traffic than arithmetic).

        Why exact: a causal decoder's position attends only to its own prefix, and T5's position
        bias depends only on the distance between two positions, which is the difference of their
        depths (BART's learned positions are the depths); so every target through a node shares
        its computation, done once."""
        bias = self.bias[:, depths[:, :, None], depths[:, None, :]].transpose(0, 1)  # (rows, heads, n, n)
        bias = bias.masked_fill(~ancestors[:, None], torch.finfo(bias.dtype).min)
        return self._decode(tokens, depths, lambda layer, key, value: (key, value, bias), self.cross, self.cross_mask)

    def _decode(self, tokens: torch.Tensor, positions: torch.Tensor,
                attend: Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]],
                cross: list[tuple[torch.Tensor, torch.Tensor]], cross_mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder's final hidden states (rows, n, d_model) at `tokens` (rows, n), sitting at
        `positions` (rows or 1, n), and the last layer's cross-attention averaged over heads (rows,
        n, source): what the copy path mixes in. `attend(layer, keys, values)` of the n new
        positions gives the self-attention's keys, values and bias (the cache of earlier steps, or
        the tree's own); `cross` and `cross_mask` are the rows' cross-attention keys, values and mask."""
        weights = None

        def self_attention(i: int, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
            keys, values, bias = attend(i, self.layers.split(keys), self.layers.split(values))
            scores = self.layers.split(queries) @ keys.transpose(-1, -2) + bias
            return self._merge(scores.float().softmax(-1).type_as(scores) @ values)

        def cross_attention(i: int, queries: torch.Tensor) -> torch.Tensor:
            nonlocal weights
            keys, values = cross[i]
            scores = self.layers.split(queries) @ keys + cross_mask[:, None]
            weights = scores.float().softmax(-1).type_as(scores)  # (rows, heads, n, source)
            return self._merge(weights @ values)

        hidden = self.layers.decode(tokens, positions, self_attention, cross_attention)
        return hidden, weights.mean(dim=1)

    def head(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The output layer's logits at the final hidden states, and CopyT5's copy gate (None for
        other models)."""
        logits = self.layers.logits(hidden)
        return logits, torch.sigmoid(self.model.copy_gate(hidden)) if isinstance(self.model, CopyT5) else None

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


class _Layers:
    """What a family's decoder does between the stepper's attention arithmetic: `decode` runs its
    layers, calling `self_attention(layer, queries, keys, values)` and `cross_attention(layer,
    queries)` (each returns the heads' merged output, before the output projection)."""

    count: int
    heads: int
    head_dim: int

    def split(self, states: torch.Tensor) -> torch.Tensor:
        """(rows, n, heads*head_dim) -> (rows, heads, n, head_dim)."""
        return states.view(states.shape[0], -1, self.heads, self.head_dim).transpose(1, 2)


class _T5Layers(_Layers):
    """T5, mT5, CopyT5: pre-norm layers, a relative position bias, no scaling of the queries."""

    def __init__(self, model: PreTrainedModel) -> None:
        self.model, self.blocks = model, model.decoder.block
        first = self.blocks[0].layer[0].SelfAttention
        self.count, self.heads, self.head_dim = len(self.blocks), first.n_heads, first.key_value_proj_dim

    def cross_projections(self, encoded: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(block.layer[1].EncDecAttention.k(encoded), block.layer[1].EncDecAttention.v(encoded))
                for block in self.blocks]

    def position_bias(self, length: int, device: torch.device) -> torch.Tensor:
        return self.blocks[0].layer[0].SelfAttention.compute_bias(length, length, device=device)[0]

    def decode(self, tokens, positions, self_attention, cross_attention) -> torch.Tensor:
        hidden = self.model.decoder.embed_tokens(tokens)  # positions enter through the bias
        for i, block in enumerate(self.blocks):
            layer = block.layer[0]
            attention, normed = layer.SelfAttention, layer.layer_norm(hidden)
            hidden = hidden + attention.o(self_attention(i, attention.q(normed), attention.k(normed),
                                                         attention.v(normed)))
            layer = block.layer[1]
            attention = layer.EncDecAttention
            hidden = hidden + attention.o(cross_attention(i, attention.q(layer.layer_norm(hidden))))
            hidden = block.layer[2](hidden)  # layer norm, feed-forward, residual
        return self.model.decoder.final_layer_norm(hidden)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        model = self.model
        # transformers' T5 scales the output when its config says so; configs of older releases
        # have no `scale_decoder_outputs`, and scale exactly when the embeddings are tied
        scale = getattr(model.config, "scale_decoder_outputs", model.config.tie_word_embeddings)
        return model.lm_head(hidden * model.model_dim ** -0.5 if scale else hidden)


class _BartLayers(_Layers):
    """BART (fnlp's Chinese BART, facebook's): learned positions added to the scaled embeddings,
    post-norm layers, queries scaled by head_dim^-0.5, a bias on the output layer."""

    def __init__(self, model: PreTrainedModel) -> None:
        self.model, self.decoder = model, model.get_decoder()
        first = self.decoder.layers[0].self_attn
        self.count, self.heads, self.head_dim = len(self.decoder.layers), first.num_heads, first.head_dim

    def cross_projections(self, encoded: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(layer.encoder_attn.k_proj(encoded), layer.encoder_attn.v_proj(encoded))
                for layer in self.decoder.layers]

    def position_bias(self, length: int, device: torch.device) -> torch.Tensor:
        return torch.zeros((1, length, length), device=device)

    def decode(self, tokens, positions, self_attention, cross_attention) -> torch.Tensor:
        decoder = self.decoder
        places = decoder.embed_positions.weight[positions + decoder.embed_positions.offset]
        hidden = decoder.layernorm_embedding(decoder.embed_tokens(tokens) + places)
        for i, layer in enumerate(decoder.layers):
            attention = layer.self_attn
            out = self_attention(i, attention.q_proj(hidden) * attention.scaling, attention.k_proj(hidden),
                                 attention.v_proj(hidden))
            hidden = layer.self_attn_layer_norm(hidden + attention.out_proj(out))
            attention = layer.encoder_attn
            out = cross_attention(i, attention.q_proj(hidden) * attention.scaling)
            hidden = layer.encoder_attn_layer_norm(hidden + attention.out_proj(out))
            hidden = layer.final_layer_norm(hidden + layer.fc2(layer.activation_fn(layer.fc1(hidden))))
        return hidden

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.lm_head(hidden) + self.model.final_logits_bias


def _layers(model: PreTrainedModel) -> _Layers | None:
    """The family object of a model the stepper runs, None for others (they decode through `generate`)."""
    kind = getattr(model.config, "model_type", None)
    if kind in ("t5", "mt5") and hasattr(model, "decoder"):
        return _T5Layers(model)
    if kind == "bart" and hasattr(model, "final_logits_bias"):
        return _BartLayers(model)
    return None
