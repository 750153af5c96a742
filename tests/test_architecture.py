"""The layering docs/architecture.md promises: each module imports only the kgqa modules its row
of the table there allows, and only from lower layers, so the flow stays readable from the file
list and no import runs back up. The table is read from the doc: one copy, not two."""
import ast
import os
import re

import pytest

from conftest import ROOT

PACKAGE = os.path.join(ROOT, "kgqa")


def _table() -> dict[str, tuple[int, set[str]]]:
    """module -> (layer, modules it may import), from the doc's layer table."""
    with open(os.path.join(ROOT, "docs", "architecture.md"), encoding="utf-8") as handle:
        doc = handle.read()
    section = doc.split("## What each module may import", 1)[1]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].isdigit():
            continue
        allowed = set(re.findall(r"`([\w.]+)`", cells[2]))
        for module in re.findall(r"`([\w.]+)`", cells[1]):
            assert module not in rows, f"{module} has two rows"
            rows[module] = (int(cells[0]), allowed)
    return rows


ALLOWED = _table()
MODULES = sorted(os.path.relpath(os.path.join(folder, name), PACKAGE)[:-3].replace(os.sep, ".")
                 for folder, _, names in os.walk(PACKAGE) for name in names
                 if name.endswith(".py") and name != "__init__.py")


def _is_module(dotted: str) -> bool:
    return os.path.isfile(os.path.join(PACKAGE, *dotted.split(".")) + ".py")


def _imports(source: str) -> set[str]:
    """The kgqa modules a source imports, in any form: `from kgqa.x.y import n`, `from kgqa.x
    import y` (y a module), `from kgqa import x`, `import kgqa.x.y`."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "kgqa":
            base = node.module[len("kgqa."):] if node.module != "kgqa" else ""
            for alias in node.names:
                inner = f"{base}.{alias.name}" if base else alias.name
                if _is_module(inner):
                    found.add(inner)
                elif base:
                    found.add(base)
                else:
                    found.add(inner)  # `from kgqa import name`: a package or a name kgqa/__init__ never holds
        elif isinstance(node, ast.Import):
            found |= {alias.name[len("kgqa."):] for alias in node.names if alias.name.startswith("kgqa.")}
    return found


def _module_imports(module: str) -> set[str]:
    with open(os.path.join(PACKAGE, *module.split(".")) + ".py", encoding="utf-8") as handle:
        return _imports(handle.read())


def test_every_module_has_a_row_and_every_row_a_module():
    assert sorted(ALLOWED) == MODULES


@pytest.mark.parametrize("module", MODULES)
def test_a_module_imports_only_what_its_row_allows(module):
    found = _module_imports(module)
    assert found <= ALLOWED[module][1], sorted(found - ALLOWED[module][1])


@pytest.mark.parametrize("module", MODULES)
def test_a_row_allows_only_modules_of_lower_layers(module):
    layer, allowed = ALLOWED[module]
    assert all(ALLOWED[other][0] < layer for other in allowed), sorted(
        other for other in allowed if ALLOWED[other][0] >= layer)


def test_every_import_form_is_seen():
    """The checker itself: each way of importing a kgqa module is caught, so none slips past."""
    assert _imports("from kgqa.model.stepper import Stepper") == {"model.stepper"}
    assert _imports("from kgqa.model import stepper") == {"model.stepper"}
    assert _imports("from kgqa import pipeline") == {"pipeline"}
    assert _imports("from kgqa import model") == {"model"}  # a package: in no row, so refused
    assert _imports("import kgqa.rank.naming") == {"rank.naming"}
    assert _imports("def f():\n    from kgqa.errors import KgqaError") == {"errors"}
