"""Where the service's decodes run: a worker answers one batch of questions at a time, on a thread
of the serving process (`ThreadWorker`, over a pipeline it is handed) or in a process of its own
(`ProcessWorker`, which opens its own pipeline).

Why processes: a decode is mostly Python (the beam's trie walks, the reranker's features), so two
decodes in one process share one interpreter lock; N processes answer N batches at once. Each
opens the model itself (spawned, not forked: a forked torch thread pool can hang) and maps the
same index files, so the index is in memory once whatever N is, and each follows the index's
directory between batches as a single service does. A worker's process ignores SIGINT and
SIGTERM: the serving process drains its requests first, then closes the pipe, which ends it.
"""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import multiprocessing
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from kgqa.errors import KgqaError
from kgqa.candidate import Candidate
from kgqa.source import Source

if TYPE_CHECKING:  # the serving process of worker processes holds no model: it imports no torch
    from kgqa.pipeline import KGQA

log = logging.getLogger("kgqa.serve")
BATCH_NICENESS = 10  # a batch worker's process: the lane's decode (niceness 0) gets a core within a time slice


@dataclass
class Failure:
    """A question the worker could not answer, and why (picklable, unlike some exceptions)."""

    message: str


@dataclass
class WorkerState:
    """What a worker's pipeline reports of itself, for /health and /metrics."""

    kb_triples: int
    kb_version: str
    confidence: bool  # whether its answers carry a calibrated confidence
    min_confidence: float
    batch_size: int  # questions its pipeline decodes together

    @classmethod
    def of(cls, qa: KGQA) -> "WorkerState":
        return cls(qa.index.triples, qa.index.version, qa.calibrated,
                   qa.settings.min_confidence, qa.settings.batch_size)


@dataclass
class Answered:
    """A question's answer as the pipeline gives it: its top candidates, best first, and where it
    was asked for, its explanation (`Explanation.as_json()`: the class stays in the worker, whose
    serving process imports no torch to read it)."""

    top: list[Candidate]
    explanation: dict | None = None


@dataclass
class Decoded:
    """One batch's answers (an `Answered` or a `Failure` per question, in order), with the
    pipeline's state after it, whether it switched to a changed index first, and its seconds."""

    results: list[Answered | Failure]
    state: WorkerState
    switched: bool
    seconds: float | None  # None: the batch failed before its decode said


def answer_batch(qa: KGQA, asked: list[tuple[str, bool]]) -> Decoded:
    """One decode for the batch's plain questions (if it fails, one per question, so a question
    that breaks the decode fails alone); an explained question is decoded once, by `explain`,
    which gives its answer too. The index is followed first: a batch is answered from one index."""
    from kgqa.explanation import explain  # in the worker, which has the pipeline (and torch) already

    started = time.perf_counter()
    switched = qa.follow_index()
    plain = [question for question, explained in asked if not explained]
    try:
        ranked: list = qa.ask(plain) if plain else []
    except Exception:
        ranked = [_alone(qa, question) for question in plain]
    answered = iter(ranked)
    results: list[Answered | Failure] = []
    for question, explained in asked:
        if not explained:
            candidates = next(answered)
            results.append(candidates if isinstance(candidates, Failure) else Answered(candidates))
            continue
        try:
            explanation = explain(qa, question)
        except Exception as error:
            log.exception("kgqa serve: cannot explain %r", question[:80])
            results.append(Failure(f"{type(error).__name__}: {error}"))
            continue
        results.append(Answered(explanation.top, explanation.as_json()))
    return Decoded(results, WorkerState.of(qa), switched, time.perf_counter() - started)


def _alone(qa: KGQA, question: str) -> list | Failure:
    try:
        return qa.ask([question])[0]
    except Exception as error:
        log.exception("kgqa serve: cannot answer %r", question[:80])
        return Failure(f"{type(error).__name__}: {error}")


class HeapTrim:
    """Gives the C heap's free pages back to the system after every `every`-th batch and after an
    index switch (glibc's `malloc_trim`; elsewhere nothing). Why: a batch's tensors and candidate
    structures are freed after it, but glibc keeps the pages, and a long-running worker's memory
    then ratchets up to the high-water mark of its busiest batches and their fragments; a trim
    costs a few milliseconds."""

    def __init__(self, every: int = 16) -> None:
        self.every, self.batches = every, 0
        try:
            self._trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc
            self._trim = None

    def after_batch(self, switched: bool) -> None:
        self.batches += 1
        if self._trim is not None and (switched or self.batches % self.every == 0):
            if switched:
                gc.collect()  # the replaced index's caches, before their pages are given back
            self._trim(0)


class WorkerLost(Exception):
    """A worker's process ended while it held a batch (killed, out of memory)."""


class Worker:
    """Answers one batch at a time (`decode`); `lane`: it takes only lone questions, so one is
    never behind a batch. `state` is its pipeline's, as of its last batch."""

    name: str
    lane: bool
    state: WorkerState
    restarts: int = 0  # times its process was started again after it ended

    async def decode(self, asked: list[tuple[str, bool]]) -> Decoded:
        raise NotImplementedError

    def alive(self) -> bool:
        raise NotImplementedError

    async def revive(self) -> None:
        """Starts its process again if it ended (a worker on a thread never does)."""

    def stop(self) -> None:
        raise NotImplementedError


