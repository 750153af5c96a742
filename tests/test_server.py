import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer

from kgqa.kb.index import KBIndex
from kgqa.model.seq2seq import scratch_model
from kgqa.pipeline import KGQA, DecodeSettings
from kgqa.rank.fitted import Fitted
from kgqa.serve.app import make_app
from kgqa.serve.workers import ThreadWorker

from conftest import SAMPLE, TINY_SHAPE, stand_in, write


@pytest.fixture(scope="module")
def qa(sample_kb):
    _, _, tokenizer, index = sample_kb
    return KGQA(scratch_model(tokenizer, TINY_SHAPE, 0), tokenizer, index, DecodeSettings(top_k=3))


def _app(qa, **options):
    return make_app([ThreadWorker(qa)], **options)


def _with_client(qa, scenario, **options):
    async def main():
        async with TestClient(TestServer(_app(qa, **options))) as client:
            return await scenario(client)
    return asyncio.run(main())


def test_ask_one_or_many_and_health(qa):
    async def scenario(client):
        one = await client.post("/ask", json={"question": "马磊静的配偶是谁？"})
        assert one.status == 200
        body = await one.json()
        assert body["question"] == "马磊静的配偶是谁？" and body["answer"].count(" ||| ") == 2
        assert 1 <= len(body["candidates"]) <= 3 and body["candidates"][0]["answer"] == body["answer"]
        many = await client.post("/ask", json={"questions": ["马磊静的配偶是谁？", "高军英是在哪里出生的？"]})
        assert [a["question"] for a in await many.json()] == ["马磊静的配偶是谁？", "高军英是在哪里出生的？"]
        explained = await (await client.post("/ask", json={"question": "马磊静的配偶是谁？", "explain": True})).json()
        assert "马磊静" in explained["explanation"]["mentions"]
        health = await (await client.get("/health")).json()
        assert health["status"] == "ok" and health["decodes"] >= 2
        assert health["confidence"] is False and health["min_confidence"] == 0.0  # this model has no calibrator
        page = await client.get("/")
        assert page.status == 200 and "<form" in await page.text()
        missing = await client.get("/nowhere")
        assert missing.status == 404 and "error" in await missing.json()
        wrong = await client.get("/ask")
        assert wrong.status == 405 and "error" in await wrong.json()
    _with_client(qa, scenario)


def test_a_question_typed_otherwise_is_answered_as_the_kb_spells_it_and_says_so(qa):
    async def scenario(client):
        written = await (await client.post("/ask", json={"question": "马磊静的配偶是谁？"})).json()
        for typed in ["馬磊靜的配偶是誰？", "马 磊静 的配偶 是谁？", "马雷静的配偶是谁？"]:
            answered = await (await client.post("/ask", json={"question": typed, "explain": True})).json()
            assert answered["question"] == typed
            assert answered["candidates"] == written["candidates"]
            e = answered["explanation"]
            assert e["read_as"] == "马磊静的配偶是谁？" and "马磊静" in e["mentions"]
            assert e["matches"] and all("the KB's 马磊静" in m["said"] for m in e["matches"])
    _with_client(qa, scenario)


