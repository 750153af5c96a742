"""What `GET /metrics` says of the service, in Prometheus' text format (prometheus_client, the
convention every scraper reads): requests by path and status, each question's seconds from its
arrival to its answer, each worker's batch sizes and decode seconds, answers, abstentions and
failures, the questions waiting in each lane, and the index each worker answers from.

All of it is counted in the serving process, which sees every request and every batch's result
(the workers' processes report their index with each batch), so one scrape sees every worker,
labelled by name; each service has a registry of its own.
"""
from __future__ import annotations

from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

SECONDS = (0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6)
QUESTIONS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Monitoring:
    """The service's metrics; the scheduler and the app call its `observe_*` methods."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("kgqa_requests", "HTTP requests, by path and status", ["path", "status"], registry=r)
        self.answer_seconds = Histogram("kgqa_answer_seconds", "Seconds from a question's arrival to its answer, "
                                        "by lane (lone or bulk) and worker", ["lane", "worker"], buckets=SECONDS,
                                        registry=r)
        self.batch_questions = Histogram("kgqa_batch_questions", "Questions per decoded batch, by worker", ["worker"],
                                         buckets=QUESTIONS, registry=r)
        self.decode_seconds = Histogram("kgqa_decode_seconds", "Seconds of each batch's decode, by worker", ["worker"],
                                        buckets=SECONDS, registry=r)
        self.answers = Counter("kgqa_answers", "Questions answered, by worker", ["worker"], registry=r)
        self.abstentions = Counter("kgqa_abstentions", "Questions given no answer (no KB key reachable, or a "
                                   "confidence below the minimum), by worker", ["worker"], registry=r)
        self.failures = Counter("kgqa_failures", "Questions that could not be answered (their request got a 500), "
                                "by worker", ["worker"], registry=r)
        self.dropped = Counter("kgqa_dropped", "Questions whose client left before their decode", registry=r)
        self.index_switches = Counter("kgqa_index_switches", "Changed indexes taken up, by worker", ["worker"],
                                      registry=r)
        self.kb_triples = Gauge("kgqa_kb_triples", "Triples of the KB each worker answers from", ["worker"], registry=r)
        self.index_version = Gauge("kgqa_index_version", "1 for the version of the index each worker answers from",
                                   ["worker", "version"], registry=r)
        self.queue_depth = Gauge("kgqa_queue_depth", "Questions waiting for a worker, by lane", ["lane"], registry=r)
        self.worker_up = Gauge("kgqa_worker_up", "1 while the worker answers", ["worker"], registry=r)
        self.worker_restarts = Counter("kgqa_worker_restarts", "Worker processes started again after they ended",
                                       ["worker"], registry=r)
        self._versions: dict[str, str] = {}  # each worker's index version, as last labelled
        self._restarts: dict[str, int] = {}  # each worker's restarts, as last counted

    def watch(self, lanes: dict[str, Callable[[], int]], workers: dict[str, Callable[[], bool]]) -> None:
        """Queue depths and workers' liveness, read at each scrape; each worker's counts start at 0
        (a series that appears only at its first event reads as missing, not as none)."""
        for lane, depth in lanes.items():
            self.queue_depth.labels(lane).set_function(depth)
        for name, alive in workers.items():
            self.worker_up.labels(name).set_function(lambda alive=alive: float(alive()))
            for metric in (self.answers, self.abstentions, self.failures, self.index_switches, self.worker_restarts,
                           self.batch_questions, self.decode_seconds):
                metric.labels(name)

    def observe_index(self, worker: str, kb_triples: int, version: str, switched: bool) -> None:
        self.kb_triples.labels(worker).set(kb_triples)
        if self._versions.get(worker) != version:
            if worker in self._versions:
                self.index_version.remove(worker, self._versions[worker])
            self.index_version.labels(worker, version).set(1)
            self._versions[worker] = version
        if switched:
            self.index_switches.labels(worker).inc()

    def observe_restarts(self, worker: str, restarts: int) -> None:
        """The worker's restarts so far (counted by the worker, which restarts itself)."""
        if restarts > self._restarts.get(worker, 0):
            self.worker_restarts.labels(worker).inc(restarts - self._restarts.get(worker, 0))
            self._restarts[worker] = restarts

    def observe_batch(self, worker: str, questions: int, seconds: float | None) -> None:
        """A batch decoded (`seconds` None: it failed before its decode said how long it took)."""
        self.batch_questions.labels(worker).observe(questions)
        if seconds is not None:
            self.decode_seconds.labels(worker).observe(seconds)

    def observe_question(self, worker: str, lane: str, seconds: float, answered: bool | None) -> None:
        """A question's outcome: `answered` True, False (abstained) or None (failed)."""
        if answered is None:
            self.failures.labels(worker).inc()
            return
        self.answers.labels(worker).inc()
        if not answered:
            self.abstentions.labels(worker).inc()
        self.answer_seconds.labels(lane, worker).observe(seconds)

    def observe_request(self, path: str, status: int) -> None:
        self.requests.labels(path, str(status)).inc()

    def text(self) -> bytes:
        return generate_latest(self.registry)