class ThreadWorker(Worker):
    """Decodes on one thread of the serving process, with the pipeline it is handed (the default
    service, the library's and the tests'): the event loop keeps taking requests meanwhile."""

    def __init__(self, qa: KGQA, name: str = "0", lane: bool = False) -> None:
        self.qa, self.name, self.lane = qa, name, lane
        self.state = WorkerState.of(qa)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="kgqa-decode")
        self._heap = HeapTrim()

    async def decode(self, asked: list[tuple[str, bool]]) -> Decoded:
        loop = asyncio.get_running_loop()
        decoded = await loop.run_in_executor(self._thread, answer_batch, self.qa, asked)
        loop.run_in_executor(self._thread, self._heap.after_batch, decoded.switched)  # after the answers are out
        self.state = decoded.state
        return decoded

    def alive(self) -> bool:
        return True

    @property
    def pid(self) -> int:
        return os.getpid()

    def stop(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)


@dataclass
class Opening:
    """How a worker process opens its pipeline, and runs."""

    source: Source
    threads: int = 1  # torch's threads in the process
    nice: int = 0  # added to the process's niceness: batches yield the cores to the lane's lone questions


class ProcessWorker(Worker):
    """Decodes in a spawned process of its own: the batch goes down a pipe, its `Decoded` comes
    back; the pipe is used from one thread of the serving process, one batch at a time."""

    def __init__(self, opening: Opening, name: str, lane: bool = False) -> None:
        self.opening, self.name, self.lane = opening, name, lane
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"kgqa-worker-{name}")
        self._process: multiprocessing.process.BaseProcess | None = None
        self._pipe = None
        self.restarts = 0

    def start(self) -> None:
        """Spawns the process, and waits until its pipeline is open (KgqaError: why it could not)."""
        self.launch()
        self.ready()

    def launch(self) -> None:
        """Spawns the process (several load their models at once, then each is waited for)."""
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(target=_work, args=(child, self.opening), name=f"kgqa-worker-{self.name}",
                                        daemon=True)
        self._process.start()
        child.close()

    def ready(self) -> None:
        """Waits until the launched process's pipeline is open (KgqaError: why it could not)."""
        try:
            reply = self._pipe.recv()
        except EOFError:
            self._process.join(5)
            reply = Failure(f"its process ended with exit code {self._process.exitcode}")
        if isinstance(reply, Failure):
            self.stop()
            raise KgqaError(f"kgqa serve: worker {self.name} could not start: {reply.message}")
        self.state = reply

    async def decode(self, asked: list[tuple[str, bool]]) -> Decoded:
        loop = asyncio.get_running_loop()
        await self.revive()  # it ended between batches: this batch goes to a new one
        try:
            decoded = await loop.run_in_executor(self._thread, self._roundtrip, asked)
        except (EOFError, OSError):
            code = self._process.exitcode if self._process else None
            await loop.run_in_executor(self._thread, self._restart)
            raise WorkerLost(f"worker {self.name} ended during this question's batch (exit code {code})") from None
        self.state = decoded.state
        return decoded

    async def revive(self) -> None:
        if not self.alive():
            await asyncio.get_running_loop().run_in_executor(self._thread, self._restart)

    def _restart(self) -> None:
        """Starts the process again, unless a restart queued before this one already did."""
        if self.alive():
            return
        log.error("kgqa serve: worker %s ended (exit code %s); starting it again", self.name,
                  self._process.exitcode if self._process else None)
        self.stop()
        self.restarts += 1
        self.start()

    def _roundtrip(self, asked: list[tuple[str, bool]]) -> Decoded:
        self._pipe.send(asked)
        return self._pipe.recv()

    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def stop(self) -> None:
        """Closes the pipe (the process ends after its batch) and waits a little for it."""
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None
        if self._process is not None:
            self._process.join(10)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
            self._process = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None


def _work(pipe, opening: Opening) -> None:
    """A worker process: open the pipeline, say so (its `WorkerState`, or a `Failure`), then answer each
    batch the pipe brings until it closes."""
    import torch
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if opening.nice:
        os.nice(opening.nice)
    torch.set_num_threads(opening.threads)
    try:
        qa = opening.source.open(progress=True)  # the first builds a missing index
    except KgqaError as error:
        pipe.send(Failure(str(error)))
        return
    except Exception as error:
        pipe.send(Failure(f"{type(error).__name__}: {error}"))
        return
    pipe.send(WorkerState.of(qa))
    heap = HeapTrim()
    while True:
        try:
            asked = pipe.recv()
        except (EOFError, OSError):
            return
        decoded = answer_batch(qa, asked)
        pipe.send(decoded)
        heap.after_batch(decoded.switched)


def start_processes(source: Source, count: int, lane: bool) -> list[ProcessWorker]:
    """`count` worker processes answering from `source` (the cores' threads shared out among them,
    batches at a lower priority), and the lane's where `lane`; started, each pipeline open (the
    first alone: it builds the index where none is cached yet). Where one cannot start, all stop."""
    threads = max(1, len(os.sched_getaffinity(0)) // count)
    opening = Opening(source, threads)
    workers = [ProcessWorker(replace(opening, nice=BATCH_NICENESS), str(n)) for n in range(count)]
    workers += [ProcessWorker(opening, "lane", lane=True)] if lane else []
    try:
        workers[0].start()
        for worker in workers[1:]:
            worker.launch()
        for worker in workers[1:]:
            worker.ready()
    except BaseException:
        for worker in workers:
            worker.stop()
        raise
    return workers
