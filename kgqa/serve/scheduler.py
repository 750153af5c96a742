"""The service's queue: which questions each worker decodes together, and when.

Why batches: one decode of several questions costs less than one each, so the questions waiting
when a worker frees up are decoded together. Why two lanes: a question that waits for a batch in
progress and is then decoded inside the next one waits for two batches; a person asking one
question at a time should not. A question is *lone* when it is asked by itself (a request of one
question) by a client with nothing else waiting or being answered; every other question is
*bulk*. Clients are told apart by what the app passes (the peer's address, or a header a trusted
proxy sets). The rules:

- a worker that frees up takes the lone questions waiting before any bulk one, as a batch of
  their own: they jump the queue;
- a lane worker (`Worker.lane`) takes only lone questions, so one is decoded the moment it
  arrives whatever the bulk workers are doing (their processes run at a lower priority, so the
  lane's decode gets a core at once);
- a bulk worker takes its share of the bulk questions waiting: all of them split over the idle
  bulk workers, so questions are batched only when every worker is busy; after a batch of
  several it waits `wait_s` for more first (clients whose answers just came back ask again within
  milliseconds of each other), after a batch of one it does not (a lone client would only wait).

Nothing a batch does ends a worker's loop; questions whose client went away are dropped before
their decode; at most `max_pending` questions wait (then `Busy`: the app answers 503).
"""
from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter, deque
from dataclasses import dataclass, field

from kgqa.serve.monitoring import Monitoring
from kgqa.candidate import abstains
from kgqa.serve.workers import Answered, Decoded, Failure, Worker, WorkerLost

log = logging.getLogger("kgqa.serve")
LONE, BULK = "lone", "bulk"


class Busy(Exception):
    """The queue holds as many questions as the service takes; the client should retry later."""


@dataclass
class Job:
    question: str
    explain: bool
    lane: str  # LONE or BULK
    future: asyncio.Future
    arrived: float  # the event loop's time


