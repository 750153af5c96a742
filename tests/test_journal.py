import pytest

from kgqa.errors import KgqaError
from kgqa.journal import Journal


def _reopened(out, key):
    journal = Journal(out).begin(key)
    journal.release()
    return journal


def test_a_resumed_journal_keeps_whole_lines_and_drops_a_torn_one(tmp_path):
    out = str(tmp_path / "sub" / "pred.json")
    with Journal(out).begin("run-a") as journal:
        journal.append({0: {"id": 1, "answer": "甲"}, 1: {"id": 2, "answer": "乙"}})
        journal.append({2: {"id": 3, "answer": "丙"}})
    with open(journal.path, "ab") as handle:
        handle.write(b'{"position": 3, "rec')  # the kill landed mid-line
    again = Journal(out).begin("run-a")
    assert again.done == {0: {"id": 1, "answer": "甲"}, 1: {"id": 2, "answer": "乙"}, 2: {"id": 3, "answer": "丙"}}
    again.append({3: {"id": 4, "answer": "丁"}})
    again.release()
    assert _reopened(out, "run-a").done[3] == {"id": 4, "answer": "丁"}
    again = Journal(out).begin("run-a")
    again.close()
    assert not (tmp_path / "sub" / "pred.json.partial").exists()


def test_a_journal_from_another_run_is_discarded(tmp_path):
    out = str(tmp_path / "pred.json")
    with Journal(out).begin("run-a") as journal:
        journal.append({0: {"id": 1, "answer": "甲"}})
    assert _reopened(out, "run-b").done == {}
    assert _reopened(out, "run-b").done == {}  # and its header now names run-b
    with Journal(out).begin("run-b") as other:
        other.append({0: {"id": 1, "answer": "乙"}})
    assert _reopened(out, "run-b").done == {0: {"id": 1, "answer": "乙"}}


def test_a_second_run_on_the_same_output_is_refused_and_leaves_the_first_journal_whole(tmp_path):
    out = str(tmp_path / "pred.json")
    first = Journal(out).begin("run-a")
    first.append({0: {"id": 1, "answer": "甲"}})
    with pytest.raises(KgqaError, match="another kgqa run is writing this output"):
        Journal(out)
    first.append({1: {"id": 2, "answer": "乙"}})
    first.release()
    assert _reopened(out, "run-a").done == {0: {"id": 1, "answer": "甲"}, 1: {"id": 2, "answer": "乙"}}
