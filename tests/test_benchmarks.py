"""The benchmarks as a suite: each script imports and, without KgCLUE's files, skips cleanly through
the shared harness; a run's result record carries its commit, machine and command, and the docs'
table of today's figures is made from the newest record of each."""
import importlib
import io
import json
import os
import sys
from contextlib import redirect_stdout

import pytest

from conftest import ROOT

BENCHMARKS = os.path.join(ROOT, "benchmarks")
sys.path.insert(0, BENCHMARKS)
SCRIPTS = sorted(name[:-3] for name in os.listdir(BENCHMARKS) if name.endswith(".py") and name != "versus_child.py")
# each script's own required options; those without a checkpoint take `arguments(checkpoint=False)`
REQUIRED = {"versus": ["--baseline-code", ROOT], "index_build": ["--baseline-code", ROOT], "device_speed": ["--tokenizer", "T"], "pretrained_speed": ["--fitted", "F"]}
NO_CHECKPOINT = ("device_speed", "pretrained_speed")


def _common(name: str) -> bool:
    with open(os.path.join(BENCHMARKS, f"{name}.py"), encoding="utf-8") as handle:
        return "arguments(__doc__" in handle.read()


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_benchmark_imports(name):
    module = importlib.import_module(name)
    assert module.__doc__, f"{name}.py says what it measures"


@pytest.mark.parametrize("name", [name for name in SCRIPTS if _common(name)])
def test_a_benchmark_on_the_common_options_skips_without_its_files(name, tmp_path, monkeypatch):
    absent = str(tmp_path / "absent.tsv")
    argv = [name, "--kb", absent, "--questions", absent, *REQUIRED.get(name, [])]
    if name not in NO_CHECKPOINT:
        argv += ["--checkpoint", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    out = io.StringIO()
    with redirect_stdout(out):
        importlib.import_module(name).main()
    assert f"skipped: no {absent}" in out.getvalue()
    assert not os.listdir(tmp_path)  # nothing written


def test_a_record_names_its_commit_machine_and_command_and_the_table_shows_the_last_run(tmp_path, monkeypatch):
    import harness
    import report

    monkeypatch.setattr(harness, "RESULTS", str(tmp_path))
    monkeypatch.setattr(report, "RESULTS", str(tmp_path))
    monkeypatch.setattr(sys, "argv", [os.path.join(BENCHMARKS, "accuracy.py"), "--checkpoint", "CK"])
    with redirect_stdout(io.StringIO()):
        monkeypatch.setitem(harness.STARTED_AT, "run", "an earlier run")
        harness.record("accuracy", {"score": 80.0}, "dev score 80.00")
        monkeypatch.setitem(harness.STARTED_AT, "run", "the last run")
        harness.record("accuracy", {"score": 86.7}, "dev score 86.70")
        harness.record("accuracy", {"score": 86.9}, "dev score 86.90 (a second record of the same run)")
    lines = [json.loads(line) for line in (tmp_path / "accuracy.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [line["figures"]["score"] for line in lines] == [80.0, 86.7, 86.9]
    newest = lines[-1]
    assert newest["command"] == "python benchmarks/accuracy.py --checkpoint CK"
    assert len(newest["commit"]) >= 7 and isinstance(newest["changed_files"], bool)
    assert newest["machine"]["cores"] == os.cpu_count()
    made = report.table()
    assert "| accuracy | dev score 86.70 | `python benchmarks/accuracy.py --checkpoint CK` |" in made
    assert "dev score 86.90 (a second record of the same run)" in made  # a run's records shown together
    assert "dev score 80.00" not in made  # an earlier run's replaced
    assert "(no record yet: `benchmarks/abstention.py`)" in made


def test_the_abstention_copy_counts_a_question_whose_name_a_homonym_still_answers_apart(tmp_path):
    from abstention import kb_copy

    # 40 names, each held by two entities; one of each pair also answers the other's first predicate
    kb, golds = [], []
    for n in range(40):
        mine, other = f"名{n}（甲）", f"名{n}（乙）"
        kb += [(mine, "职业", f"医生{n}"), (mine, "籍贯", f"北京{n}"), (other, "配偶", f"某人{n}")]
        kb += [(other, "职业", f"教师{n}")] if n % 2 else []
        golds.append((mine, "职业", f"医生{n}"))
    (tmp_path / "kb.tsv").write_text("".join(f"{s}\t{p}\t{o}\n" for s, p, o in kb), encoding="utf-8")
    kinds = kb_copy(str(tmp_path / "kb.tsv"), golds, 0, str(tmp_path / "copy.tsv"))
    kept = {tuple(line.split("\t")[:2]) for line in (tmp_path / "copy.tsv").read_text(encoding="utf-8").splitlines()}
    for (subject, predicate, _), kind in zip(golds, kinds):
        homonym = (subject.replace("甲", "乙"), predicate) in kept
        gone = not any(s == subject for s, _ in kept)
        if gone:
            assert kind == ("entity by a homonym" if homonym else "entity")
        elif (subject, predicate) not in kept:
            assert kind == ("fact by a homonym" if homonym else "fact")
        else:
            assert kind == "answerable"
    assert {"entity", "entity by a homonym", "fact", "fact by a homonym", "answerable"} <= set(kinds)


def test_a_synthetic_kb_draws_no_name_a_kb_reader_refuses():
    """make_kb.py draws names from a reference's characters, spaces among them: a name of spaces
    alone, or padded with them, is a line `kgqa index` refuses (or a name read as another)."""
    import numpy as np
    from make_kb import Strings

    strings = Strings([" ", "  ", "甲 ", " 乙", "丙 丁", "戊己庚 ", "辛壬癸"])  # a third spaces
    names = strings.draw(np.random.default_rng(0), 40, set())
    assert len(names) == len(set(names)) == 40
    assert all(name and name == name.strip() for name in names)
