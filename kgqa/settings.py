"""The settings, one dataclass each, whose defaults are the defaults everywhere: how questions are
answered (`DecodeSettings`: the library, `kgqa predict/ask/serve/submit`'s options, training's
per-epoch scoring, the service's batches) and how a model is trained (`TrainConfig`, with the size
of a model trained from scratch, `ScratchShape`, and the learning-rate recipes). Each field's `help`
metadata is its command-line option's help: `kgqa/cli.py` derives the options from these fields
(its default shown from the field, never repeated in a help string), so a new setting is one
field here. Light: the CLI builds its options without importing torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace


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


@dataclass
class ScratchShape:
    """Size of the from-scratch T5; defaults fit a 60-minute training budget on 2 CPU cores."""

    d_model: int = 256
    d_ff: int = 1024
    num_layers: int = 3
    num_decoder_layers: int = 3
    num_heads: int = 4
    dropout_rate: float = 0.1

    def sized(self, width: int | None = None, layers: int | None = None) -> ScratchShape:
        """This shape `width` wide (its feed-forward four times as wide) with `layers` encoder and
        decoder layers (None: as it is)."""
        width = width or self.d_model
        layers = layers or self.num_layers
        return replace(self, d_model=width, d_ff=4 * width, num_layers=layers, num_decoder_layers=layers)


# (peak learning rate, epochs) where --lr / --epochs are not given, by where the weights come from.
# From scratch the 7M model needs a high rate and five passes (measured: docs/benchmarks.md);
# pretrained weights are fine-tuned gently, at the AdamW rates commonly used for each family
# (T5/mT5 3e-4, BART 3e-5), and converge in fewer passes. Warm-up, then cosine decay to 10%
# of the peak (`train._lr_factor`), for all.
RECIPES = {"scratch": (3e-3, 5), "t5": (3e-4, 3), "mt5": (3e-4, 3), "bart": (3e-5, 3)}
OTHER_PRETRAINED = (1e-4, 3)


@dataclass
class TrainConfig:
    """One training run, as `kgqa train` takes it."""

    train: str = field(metadata={"help": "KgCLUE train.json.", "type": "path", "flag": "train"})
    kb: str = field(metadata={"help": "Knowledge base, S<TAB>P<TAB>O lines.", "type": "path"})
    dev: str | None = field(default=None, metadata={
        "help": "KgCLUE dev.json, reported each epoch (never used to choose the checkpoint).", "type": "path"})
    model: str = field(default="scratch", metadata={
        "help": "'scratch' or a local or hub seq2seq checkpoint (T5, mT5, BART).", "type": "text"})
    output: str = field(default="checkpoints/kgclue", metadata={
        "help": "Checkpoint directory: DIR/best (chosen on the held-out predicates), DIR/last (resumable).",
        "type": "path"})
    epochs: int | None = field(default=None, metadata={
        "help": "Passes over the training questions.", "type": int, "min": 1,
        "shown": "by the model's family: " + ", ".join(f"{f} {e}" for f, (_, e) in RECIPES.items())})
    batch_size: int = field(default=64, metadata={"help": "Questions a step.", "min": 1})
    lr: float | None = field(default=None, metadata={
        "help": "Peak learning rate (warm-up, then cosine decay to a tenth of it).", "type": float, "min": 0,
        "min_open": True, "shown": "by the model's family: " + ", ".join(f"{f} {r:g}" for f, (r, _) in RECIPES.items())})
    warmup_steps: int = 300
    weight_decay: float = 0.01
    label_smoothing: float = 0.0
    kb_questions: int = field(default=6000, metadata={"help": "KB-generated questions mixed into each epoch.",
                                                      "min": 0})
    # object tokens taught after each key's end (0: none): their likelihood is the reranker's reading
    # of whether a candidate's object answers the question's wording. 0 by default: on the 7M
    # scratch model the reading moves no held-out question's ranking, and costs a longer target
    object_tokens: int = field(default=0, metadata={
        "help": "Object tokens taught after each key's end, whose likelihood the reranker reads (0: none).", "min": 0})
    channel_epochs: int = field(default=24, metadata={
        "help": "Passes of the noisy channel (rank/channel.py) over the training questions, trained before the "
                "reranker's fit (0: no channel).", "min": 0})
    vocab_size: int = 6000
    shape: ScratchShape = field(default_factory=ScratchShape)
    dev_limit: int = field(default=500, metadata={"help": "Dev questions reported each epoch (0: all).", "min": 0})
    holdout: float = field(default=0.08, metadata={
        "help": "Share of train's predicates held out to choose the checkpoint and fit the reranker.", "min": 0,
        "max": 1, "max_open": True})
    # the reranker fitted on held-out predicates alone learns that a predicate the model trained on is
    # the wrong answer (it always is, there) and overrules the beam where a person asks about one;
    # questions held out of the kept predicates show it the other case (`rank/trained.py`), and with
    # both it learns how far to trust the beam on a trained predicate against one it never saw
    holdout_questions: float = field(default=0.05, metadata={
        "help": "Share of the kept predicates' questions also held out of training, to fit the reranker on "
                "questions about predicates the model trained on too (0: none).", "min": 0, "max": 1,
        "max_open": True})
    holdout_limit: int = 400  # held-out questions scored per epoch (0: all)
    beams: int = DecodeSettings.beams  # per-epoch scoring and the reranker fit decode as `kgqa predict` does
    max_question_tokens: int = DecodeSettings.max_question_tokens
    save_every: int = 200  # steps between resumable saves of `last/`
    seed: int = field(default=0, metadata={"help": "Seed of the model's start, the data's order and the holdout."})
    device: str = "auto"  # auto: a GPU where one is present
    grad_accum: int = field(default=1, metadata={
        "help": "Split each batch into this many micro-batches (less memory, the same gradient).", "min": 1})
    resume: bool = field(default=False, metadata={"help": "Continue from OUTPUT/last."})
    index_dir: str | None = None
    skip_bad_lines: bool = False  # KB lines that are no triple skipped, not refused (`read_kb`)
    progress: bool = True

    @classmethod
    def saved(cls, record: dict) -> TrainConfig:
        """The config a checkpoint records (its `kgqa.json`'s "train": `asdict` of one), typed again;
        a field it lacks takes today's default."""
        known = {f.name for f in fields(cls)}
        given = {name: value for name, value in record.items() if name in known and name != "shape"}
        shape = ScratchShape(**{name: value for name, value in record.get("shape", {}).items()
                                if name in {f.name for f in fields(ScratchShape)}})
        return cls(**{"train": "", "kb": "", **given, "shape": shape})


def recipe(config: TrainConfig, model_type: str) -> TrainConfig:
    """`config` with its learning rate and epochs filled in from RECIPES where they are None."""
    lr, epochs = RECIPES["scratch"] if config.model == "scratch" else RECIPES.get(model_type, OTHER_PRETRAINED)
    return replace(config, lr=config.lr or lr, epochs=config.epochs or epochs)
