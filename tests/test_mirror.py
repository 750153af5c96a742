"""A node's own copy of a published index (`kgqa/kb/mirror.py`): it answers as the published one,
takes an update by copying only the files it lacks, and refuses a damaged new version, staying at
the version it had."""
import os

import pytest

from kgqa.errors import KgqaError
from kgqa.kb.build import build_index
from kgqa.kb.contents import contents
from kgqa.kb.index import KBIndex
from kgqa.kb.mirror import mirror
from kgqa.kb.update import update_index

from conftest import TINY_KB, fact_of, write


def _segment_files(index: KBIndex) -> dict[str, int]:
    """Each file of the index's segments by path under it, and its inode."""
    found = {}
    for entry in index.manifest.segments:
        folder = os.path.join(index.directory, entry.name)
        found.update({f"{entry.name}/{name}": os.stat(os.path.join(folder, name)).st_ino for name in os.listdir(folder)})
    return found


def test_a_node_copy_answers_as_the_published_index_and_takes_an_update_by_its_new_files(tmp_path, tokenizer):
    published = build_index(write(tmp_path / "kb.tsv", TINY_KB), tokenizer, str(tmp_path / "published"))
    local = mirror(published.directory, str(tmp_path / "node"), tokenizer)
    assert contents(local) == contents(published) and local.version == published.version
    first = _segment_files(local)
    update_index(published.directory, write(tmp_path / "c.tsv", "+\t上海\t人口\t2487万\n"), tokenizer, merge=False)
    local = mirror(published.directory, str(tmp_path / "node"), tokenizer)
    assert local.version == KBIndex(published.directory).version != published.version
    assert fact_of(local, "上海", "人口", "").objects == ["2487万"]
    again = _segment_files(local)
    assert {name: again[name] for name in first} == first  # the segments it had were not copied again
    assert len(again) > len(first)


def test_a_damaged_new_version_is_refused_and_the_node_keeps_the_one_it_had(tmp_path, tokenizer):
    published = build_index(write(tmp_path / "kb.tsv", TINY_KB), tokenizer, str(tmp_path / "published"))
    before = mirror(published.directory, str(tmp_path / "node"), tokenizer).version
    updated, _ = update_index(published.directory, write(tmp_path / "c.tsv", "+\t上海\t人口\t2487万\n"), tokenizer,
                              merge=False)
    newest = updated.manifest.segments[-1].name
    with open(os.path.join(published.directory, newest, "obj_offset.npy"), "r+b") as damaged:
        damaged.truncate(os.path.getsize(damaged.name) // 2)  # as a copy cut short on the shared volume
    with pytest.raises(KgqaError, match="answering from the version before"):
        mirror(published.directory, str(tmp_path / "node"), tokenizer)
    kept = KBIndex(str(tmp_path / "node"), tokenizer)
    assert kept.version == before and fact_of(kept, "上海", "人口", "") is None
    assert not os.path.exists(os.path.join(tmp_path / "node", newest))  # nothing of the refused version stays
