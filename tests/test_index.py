import os

import pytest

from kgqa.kb.index import KBIndex
from kgqa.kb.build import ensure_index
from kgqa.kb.trie import ROOT
from kgqa.model.tokenizer import SentencePieceTokenizer

from conftest import TINY_KB as KB, fact_of, write


def test_lookup_keeps_every_object_and_answers_the_first(tmp_path, tokenizer):
    index = ensure_index(write(tmp_path / "kb.tsv", KB), tokenizer)
    answer = fact_of(index, "刘晓华", "代表作品", "演员")
    assert answer.objects == ["《星河》", "《远山》"]
    assert fact_of(index, "刘晓华", "主讲课程", "广东工业大学教授").objects == ["《固体物理》"]
    assert fact_of(index, "刘晓华", "主讲课程", "演员") is None
    assert fact_of(index, "无此人", "人口", "") is None


def test_prominence_counts_the_predicates_keys_and_the_subject_entitys_keys(tmp_path, tokenizer):
    kb = KB + "刘晓华（演员）\t出生地\t上海\n北京\t别名\t京\n"
    index = ensure_index(write(tmp_path / "kb.tsv", kb), tokenizer)
    keys = {(p, m): key for key, p, m in index.keys(index.names.surface_id("刘晓华"))}
    teacher, actor = index.prominence(keys["主讲课程", "广东工业大学教授"]), index.prominence(keys["代表作品", "演员"])
    assert teacher[0] != actor[0]  # two entities of one surface
    assert teacher[1:] == (1, 1) and actor[1:] == (1, 2)  # a key of two objects is one key
    beijing = {p: key for key, p, _ in index.keys(index.names.surface_id("北京"))}
    assert index.prominence(beijing["别名"])[1:] == (2, 2)  # 别名 of 刘晓 too


def test_mentions_are_kb_surfaces_in_the_question_longest_first(tmp_path, tokenizer):
    index = ensure_index(write(tmp_path / "kb.tsv", KB), tokenizer)
    assert [index.names.surface(s) for s in index.names.mentions("刘晓华主要讲什么课啊？")] == ["刘晓华", "刘晓"]
    assert index.names.mentions("没有实体") == []


def test_tail_trie_holds_each_predicate_and_disambiguation(tmp_path, tokenizer):
    index = ensure_index(write(tmp_path / "kb.tsv", KB), tokenizer)
    sid = index.names.surface_id("刘晓华")
    keys = {(p, m) for _, p, m in index.keys(sid)}
    assert keys == {("主讲课程", "广东工业大学教授"), ("代表作品", "演员")}
    trie = index.tail_trie(sid)
    first_tokens = {tokenizer.encode("主讲课程")[0], tokenizer.encode("代表作品")[0]}
    assert set(trie.children(ROOT)) == first_tokens


def test_index_is_reused_and_rebuilt_for_another_kb_or_tokenizer(tmp_path, tokenizer):
    kb = write(tmp_path / "kb.tsv", KB)
    first = ensure_index(kb, tokenizer, str(tmp_path / "idx"))
    assert ensure_index(kb, tokenizer, str(tmp_path / "idx")).manifest == first.manifest
    write(tmp_path / "kb.tsv", KB + "上海\t人口\t2487万\n")
    rebuilt = ensure_index(kb, tokenizer, str(tmp_path / "idx"))
    assert rebuilt.manifest.kb_sha256 != first.manifest.kb_sha256
    assert fact_of(rebuilt, "上海", "人口", "").objects == ["2487万"]
    other = SentencePieceTokenizer.train(["上海北京刘晓华人口别名"], 60)
    assert ensure_index(kb, other, str(tmp_path / "idx")).manifest.tokenizer_sha256 == other.sha256


def test_opening_something_else_is_a_clear_error(tmp_path):
    from kgqa.errors import KgqaError

    with pytest.raises(KgqaError, match="not a kgqa index"):
        KBIndex(str(tmp_path))


def test_repeated_triples_are_kept_once_and_counted(tmp_path, tokenizer):
    text = KB + "北京\t人口\t2189万\n" + "刘晓华（演员）\t代表作品\t《星河》\n" + "北京\t人口\t2190万\n"
    index = ensure_index(write(tmp_path / "kb.tsv", text), tokenizer)
    assert fact_of(index, "北京", "人口", "").objects == ["2189万", "2190万"]
    assert fact_of(index, "刘晓华", "代表作品", "演员").objects == ["《星河》", "《远山》"]
    assert index.manifest.skipped == {"duplicate triples": 2}


