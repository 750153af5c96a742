"""The service on Ray Serve (`kgqa/serve/ray_app.py`), on one machine with a local Ray: two replicas
answer as the library does and as `kgqa serve` does, each answer says which replica and KB version
gave it, bad requests get the same 4xx as from `kgqa serve`, the API key guards it, and a replica
whose KB version is not the configured one says so. Skipped (the reason printed) where Ray is not
installed or cannot start here."""
import json
import os
import time
import urllib.error
import urllib.request

import pytest

from conftest import SAMPLE
from test_serve_workers import _free_port, _serve

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'kgqa[ray]')")
serve = pytest.importorskip("ray.serve")

KEY = "s3cret"


@pytest.fixture(scope="module")
def ray_service(overfit):
    """Two replicas of the overfit checkpoint over the sample KB, keyed: (url, checkpoint)."""
    tmp, _, _, env = overfit
    try:
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024 * 1024, log_to_driver=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", **env}})
    except Exception as error:  # noqa: BLE001 - whatever keeps Ray from starting here is a reason to skip
        pytest.skip(f"a local Ray cannot start here: {type(error).__name__}: {error}")

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    checkpoint = str(tmp / "ck/best")
    from kgqa.kb.build import ensure_index
    from kgqa.model.tokenizer import load_tokenizer

    ensure_index(f"{SAMPLE}/kb.tsv", load_tokenizer(os.path.join(checkpoint, "tokenizer")), str(tmp / "ray-published"))
    _deploy(checkpoint, tmp)
    yield f"http://127.0.0.1:{port}", checkpoint
    serve.shutdown()
    ray.shutdown()


def _deploy(checkpoint: str, tmp, kb_version: str | None = None) -> None:
    """Deploy as `serve deploy deploy/ray-serve.yaml` does, from a Serve config (the client the
    serve CLI hands it to): two keyed replicas over the sample KB, answering everything from the
    node's copy (`ray-index`) of a published index (`ray-published`: the update tests change it),
    the KB version in the deployment's user_config (changed alone, Serve reconfigures the
    replicas in place); then wait until both run."""
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    args = {"checkpoint": checkpoint, "kb": f"{SAMPLE}/kb.tsv", "index_dir": str(tmp / "ray-index"),
            "published_index": str(tmp / "ray-published"), "replicas": 2,
            "api_key": KEY, "settings": {"min_confidence": 0.0}}
    config = {"applications": [{"name": "kgqa", "route_prefix": "/", "import_path": "kgqa.serve.ray_app:app",
                                "args": args, "deployments": [{"name": "Replica",
                                                               "user_config": {"kb_version": kb_version}}]}]}
    _get_global_client().deploy_apps(ServeDeploySchema.model_validate(config))
    time.sleep(0.2)  # the controller takes the new target before its status says so
    _wait(_healthy, 180)


