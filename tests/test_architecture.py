"""The layering docs/architecture.md promises: each module imports only the kgqa modules its row
allows, so the flow stays readable from the file list and no import runs back up."""
import ast
import os

import pytest

from conftest import ROOT

ALLOWED = {
    "errors": set(), "text": set(), "trie": set(), "settings": set(), "synonyms": set(),
    "kb": {"errors"}, "files": {"errors"}, "tokenizer": {"errors"}, "candidate": {"kb", "index"},
    "index": {"errors", "tokenizer", "trie"},
    "data": {"candidate", "errors", "files", "kb"},
    "metrics": {"candidate", "text"},
    "model": {"errors", "tokenizer"},
    "indexer": {"errors", "files", "index", "kb", "tokenizer", "trie"},
    "checkpoint": {"errors", "files", "model", "tokenizer"},
    "stepper": {"model"},
    "beam_search": {"stepper"},
    "target_tree": {"model", "stepper", "tokenizer"},
    "decoding": {"beam_search", "candidate", "index", "model", "settings", "stepper", "text", "tokenizer", "trie"},
    "peer": {"candidate", "index", "text"},
    "kbquestions": {"index"},
    "rerank": {"candidate", "decoding", "errors", "files", "index", "model", "stepper", "synonyms", "target_tree", "text",
               "tokenizer"},
    "pipeline": {"candidate", "checkpoint", "decoding", "index", "indexer", "model", "rerank", "settings", "tokenizer"},
    "journal": {"candidate", "data", "errors", "kb"},
    "server": {"data", "errors", "pipeline"},
    "train": {"checkpoint", "data", "errors", "files", "index", "indexer", "kb", "kbquestions", "metrics", "model",
              "pipeline", "rerank", "tokenizer"},
}
MODULES = sorted(name[:-3] for name in os.listdir(os.path.join(ROOT, "kgqa"))
                 if name.endswith(".py") and name != "__init__.py")


def _imports(module):
    with open(os.path.join(ROOT, "kgqa", f"{module}.py"), encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kgqa."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("kgqa.")}
    return found


def test_every_module_has_a_row():
    assert sorted(ALLOWED) == MODULES


@pytest.mark.parametrize("module", MODULES)
def test_a_module_imports_only_what_its_layer_allows(module):
    assert _imports(module) <= ALLOWED[module], sorted(_imports(module) - ALLOWED[module])
