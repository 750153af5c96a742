"""The page at `/` in headless Chromium: a person types a question and sees the answer, the
candidates and how it was reached. The screenshot goes to a temporary file; docs/guide.md's is
refreshed by a separate command: `KGQA_SCREENSHOT=docs/serve.png python -m pytest tests/test_browser.py`."""
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import ROOT, SAMPLE

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (Debian: apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(checkpoint, env, *options):
    """`kgqa serve` on a free port, once it answers /health; (url, process)."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "cli.py"), "serve", "--checkpoint", str(checkpoint),
         "--kb", f"{SAMPLE}/kb.tsv", "--port", str(port), *options],
        env=dict(os.environ, OMP_NUM_THREADS="1", **env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    else:
        server.kill()
        pytest.fail("kgqa serve did not come up")
    return url, server


@pytest.fixture
def served(overfit):
    tmp, _, gold, env = overfit
    url, server = _serve(tmp / "ck/best", env)
    yield url, gold
    server.terminate()
    server.wait(timeout=30)


def _ask(page, question):
    page.fill("#question", question)
    page.press("#question", "Enter")  # Enter submits
    page.wait_for_function("(q) => document.querySelector('#recent li button')?.textContent === q", arg=question,
                           timeout=60_000)


def test_the_page_leads_with_the_answer_and_draws_its_neighbourhood(served, tmp_path):
    url, gold = served
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.goto(url)
        subject, predicate, obj = gold[0]["answer"].split(" ||| ")
        _ask(page, gold[0]["question"])
        assert page.text_content("#object") == obj
        assert page.text_content("#subject") == subject and page.text_content("#predicate") == predicate
        assert re.fullmatch(r"answered in \d+ ms", page.text_content("#latency"))
        chosen = page.locator("#graph .edge.chosen")
        assert chosen.count() == 1 and chosen.get_attribute("data-predicate") == predicate
        assert page.locator("#graph .edge").count() >= 2  # the subject's other predicates beside it
        rows = page.locator("#candidates tbody tr")
        assert rows.count() >= 1 and obj in rows.first.text_content()
        rows.first.click()
        assert "log_likelihood" in page.text_content("#evidence") and "selected" in chosen.get_attribute("class")
        surface = subject.split("（")[0]
        assert surface in page.text_content("#mentions")
        _ask(page, gold[1]["question"])
        assert page.text_content("#object") == gold[1]["answer"].split(" ||| ")[2]
        assert page.locator("#recent li").count() == 2  # newest first, each with its answer and latency
        assert obj in page.locator("#recent li").nth(1).text_content()
        page.locator("#recent li button").nth(1).click()  # asks it again
        page.wait_for_function("(o) => document.getElementById('object').textContent === o", arg=obj, timeout=60_000)
        page.screenshot(path=os.environ.get("KGQA_SCREENSHOT") or str(tmp_path / "serve.png"), full_page=True)
        page.fill("#question", " ")
        page.click("#go")
        page.wait_for_function("document.getElementById('error').textContent.length > 0")
        assert "empty question" in page.text_content("#error")
        phone = browser.new_page(viewport={"width": 390, "height": 844})
        phone.goto(url)
        _ask(phone, gold[0]["question"])
        assert phone.text_content("#object") == obj
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the phone
        browser.close()


def test_a_doubtful_answer_reads_as_no_answer_with_the_best_guess_and_its_confidence(overfit, tmp_path):
    """A checkpoint whose calibrator gives every answer 50%, served with --min-confidence 0.9."""
    from kgqa.rank.confidence import SIGNAL_NAMES, Calibrator
    from kgqa.rank.features import FEATURE_NAMES
    from kgqa.rank.reranker import Reranker

    tmp, _, gold, env = overfit
    checkpoint = tmp_path / "ck"
    shutil.copytree(tmp / "ck/best", checkpoint)
    width = len(FEATURE_NAMES)
    Reranker([0.0] * width, [1.0] * width, [1.0] + [0.0] * (width - 1)).save(str(checkpoint))
    Calibrator([0.0] * len(SIGNAL_NAMES), [1.0] * len(SIGNAL_NAMES), [0.0] * len(SIGNAL_NAMES), 0.0).save(str(checkpoint))
    url, server = _serve(checkpoint, env, "--min-confidence", "0.9")
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.goto(url)
            _ask(page, gold[0]["question"])
            assert page.text_content("#object") == "No answer in the KB"
            assert "doubtful" in page.get_attribute("#object", "class")
            assert re.search(r"best guess .+: confidence 50%, below", page.text_content("#confidence"))
            assert "no answer" in page.locator("#recent li").first.text_content()
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_service_with_a_key_has_the_page_ask_for_it(overfit, tmp_path):
    tmp, _, gold, env = overfit
    key_file = tmp_path / "key"
    key_file.write_text("s3cret-key\n", encoding="utf-8")
    url, server = _serve(tmp / "ck/best", env, "--api-key-file", str(key_file))
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.goto(url)
            assert not page.is_visible("#key")
            page.fill("#question", gold[0]["question"])
            page.press("#question", "Enter")
            page.wait_for_function("document.getElementById('error').textContent.length > 0")
            assert "API key" in page.text_content("#error") and page.is_visible("#key")
            page.fill("#key", "s3cret-key")
            _ask(page, gold[0]["question"])
            assert page.text_content("#object") == gold[0]["answer"].split(" ||| ")[2]
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