def _post(url: str, body: bytes, key: str | None = KEY, content_type: str = "application/json") -> tuple[int, dict]:
    headers = {"Content-Type": content_type, **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(url + "/ask", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_two_replicas_answer_as_the_library_does_and_say_which_replica_and_kb_version(ray_service, overfit):
    url, checkpoint = ray_service
    _, _, lines, _ = overfit
    from kgqa.settings import DecodeSettings
    from kgqa.source import Source

    questions = [line["question"] for line in lines]
    qa = Source(checkpoint, f"{SAMPLE}/kb.tsv", str(overfit[0] / "ray-index"),
                settings=DecodeSettings(min_confidence=0.0)).open()
    expected = [top[0].answer() if top else "" for top in qa.ask(questions)]
    status, batched = _post(url, json.dumps({"questions": questions}).encode())
    assert status == 200 and [r["answer"] for r in batched] == expected
    replicas = set()
    for question, answer in zip(questions * 4, expected * 4):
        status, one = _post(url, json.dumps({"question": question}).encode())
        assert status == 200 and one["answer"] == answer and one["kb_version"] == qa.index.version
        replicas.add(one["replica"])
    assert len(replicas) == 2  # Serve spread the requests over both
    with urllib.request.urlopen(url + "/health", timeout=30) as response:
        health = json.loads(response.read())
    assert health["status"] == "ok" and health["replica"] in replicas and health["kb_version"] == qa.index.version


def test_bad_requests_get_what_kgqa_serve_gives_and_the_key_guards_ask(ray_service, overfit):
    url, _ = ray_service
    aiohttp_url, server = _serve(overfit, "--api-key-file", _key_file(overfit))
    try:
        bad = [(b"not json", "application/json"), (b'{"question": 3}', "application/json"),
               (b'{"questions": []}', "application/json"), (b'{"question": "x", "explain": "yes"}', "application/json"),
               (json.dumps({"questions": ["q"] * 300}).encode(), "application/json"),
               (b'{"question": "x"}', "text/plain"), (b"[1, 2]", "application/json")]
        for body, content_type in bad:
            assert _post(url, body, content_type=content_type) == _post(aiohttp_url, body, content_type=content_type)
        assert _post(url, b'{"question": "x"}', key=None) == _post(aiohttp_url, b'{"question": "x"}', key=None)
        assert _post(url, b'{"question": "x"}', key="wrong")[0] == 401
    finally:
        server.terminate()
        server.wait(30)


def test_a_replica_not_on_the_configured_kb_version_says_so(ray_service, overfit):
    url, checkpoint = ray_service
    _deploy(checkpoint, overfit[0], kb_version="not-this-one")
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "/health", timeout=30)
        health = json.loads(refused.value.read())
        assert refused.value.code == 503 and health["configured_kb_version"] == "not-this-one"
        assert "another KB version" in health["status"]
    finally:  # back to answering from whatever the index holds
        _deploy(checkpoint, overfit[0])


def _key_file(overfit) -> str:
    tmp, _, _, _ = overfit
    path = tmp / "ray-test-key"
    path.write_text(KEY + "\n")
    os.chmod(path, 0o600)
    return str(path)


def test_the_serve_config_in_the_project_is_one_serve_accepts_and_builds():
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from kgqa.serve.ray_app import Replica, app
    from conftest import ROOT

    with open(os.path.join(ROOT, "deploy", "ray-serve.yaml"), encoding="utf-8") as handle:
        config = ServeDeploySchema.model_validate(yaml.safe_load(handle))
    (application,) = config.applications
    assert application.import_path == "kgqa.serve.ray_app:app"
    built = app(application.args)  # a builder: binds, opens nothing
    assert built._bound_deployment.name == Replica.name and built._bound_deployment.num_replicas == 2


def test_a_replica_killed_while_a_client_asks_costs_no_question(ray_service, overfit):
    """A client asking one question after another, retrying a failed request once (answering is
    idempotent), while one replica's actor is killed: Serve routes around it and starts another."""
    url, _ = ray_service
    _, _, lines, _ = overfit
    questions = [line["question"] for line in lines]
    replicas = [name for name in ray.util.list_named_actors(all_namespaces=True)
                if name["name"].startswith("SERVE_REPLICA::kgqa#Replica")]
    assert len(replicas) == 2
    failed, asked, seen = [], 0, set()
    deadline = time.time() + 20
    while time.time() < deadline:
        if asked == 10:  # mid-stream
            ray.kill(ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"]), no_restart=True)
        question = questions[asked % len(questions)]
        for attempt in range(2):
            try:
                status, answer = _post(url, json.dumps({"question": question}).encode())
            except OSError:  # the connection itself broke
                status, answer = 0, {}
            if status == 200:
                seen.add(answer["replica"])
                break
        else:
            failed.append(question)
        asked += 1
    assert not failed and asked > 20
    _wait(_healthy, 120)  # Serve started another in its place


def test_an_update_rolled_out_reaches_every_replica_within_5_s(ray_service, overfit):
    """`kgqa update` on the published index, then the new version configured: within 5 s every
    replica answers from it (its node's copy brought to it), a changed fact's new object and
    never its old one."""
    url, checkpoint = ray_service
    tmp, _, lines, _ = overfit
    from kgqa.cli import main
    from kgqa.kb.index import KBIndex
    from click.testing import CliRunner

    question = lines[0]["question"]
    subject, predicate, old = (part.strip() for part in lines[0]["answer"].split("|||"))
    changes = tmp / "ray-changes.tsv"
    changes.write_text(f"-\t{subject}\t{predicate}\t{old}\n+\t{subject}\t{predicate}\t新的答案\n", encoding="utf-8")
    published = str(tmp / "ray-published")
    result = CliRunner().invoke(main, ["update", str(changes), "--index", published, "--checkpoint", checkpoint],
                                env=overfit[3])
    assert result.exit_code == 0, result.output
    version = KBIndex(published).version
    before = _replica_ids()
    rolled = time.time()
    _deploy(checkpoint, tmp, kb_version=version)
    answered: dict[str, str] = {}

    def every_replica_on_the_new_version() -> bool:
        status, answer = _post(url, json.dumps({"question": question}).encode())
        obj = answer["answer"].split("|||")[-1].strip()
        assert status == 200 and obj != old  # the removed object is never answered again
        if answer["kb_version"] == version:
            answered[answer["replica"]] = obj
        return len(answered) == 2

    _wait(every_replica_on_the_new_version, 30)
    assert time.time() - rolled < 5 and set(answered.values()) == {"新的答案"}
    assert _replica_ids() == before  # reconfigured in place, not replaced


def _replica_ids() -> set[str]:
    return {name["name"] for name in ray.util.list_named_actors(all_namespaces=True)
            if name["name"].startswith("SERVE_REPLICA::kgqa#Replica")}


def _wait(condition, seconds: float) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, "not within the time"
        time.sleep(0.1)


def _healthy() -> bool:
    """Whether the application runs with both replicas healthy."""
    application = serve.status().applications.get("kgqa")
    return (application is not None and application.status == "RUNNING"
            and application.deployments["Replica"].status == "HEALTHY"
            and application.deployments["Replica"].replica_states.get("RUNNING", 0) == 2)


def test_a_damaged_new_version_is_refused_and_the_version_before_still_answers(ray_service, overfit):
    """A published update whose new segment is damaged (cut short on the shared volume): each
    replica refuses it, says so in /health, and answers from the version it had."""
    url, checkpoint = ray_service
    tmp, _, lines, _ = overfit
    from kgqa.kb.manifest import read_manifest
    from kgqa.kb.update import update_index
    from kgqa.model.tokenizer import load_tokenizer

    question = lines[0]["question"]
    status, answer = _post(url, json.dumps({"question": question}).encode())
    assert status == 200
    subject, predicate, _ = (part.strip() for part in lines[0]["answer"].split("|||"))
    changes = tmp / "ray-changes-2.tsv"
    changes.write_text(f"+\t{subject}\t{predicate}\t另一个答案\n", encoding="utf-8")
    published = str(tmp / "ray-published")
    updated, _ = update_index(published, str(changes), load_tokenizer(os.path.join(checkpoint, "tokenizer")), merge=False)
    newest = os.path.join(published, updated.manifest.segments[-1].name, "obj_offset.npy")
    with open(newest, "r+b") as damaged:
        damaged.truncate(os.path.getsize(newest) // 2)
    _deploy(checkpoint, tmp, kb_version=read_manifest(published).version)  # the index itself no longer opens
    for _ in range(6):  # both replicas, whichever the router picks
        again = _post(url, json.dumps({"question": question}).encode())
        assert again[0] == 200 and again[1]["answer"] == answer["answer"] and again[1]["kb_version"] == answer["kb_version"]
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url + "/health", timeout=30)
    assert refused.value.code == 503 and "answering from the version before" in json.loads(refused.value.read())["status"]


class _SlowWorker:
    """A worker whose decode takes 50 ms and answers each question with itself; it records each
    decode's questions, and fails a decode that holds "boom"."""

    def __init__(self) -> None:
        self.decodes: list[list[str]] = []

    async def decode(self, asked):
        import asyncio

        from kgqa.serve.workers import Decoded, WorkerState

        self.decodes.append([question for question, _ in asked])
        await asyncio.sleep(0.05)
        if any(question == "boom" for question, _ in asked):
            raise RuntimeError("the decode broke")
        return Decoded([question for question, _ in asked], WorkerState(10, "v1", True, 0.5, 32), False, 0.05)


def test_batches_formed_while_a_replica_decodes_are_decoded_together_next():
    import asyncio

    from kgqa.serve.ray_app import Decodes

    async def scenario():
        worker, seconds = _SlowWorker(), []
        decodes = Decodes(worker, seconds.append)
        first = asyncio.create_task(decodes.decode([("a", False)]))
        await asyncio.sleep(0.01)  # the first decode runs: three batches come meanwhile
        later = [asyncio.create_task(decodes.decode([(q, False) for q in batch])) for batch in (["b", "c"], ["d"], ["e"])]
        answered = await asyncio.gather(first, *later)
        assert worker.decodes == [["a"], ["b", "c", "d", "e"]]
        assert [results for results, _ in answered] == [["a"], ["b", "c"], ["d"], ["e"]]
        assert {state.kb_version for _, state in answered} == {"v1"} and seconds == [0.05, 0.05]
        # a decode that fails fails every batch it held, and the next decode still runs
        held = asyncio.create_task(decodes.decode([("x", False)]))
        await asyncio.sleep(0.01)
        failing = [asyncio.create_task(decodes.decode([(q, False)])) for q in ("boom", "y")]
        outcomes = await asyncio.gather(held, *failing, return_exceptions=True)
        assert outcomes[0][0] == ["x"] and all(isinstance(o, RuntimeError) for o in outcomes[1:])
        assert (await decodes.decode([("z", False)]))[0] == ["z"]

    asyncio.run(scenario())
