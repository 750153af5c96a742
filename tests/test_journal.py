from kgqa.journal import Journal


def test_a_resumed_journal_keeps_whole_lines_and_drops_a_torn_one(tmp_path):
    out = str(tmp_path / "sub" / "pred.json")
    journal = Journal(out, "run-a")
    journal.append({0: {"id": 1, "answer": "甲"}, 1: {"id": 2, "answer": "乙"}})
    journal.append({2: {"id": 3, "answer": "丙"}})
    with open(journal.path, "ab") as handle:
        handle.write(b'{"position": 3, "rec')  # the kill landed mid-line
    again = Journal(out, "run-a")
    assert again.done == {0: {"id": 1, "answer": "甲"}, 1: {"id": 2, "answer": "乙"}, 2: {"id": 3, "answer": "丙"}}
    again.append({3: {"id": 4, "answer": "丁"}})
    assert Journal(out, "run-a").done[3] == {"id": 4, "answer": "丁"}
    again.close()
    assert not (tmp_path / "sub" / "pred.json.partial").exists()


def test_a_journal_from_another_run_is_discarded(tmp_path):
    out = str(tmp_path / "pred.json")
    Journal(out, "run-a").append({0: {"id": 1, "answer": "甲"}})
    other = Journal(out, "run-b")
    assert other.done == {}
    assert Journal(out, "run-b").done == {}  # and its header now names run-b
    other.append({0: {"id": 1, "answer": "乙"}})
    assert Journal(out, "run-b").done == {0: {"id": 1, "answer": "乙"}}
