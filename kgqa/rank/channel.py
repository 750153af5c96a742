"""The noisy channel: how much better a candidate's predicate and object explain the question's
wording than nothing does, log P(question | P, O) − log P(question), from a small character
seq2seq trained on train's questions.

Why: the reranker's other evidence reads the question from the candidate's side (how much of it
the predicate covers, what kind of answer the wording asks for); the channel reads it the other
way, generating every character of the question from the predicate and the object's first
characters, so wording a predicate explains without sharing characters with it can count, and a
predicate that explains the words only in part (门 of 部门) leaves the rest to explain. Its source
is a predicate and an object, never the subject (the question's mention of it is one marker
character), so what it learns carries over to predicates training never shows. One source in ten
is empty during training, so the same model gives log P(question), and the gain is comparable
across questions: the calibrator reads it too, as how well the best candidate explains what was
asked.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import astuple, dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from kgqa.data import Pairs
from kgqa.kb.triples import Fact
from kgqa.rank.storage import read_fitted, unreadable, write_fitted

PAD, BOS, EOS, SEP, UNKNOWN, MENTION = range(6)
SPECIAL = 6
PREDICATE_CHARS, OBJECT_CHARS, QUESTION_CHARS = 20, 16, 48
NULL_SHARE = 0.1  # training sources left empty: what log P(question) is read from
MIN_COUNT = 2  # a character seen fewer times in training is UNKNOWN
BATCH = 64
ROWS = 512  # (source, question) rows scored in one forward pass


@dataclass(frozen=True)
class ChannelShape:
    """The channel's size, chosen by held-out CV over d 128 with two layers a side, which ranked
    fewer held-out questions first and takes longer to train and to answer (docs/benchmarks.md)."""

    d_model: int = 96
    layers: int = 1  # encoder layers, and as many decoder layers
    heads: int = 4
    ff: int = 192


class ChannelModel(nn.Module):
    """A character encoder-decoder: the source (predicate [SEP] object) encoded, the question
    decoded from it."""

    def __init__(self, vocab: int, shape: ChannelShape) -> None:
        super().__init__()
        self.shape = shape
        d = shape.d_model
        self.embed = nn.Embedding(vocab, d, padding_idx=PAD)
        self.source_position = nn.Embedding(PREDICATE_CHARS + OBJECT_CHARS + 1, d)
        self.target_position = nn.Embedding(QUESTION_CHARS + 2, d)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d, shape.heads, shape.ff, 0.1, batch_first=True, norm_first=True),
            shape.layers, nn.LayerNorm(d), enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(d, shape.heads, shape.ff, 0.1, batch_first=True, norm_first=True),
            shape.layers, nn.LayerNorm(d))
        self.out = nn.Linear(d, vocab)

    def log_probs(self, sources: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per row, the sum of log p of each target token after the first (BOS) given the ones
        before it and the source; rows padded with PAD."""
        at = torch.arange(sources.shape[1], device=sources.device)
        memory = self.encoder(self.embed(sources) + self.source_position(at), src_key_padding_mask=sources == PAD)
        given = targets[:, :-1]
        length = given.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=targets.device).triu(1)
        hidden = self.decoder(self.embed(given) + self.target_position(torch.arange(length, device=targets.device)),
                              memory, tgt_mask=causal, tgt_key_padding_mask=given == PAD,
                              memory_key_padding_mask=sources == PAD)
        # the vocabulary's logits only where a token is predicted (padding is most of a ragged batch)
        gold = targets[:, 1:]
        rows, steps = (gold != PAD).nonzero(as_tuple=True)
        logits = self.out(hidden[rows, steps])
        picked = gold[rows, steps]
        token = logits.log_softmax(1).gather(1, picked[:, None]).squeeze(1)
        return torch.zeros(len(targets), dtype=token.dtype, device=token.device).index_add_(0, rows, token)


def _padded(rows: list[list[int]], device: torch.device) -> torch.Tensor:
    width = max(len(row) for row in rows)
    return torch.tensor([row + [PAD] * (width - len(row)) for row in rows], dtype=torch.long, device=device)


