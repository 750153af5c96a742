"""`kgqa update`: changes applied in place answer exactly as an index rebuilt from the changed KB,
each kind of change is handled, and an update is all or nothing."""
import json
import os
import random

import pytest
from click.testing import CliRunner

from kgqa.cli import main
from kgqa.errors import KgqaError
from kgqa.kb.build import build_index, ensure_index
from kgqa.kb.contents import contents
from kgqa.kb.index import KBIndex
from kgqa.kb.manifest import SegmentEntry
from kgqa.kb.merge import MergeDownTo, TieredMergePolicy, merge_index
from kgqa.kb.update import update_index, updated_copy

from conftest import SAMPLE, fact_of, write
from conftest import TINY_KB as KB


def _apply(lines: list[str], changes: list[str]) -> list[str]:
    """The changed KB file a user would write: removed triples' lines deleted, added ones appended."""
    def triple(line):
        return tuple(part.strip() for part in line.split("\t"))
    lines = list(lines)
    for change in changes:
        sign, line = change[0], change[2:]
        present = [i for i, old in enumerate(lines) if triple(old) == triple(line)]
        if sign == "+" and not present:
            lines.append(line)
        elif sign == "-":
            for i in reversed(present):
                del lines[i]
    return lines


def _random_changes(rng: random.Random, lines: list[str]) -> list[str]:
    changes = []
    for _ in range(12):
        roll = rng.random()
        subject = rng.choice(lines).split("\t")[0]
        if roll < 0.35:
            changes.append("-\t" + rng.choice(lines))  # one triple of a subject whose others stay
        elif roll < 0.45:
            changes += ["-\t" + line for line in lines if line.split("\t")[0] == subject]  # a whole subject
        elif roll < 0.65:
            changes.append(f"+\t{subject}\t新谓语{rng.randrange(4)}\t值{rng.randrange(50)}")  # a new predicate
        elif roll < 0.75:
            changes.append(f"+\t{subject}\t{rng.choice(lines).split(chr(9))[1]}\t值{rng.randrange(50)}")  # another object
        elif roll < 0.9:
            changes.append(f"+\t新主语{rng.randrange(8)}（身份{rng.randrange(2)}）\t谓语{rng.randrange(3)}\t值{rng.randrange(50)}")
        else:
            changes.append("-\t没有这个\t谓语\t值")  # not in the KB
    return changes