@pytest.mark.parametrize("payload, message", [
    (b"not json", "not JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (b'{"question": 5}', "must be a string"),
    (b'{"questions": []}', "non-empty list"),
    (b'{"question": "  "}', "empty question"),
], ids=["not-json", "not-object", "not-string", "empty-list", "blank"])
def test_bad_requests_get_400_with_a_json_error(qa, payload, message):
    async def scenario(client):
        response = await client.post("/ask", data=payload, headers={"Content-Type": "application/json"})
        assert response.status == 400
        assert message in (await response.json())["error"]
    _with_client(qa, scenario)


def test_concurrent_requests_are_batched_into_fewer_decodes(qa):
    async def scenario(client):
        questions = [f"马磊静的配偶是谁？{i}" for i in range(16)]
        replies = await asyncio.gather(*(client.post("/ask", json={"question": q}) for q in questions))
        bodies = [await r.json() for r in replies]
        assert [b["question"] for b in bodies] == questions
        health = await (await client.get("/health")).json()
        assert health["decodes"] < len(questions)
    _with_client(qa, scenario, wait_s=0.2)


class _Counting(KGQA):
    """A pipeline that counts its beam searches."""

    def __init__(self, inner):
        super().__init__(inner.model, inner.tokenizer, inner.index, inner.settings, inner.fitted)
        self.searches = 0

    def beam(self, readings, top_k, encoded=None):
        self.searches += 1
        return super().beam(readings, top_k, encoded)


def test_an_explained_question_is_decoded_once_and_answers_as_a_plain_one(qa):
    counting = _Counting(qa)

    async def scenario(client):
        plain = await (await client.post("/ask", json={"question": "马磊静的配偶是谁？"})).json()
        counting.searches = 0
        explained = await (await client.post("/ask", json={"question": "马磊静的配偶是谁？", "explain": True})).json()
        assert counting.searches == 1
        assert explained["candidates"] == plain["candidates"] and explained["answer"] == plain["answer"]
        e = explained["explanation"]
        assert e["object"] == plain["answer"].split(" ||| ")[2]
        assert [edge["predicate"] for edge in e["neighbourhood"] if edge["chosen"]] == [e["predicate"]]
        assert sum(h["chosen"] for h in e["homonyms"]) == 1
    _with_client(counting, scenario)


class _Poisoned(KGQA):
    """A pipeline whose decode breaks on any batch holding the question "毒": as a bug would."""

    def __init__(self, inner):
        super().__init__(inner.model, inner.tokenizer, inner.index, inner.settings, inner.fitted)
        self.threads = set()

    def ask(self, questions, progress=False):
        import threading

        self.threads.add(threading.current_thread().name)
        if "毒" in questions:
            raise RuntimeError("poisoned")
        return super().ask(questions, progress)

    def read(self, questions):  # explaining reads too
        import threading

        self.threads.add(threading.current_thread().name)
        return super().read(questions)


def test_a_question_that_breaks_the_decode_fails_alone_and_the_worker_lives_on(qa):
    poisoned = _Poisoned(qa)

    async def scenario(client):
        replies = await asyncio.gather(
            client.post("/ask", json={"question": "毒"}),
            *(client.post("/ask", json={"question": f"马磊静的配偶是谁？{i}"}) for i in range(4)))
        assert replies[0].status == 500 and "poisoned" in (await replies[0].json())["error"]
        assert all(r.status == 200 for r in replies[1:])
        again = await client.post("/ask", json={"question": "高军英是在哪里出生的？", "explain": True})
        assert again.status == 200 and "explanation" in await again.json()
        health = await client.get("/health")
        assert health.status == 200 and (await health.json())["worker_running"] is True
    _with_client(poisoned, scenario, wait_s=0.2)
    assert poisoned.threads and all(name.startswith("kgqa-decode") for name in poisoned.threads)


def test_health_counts_uptime_from_when_the_service_began_its_loading_included(qa):
    import time

    async def scenario(client):
        return (await (await client.get("/health")).json())["uptime_s"]
    assert _with_client(qa, scenario, started=time.time() - 42.0) >= 42.0
    assert _with_client(qa, scenario) < 42.0


def test_health_says_when_the_worker_has_stopped(qa):
    from kgqa.serve.app import SCHEDULER

    async def scenario(client):
        task = client.server.app[SCHEDULER].tasks[0]
        task.cancel()
        await asyncio.sleep(0.05)
        health = await client.get("/health")
        assert health.status == 503 and (await health.json())["worker_running"] is False
    _with_client(qa, scenario)


def test_a_full_queue_is_a_503_with_retry_after(qa):
    async def scenario(client):
        reply = await client.post("/ask", json={"questions": ["马磊静的配偶是谁？"] * 3})
        assert reply.status == 503 and reply.headers["Retry-After"] == "1"
        assert "busy" in (await reply.json())["error"]
        assert (await client.post("/ask", json={"question": "马磊静的配偶是谁？"})).status == 200
    _with_client(qa, scenario, max_pending=2)


def test_requests_whose_client_left_are_dropped_before_decoding(qa):
    from kgqa.serve.scheduler import Scheduler

    async def scenario():
        scheduler = Scheduler([ThreadWorker(qa)], qa.settings.batch_size, wait_s=0.01)
        asked = asyncio.create_task(scheduler.ask(["马磊静的配偶是谁？", "高军英是在哪里出生的？"]))
        await asyncio.sleep(0)
        asked.cancel()  # the client disconnected
        await asyncio.sleep(0)
        later = asyncio.create_task(scheduler.ask(["马磊静的配偶是谁？", "马磊静是谁？"], client="another"))
        await asyncio.sleep(0)
        batch = await scheduler.next_batch(scheduler.workers[0])
        later.cancel()
        return scheduler, batch
    scheduler, batch = asyncio.run(scenario())
    assert scheduler.dropped == 2 and [job.question for job in batch] == ["马磊静的配偶是谁？", "马磊静是谁？"]


def test_a_lone_question_is_decoded_at_once_and_after_a_batch_of_several_late_ones_are_joined(qa):
    from kgqa.serve.scheduler import Scheduler

    async def scenario():
        scheduler = Scheduler([ThreadWorker(qa)], qa.settings.batch_size, wait_s=30.0)
        worker = scheduler.workers[0]
        scheduler.last_batch[worker.name] = 1  # a lone client's question came before: no waiting for others
        alone = asyncio.create_task(scheduler.ask(["马磊静的配偶是谁？"]))
        await asyncio.sleep(0)
        batch = await asyncio.wait_for(scheduler.next_batch(worker), 20)  # 30 s of waiting would time this out
        await scheduler.decode(worker, batch)
        assert (await alone)[0].top and (await alone)[0].explanation is None
        scheduler.last_batch[worker.name], scheduler.wait_s = 2, 0.3  # several clients: one asks a moment after
        first = asyncio.create_task(scheduler.ask(["马磊静的配偶是谁？", "高军英是在哪里出生的？"], client="a"))

        async def later():
            await asyncio.sleep(0.05)
            return await scheduler.ask(["高军英是在哪里出生的？", "马磊静的配偶是谁？"], client="b")
        second = asyncio.create_task(later())
        await asyncio.sleep(0)
        batch = await scheduler.next_batch(worker)
        await scheduler.decode(worker, batch)
        await asyncio.gather(first, second)
        return scheduler, batch
    scheduler, batch = asyncio.run(scenario())
    assert scheduler.decodes == 2 and len(batch) == 4


def test_a_lone_question_jumps_the_queue_and_the_lane_takes_nothing_else(qa):
    """A question is lone when asked by itself by a client with nothing else waiting: a freed
    worker takes the lone ones first, as a batch of their own; the lane takes only lone ones."""
    from kgqa.serve.scheduler import BULK, LONE, Scheduler

    async def scenario():
        bulk, lane = ThreadWorker(qa, "0"), ThreadWorker(qa, "lane", lane=True)
        scheduler = Scheduler([bulk, lane], qa.settings.batch_size, wait_s=0.0)
        asked = [asyncio.create_task(scheduler.ask(["马磊静的配偶是谁？", "马磊静是谁？"], client="load")),
                 asyncio.create_task(scheduler.ask(["高军英是谁？"], client="load")),
                 asyncio.create_task(scheduler.ask(["高军英是在哪里出生的？"], client="person"))]
        await asyncio.sleep(0)
        lanes = [job.lane for lane_jobs in scheduler.queues.values() for job in lane_jobs]
        first = await scheduler.next_batch(bulk)
        with pytest.raises(asyncio.TimeoutError):  # nothing lone is left: the lane waits
            await asyncio.wait_for(scheduler.next_batch(lane), 0.05)
        second = await scheduler.next_batch(bulk)
        for task in asked:
            task.cancel()
        return lanes, [j.question for j in first], [j.question for j in second]
    lanes, first, second = asyncio.run(scenario())
    assert lanes == [LONE, BULK, BULK, BULK]
    assert first == ["高军英是在哪里出生的？"] and second == ["马磊静的配偶是谁？", "马磊静是谁？", "高军英是谁？"]


class _Slow(ThreadWorker):
    """A worker whose decodes take `seconds` more."""

    def __init__(self, qa, name, seconds):
        super().__init__(qa, name)
        self.seconds = seconds

    async def decode(self, asked):
        await asyncio.sleep(self.seconds)
        return await super().decode(asked)


def test_while_a_batch_decodes_a_lone_question_is_answered_by_the_lane_and_counted(qa):
    from kgqa.serve.scheduler import Scheduler

    async def scenario():
        scheduler = Scheduler([_Slow(qa, "0", 1.0), ThreadWorker(qa, "lane", lane=True)], qa.settings.batch_size)
        scheduler.start()
        load = asyncio.create_task(scheduler.ask([f"马磊静的配偶是谁？{i}" for i in range(4)], client="load"))
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        started = loop.time()
        alone = await scheduler.ask(["高军英是在哪里出生的？"], client="person")
        waited = loop.time() - started
        batch_done = load.done()
        await load
        scheduler.stop()
        return alone, waited, batch_done, scheduler.monitoring.text().decode()
    alone, waited, batch_done, metrics = asyncio.run(scenario())
    assert alone[0].top and not batch_done and waited < 0.9
    assert 'kgqa_answer_seconds_count{lane="lone",worker="lane"} 1.0' in metrics
    assert 'kgqa_answer_seconds_count{lane="bulk",worker="0"} 4.0' in metrics
    assert 'kgqa_batch_questions_sum{worker="0"} 4.0' in metrics
    assert 'kgqa_queue_depth{lane="bulk"} 0.0' in metrics


@pytest.mark.parametrize("body, headers, status, message", [
    ('{"question": "\\ud800的配偶是谁"}', {}, 400, "lone surrogate"),
    ("[" * 100000 + "]" * 100000, {}, 400, "nested too deeply"),
    ('{"question": "马磊静的配偶是谁？"}', {"Content-Type": "text/plain"}, 415, "application/json"),
    ('{"question": "马磊静的配偶是谁？"}', {"Content-Type": "application/json; charset=bogus"}, 415, "UTF-8"),
    ('{"questions": [%s]}' % ",".join(['"' + "长" * 500 + '"'] * 30), {}, 200, None),
    ('{"question": "%s"}' % ("长" * 600), {}, 200, None),  # cut to 512, as a question file's is
    ('{"questions": [%s]}' % ",".join(['"' + "长" * 500 + '"'] * 40), {}, 400, "characters of questions"),
    ('{"question": "马磊静的配偶是谁？", "explain": "yes"}', {}, 400, "explain"),
], ids=["surrogate", "deep-json", "text-plain", "bogus-charset", "long-ok", "long-cut", "char-budget", "explain-type"])
def test_hostile_bodies_get_a_json_4xx(qa, body, headers, status, message):
    async def scenario(client):
        response = await client.post("/ask", data=body.encode("utf-8", "surrogatepass"),
                                     headers={"Content-Type": "application/json", **headers})
        assert response.status == status
        payload = await response.json()
        if message:
            assert message in payload["error"]
    _with_client(qa, scenario)


def test_on_loopback_only_loopback_host_names_are_served(qa):
    from kgqa.serve.app import LOOPBACK_NAMES

    async def scenario(client):
        rebound = await client.post("/ask", json={"question": "马磊静的配偶是谁？"}, headers={"Host": "evil.example:8000"})
        assert rebound.status == 403 and "loopback" in (await rebound.json())["error"]
        assert (await client.get("/", headers={"Host": "evil.example"})).status == 403
        for host in ("localhost:8000", "127.0.0.1", "[::1]:8000"):
            reply = await client.post("/ask", json={"question": "马磊静的配偶是谁？"}, headers={"Host": host})
            assert reply.status == 200, host
    _with_client(qa, scenario, allowed_hosts=LOOPBACK_NAMES)


def test_fuzzed_bodies_never_get_a_5xx_or_a_body_that_is_not_json(qa):
    from hypothesis import HealthCheck, given, settings, strategies as st

    texts = st.text(max_size=40) | st.text(st.characters(categories=["Cs", "Lo"]), max_size=5)  # lone surrogates
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
        max_leaves=12)
    requests = st.dictionaries(st.sampled_from(["question", "questions", "explain", "top_k"]), json_values,
                               max_size=3).map(lambda d: __import__("json").dumps(d).encode())
    deep = st.integers(1, 50000).map(lambda n: b'{"question": ' * 1 + b"[" * n + b"]" * n + b"}")
    bodies = requests | json_values.map(lambda v: __import__("json").dumps(v).encode()) | st.binary(max_size=200) | deep
    types = st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain",
                             "application/json; charset=latin-1", "application/json; charset=bogus",
                             "multipart/form-data", ""])
    loop = asyncio.new_event_loop()
    client = TestClient(TestServer(_app(qa, wait_s=0.001)), loop=loop)
    loop.run_until_complete(client.start_server())

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
    @given(body=bodies, content_type=types)
    def check(body, content_type):
        async def post():
            response = await client.post("/ask", data=body, headers={"Content-Type": content_type})
            return response.status, await response.read()
        status, raw = loop.run_until_complete(post())
        assert status < 500, raw
        __import__("json").loads(raw)

    try:
        check()
    finally:
        loop.run_until_complete(client.close())
        loop.close()


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True),
                                            ("[::1]", True), ("localhost", True), ("0.0.0.0", False),
                                            ("192.168.1.2", False), ("example.org", False)])
