import gzip
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kgqa.errors import KgqaError
from kgqa.kb.build import build_index
from kgqa.kb.triples import ReadStats, read_kb, split_subject

from conftest import write


def test_split_subject_takes_only_a_trailing_fullwidth_group():
    assert split_subject("刘晓华（广东工业大学教授）") == ("刘晓华", "广东工业大学教授")
    assert split_subject("刘晓华") == ("刘晓华", "")
    assert split_subject("（a）中间（b）") == ("（a）中间", "b")
    assert split_subject("半角(x)") == ("半角(x)", "")
    assert split_subject("（只有括号）") == ("（只有括号）", "")


def test_read_kb_splits_and_normalises(tmp_path):
    path = write(tmp_path / "kb.tsv", "\ufeff刘晓华（教授）\t主讲课程\t《固体  物理》 \r\nA\tB\tC\n")
    triples = list(read_kb(path))
    assert [(t.surface, t.predicate, t.obj, t.disambiguation, t.line) for t in triples] == [
        ("刘晓华", "主讲课程", "《固体 物理》", "教授", 1), ("A", "B", "C", "", 2)]


@pytest.mark.parametrize("line,reason", [
    ("a\tb\n", "expected 3 tab-separated fields, found 2"),
    ("a\tb\tc\td\n", "expected 3 tab-separated fields, found 4"),
    ("\tb\tc\n", "empty subject or predicate"),
    ("a\t \tc\n", "empty subject or predicate"),
    ("有\x00空字符\t谓语\t宾语\n", "a NUL character in the subject or predicate"),
    ("主语（有\x00）\t谓语\t宾语\n", "a NUL character in the subject or predicate"),
    ("主语\t谓\x00语\t宾语\n", "a NUL character in the subject or predicate"),
])
def test_bad_lines_stop_the_read_and_are_counted_by_number_where_skipped(tmp_path, line, reason):
    path = write(tmp_path / "kb.tsv", "A\tB\tC\n" + line)
    with pytest.raises(KgqaError, match=f"kb.tsv:2: {re.escape(reason)} \\(--skip-bad-lines skips such lines\\)$"):
        list(read_kb(path))
    stats = ReadStats()
    assert len(list(read_kb(path, skip_bad_lines=True, stats=stats))) == 1
    assert stats.skipped == {reason: 1} and stats.bad == 1 and stats.first_bad == [(2, reason)]


def test_non_utf8_line_is_named(tmp_path):
    path = write(tmp_path / "kb.tsv", b"A\tB\tC\n\xff\xfe\tB\tC\n")
    with pytest.raises(KgqaError, match="kb.tsv:2: bytes that are not UTF-8"):
        list(read_kb(path))


@pytest.mark.parametrize("make,message", [
    (lambda p: write(p / "empty.tsv", ""), "no triples"),
    (lambda p: str(p / "missing.tsv"), "no such file"),
    (lambda p: str(p), "is a directory"),
])
def test_unusable_files(tmp_path, make, message, tokenizer):
    with pytest.raises(KgqaError, match=message):
        list(read_kb(make(tmp_path)))
    # and the same one error from an index build, whatever it reads of the file first
    with pytest.raises(KgqaError, match=message):
        build_index(make(tmp_path), tokenizer, str(tmp_path / "index"))
    assert not (tmp_path / "index").exists()


def test_gzip(tmp_path):
    path = tmp_path / "kb.tsv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("A（m）\tB\tC\n")
    assert [(t.surface, t.disambiguation) for t in read_kb(str(path))] == [("A", "m")]


FIELD = st.text(alphabet=st.sampled_from(list("甲乙a（）\t \r")), max_size=5)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(FIELD, min_size=1, max_size=4), min_size=1, max_size=12))
def test_lenient_read_keeps_exactly_the_well_formed_lines(tmp_path_factory, rows):
    """Against a brute-force model: a line is a triple iff it has 3 tab-separated fields with a
    non-empty S and P; every other non-blank line is counted as skipped, none is lost silently."""
    lines = ["\t".join(row) for row in rows]
    path = write(tmp_path_factory.mktemp("kb") / "kb.tsv", "\n".join(lines) + "\n")
    expected, bad = [], 0
    for number, line in enumerate(lines, start=1):
        text = line.rstrip("\r")
        if not text.strip():
            continue
        parts = [part.strip() for part in text.split("\t")]
        if len(parts) == 3 and parts[0] and parts[1]:
            expected.append((*split_subject(parts[0]), parts[1], number))
        else:
            bad += 1
    stats = ReadStats()
    if not expected:
        with pytest.raises(KgqaError, match="no triples"):
            list(read_kb(path, skip_bad_lines=True, stats=stats))
        return
    found = [(t.surface, t.disambiguation, t.predicate, t.line) for t in read_kb(path, skip_bad_lines=True, stats=stats)]
    assert found == expected
    assert sum(n for reason, n in stats.skipped.items() if reason != "blank lines") == bad