@pytest.mark.parametrize("seed", [0, 1])
def test_updates_and_merges_answer_exactly_as_a_rebuild_of_the_changed_kb(sample_kb, tmp_path, seed):
    """Seven updates in a row over an index built in three parts, the merge policy run after all
    but one (merging each four segments of a tier into one), then everything merged into one
    segment: after each, compared with an index rebuilt from the changed KB file: every surface's
    keys, objects, order, prominence, subject keys and tail trie, every predicate's sample, the dev
    questions' mentions, the surface trie."""
    _, _, tokenizer, _ = sample_kb
    with open(f"{SAMPLE}/kb.tsv", encoding="utf-8") as handle:
        lines = [line for line in handle.read().splitlines() if line.strip()]
    with open(f"{SAMPLE}/dev.json", encoding="utf-8") as handle:
        questions = [json.loads(line)["question"] for line in handle]
    directory = str(tmp_path / "index")
    built = build_index(f"{SAMPLE}/kb.tsv", tokenizer, directory, segment_triples=len(lines) // 3)
    assert len(built.segments) == 3
    rng = random.Random(seed)
    segment_counts = []
    for round in range(8):
        if round < 7:
            changes = _random_changes(rng, lines)
            lines = _apply(lines, changes)
            updated, report = update_index(directory, write(tmp_path / f"changes{round}.tsv", "\n".join(changes) + "\n"),
                                           tokenizer, merge=round != 5)
            assert report.removed and report.added
        else:
            merge_index(directory, tokenizer, MergeDownTo(1))
            updated = KBIndex(directory, tokenizer)
        segment_counts.append(len(updated.segments))
        rebuilt = build_index(write(tmp_path / "changed.tsv", "\n".join(lines) + "\n"), tokenizer, str(tmp_path / "rebuilt"))
        assert contents(updated, questions=questions) == contents(rebuilt, questions=questions)
        assert updated.triples == rebuilt.triples == len(lines)
        named = {entry.name for entry in updated.manifest.segments}
        assert {name for name in os.listdir(directory) if not name.endswith(".npy")} == named | {"header.json"}
    # 3 parts and the first update: four of tier 0, merged into one; the 6th update left unmerged
    assert segment_counts == [1, 2, 3, 1, 2, 3, 1, 1]


def test_an_index_built_in_parts_answers_as_one_built_whole(sample_kb, tmp_path):
    _, _, tokenizer, _ = sample_kb
    whole = build_index(f"{SAMPLE}/kb.tsv", tokenizer, str(tmp_path / "whole"))
    parts = build_index(f"{SAMPLE}/kb.tsv", tokenizer, str(tmp_path / "parts"), segment_triples=whole.triples // 10,
                        jobs=2)
    assert len(whole.segments) == 1 and len(parts.segments) >= 8
    assert sorted(os.listdir(tmp_path / "parts")) == ["header.json"] + [e.name for e in parts.manifest.segments]
    assert contents(parts) == contents(whole) and parts.triples == whole.triples
    for predicate in whole.predicates.names():  # the sample's objects, kept beside it, are the keys' first
        keys, places = parts.predicates.sample(predicate)
        assert (places >= 0).all() and parts.predicates.objects(predicate) == list(map(parts.first_object, keys.tolist()))


def test_the_merge_policy_merges_a_full_tier_the_mostly_hidden_and_past_the_cap():
    def entry(triples, hidden=0):
        return SegmentEntry("s", triples, hidden_triples=hidden)
    plan = TieredMergePolicy().plan
    assert plan([entry(1_000_000), entry(2_000), entry(3_000), entry(900)]) == []
    assert plan([entry(1_000_000), entry(2_000), entry(3_000), entry(900), entry(5_000)]) == [1, 2, 3, 4]
    assert plan([entry(1_000_000), *[entry(50_000)] * 3, entry(9_000)]) == []  # tiers apart
    assert plan([entry(1_000_000, hidden=600_000), entry(2_000)]) == [0]  # mostly hidden: rewritten
    capped = TieredMergePolicy(segment_triples=25_000_000)
    assert capped.plan([entry(60_000_000, hidden=31_000_000)]) == []  # past a merge's memory
    assert plan([entry(2_000, hidden=2_000), entry(5_000)]) == [0]  # empty: dropped
    sizes = [entry(10_000 * 4 ** tier) for tier in range(4) for _ in range(3)] + [entry(25_000_000)] * 2
    assert len(sizes) > capped.max_segments and len(capped.plan(sizes)) == len(sizes) - capped.max_segments + 1
    # its own settings: a tier of three merges three
    assert TieredMergePolicy(factor=3).plan([entry(1_000_000), entry(2_000), entry(3_000), entry(900)]) == [1, 2, 3]


def test_merging_down_to_n_segments_is_a_policy_of_its_own():
    def entry(triples, hidden=0):
        return SegmentEntry("s", triples, hidden_triples=hidden)
    sizes = [entry(500), entry(90), entry(7_000), entry(40)]
    assert MergeDownTo(2).plan(sizes) == [0, 1, 3]  # the three smallest: two left
    assert MergeDownTo(4).plan(sizes) == [] and MergeDownTo(1).plan(sizes) == [0, 1, 2, 3]
    assert MergeDownTo(1).plan([entry(500, hidden=100)]) == [0]  # a lone segment rewritten without what it hides
    assert MergeDownTo(1).plan([entry(500)]) == []
    with pytest.raises(ValueError, match="MergeDownTo.segments has to be an integer of at least 1"):
        MergeDownTo(0)


@pytest.mark.parametrize("setting", [{"factor": 1}, {"floor": 0}, {"max_segments": 0}, {"segment_triples": -5},
                                     {"factor": 2.5}])
def test_a_merge_policy_with_settings_it_cannot_work_with_is_refused_where_it_is_made(setting):
    with pytest.raises(ValueError, match=f"TieredMergePolicy.{next(iter(setting))} has to be an integer"):
        TieredMergePolicy(**setting)


def test_each_kind_of_change(tmp_path, tokenizer):
    directory = str(tmp_path / "index")
    build_index(write(tmp_path / "kb.tsv", KB), tokenizer, directory)
    changes = write(tmp_path / "changes.tsv", "\n".join([
        "-\t刘晓华（演员）\t代表作品\t《星河》",  # one object of a key whose other stays
        "-\t北京\t人口\t2189万",  # the whole subject
        "-\t北京\t人口\t2189万",  # now not there
        "+\t上海\t人口\t2487万",  # a new subject
        "+\t刘晓\t身高\t170cm",  # a new predicate
        "+\t刘晓\t别名\t小刘",  # there already
        "+\t刘晓华（教师）\t主讲课程\t《力学》",  # a new homonym
    ]) + "\n")
    index, report = update_index(directory, changes, tokenizer)
    assert (report.added, report.removed, report.not_in_kb, report.already_in_kb) == (3, 2, [3], [6])
    assert fact_of(index, "刘晓华", "代表作品", "演员").objects == ["《远山》"]
    assert fact_of(index, "北京", "人口", "") is None and index.names.surface_id("北京") is None
    assert [index.names.surface(sid) for sid in index.names.mentions("北京和上海的人口")] == ["上海"]
    assert fact_of(index, "刘晓", "身高", "").objects == ["170cm"]
    assert index.predicates.objects("身高") == ["170cm"]
    assert sorted(m for _, _, m in index.keys(index.names.surface_id("刘晓华"))) == ["广东工业大学教授", "教师", "演员"]
    assert index.triples == 6
    assert any("not in the KB (lines 3)" in warning for warning in report.warnings(changes))


def test_a_copy_takes_an_update_of_its_own_sharing_the_files_and_leaving_the_original_as_it_was(tmp_path, tokenizer):
    directory = str(tmp_path / "index")
    original = build_index(write(tmp_path / "kb.tsv", KB), tokenizer, directory)
    before = contents(original)
    changes = write(tmp_path / "changes.tsv", "-\t北京\t人口\t2189万\n+\t上海\t人口\t2487万\n")
    copy = updated_copy(original, changes, str(tmp_path / "copy"))
    assert fact_of(copy, "北京", "人口", "") is None and fact_of(copy, "上海", "人口", "").objects == ["2487万"]
    reopened = KBIndex(directory, tokenizer)
    assert contents(reopened) == before and reopened.version == original.version
    assert fact_of(reopened, "北京", "人口", "").objects == ["2189万"] and reopened.names.surface_id("上海") is None
    segment = original.manifest.segments[0].name
    shared = [name for name in os.listdir(os.path.join(directory, segment))]
    assert shared and all(os.path.samefile(os.path.join(directory, segment, name),
                                           os.path.join(str(tmp_path / "copy"), segment, name)) for name in shared)


def test_the_cli_updates_warns_and_refuses_bad_input(tmp_path, overfit):
    from kgqa.model.tokenizer import load_tokenizer

    checkpoint = str(overfit[0] / "ck/best")
    tokenizer = load_tokenizer(os.path.join(checkpoint, "tokenizer"))
    runner = CliRunner()
    directory = str(tmp_path / "index")
    build_index(f"{SAMPLE}/kb.tsv", tokenizer, directory)
    changes = write(tmp_path / "changes.tsv", "+\t马磊静\t民族出生\t新的宾语\n-\t没有\t这个\t三元组\nnot a change\n")
    before = contents(KBIndex(directory, tokenizer))
    strict = runner.invoke(main, ["update", changes, "--index", directory, "--checkpoint", checkpoint])
    assert strict.exit_code == 1 and "changes.tsv:3: expected `+` or `-`" in strict.output
    assert "--skip-bad-lines" in strict.output
    assert "Traceback" not in strict.output and len(strict.output.strip().splitlines()) == 1
    assert contents(KBIndex(directory, tokenizer)) == before  # nothing applied
    result = runner.invoke(main, ["update", changes, "--index", directory, "--checkpoint", checkpoint,
                                  "--skip-bad-lines"])
    assert result.exit_code == 0, result.output
    assert "1 triples added, 0 removed" in result.output
    assert "removed triples are not in the KB (lines 2)" in result.output
    assert "changes.tsv: skipped 1 bad line (line 3: expected `+` or `-`" in result.output
    assert fact_of(KBIndex(directory), "马磊静", "民族出生", "").objects == ["新的宾语"]
    user = tmp_path / "mine"
    user.mkdir()
    write(user / "notes.txt", "mine")
    refused = runner.invoke(main, ["update", changes, "--index", str(user), "--checkpoint", checkpoint])
    assert refused.exit_code == 1 and "not a kgqa index" in refused.output
    assert os.listdir(user) == ["notes.txt"]


def test_an_update_that_fails_midway_leaves_the_index_as_it_was(tmp_path, sample_kb, monkeypatch):
    import kgqa.kb.update

    _, _, tokenizer, _ = sample_kb
    directory = str(tmp_path / "index")
    build_index(f"{SAMPLE}/kb.tsv", tokenizer, directory)
    before = contents(KBIndex(directory, tokenizer))
    header = open(os.path.join(directory, "header.json")).read()

    def failing(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(kgqa.kb.update, "write_manifest", failing)  # its segment and deletes written, not committed
    with pytest.raises(OSError):
        update_index(directory, write(tmp_path / "changes.tsv", "-\t马磊静\t配偶\t王芳\n+\t新\t新\t新\n"), tokenizer)
    assert open(os.path.join(directory, "header.json")).read() == header
    assert contents(KBIndex(directory, tokenizer)) == before
    assert sorted(os.listdir(tmp_path)) == ["changes.tsv", "index", "index.lock"]  # no temporary left
    assert sorted(os.listdir(directory)) == ["header.json", "s000000"]


def test_an_updated_index_is_kept_for_its_base_kb_and_opened_whole(tmp_path, tokenizer):
    kb = write(tmp_path / "kb.tsv", KB)
    directory = str(tmp_path / "index")
    ensure_index(kb, tokenizer, directory)
    update_index(directory, write(tmp_path / "changes.tsv", "+\t上海\t人口\t2487万\n"), tokenizer)
    again = ensure_index(kb, tokenizer, directory)  # the KB file it was built from, updated since: not rebuilt
    assert len(again.segments) == 2 and fact_of(again, "上海", "人口", "").objects == ["2487万"]
    assert again.version != again.manifest.kb_sha256 and again.manifest.changes[0]["added"] == 1
    os.truncate(os.path.join(directory, "s000001", "grp_pred.npy"), 10)
    with pytest.raises(KgqaError, match="damaged index: segment s000001"):
        KBIndex(directory, tokenizer)


def test_an_index_of_an_older_format_is_named_to_rebuild_and_rebuilt_in_the_cache(tmp_path, tokenizer):
    kb = write(tmp_path / "kb.tsv", KB)
    directory = str(tmp_path / "index")
    build_index(kb, tokenizer, directory)
    with open(os.path.join(directory, "header.json"), "w", encoding="utf-8") as handle:
        json.dump({"format": 4, "kb_sha256": "x"}, handle)
    with pytest.raises(KgqaError, match="index format 4, this kgqa reads 7: rebuild this index with `kgqa index`"):
        KBIndex(directory, tokenizer)
    assert fact_of(ensure_index(kb, tokenizer, directory), "北京", "人口", "").objects == ["2189万"]


def test_changes_of_another_tokenizer_index_are_refused(tmp_path, tokenizer):
    from kgqa.model.tokenizer import SentencePieceTokenizer

    directory = str(tmp_path / "index")
    build_index(write(tmp_path / "kb.tsv", KB), tokenizer, directory)
    other = SentencePieceTokenizer.train(["上海北京刘晓华人口别名"], 60)
    with pytest.raises(KgqaError, match="another tokenizer"):
        update_index(directory, write(tmp_path / "changes.tsv", "+\t上海\t人口\t2487万\n"), other)


@pytest.mark.parametrize("removed", [20, 250])
def test_a_common_predicates_sample_is_a_rebuilds_after_many_of_its_keys_go(tmp_path, removed):
    """A predicate of 300 keys keeps 128 in its sample: with 20 subjects removed the rest of the
    kept sample still holds the smallest 64; with 250 removed it cannot, and the update hashes
    every key of the predicate instead."""
    from kgqa.model.tokenizer import SentencePieceTokenizer

    lines = [f"实体{n}\t类型\t类{n % 7}" for n in range(300)] + [f"实体{n}\t编号\t{n}" for n in range(0, 300, 3)]
    tokenizer = SentencePieceTokenizer.train([line.replace("\t", "") + "新" for line in lines], 60)
    directory = str(tmp_path / "index")
    build_index(write(tmp_path / "kb.tsv", "\n".join(lines) + "\n"), tokenizer, directory)
    gone = random.Random(0).sample(range(300), removed)
    changes = [f"-\t实体{n}\t类型\t类{n % 7}" for n in gone] + ["+\t实体新\t类型\t类新"]
    updated, _ = update_index(directory, write(tmp_path / "changes.tsv", "\n".join(changes) + "\n"), tokenizer)
    rebuilt = build_index(write(tmp_path / "changed.tsv", "\n".join(_apply(lines, changes)) + "\n"), tokenizer,
                          str(tmp_path / "rebuilt"))
    assert len(updated.segments) == 2
    for predicate, keys in (("类型", 300 - removed + 1), ("编号", 100)):
        assert updated.predicates.objects(predicate) == rebuilt.predicates.objects(predicate)
        assert len(updated.predicates.objects(predicate)) == min(64, keys)


def test_change_lines_bad_as_kb_lines_stop_the_read_or_are_skipped_and_counted(tmp_path):
    from kgqa.kb.triples import ReadStats, read_changes

    path = write(tmp_path / "changes.tsv", "+\t有\x00空字符\t谓语\t宾语\n-\t\t谓语\t宾语\n+\t上海\t人口\t2487万\n*\t上海\t人口\t1\n")
    stats = ReadStats()
    found = list(read_changes(path, skip_bad_lines=True, stats=stats))
    assert [(c.added, c.triple.surface, c.triple.line) for c in found] == [(True, "上海", 3)]
    assert stats.skipped == {"a NUL character in the subject or predicate": 1, "empty subject or predicate": 1,
                             "expected `+` or `-`, then S, P and O, tab-separated": 1}
    with pytest.raises(KgqaError, match="changes.tsv:1: a NUL character"):
        list(read_changes(path))