def test_only_loopback_binds_skip_the_no_authentication_warning_and_get_the_host_guard(host, loopback):
    from kgqa.serve.app import is_loopback

    assert is_loopback(host) is loopback


@pytest.mark.parametrize("host, guarded", [("127.0.0.1", True), ("0.0.0.0", False)])
def test_kgqa_serve_warns_off_loopback_and_guards_host_names_on_it(qa, monkeypatch, tmp_path, host, guarded):
    """The command itself: bound to a non-loopback address it warns that anyone can ask, and serves
    any Host name; on loopback it does not warn, and refuses a rebound name."""
    import kgqa.cli as cli
    import kgqa.serve.app
    from click.testing import CliRunner

    served = {}
    monkeypatch.setattr(cli, "_open", lambda **options: qa)
    monkeypatch.setattr(kgqa.serve.app.web, "run_app", lambda app, sock, **options: served.update(app=app, sock=sock))
    result = CliRunner().invoke(cli.main, ["serve", "--host", host, "--port", "0", *stand_in(tmp_path / "ck")])
    served["sock"].close()
    assert result.exit_code == 0, result.output
    assert ("is not loopback and kgqa serve has no API key" in result.output) is not guarded

    async def scenario():
        async with TestClient(TestServer(served["app"])) as client:
            return (await client.get("/health", headers={"Host": "evil.example"})).status
    assert asyncio.run(scenario()) == (403 if guarded else 200)


