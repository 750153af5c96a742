import json
import os

import pytest
import torch
from click.testing import CliRunner

from kgqa.cli import main
from kgqa.kb.build import ensure_index
from kgqa.kb.triples import read_kb
from kgqa.settings import ScratchShape
from kgqa.model.tokenizer import SentencePieceTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "data", "sample")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Each test gets its own index cache and a fixed seed."""
    monkeypatch.setenv("KGQA_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)


def write(path, text: str | bytes) -> str:
    mode = "wb" if isinstance(text, bytes) else "w"
    with open(path, mode, **({} if isinstance(text, bytes) else {"encoding": "utf-8"})) as handle:
        handle.write(text)
    return str(path)


def stand_in(directory) -> list[str]:
    """`--checkpoint` and `--kb` options that pass the options' own checks, for a test that stands a
    pipeline of its own in for the one they would open: a directory holding only `kgqa.json`, and the
    sample's KB."""
    os.makedirs(directory, exist_ok=True)
    write(os.path.join(directory, "kgqa.json"), "{}")
    return ["--checkpoint", str(directory), "--kb", os.path.join(SAMPLE, "kb.tsv")]


TINY = ["--d-model", "64", "--layers", "1", "--kb-questions", "0", "--channel-epochs", "4", "--seed", "0"]  # as CLI options
TINY_SHAPE = ScratchShape(d_model=32, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2)  # as a library shape


def fact_of(index, surface: str, predicate: str, disambiguation: str):
    """The index's fact of the key (S, P, M), None where it has none: the tests' lookup by strings."""
    sid = index.names.surface_id(surface)
    keys = [] if sid is None else [key for key, p, m in index.keys(sid) if (p, m) == (predicate, disambiguation)]
    return index.fact(keys[0]) if keys else None


TINY_KB = ("刘晓华（广东工业大学教授）\t主讲课程\t《固体物理》\n"
           "刘晓华（演员）\t代表作品\t《星河》\n"
           "刘晓华（演员）\t代表作品\t《远山》\n"
           "刘晓\t别名\t小刘\n"
           "北京\t人口\t2189万\n")


@pytest.fixture
def tokenizer():
    """A character tokenizer of TINY_KB's strings."""
    return SentencePieceTokenizer.train(["刘晓华主讲课程固体物理代表作品星河远山别名人口北京广东工业大学教授演员"], 100)


@pytest.fixture(scope="session")
def sample_kb(tmp_path_factory):
    """The sample KB, its triples, a character tokenizer trained on them, and its index."""
    kb = f"{SAMPLE}/kb.tsv"
    triples = list(read_kb(kb))
    tokenizer = SentencePieceTokenizer.train((t.surface + t.predicate + t.disambiguation for t in triples), 400)
    index = ensure_index(kb, tokenizer, str(tmp_path_factory.mktemp("sample-index")))
    return kb, triples, tokenizer, index


@pytest.fixture(scope="session")
def overfit(tmp_path_factory):
    """Train a tiny model on 8 sample questions until it knows them: the end-to-end path."""
    tmp = tmp_path_factory.mktemp("e2e")
    with open(f"{SAMPLE}/train.json", encoding="utf-8") as handle:
        lines = handle.readlines()[:8]
    train = write(tmp / "train.json", "".join(lines))
    runner = CliRunner()
    env = {"KGQA_CACHE": str(tmp / "cache")}
    result = runner.invoke(main, ["train", "--train", train, "--kb", f"{SAMPLE}/kb.tsv", "--output",
                                  str(tmp / "ck"), "--epochs", "120", "--batch-size", "8", "--lr", "1e-2"] + TINY,
                           env=env)
    assert result.exit_code == 0, result.output
    return tmp, train, [json.loads(line) for line in lines], env
