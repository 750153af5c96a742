"""The beam's next-token log-probabilities, the decoder run only where they are not known yet.

Where the trie leaves a row one token to write (the rest of a subject once it is unique, `[SEP]`,
a predicate's tail, a disambiguation, EOS), the tokens after it are known before the beam gets
there. A row that needs the decoder is fed its last token and that whole forced run in one pass
(`Stepper.step` over several positions), which gives the log-probability of each forced token
and the full distribution after the run; the beam steps the run covers need no pass for that row,
and a step where no row needs one runs no decoder at all. What the beam sees is unchanged: a
forced row's log-probabilities are -inf but for its token (as `TrieConstraint` leaves them), and
that token's is what a step of its own computes — the same arithmetic, over several positions at
once — so beam scores and answers are today's. Fewer passes matter most where a pass costs its
weights' trip from memory or its kernel launches, not its arithmetic: one question on a CPU, and
any batch on a GPU.
"""
from __future__ import annotations

import numpy as np
import torch

from kgqa.decode.processors import TrieWalker
from kgqa.model.stepper import Stepper

# Longest forced run fed in one pass: longer runs go on in the next pass.
MAX_RUN = 16
# What a decoder pass costs beyond its positions' arithmetic (the weights' trip from memory, the
# kernel launches, Python), in positions of arithmetic: on 2 CPU cores a pass of 4 rows × 1
# position costs what 64 more positions cost (`benchmarks/forced_tokens.py --pass-cost`); on a
# GPU a pass of thousands of positions costs about what one does.
PASS_COST = {"cpu": 64, "cuda": 4096}