@pytest.mark.parametrize("how", ["rebuild", "update"])
def test_the_service_follows_its_index_when_a_rebuild_or_update_is_swapped_in_between_batches(sample_kb, tmp_path, how):
    from kgqa.kb.build import build_index
    from kgqa.kb.update import update_index

    _, _, tokenizer, _ = sample_kb
    with open(f"{SAMPLE}/kb.tsv", encoding="utf-8") as handle:
        base = handle.read()
    directory = str(tmp_path / "index")
    build_index(write(tmp_path / "kb.tsv", base), tokenizer, directory)
    qa = KGQA(scratch_model(tokenizer, TINY_SHAPE, 0), tokenizer, KBIndex(directory, tokenizer), DecodeSettings(top_k=3))
    question = "马磊静的民族出生是什么？"  # a predicate of known characters, new to the KB

    async def scenario(client):
        before = await (await client.post("/ask", json={"question": question})).json()
        health = await (await client.get("/health")).json()
        assert health["kb_triples"] == qa.index.triples and health["index_switches"] == 0
        if how == "rebuild":
            build_index(write(tmp_path / "kb2.tsv", base + "马磊静\t民族出生\t新的宾语\n"), tokenizer, directory)
        else:
            update_index(directory, write(tmp_path / "changes.tsv", "+\t马磊静\t民族出生\t新的宾语\n"), tokenizer)
        after = await (await client.post("/ask", json={"question": question})).json()
        again = await (await client.get("/health")).json()
        return before, health, after, again
    before, health, after, again = _with_client(qa, scenario)
    assert all("民族出生" not in c["answer"] for c in before["candidates"])
    assert again["index_switches"] == 1 and again["kb_triples"] == health["kb_triples"] + 1
    assert again["kb_version"] != health["kb_version"]
    assert any(c["answer"].endswith("||| 民族出生 ||| 新的宾语") for c in after["candidates"])


