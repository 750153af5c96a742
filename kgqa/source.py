"""Where a pipeline comes from: a checkpoint, a KB (and its index), a device and the decoding
settings — what the CLI's options name and a service's worker processes are told. Light: the
serving process holds one without importing torch; `open` loads the pipeline."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kgqa.settings import DecodeSettings

if TYPE_CHECKING:
    from kgqa.pipeline import KGQA


@dataclass(frozen=True)
class Source:
    checkpoint: str
    kb: str
    index_dir: str | None = None  # None: the cache's index for (KB, tokenizer)
    device: str = "auto"  # where the model runs (a GPU where one is present)
    settings: DecodeSettings = field(default_factory=DecodeSettings)
    skip_bad_lines: bool = False  # KB lines that are no triple skipped, not refused (`kb.triples.read_kb`)

    def open(self, progress: bool = False) -> KGQA:
        """The pipeline: the checkpoint's model on `device` (the KB index and the trie stay in host
        memory, and each decoding step sends its allowed tokens over once), its tokenizer and fitted
        models, and the KB's index, built first where none matches (a KB line that is no triple is
        refused, file and line named, unless `skip_bad_lines`)."""
        from kgqa.kb.build import ensure_index
        from kgqa.model.checkpoint import load_checkpoint
        from kgqa.model.checkpoint_settings import trained_with
        from kgqa.model.seq2seq import pick_device
        from kgqa.pipeline import KGQA
        from kgqa.rank.fitted import Fitted

        model, tokenizer, _ = load_checkpoint(self.checkpoint)
        model.to(pick_device(self.device))
        index = ensure_index(self.kb, tokenizer, self.index_dir, self.skip_bad_lines, progress)
        trained = trained_with(self.checkpoint)
        qa = KGQA(model, tokenizer, index, self.settings, Fitted.load(self.checkpoint),
                  trained.object_tokens if trained else 0)
        qa.checkpoint = self.checkpoint
        return qa