@dataclass
class Scheduler:
    workers: list[Worker]
    max_batch: int  # questions decoded together: the pipeline's batch size
    wait_s: float = 0.01
    max_pending: int = 1024  # questions waiting; more get Busy
    monitoring: Monitoring = field(default_factory=Monitoring)
    decodes: int = 0  # batches decoded so far
    dropped: int = 0  # questions whose client went away before their decode
    index_switches: int = 0  # changed indexes taken up, all workers together

    def __post_init__(self) -> None:
        self.queues: dict[str, deque[Job]] = {LONE: deque(), BULK: deque()}
        self.asking: Counter[str] = Counter()  # a client's questions waiting or being answered
        self.last_batch = {worker.name: 0 for worker in self.workers}  # questions in each one's last batch
        self.idle: set[str] = set()
        self.tasks: list[asyncio.Task] = []
        self._arrival = asyncio.Condition()
        self.monitoring.watch({lane: queue.__len__ for lane, queue in self.queues.items()},
                              {worker.name: worker.alive for worker in self.workers})
        for worker in self.workers:
            self.monitoring.observe_index(worker.name, worker.state.kb_triples, worker.state.kb_version, False)

    def start(self) -> None:
        """One loop per worker, and one that starts idle workers whose process ended again, on the
        running event loop."""
        self.tasks = [asyncio.create_task(self._serve(worker), name=f"kgqa-worker-{worker.name}")
                      for worker in self.workers] + [asyncio.create_task(self._revive(), name="kgqa-revive")]

    def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for worker in self.workers:
            worker.stop()

    def running(self) -> bool:
        return bool(self.tasks) and all(not task.done() for task in self.tasks) and \
            all(worker.alive() for worker in self.workers)

    def pending(self) -> int:
        return sum(map(len, self.queues.values()))

    async def ask(self, questions: list[str], explain: bool = False, client: str = "") -> list[Answered | Failure]:
        """Each question's answer, or the `Failure` that says why it has none."""
        if self.pending() + len(questions) > self.max_pending:
            raise Busy()
        loop = asyncio.get_running_loop()
        lane = LONE if len(questions) == 1 and not self.asking[client] else BULK
        jobs = [Job(question, explain, lane, loop.create_future(), loop.time()) for question in questions]
        self.asking[client] += len(jobs)
        self.queues[lane].extend(jobs)
        async with self._arrival:
            self._arrival.notify_all()
        try:
            return list(await asyncio.gather(*(job.future for job in jobs)))
        finally:
            for job in jobs:  # the client went away: the workers skip what is cancelled
                job.future.cancel()
            self.asking[client] -= len(jobs)
            if not self.asking[client]:
                del self.asking[client]

    async def _serve(self, worker: Worker) -> None:
        """A worker's loop; nothing a batch does ends it (only cancellation at shutdown)."""
        while True:
            try:
                self.idle.add(worker.name)
                batch = await self.next_batch(worker)
                self.idle.discard(worker.name)
                await self.decode(worker, batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in one batch must not hang every later request
                log.exception("kgqa serve: a batch failed")

    async def _revive(self, every_s: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every_s)
            for worker in self.workers:
                if worker.name in self.idle and not worker.alive():
                    try:
                        await worker.revive()
                    except Exception:  # it cannot start now (its checkpoint went away): tried again later
                        log.exception("kgqa serve: cannot start worker %s again", worker.name)
                    self.monitoring.observe_restarts(worker.name, worker.restarts)

    async def next_batch(self, worker: Worker) -> list[Job]:
        """The questions `worker` decodes next (waiting for some): see the module's rules."""
        loop = asyncio.get_running_loop()
        while True:
            if self._live(LONE):
                return self._take(LONE, self.max_batch)
            if not worker.lane and self._live(BULK):
                deadline = loop.time() + (self.wait_s if self.last_batch[worker.name] > 1 else 0.0)
                while len(self.queues[BULK]) < self.max_batch and loop.time() < deadline and not self.queues[LONE]:
                    await self._arrived(deadline - loop.time())
                if self.queues[LONE]:
                    continue
                idle = sum(1 for w in self.workers if not w.lane and w.name in self.idle)
                return self._take(BULK, min(self.max_batch, math.ceil(len(self.queues[BULK]) / max(1, idle))))
            await self._arrived(None)

    async def _arrived(self, timeout: float | None) -> None:
        async with self._arrival:
            try:
                await asyncio.wait_for(self._arrival.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    def _live(self, lane: str) -> bool:
        """Whether the lane holds a question whose client still waits (the others are dropped)."""
        queue = self.queues[lane]
        while queue and queue[0].future.done():
            queue.popleft()
            self._drop()
        return bool(queue)

    def _take(self, lane: str, most: int) -> list[Job]:
        queue, batch = self.queues[lane], []
        while queue and len(batch) < most:
            job = queue.popleft()
            if job.future.done():
                self._drop()
            else:
                batch.append(job)
        return batch

    def _drop(self) -> None:
        self.dropped += 1
        self.monitoring.dropped.inc()

    async def decode(self, worker: Worker, batch: list[Job]) -> None:
        """Decode `batch` on `worker` and hand each question its result."""
        self.last_batch[worker.name] = len(batch)
        if not batch:
            return
        try:
            decoded = await worker.decode([(job.question, job.explain) for job in batch])
        except WorkerLost as lost:
            decoded = Decoded([Failure(str(lost))] * len(batch), worker.state, False, None)
        except Exception as error:  # a bug outside the pipeline's guarded calls: these questions fail, not the loop
            log.exception("kgqa serve: worker %s failed a batch", worker.name)
            decoded = Decoded([Failure(f"{type(error).__name__}: {error}")] * len(batch), worker.state, False, None)
        self.decodes += 1
        self.index_switches += decoded.switched
        self.monitoring.observe_restarts(worker.name, worker.restarts)
        self.monitoring.observe_index(worker.name, decoded.state.kb_triples, decoded.state.kb_version,
                                      decoded.switched)
        self.monitoring.observe_batch(worker.name, len(batch), decoded.seconds)
        now = asyncio.get_running_loop().time()
        for job, result in zip(batch, decoded.results):
            answered = None if isinstance(result, Failure) else \
                not abstains(result.top, decoded.state.min_confidence)
            self.monitoring.observe_question(worker.name, job.lane, now - job.arrived, answered)
            if not job.future.done():
                job.future.set_result(result)