class ForcedRuns:
    """Log-probabilities for the `beams` rows of each question the stepper holds, as
    `beam_search` asks for them a step at a time; rows move with `reorder` and `keep`."""

    def __init__(self, stepper: Stepper, walker: TrieWalker, beams: int, vocabulary: int) -> None:
        self.stepper = stepper
        self.walker = walker
        self.beams = beams
        self.vocabulary = vocabulary
        rows, length = stepper.source.shape[0], stepper.max_length
        self.device = device = stepper.source.device
        # per row: the positions before `ready` have known log-probabilities: those before
        # `ready - 1` of a forced token (`token`, `log_p`), and at `ready - 1` the full
        # distribution `last` (a view into the pass that computed it: rows move by reference)
        self.ready = np.zeros(rows, dtype=np.int64)
        self.token = torch.zeros((rows, length), dtype=torch.long, device=device)
        self.log_p = torch.zeros((rows, length), device=device)
        self.last: list[torch.Tensor | None] = [None] * rows

    def log_probs(self, prefixes: torch.Tensor) -> torch.Tensor:
        """(rows, vocabulary) log-probabilities of the token after each row's prefix (`prefixes`
        (rows, length), the decoder start token first), running the decoder for the rows whose
        next position is not known yet, each with its forced run."""
        length = prefixes.shape[1]
        # a row that wrote EOS stays in the beam only as filler (its score is -1e9 or below, as
        # the beam gives an ended row) and may only repeat EOS: no pass for it
        eos = self.walker.tokenizer.eos_id
        ended = self._ended(prefixes).cpu().numpy()
        out = torch.full((len(self.ready), self.vocabulary), float("-inf"), device=self.device)
        out[torch.from_numpy(ended).to(self.device), eos] = 0.0
        need = np.flatnonzero(~ended & (self.ready <= length))
        forced = np.flatnonzero(~ended & (self.ready - 1 > length))
        if len(forced):
            at = torch.from_numpy(forced).to(self.device)
            out[at, self.token[at, length]] = self.log_p[at, length]
        at_last = np.flatnonzero(~ended & (self.ready - 1 == length))
        if len(at_last):
            out[torch.from_numpy(at_last).to(self.device)] = torch.stack([self.last[row] for row in at_last])
        if len(need):
            out[torch.from_numpy(need).to(self.device)] = self._run(prefixes, need)
        return out

    def forced_steps(self, prefixes: torch.Tensor, limit: int) -> int:
        """How many of the next steps (at most `limit`) every row's token is forced and known,
        with its log-probability, and is not EOS: steps the beam can take without a pass or a
        choice (`beam_search` then takes them in one go, `forced`)."""
        steps = min(limit, int(self.ready.min()) - 1 - prefixes.shape[1])
        if steps <= 0 or self._ended(prefixes).any():  # filler rows end each step
            return 0
        return steps

    def _ended(self, prefixes: torch.Tensor) -> torch.Tensor:
        """Which rows wrote EOS: their last token, past the decoder start (BART's decoder starts
        from its EOS)."""
        if prefixes.shape[1] == 1:
            return torch.zeros(len(prefixes), dtype=torch.bool, device=prefixes.device)
        return prefixes[:, -1] == self.walker.tokenizer.eos_id

    def forced(self, length: int, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens, log-probabilities), (rows, steps), of the forced tokens at positions
        `length`..`length + steps - 1`, where `forced_steps` allows."""
        return self.token[:, length: length + steps], self.log_p[:, length: length + steps]

    def _run(self, prefixes: torch.Tensor, need: np.ndarray) -> torch.Tensor:
        """One decoder pass over the `need` rows, each fed its last token and its forced run;
        their log-probabilities at the next position."""
        length = prefixes.shape[1]
        limit = min(MAX_RUN, self.stepper.max_length - length)
        ids = prefixes[torch.from_numpy(need).to(self.device)].tolist()
        runs = [self.walker.forced_run(self.walker.question(int(row), self.beams), row_ids, limit)
                for row, row_ids in zip(need, ids)]
        # EOS ends a run: nothing is fed after it
        fed = [[row_ids[-1]] + (run[:-1] if run and run[-1] == self.walker.tokenizer.eos_id else run)
               for row_ids, run in zip(ids, runs)]
        width = _width(np.array([len(f) for f in fed]), PASS_COST.get(self.device.type, PASS_COST["cpu"]))
        fed = [f[:width] for f in fed]
        sizes = np.array([len(f) for f in fed])
        tokens = torch.tensor([f + [f[-1]] * (width - len(f)) for f in fed], device=self.device)
        rows = torch.from_numpy(need).to(self.device)
        every = len(need) == len(self.ready)  # then the stepper reads its buffers in place
        log_probs = self.stepper.step(tokens, length - 1, None if every else rows).float().log_softmax(-1)
        if width > 1:
            run_tokens = torch.tensor([(run + [0] * width)[: width - 1] for run in runs], device=self.device)
            self.token[rows, length: length + width - 1] = run_tokens
            self.log_p[rows, length: length + width - 1] = log_probs[:, :-1].gather(2, run_tokens[:, :, None])[:, :, 0]
        for i in np.flatnonzero(sizes > 1):
            self.last[need[i]] = log_probs[i, sizes[i] - 1]
        self.ready[need] = length + sizes
        return log_probs[:, 0]

    def reorder(self, rows: torch.Tensor) -> None:
        """Row r continues from row `rows[r]` (beam search's survivors, or the rows it keeps)."""
        self.stepper.reorder(rows)
        self._follow(rows)

    def keep(self, rows: torch.Tensor) -> None:
        """Only `rows` go on (beam search drops the questions it has finished)."""
        self.stepper.keep(rows)
        self._follow(rows)

    def _follow(self, rows: torch.Tensor) -> None:
        moved = rows.cpu().numpy()
        self.ready = self.ready[moved]
        self.last = [self.last[row] for row in moved]
        self.token, self.log_p = self.token[rows], self.log_p[rows]


def _width(sizes: np.ndarray, pass_cost: int) -> int:
    """How many positions a pass feeds its rows, whose last token and forced run are `sizes`
    long: the width that computes the most of them per unit of work, a pass costing `pass_cost`
    plus a position per row and column (a row's positions past its own run are padding). One
    question's few rows take their whole runs; a batch's many rows, whose padding would cost more
    than the passes it saves, take fewer."""
    widths = np.arange(1, int(sizes.max()) + 1)
    useful = np.minimum(sizes[None, :], widths[:, None]).sum(1)
    return int(widths[np.argmax(useful / (pass_cost + len(sizes) * widths))])
