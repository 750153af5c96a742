import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer

from kgqa.index import ensure_index
from kgqa.kb import read_kb
from kgqa.model import ScratchShape, scratch_model
from kgqa.pipeline import KGQA, DecodeSettings
from kgqa.server import make_app
from kgqa.tokenizer import SentencePieceTokenizer

from conftest import SAMPLE

TINY = ScratchShape(d_model=32, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2)


@pytest.fixture(scope="module")
def kgqa(tmp_path_factory):
    kb = f"{SAMPLE}/kb.tsv"
    tokenizer = SentencePieceTokenizer.train((t.surface + t.predicate + t.disambiguation for t in read_kb(kb)), 400)
    index = ensure_index(kb, tokenizer, str(tmp_path_factory.mktemp("index")))
    return KGQA(scratch_model(tokenizer, TINY, 0), tokenizer, index, DecodeSettings(top_k=3))


def _with_client(kgqa, scenario, **options):
    async def main():
        async with TestClient(TestServer(make_app(kgqa, **options))) as client:
            return await scenario(client)
    return asyncio.run(main())


def test_ask_one_or_many_and_health(kgqa):
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
        page = await client.get("/")
        assert page.status == 200 and "<form" in await page.text()
        missing = await client.get("/nowhere")
        assert missing.status == 404 and "error" in await missing.json()
        wrong = await client.get("/ask")
        assert wrong.status == 405 and "error" in await wrong.json()
    _with_client(kgqa, scenario)


@pytest.mark.parametrize("payload, message", [
    (b"not json", "not JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (b'{"question": 5}', "must be a string"),
    (b'{"questions": []}', "non-empty list"),
    (b'{"question": "  "}', "empty question"),
    ('{"question": "%s"}' % ("长" * 600), "longer than 512"),
], ids=["not-json", "not-object", "not-string", "empty-list", "blank", "too-long"])
def test_bad_requests_get_400_with_a_json_error(kgqa, payload, message):
    async def scenario(client):
        response = await client.post("/ask", data=payload, headers={"Content-Type": "application/json"})
        assert response.status == 400
        assert message in (await response.json())["error"]
    _with_client(kgqa, scenario)


def test_concurrent_requests_are_batched_into_fewer_decodes(kgqa):
    async def scenario(client):
        questions = [f"马磊静的配偶是谁？{i}" for i in range(16)]
        replies = await asyncio.gather(*(client.post("/ask", json={"question": q}) for q in questions))
        bodies = [await r.json() for r in replies]
        assert [b["question"] for b in bodies] == questions
        health = await (await client.get("/health")).json()
        assert health["decodes"] < len(questions)
    _with_client(kgqa, scenario, wait_s=0.2)
