"""docs/reliability.md names, for each bad input, the test that checks what the user sees: each
named test exists, so no row promises a check that was renamed away or never written."""
import ast
import os
import re

from conftest import ROOT


def _tests(module: str) -> set[str]:
    with open(os.path.join(ROOT, "tests", f"{module}.py"), encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_every_test_the_reliability_doc_names_exists():
    with open(os.path.join(ROOT, "docs", "reliability.md"), encoding="utf-8") as handle:
        doc = handle.read()
    named = re.findall(r"\b(test_\w+)::(test_\w+)", doc)
    assert len(named) > 40  # the doc is read: its form has not changed under this test
    missing = [f"{module}::{name}" for module, name in named if name not in _tests(module)]
    assert not missing
    # a row's later tests may drop their module ("test_update::a, b"): each is in the row's module
    for row in doc.splitlines():
        for module, rest in re.findall(r"\b(test_\w+)::(test_\w+(?:, test_\w+)+)", row):
            names = [name.strip() for name in rest.split(",")]
            assert not [n for n in names if n not in _tests(module) and not os.path.exists(
                os.path.join(ROOT, "tests", f"{n}.py"))], row