def test_an_index_swapped_in_for_another_tokenizer_or_damaged_is_not_taken(sample_kb, tmp_path):
    import os

    from kgqa.kb.build import build_index
    from kgqa.model.tokenizer import SentencePieceTokenizer

    _, triples, tokenizer, _ = sample_kb
    kb = f"{SAMPLE}/kb.tsv"
    directory = str(tmp_path / "index")
    build_index(kb, tokenizer, directory)
    qa = KGQA(scratch_model(tokenizer, TINY_SHAPE, 0), tokenizer, KBIndex(directory, tokenizer), DecodeSettings())
    first = qa.index
    other = SentencePieceTokenizer.train((t.predicate + t.surface for t in reversed(triples)), 300)
    assert other.sha256 != tokenizer.sha256
    build_index(kb, other, directory)
    assert qa.index.replaced() and not qa.follow_index() and qa.index is first
    build_index(kb, tokenizer, directory)
    os.truncate(os.path.join(directory, "s000000", "grp_pred.npy"), 10)  # damaged after the swap
    assert not qa.follow_index() and qa.index is first
    assert qa.ask(["马磊静的配偶是谁？"])[0]  # still answering from the index it has


def test_an_index_left_behind_by_a_switch_is_freed(sample_kb, tmp_path):
    import gc
    import weakref

    import numpy as np

    from kgqa.kb.build import build_index
    from kgqa.rank.answer_kinds import AnswerKinds

    _, _, tokenizer, _ = sample_kb
    directory = str(tmp_path / "index")
    build_index(f"{SAMPLE}/kb.tsv", tokenizer, directory)
    kinds = AnswerKinds(["的"], ["has 0", "length 2"], np.ones((2, 2)))
    qa = KGQA(scratch_model(tokenizer, TINY_SHAPE, 0), tokenizer, KBIndex(directory, tokenizer), DecodeSettings(),
              Fitted(answer_kinds=kinds))
    qa.candidate_sets(["马磊静的配偶是谁？"])  # the old index's tail tries and predicate profiles are cached
    assert kinds.profile.cache_info().currsize > 0
    old = weakref.ref(qa.index)
    build_index(write(tmp_path / "kb2.tsv", open(f"{SAMPLE}/kb.tsv", encoding="utf-8").read() + "新主语\t民族\t汉族\n"),
                tokenizer, directory)
    assert qa.follow_index()
    gc.collect()
    assert old() is None  # nothing keeps the replaced index (and the maps of its deleted files) alive


