"""`kgqa serve` as an operator runs it: worker processes sharing one index, a worker that dies
started again, and SIGTERM (sent to the whole process group, as a service manager does) draining
the requests in flight before the service exits."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import ROOT, SAMPLE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(overfit, *options):
    """`kgqa serve` in a session of its own, once /health answers: (url, process)."""
    tmp, _, _, env = overfit
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "cli.py"), "serve", "--checkpoint", str(tmp / "ck/best"),
         "--kb", f"{SAMPLE}/kb.tsv", "--port", str(port), *options],
        env=dict(os.environ, OMP_NUM_THREADS="1", **env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            return url, server
        except OSError:
            if server.poll() is not None:
                pytest.fail(f"kgqa serve ended: {server.stderr.read().decode()}")
            time.sleep(0.2)
    os.killpg(server.pid, signal.SIGKILL)
    pytest.fail("kgqa serve did not come up")


def _post(url, body):
    request = urllib.request.Request(url + "/ask", json.dumps(body, ensure_ascii=False).encode(),
                                     {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _health(url):
    try:
        with urllib.request.urlopen(url + "/health", timeout=10) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as error:  # 503 while a worker is down
        return json.loads(error.read())


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_to_the_group_answers_the_requests_in_flight_then_exits(overfit, workers):
    _, _, gold, _ = overfit
    questions = [record["question"] for record in gold] * 32  # 256: a decode long enough to stop during
    url, server = _serve(overfit, "--workers", str(workers))
    try:
        health = _health(url)
        assert [w["name"] for w in health["workers"]] == (["0"] if workers == 1 else ["0", "1", "lane"])
        assert len({w["pid"] for w in health["workers"]}) == (1 if workers == 1 else 3)
        first = _post(url, {"questions": [record["question"] for record in gold]})
        replies = []
        asking = threading.Thread(target=lambda: replies.append(_post(url, {"questions": questions})))
        asking.start()
        time.sleep(0.5)  # the 256 questions are being decoded
        os.killpg(server.pid, signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(OSError):  # no new connection is taken while draining
            urllib.request.urlopen(url + "/health", timeout=5)
        asking.join(120)
        assert server.wait(60) == 0
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
    status, answers = replies[0]
    assert status == 200 and [a["question"] for a in answers] == questions
    assert [a["answer"] for a in answers[:8]] == [a["answer"] for a in first[1]]
    assert [a["answer"] for a in first[1]] == [record["answer"] for record in gold]  # what it learned, from workers too
    time.sleep(1)
    group = subprocess.run(["ps", "-o", "stat=,args=", "-g", str(server.pid)], capture_output=True, text=True).stdout
    assert [line for line in group.splitlines() if not line.startswith("Z")] == []  # its workers ended with it


def test_a_worker_process_that_dies_is_started_again_and_no_request_fails(overfit):
    _, _, gold, _ = overfit
    url, server = _serve(overfit, "--workers", "2", "--no-lane")
    try:
        workers = _health(url)["workers"]
        assert [w["name"] for w in workers] == ["0", "1"]
        for worker in workers:
            os.kill(worker["pid"], signal.SIGKILL)
        time.sleep(0.5)
        health = _health(url)
        assert health["worker_running"] is False and health["status"] != "ok"
        status, answers = _post(url, {"questions": [record["question"] for record in gold]})
        assert status == 200 and [a["answer"] for a in answers] == [record["answer"] for record in gold]
        deadline = time.time() + 60
        while _health(url)["status"] != "ok" and time.time() < deadline:  # the idle one is started again too
            time.sleep(0.5)
        after = _health(url)
        assert after["worker_running"] is True and [w["restarts"] for w in after["workers"]] == [1, 1]
        assert not {w["pid"] for w in after["workers"]} & {w["pid"] for w in workers}
        with urllib.request.urlopen(url + "/metrics", timeout=10) as reply:
            metrics = reply.read().decode()
        assert 'kgqa_worker_restarts_total{worker="0"} 1.0' in metrics
        assert 'kgqa_worker_restarts_total{worker="1"} 1.0' in metrics
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)
