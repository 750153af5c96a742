"""A resumable answer run: each finished batch is appended to `OUT.partial`, so `kgqa predict` of a
large file, killed at any moment, restarts where it stopped instead of from the first question.

The journal's first line is a fingerprint of everything the answers depend on (the question file,
the checkpoint, the KB, the decoding settings, the kind of record); a journal from another run is
discarded, never mixed in. A line torn by the kill is dropped and its batch answered again. The output itself is
written only once every question has its answer, by the atomic writer.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
from dataclasses import asdict
from typing import Any, Callable, Iterator

from kgqa.candidate import Candidate, best_answer, confidence_json
from kgqa.data import Question, read_questions
from kgqa.settings import DecodeSettings
from kgqa.errors import KgqaError
from kgqa.files import file_sha256
from kgqa.process_group import join, leave, shard

PARTIAL = ".partial"


def prediction_record(q: Question, candidates: list[Candidate], settings: DecodeSettings) -> dict:
    """`kgqa predict`'s line: id, question, best answer ("" where no KB key was reachable or its
    confidence is below the minimum: no answer in the KB), its confidence where the checkpoint has
    a calibrator, and with top_k > 1 every candidate with its score and confidence."""
    record = {"id": q.id, "question": q.question, "answer": best_answer(candidates, settings.min_confidence),
              **confidence_json(candidates)}
    if settings.top_k > 1:
        record["candidates"] = [c.as_json() for c in candidates]
    return record


def leaderboard_record(q: Question, candidates: list[Candidate], settings: DecodeSettings) -> dict:
    """The CLUE leaderboard's line: id and best answer (every question answered unless a minimum
    confidence is asked for: the leaderboard scores every line)."""
    return {"id": q.id, "answer": best_answer(candidates, settings.min_confidence)}


# The kinds of answer file, by the name their journals are fingerprinted with.
RECORDS: dict[str, Callable[[Question, list[Candidate], DecodeSettings], dict]] = {
    "prediction": prediction_record, "leaderboard": leaderboard_record}


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode("utf-8")).hexdigest()


class Journal:
    """The journal of one output. Opening it takes a lock held until `close` or `release`: two
    runs writing the same output would truncate each other's journal and could mix their
    answers, so the second fails at once, before loading anything."""

    def __init__(self, output: str, part: str = "") -> None:
        """`part`: what tells this process's journal from the others' of one output (a shard's)."""
        self.path = output + PARTIAL + part
        self.done: dict[int, dict] = {}
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._handle = open(self.path, "a+b")
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._handle.close()
            raise KgqaError("another kgqa run is writing this output now (its journal is locked)", output) from None

    def begin(self, fingerprint: str) -> "Journal":
        """Take up the answers of an earlier run of the same `fingerprint`, or start the journal afresh."""
        self._handle.seek(0)
        raw = self._handle.read()
        whole = raw[: raw.rfind(b"\n") + 1]  # a torn last line is dropped
        self.done = self._recovered(whole, fingerprint)
        if self.done:
            self._handle.truncate(len(whole))
        else:
            self._handle.truncate(0)
            self._write([{"fingerprint": fingerprint}])
        return self

    @staticmethod
    def _recovered(whole: bytes, fingerprint: str) -> dict[int, dict]:
        lines = whole.decode("utf-8", errors="replace").splitlines()
        try:
            if not lines or json.loads(lines[0]).get("fingerprint") != fingerprint:
                return {}
            return {entry["position"]: entry["record"] for entry in map(json.loads, lines[1:])}
        except (ValueError, KeyError, TypeError, AttributeError):
            return {}

    def _write(self, entries: list[dict]) -> None:
        self._handle.seek(0, os.SEEK_END)
        self._handle.write("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries).encode("utf-8"))
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def append(self, records: dict[int, dict]) -> None:
        """Record one finished batch (position in the input -> answer record), durably."""
        self._write([{"position": position, "record": record} for position, record in records.items()])
        self.done.update(records)

    def release(self) -> None:
        """Stop without finishing: the journal stays for a later run to resume from, unless it
        holds nothing (the run failed before its first line: a bad KB, say), which leaves no file."""
        if os.fstat(self._handle.fileno()).st_size == 0:
            os.unlink(self.path)
        self._handle.close()

    def close(self) -> None:
        """The run is complete and its output written: the journal has no more use."""
        os.unlink(self.path)
        self._handle.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *_: object) -> None:
        if not self._handle.closed:
            self.release()


def answer_file(questions_path: str, output: str, open_pipeline: Callable[[], Any], kind: str,
                progress: bool = True) -> Iterator[list[dict]]:
    """Answer every question of a file, one batch at a time, journaled beside `output` so a killed
    run resumes; yields the records (one per question, input order, of `kind`: a name in RECORDS)
    once, and removes the journal only after the caller has written them.

    Under `torchrun` each of the N processes answers every N-th of the batches one process forms
    into its own journal (`OUTPUT.partial.R-of-N`, resumed by a run with the same N), the records
    are gathered to rank 0 (gloo, so CPU processes and GPUs alike), which alone yields them for the
    one output; the journals go only once it is written. Batches, not questions, are dealt out:
    a question's beam and likelihoods are computed with the same batch as in one process, so to
    the last digit of their float arithmetic (padding and pass shapes follow the batch).

    What can be checked without the model is checked first: an output that is a directory, or
    one another run is writing, fails before minutes of loading (`open_pipeline` is called after),
    not after the answers. The journal's fingerprint covers the questions, the checkpoint's files,
    the KB, the decoding settings, the kind of record (by its name in RECORDS) and the shard.
    """
    from tqdm import tqdm

    record_of = RECORDS[kind]
    rank, world = shard()

    if os.path.isdir(output):
        raise KgqaError("is a directory, expected the answer file to write", output)
    questions = read_questions(questions_path)
    with Journal(output, "" if world == 1 else f".{rank}-of-{world}") as journal:
        qa = open_pipeline()
        files = sorted((entry.name, entry.stat().st_size, entry.stat().st_mtime_ns)
                       for entry in os.scandir(qa.checkpoint) if entry.is_file()) if qa.checkpoint else None
        journal.begin(fingerprint(file_sha256(questions_path), files, qa.index.version,
                                  asdict(qa.settings), kind, *([rank, world] if world > 1 else [])))
        size = qa.settings.batch_size
        # every N-th batch of those one process forms: the same batches, so the same arithmetic
        pending = [i for i in range(len(questions)) if (i // size) % world == rank and i not in journal.done]
        if journal.done:
            tqdm.write(f"resuming: {len(journal.done)} answers already in {journal.path}", file=sys.stderr)
        # `or None`: tqdm draws no bar where stderr is no terminal (a log)
        for start in tqdm(range(0, len(pending), size), desc="answering", unit=" batches",
                          disable=not progress or rank > 0 or None):
            chunk = pending[start:start + size]
            asked = qa.ask([questions[i].question for i in chunk])
            journal.append({i: record_of(questions[i], candidates, qa.settings)
                            for i, candidates in zip(chunk, asked)})
        done = _gathered(journal.done, world)
        if rank == 0:
            yield [done[i] for i in range(len(questions))]
        if world > 1:
            leave()  # the output is written: no shard's journal is needed now
        journal.close()


def _gathered(records: dict[int, dict], world: int) -> dict[int, dict]:
    """Every process's records, on rank 0 (a process group of gloo is set up if none is)."""
    if world == 1:
        return records
    import torch.distributed

    join("gloo")
    shards: list[dict[int, dict] | None] = [None] * world if torch.distributed.get_rank() == 0 else None
    torch.distributed.gather_object(records, shards)
    return {position: record for part in shards or [] for position, record in part.items()}