def test_with_a_key_ask_and_metrics_need_it_and_nothing_is_answered_without(qa):
    counting = _Counting(qa)

    async def scenario(client):
        counting.searches = 0
        statuses = []
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"},
                        {"Authorization": "Bearer s3cret2"}, {"Authorization": "Bearer \u00e9"}):
            reply = await client.post("/ask", json={"question": "马磊静的配偶是谁？"}, headers=headers)
            statuses.append((reply.status, reply.headers.get("WWW-Authenticate"), "error" in await reply.json()))
            statuses.append((await client.get("/metrics", headers=headers)).status)
        searches_without = counting.searches
        answered = await client.post("/ask", json={"question": "马磊静的配偶是谁？"},
                                     headers={"Authorization": "Bearer s3cret"})
        metrics = await client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        health = await client.get("/health")
        page = await client.get("/")
        return statuses, searches_without, answered.status, metrics.status, await metrics.text(), health.status, \
            page.status
    statuses, searches_without, answered, metrics, text, health, page = _with_client(counting, scenario,
                                                                                     api_key="s3cret")
    assert statuses == [(401, 'Bearer realm="kgqa"', True), 401] * 5 and searches_without == 0
    assert (answered, metrics, health, page) == (200, 200, 200, 200)
    assert 'kgqa_requests_total{path="/ask",status="401"} 5.0' in text
    assert 'kgqa_requests_total{path="/ask",status="200"} 1.0' in text


