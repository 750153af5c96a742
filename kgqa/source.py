"""Where a pipeline comes from: a checkpoint, a KB (and its index), a device and the decoding
settings — what the CLI's options name and a service's worker processes are told. Light: the
serving process holds one without importing torch; `open` loads the pipeline."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kgqa.decode.settings import DecodeSettings

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
        """The pipeline (`KGQA.from_checkpoint`), its index built first where none matches."""
        from kgqa.pipeline import KGQA

        return KGQA.from_checkpoint(self.checkpoint, self.kb, self.index_dir, self.settings, progress, self.device,
                                    self.skip_bad_lines)
