"""The decoding settings: one dataclass whose defaults are the defaults everywhere (the library,
`kgqa predict/ask/serve/submit`'s options, training's per-epoch scoring, the service's batches).
Each field's `help` metadata is its command-line option's help: `kgqa/cli.py` derives the decoding
options from these fields, so a new setting is one field here. Its own light module so the CLI
can build its options without importing torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DecodeSettings:
    """How questions are answered; the one set of defaults."""

    beams: int = field(default=4, metadata={"help": "Hypotheses kept at each decoding step.", "min": 1})
    # candidates kept per question: each command sets its own default (1 for predict, 5 for ask and serve)
    top_k: int = 1
    restrict_mentions: bool = field(default=True, metadata={
        "flag": "mention-restriction",
        "help": "Draw the subject from the KB entities the question mentions (--no-mention-restriction: any KB entity)."})
    lookahead: float = field(default=1.0, metadata={
        "help": "Per-character weight of question coverage when choosing the predicate (0: off).", "min": 0})
    mention_lookahead: float = field(default=2.0, metadata={
        "help": "Per-character weight of mention length when choosing the subject (0: off).", "min": 0})
    batch_size: int = field(default=32, metadata={"help": "Questions decoded together.", "min": 1})
    rerank: bool = field(default=True, metadata={
        "help": "Rank the candidates with the checkpoint's reranker, where it has one (--no-rerank: the beam's order)."})
    max_question_tokens: int = field(default=128, metadata={
        "help": "Question tokens the model reads, for the beam and the reranker's likelihoods alike.", "min": 1})
    int8: bool = field(default=True, metadata={
        "help": "On a CPU, answer with the model's linear layers quantised to int8 (dynamic quantisation): "
                "faster, the same top answers as --no-int8 on dev; a confidence may move by a few thousandths "
                "with the questions batched beside it. On a GPU the model answers in its own precision."})
    near_margin: float = field(default=0.1, metadata={
        "help": "Read a name the question may have typed with a sound-alike character or in a short form as that "
                "KB name only where its best answer is this much surer than the best answer to the question as "
                "typed (1: never; needs a confidence calibrator).", "min": 0, "max": 1})
    # None: the checkpoint's refusal threshold (`Calibrator.refuse_below`), what `kgqa ask` and `kgqa serve`
    # answer by; `kgqa predict` and `kgqa submit` give 0 (the leaderboard counts every question answered)
    min_confidence: float | None = field(default=None, metadata={
        "help": "Give no answer where the best candidate's confidence (the probability its object is right) is "
                "below this (0: answer every question). Default for ask and serve: the checkpoint's refusal "
                "threshold, the lowest confidence at which its held-out answers were surely 95% right, chosen when it was "
                "fitted (shown by /health and `ask --explain`); for predict and submit: 0.", "type": float, "min": 0,
        "max": 1})