def test_metrics_count_requests_answers_abstentions_batches_and_the_index(qa):
    async def scenario(client):
        await client.post("/ask", json={"questions": ["马磊静的配偶是谁？", "高军英是在哪里出生的？"]})
        await client.post("/ask", data=b"not json", headers={"Content-Type": "application/json"})
        await client.get("/nowhere")
        reply = await client.get("/metrics")
        return reply.status, reply.headers["Content-Type"], await reply.text()
    status, content_type, text = _with_client(qa, scenario)
    assert status == 200 and content_type.startswith("text/plain; version=")
    from prometheus_client.parser import text_string_to_metric_families

    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("kgqa_requests_total", (("path", "/ask"), ("status", "200")))] == 1
    assert samples[("kgqa_requests_total", (("path", "/ask"), ("status", "400")))] == 1
    assert samples[("kgqa_requests_total", (("path", "other"), ("status", "404")))] == 1
    assert samples[("kgqa_answers_total", (("worker", "0"),))] == 2
    assert samples[("kgqa_abstentions_total", (("worker", "0"),))] == 0  # no minimum confidence: always answered
    assert samples[("kgqa_batch_questions_count", (("worker", "0"),))] == 1
    assert samples[("kgqa_batch_questions_sum", (("worker", "0"),))] == 2
    assert samples[("kgqa_answer_seconds_count", (("lane", "bulk"), ("worker", "0")))] == 2
    assert samples[("kgqa_index_version", (("version", qa.index.version), ("worker", "0")))] == 1
    assert samples[("kgqa_kb_triples", (("worker", "0"),))] == qa.index.triples
    assert samples[("kgqa_worker_up", (("worker", "0"),))] == 1
    assert samples[("kgqa_index_switches_total", (("worker", "0"),))] == 0


@pytest.mark.parametrize("options, env, message", [
    (["--api-key-file", "missing-key"], {}, "missing-key: cannot read the API key"),
    (["--api-key-file", "empty-key"], {}, "empty-key: the API key file's first line is empty"),
    (["--api-key-file", "empty-key", "--api-key", "k"], {}, "give the key once"),
    ([], {"KGQA_API_KEY": " "}, "the API key is empty"),
], ids=["missing-file", "empty-file", "twice", "blank-env"])
def test_a_key_that_cannot_be_used_ends_kgqa_serve_in_one_line_before_loading(qa, monkeypatch, tmp_path, options, env,
                                                                              message):
    import kgqa.cli as cli
    from click.testing import CliRunner

    monkeypatch.chdir(tmp_path)
    write(tmp_path / "empty-key", "\n")
    monkeypatch.setattr(cli, "_open", lambda **options: pytest.fail("the model was loaded"))
    result = CliRunner().invoke(cli.main, ["serve", "--port", "0", *stand_in(tmp_path / "ck"), *options], env=env)
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output


def test_kgqa_serve_reads_its_key_from_the_environment_or_a_file_and_guards_with_it(qa, monkeypatch, tmp_path):
    import kgqa.cli as cli
    import kgqa.serve.app
    from click.testing import CliRunner

    served = {}
    monkeypatch.setattr(cli, "_open", lambda **options: qa)
    monkeypatch.setattr(kgqa.serve.app.web, "run_app", lambda app, sock, **options: served.update(app=app, sock=sock))
    key_file = write(tmp_path / "key", "from-file\nignored\n")
    statuses = []
    for options, env, key in ([], {"KGQA_API_KEY": "from-env"}, "from-env"), (["--api-key-file", key_file], {}, "from-file"):
        result = CliRunner().invoke(cli.main, ["serve", "--host", "0.0.0.0", "--port", "0",
                                               *stand_in(tmp_path / "ck"), *options], env=env)
        served["sock"].close()
        assert result.exit_code == 0 and "no API key" not in result.output

        async def scenario():
            async with TestClient(TestServer(served["app"])) as client:
                ask = {"json": {"question": "马磊静的配偶是谁？"}}
                return [(await client.post("/ask", **ask)).status,
                        (await client.post("/ask", headers={"Authorization": f"Bearer {key}"}, **ask)).status]
        statuses.append(asyncio.run(scenario()))
    assert statuses == [[401, 200], [401, 200]]