def test_processes_sharing_an_index_take_turns_to_build_it(tmp_path, tokenizer, monkeypatch):
    """torchrun's ranks (or predicts side by side) ask for the same index at once: one builds it,
    the others open that one; none sees a directory swapped under it."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    import kgqa.kb.build

    builds = []
    build = kgqa.kb.build.build_index

    def slow_build(*args, **kwargs):
        builds.append(threading.current_thread().name)
        time.sleep(0.3)  # long enough for every other caller to arrive while it builds
        return build(*args, **kwargs)

    monkeypatch.setattr(kgqa.kb.build, "build_index", slow_build)
    kb = write(tmp_path / "kb.tsv", KB)
    with ThreadPoolExecutor(4) as pool:
        opened = list(pool.map(lambda _: ensure_index(kb, tokenizer, str(tmp_path / "shared")), range(4)))
    assert len(builds) == 1
    assert all(fact_of(index, "北京", "人口", "").objects == ["2189万"] for index in opened)
    assert len({index.manifest.kb_sha256 for index in opened}) == 1


def _cached_dir(tmp_path, kb, tokenizer):
    index = ensure_index(kb, tokenizer)
    return index.directory


@pytest.mark.parametrize("damage", [
    lambda d: open(f"{d}/s000000/ent_sid.npy", "r+b").truncate(70),  # a truncated .npy
    lambda d: _rewrite_header(d, lambda h: h.pop("segments")),  # a manifest missing a field
    lambda d: _rewrite_header(d, lambda h: h["segments"][0].pop("name")),  # a segment entry missing one
    lambda d: _rewrite_header(f"{d}/s000000", lambda h: h.pop("entities"), "segment.json"),  # a segment's
    lambda d: __import__("numpy").save(f"{d}/s000000/obj_start.npy", __import__("numpy").zeros(2, "int64")),  # short
    lambda d: open(f"{d}/s000000/strings.bin", "r+b").truncate(3),
    lambda d: __import__("shutil").rmtree(f"{d}/s000000"),  # a segment the manifest names, gone
], ids=["truncated-npy", "manifest-field", "manifest-entry", "segment-field", "short-array", "short-strings", "missing-segment"])
def test_a_damaged_index_is_rebuilt_in_the_cache_and_named_when_the_user_gave_it(tmp_path, tokenizer, damage):
    from kgqa.errors import KgqaError
    from kgqa.kb.index import DamagedIndex

    kb = write(tmp_path / "kb.tsv", KB)
    cached = ensure_index(kb, tokenizer).directory
    damage(cached)
    with pytest.raises(DamagedIndex):
        KBIndex(cached)
    assert fact_of(ensure_index(kb, tokenizer), "北京", "人口", "").objects == ["2189万"]
    mine = str(tmp_path / "mine")
    ensure_index(kb, tokenizer, mine)
    damage(mine)
    with pytest.raises(KgqaError, match="mine: damaged index: .*rebuild it with `kgqa index`"):
        ensure_index(kb, tokenizer, mine)


def test_the_manifest_is_read_back_as_written_and_counts_what_its_segments_hold(tmp_path, tokenizer):
    from kgqa.kb.manifest import Manifest, SegmentEntry, read_manifest, write_manifest

    kb = write(tmp_path / "kb.tsv", KB)
    index = ensure_index(kb, tokenizer, str(tmp_path / "idx"))
    manifest = read_manifest(index.directory)
    assert manifest == index.manifest and manifest.segments == [SegmentEntry("s000000", index.triples)]
    assert manifest.next_segment == 1 and manifest.version is None and index.version == manifest.kb_sha256
    assert manifest.new_segment_name() == "s000001" and manifest.next_segment == 2
    manifest.segments[0].hidden_triples = 2
    write_manifest(index.directory, manifest)
    again = read_manifest(index.directory)
    assert again == manifest and again.triples == index.triples - 2 == again.segments[0].live_triples
    assert "version" not in again.as_json() and Manifest.from_json(again.as_json(), "idx") == again


def _rewrite_header(directory, change, name="header.json"):
    import json

    with open(f"{directory}/{name}", encoding="utf-8") as handle:
        header = json.load(handle)
    change(header)
    with open(f"{directory}/{name}", "w", encoding="utf-8") as handle:
        json.dump(header, handle)


def test_an_index_path_holding_the_users_files_is_refused_and_kept(tmp_path, tokenizer):
    from kgqa.errors import KgqaError

    kb = write(tmp_path / "kb.tsv", KB)
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(KgqaError, match="data: exists and is not a kgqa index; not replacing it"):
        ensure_index(kb, tokenizer, str(folder))
    assert sorted(os.listdir(folder)) == ["notes.txt"]