@dataclass
class Channel:
    """The trained channel and its characters (id SPECIAL + position in `characters`)."""

    characters: list[str]
    model: ChannelModel

    def __post_init__(self) -> None:
        self._ids = {c: SPECIAL + i for i, c in enumerate(self.characters)}
        self.model.eval()

    def _encode(self, text: str) -> list[int]:
        return [self._ids.get(c, UNKNOWN) for c in text]

    def source(self, predicate: str | None, obj: str = "") -> list[int]:
        """The source ids of (predicate, object's first characters); None: the empty source."""
        if predicate is None:
            return [SEP]
        return self._encode(predicate[:PREDICATE_CHARS]) + [SEP] + self._encode(obj[:OBJECT_CHARS])

    def target(self, question: str, surface: str) -> list[int]:
        """The question's ids, its first mention of `surface` one MENTION."""
        head, found, tail = question.partition(surface) if surface else (question, "", "")
        ids = self._encode(head) + [MENTION] + self._encode(tail) if found else self._encode(question)
        return [BOS] + ids[:QUESTION_CHARS] + [EOS]

    @torch.no_grad()
    def gains(self, questions: list[str], facts: list[list[Fact]]) -> list[np.ndarray]:
        """Per question, per fact: log P(question | predicate, object) − log P(question), the
        question's mention of the fact's subject as one marker; scored in a few passes for all."""
        rows: dict[tuple[str, str, str | None, str], int] = {}
        for question, row in zip(questions, facts):
            for fact in row:
                rows.setdefault((question, fact.surface, fact.predicate, fact.objects[0][:OBJECT_CHARS]), len(rows))
                rows.setdefault((question, fact.surface, None, ""), len(rows))
        device = next(self.model.parameters()).device
        # by length, so each pass pads little
        order = sorted(rows, key=lambda row: (len(row[2] or "") + len(row[3]), len(row[0])))
        found = np.zeros(len(order))
        for start in range(0, len(order), ROWS):
            part = order[start:start + ROWS]
            found[[rows[row] for row in part]] = self.model.log_probs(
                _padded([self.source(p, o) for _, _, p, o in part], device),
                _padded([self.target(q, s) for q, s, _, _ in part], device)).float().cpu().numpy()
        return [np.array([found[rows[(question, f.surface, f.predicate, f.objects[0][:OBJECT_CHARS])]]
                          - found[rows[(question, f.surface, None, "")]] for f in row])
                for question, row in zip(questions, facts)]

    def to(self, device: torch.device | str) -> Channel:
        self.model.to(device)
        return self

    def save(self, checkpoint: str) -> None:
        weights = {f"weight:{name}": value.detach().cpu().numpy() for name, value in self.model.state_dict().items()}
        write_fitted(checkpoint, "channel", {"characters": np.array(self.characters, dtype=str),
                                             "shape": list(astuple(self.model.shape)), **weights})

    @classmethod
    def load(cls, checkpoint: str) -> Channel | None:
        """The checkpoint's channel; None where it has none (fitted by an older kgqa, or trained
        with --channel-epochs 0)."""
        saved = read_fitted(checkpoint, "channel", "noisy channel", ("characters", "shape"))
        if saved is None:
            return None
        try:
            shape = ChannelShape(*(int(n) for n in saved["shape"]))
            model = ChannelModel(SPECIAL + len(saved["characters"]), shape)
            names = tuple(model.state_dict())
            weights = read_fitted(checkpoint, "channel", "noisy channel", tuple(f"weight:{name}" for name in names))
            model.load_state_dict({name: torch.from_numpy(weights[f"weight:{name}"]) for name in names})
        except (TypeError, RuntimeError, ValueError) as error:
            raise unreadable(checkpoint, "channel", "noisy channel", f"{type(error).__name__}: {error}") from None
        return cls([str(c) for c in saved["characters"]], model)


def fit_channel(pairs: Pairs, epochs: int, seed: int, device: torch.device | str = "cpu",
                shape: ChannelShape = ChannelShape()) -> Channel | None:
    """Train the channel `epochs` passes over (question, gold target) pairs (train's, as the model
    reads them): each question from its gold predicate and object, one source in ten (seeded)
    empty. None for no epochs or no pairs."""
    if epochs <= 0 or not pairs:
        return None
    counts = Counter(c for question, gold in pairs
                     for c in question + gold.predicate[:PREDICATE_CHARS] + gold.obj[:OBJECT_CHARS])
    characters = sorted(c for c, n in counts.items() if n >= MIN_COUNT)
    torch.manual_seed(seed)
    channel = Channel(characters, ChannelModel(SPECIAL + len(characters), shape).to(device))
    examples = [(channel.source(gold.predicate, gold.obj), channel.target(question, gold.surface))
                for question, gold in pairs]
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(channel.model.parameters(), lr=1e-3, weight_decay=0.01)
    channel.model.train()
    empty = channel.source(None)
    # a bar where stderr is a terminal (tqdm's None), as training draws one: this fit takes minutes
    steps = tqdm(total=epochs * -(-len(examples) // BATCH), desc="noisy channel", unit=" steps", disable=None)
    for _ in range(epochs):
        rng.shuffle(examples)
        for start in range(0, len(examples), BATCH):
            steps.update()
            batch = examples[start:start + BATCH]
            sources = _padded([empty if rng.random() < NULL_SHARE else source for source, _ in batch], device)
            targets = _padded([target for _, target in batch], device)
            loss = -channel.model.log_probs(sources, targets).sum() / (targets[:, 1:] != PAD).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(channel.model.parameters(), 1.0)
            optimizer.step()
    steps.close()
    channel.model.eval()
    return channel
