"""A resumable answer run: each finished batch is appended to `OUT.partial`, so `kgqa predict` of a
large file, killed at any moment, restarts where it stopped instead of from the first question.

The journal's first line is a fingerprint of everything the answers depend on (the question file,
the checkpoint, the KB, the decoding settings); a journal from another run is discarded, never
mixed in. A line torn by the kill is dropped and its batch answered again. The output itself is
written only once every question has its answer, by the atomic writer.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any

PARTIAL = ".partial"


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode("utf-8")).hexdigest()


class Journal:
    def __init__(self, output: str, key: str) -> None:
        self.path = output + PARTIAL
        self.key = key
        self.done: dict[int, dict] = {}
        if os.path.isfile(self.path):
            self._recover()
        if not self.done:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            with open(self.path, "w", encoding="utf-8") as out:
                out.write(json.dumps({"fingerprint": key}) + "\n")
                out.flush()
                os.fsync(out.fileno())

    def _recover(self) -> None:
        with open(self.path, "rb") as handle:
            raw = handle.read()
        whole = raw[: raw.rfind(b"\n") + 1]  # a torn last line is dropped
        lines = whole.decode("utf-8", errors="replace").splitlines()
        try:
            header = json.loads(lines[0]) if lines else {}
            if header.get("fingerprint") != self.key:
                return
            for line in lines[1:]:
                entry = json.loads(line)
                self.done[entry["position"]] = entry["record"]
        except (ValueError, KeyError, TypeError):
            self.done = {}
            return
        with open(self.path, "r+b") as handle:
            handle.truncate(len(whole))

    def append(self, records: dict[int, dict]) -> None:
        """Record one finished batch (position in the input -> answer record), durably."""
        with open(self.path, "a", encoding="utf-8") as out:
            for position, record in records.items():
                out.write(json.dumps({"position": position, "record": record}, ensure_ascii=False) + "\n")
            out.flush()
            os.fsync(out.fileno())
        self.done.update(records)

    def close(self) -> None:
        """The run is complete and its output written: the journal has no more use."""
        os.unlink(self.path)
