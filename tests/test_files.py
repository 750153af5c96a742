import fcntl
import os
import pickle
import stat

import pytest

from kgqa.model.checkpoint import load_trainer_state
from kgqa.model.checkpoint_settings import read_settings
from kgqa.errors import KgqaError
from kgqa.files import atomic_directory, atomic_file


def _ours(path):
    return os.path.isfile(os.path.join(path, "ours"))


def _fill(path, text):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "ours"), "w") as handle:
        handle.write(text)


def test_a_directory_that_is_not_ours_is_never_replaced(tmp_path):
    users = tmp_path / "data"
    users.mkdir()
    (users / "train.json").write_text("the user's file")
    with pytest.raises(KgqaError, match="data: exists and is not a kgqa index; not replacing it"):
        with atomic_directory(str(users), _ours, "index") as temp:
            _fill(temp, "new")
    assert (users / "train.json").read_text() == "the user's file"
    assert sorted(os.listdir(tmp_path)) == ["data"]  # no temp directory left either
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(KgqaError, match="not a kgqa index"):
        with atomic_directory(str(tmp_path / "a-file"), _ours, "index"):
            pass


def test_ours_and_empty_directories_are_replaced_whole(tmp_path):
    (tmp_path / "empty").mkdir()
    for name in ("empty", "fresh"):
        with atomic_directory(str(tmp_path / name), _ours, "index") as temp:
            _fill(temp, "v1")
    with atomic_directory(str(tmp_path / "fresh"), _ours, "index") as temp:
        _fill(temp, "v2")
    assert (tmp_path / "fresh/ours").read_text() == "v2"
    assert (tmp_path / "empty/ours").read_text() == "v1"
    assert sorted(os.listdir(tmp_path)) == ["empty", "fresh"]


def test_a_swap_killed_between_its_two_renames_is_finished_by_the_next_reader(tmp_path):
    best = tmp_path / "best"
    # killed after `best` -> `.best.old` and before the new one took its place: the old comes back
    _fill(tmp_path / ".best.old", "{}")
    os.rename(tmp_path / ".best.old/ours", tmp_path / ".best.old/kgqa.json")
    assert read_settings(str(best)) == {}
    assert sorted(os.listdir(tmp_path)) == ["best"]
    # killed after the new one took its place, before the old was removed: the old goes
    _fill(tmp_path / ".best.old", "stale")
    assert load_trainer_state(str(best)) is None
    assert sorted(os.listdir(tmp_path)) == ["best"]


def test_temp_directories_of_killed_writers_are_removed_but_not_a_live_one(tmp_path):
    abandoned = tmp_path / ".idx.abc123.tmp"
    _fill(abandoned, "half an index")
    live = tmp_path / ".idx.def456.tmp"
    _fill(live, "being written")
    handle = os.open(live, os.O_RDONLY)
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
        with atomic_directory(str(tmp_path / "idx"), _ours, "index") as temp:
            _fill(temp, "v1")
    finally:
        os.close(handle)
    assert not abandoned.exists() and live.exists()


def test_written_files_keep_the_mode_they_had_or_get_the_umask_default(tmp_path):
    target = tmp_path / "pred.json"
    with atomic_file(str(target)) as out:
        out.write("a")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666 & ~umask
    os.chmod(target, 0o640)
    with atomic_file(str(target)) as out:
        out.write("b")
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640 and target.read_text() == "b"
    with atomic_directory(str(tmp_path / "ck"), _ours, "checkpoint") as temp:
        _fill(temp, "v1")
    assert stat.S_IMODE(os.stat(tmp_path / "ck").st_mode) == 0o777 & ~umask


def test_renames_are_made_durable_by_syncing_the_directory(tmp_path, monkeypatch):
    import kgqa.files

    synced = []
    monkeypatch.setattr(kgqa.files, "_fsync_directory", synced.append)
    with atomic_file(str(tmp_path / "out.json")) as out:
        out.write("a")
    assert synced == [str(tmp_path)]
    with atomic_directory(str(tmp_path / "ck"), _ours, "checkpoint") as temp:
        _fill(temp, "v1")
    assert str(tmp_path) in synced[1:]


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_a_trainer_state_that_would_run_code_is_refused_unrun(tmp_path):
    checkpoint = tmp_path / "last"
    checkpoint.mkdir()
    marker = str(tmp_path / "pwned")
    with open(checkpoint / "trainer_state.pt", "wb") as handle:
        pickle.dump({"step": 1, "evil": _Payload(marker)}, handle)
    with pytest.raises(KgqaError, match="trainer_state.pt: unreadable trainer state"):
        load_trainer_state(str(checkpoint))
    assert not os.path.exists(marker)
