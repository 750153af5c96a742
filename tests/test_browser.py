"""The page at `/` in headless Chromium: a person types a question and sees the answer, the
candidates and how it was reached. The screenshot goes to a temporary file; the README's is
refreshed by a separate command: `KGQA_SCREENSHOT=docs/serve.png python -m pytest tests/test_browser.py`."""
import os
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


@pytest.fixture
def served(overfit):
    tmp, _, gold, env = overfit
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "cli.py"), "serve", "--checkpoint", str(tmp / "ck/best"),
         "--kb", f"{SAMPLE}/kb.tsv", "--port", str(port)],
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
    yield url, gold
    server.terminate()
    server.wait(timeout=30)


def test_the_page_answers_a_question_and_explains_it(served, tmp_path):
    url, gold = served
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.goto(url)
        page.fill("#question", gold[0]["question"])
        page.click("#go")
        page.wait_for_selector("#details:not([hidden])", timeout=60_000)
        assert page.text_content("#answer") == gold[0]["answer"]
        rows = page.locator("#candidates tbody tr")
        assert rows.count() >= 1
        assert gold[0]["answer"] in rows.first.text_content()
        surface = gold[0]["answer"].split(" ||| ")[0].split("（")[0]
        assert surface in page.text_content("#mentions")
        page.screenshot(path=os.environ.get("KGQA_SCREENSHOT") or str(tmp_path / "serve.png"), full_page=True)
        page.fill("#question", " ")
        page.click("#go")
        page.wait_for_function("document.getElementById('error').textContent.length > 0")
        assert "empty question" in page.text_content("#error")
        browser.close()
