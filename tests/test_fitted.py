"""Fitted models are saved one way and read by one reader: a manifest names each file, its hash and
the kgqa that fitted it; a damaged or foreign file is the same one-line error for every model."""
import json
import logging

import numpy as np
import pytest

from kgqa.errors import KgqaError
from kgqa.rank.answer_kinds import AnswerKinds
from kgqa.rank.channel import SPECIAL, Channel, ChannelModel, ChannelShape
from kgqa.rank.confidence import SIGNAL_NAMES, Calibrator
from kgqa.rank.features import FEATURE_NAMES
from kgqa.rank.storage import MANIFEST, read_fitted, remove_fitted, write_fitted
from kgqa.rank.naming import Naming
from kgqa.rank.reranker import Reranker
from kgqa.rank.trained import TrainedPredicates
from kgqa.rank.wording import Wording

MODELS = {  # each model class, one of its instances, its manifest name and how messages name it
    "reranker": (Reranker, Reranker([0.0] * len(FEATURE_NAMES), [1.0] * len(FEATURE_NAMES), [0.5] * len(FEATURE_NAMES)),
                 "reranker"),
    "calibrator": (Calibrator, Calibrator([0.0] * len(SIGNAL_NAMES), [1.0] * len(SIGNAL_NAMES),
                                          [0.25] * len(SIGNAL_NAMES), -1.0), "calibrator"),
    "answer_kinds": (AnswerKinds, AnswerKinds(["多远", "谁"], ["length 2", "last 号"], np.ones((3, 2), np.float32)),
                     "answer kinds"),
    "naming": (Naming, Naming({"址": (3, 4), "在": (0, 9)}), "naming weights"),
    "wording": (Wording, Wording({"什么": 9, "哪里": 5}), "question wording"),
    "channel": (Channel, Channel(["址", "在"], ChannelModel(SPECIAL + 2, ChannelShape(8, 1, 2, 16))),
                "noisy channel"),
    "trained_predicates": (TrainedPredicates, TrainedPredicates({
        "出生日期": ("是什么时候出生的?",), "毕业院校": ("是哪个学校毕业的?", "毕业于哪所大学?")}), "trained predicates"),
}


def test_each_model_is_named_in_the_manifest_with_its_hash_and_read_back_equal(tmp_path):
    for name, (cls, model, _) in MODELS.items():
        model.save(str(tmp_path))
        again = cls.load(str(tmp_path))
        if isinstance(model, AnswerKinds):
            assert (again.cues, again.forms) == (model.cues, model.forms) and np.array_equal(again.weights, model.weights)
        elif isinstance(model, Channel):
            assert (again.characters, again.model.shape) == (model.characters, model.model.shape)
            assert all(value.equal(again.model.state_dict()[name]) for name, value in model.model.state_dict().items())
        else:
            assert again == model
    manifest = json.loads((tmp_path / MANIFEST).read_text(encoding="utf-8"))
    assert sorted(manifest["models"]) == sorted(MODELS)
    assert all(entry["file"] == f"{name}.npz" and len(entry["sha256"]) == 64 and entry["fitted_by"].startswith("kgqa ")
               for name, entry in manifest["models"].items())


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("damage", [b"", b"PK\x03\x04 cut short", "another model's file"])
def test_a_damaged_or_foreign_file_is_the_same_error_for_every_model(tmp_path, name, damage):
    cls, model, what = MODELS[name]
    model.save(str(tmp_path))
    if damage == "another model's file":
        other = next(n for n in MODELS if n != name)
        MODELS[other][1].save(str(tmp_path))
        damage = (tmp_path / f"{other}.npz").read_bytes()
    (tmp_path / f"{name}.npz").write_bytes(damage)
    with pytest.raises(KgqaError, match=f"unreadable {what} \\(ValueError: its sha256 is not the one fitted.json names"):
        cls.load(str(tmp_path))


def test_a_model_the_manifest_does_not_name_is_absent_and_a_damaged_manifest_an_error(tmp_path):
    assert all(cls.load(str(tmp_path)) is None for cls, _, _ in MODELS.values())
    MODELS["naming"][1].save(str(tmp_path))
    remove_fitted(str(tmp_path), "naming")
    assert Naming.load(str(tmp_path)) is None and not (tmp_path / "naming.npz").exists()
    (tmp_path / MANIFEST).write_text("{", encoding="utf-8")
    with pytest.raises(KgqaError, match="fitted.json: unreadable manifest of fitted models"):
        Reranker.load(str(tmp_path))


def test_the_manifest_names_no_path_kgqa_opens_or_removes(tmp_path):
    MODELS["naming"][1].save(str(tmp_path))
    (tmp_path / "other").mkdir()
    bystander = tmp_path / "other" / "keep.txt"
    bystander.write_text("not kgqa's", encoding="utf-8")
    manifest = json.loads((tmp_path / MANIFEST).read_text(encoding="utf-8"))
    manifest["models"]["naming"]["file"] = "other/keep.txt"
    (tmp_path / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    assert Naming.load(str(tmp_path)) == MODELS["naming"][1]  # naming.npz, whatever "file" says
    remove_fitted(str(tmp_path), "naming")
    assert bystander.exists() and not (tmp_path / "naming.npz").exists()


def test_a_file_missing_an_array_is_named(tmp_path):
    write_fitted(str(tmp_path), "naming", {"characters": np.array(["在"]), "named": np.array([1])})
    with pytest.raises(KgqaError, match="naming.npz: unreadable naming weights \\(ValueError: no seen: fitted by an earlier kgqa; `kgqa fit-reranker` fits it again\\)"):
        Naming.load(str(tmp_path))
    assert read_fitted(str(tmp_path), "naming", "naming weights", ("characters",))["characters"].tolist() == ["在"]


def test_files_of_a_kgqa_before_the_manifest_are_warned_about_and_replaced_by_a_fit(tmp_path, caplog):
    (tmp_path / "reranker.json").write_text('{"features": []}', encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="kgqa.rank.storage"):
        assert Reranker.load(str(tmp_path)) is None
    assert "reranker.json: reranker saved by a kgqa before fitted.json" in caplog.text
    assert "kgqa fit-reranker" in caplog.text
    MODELS["reranker"][1].save(str(tmp_path))
    assert not (tmp_path / "reranker.json").exists() and Reranker.load(str(tmp_path)) == MODELS["reranker"][1]


def test_a_checkpoints_fitted_models_are_loaded_and_saved_as_one_set(tmp_path):
    from kgqa.rank.fitted import Fitted

    assert Fitted.load(str(tmp_path)) == Fitted()  # none fitted
    full = Fitted(**{name: MODELS[name][1] for name in ("reranker", "calibrator", "naming", "wording")})
    full.save(str(tmp_path))
    again = Fitted.load(str(tmp_path))
    assert (again.reranker, again.calibrator, again.naming, again.wording, again.answer_kinds) == \
        (full.reranker, full.calibrator, full.naming, full.wording, None)
    # a new fit without a calibrator: the old one, of another reranker, does not stay beside it
    Fitted(reranker=full.reranker, naming=full.naming).save(str(tmp_path))
    assert Fitted.load(str(tmp_path)) == Fitted(reranker=full.reranker, naming=full.naming)
    assert not (tmp_path / "calibrator.npz").exists()


@pytest.mark.parametrize("name", ["reranker", "calibrator"])
def test_a_model_fitted_over_other_features_is_not_used_and_one_warning_names_the_command(tmp_path, name, caplog):
    cls, model, _ = MODELS[name]
    model.save(str(tmp_path))
    scalars = ("bias", "refuse_below") if name == "calibrator" else ()
    saved = read_fitted(str(tmp_path), name, name, ("features", "mean", "std", "weights") + scalars)
    # as if fitted before the first feature was added: today's kgqa does not guess what it would weigh
    write_fitted(str(tmp_path), name, {field: values if field in scalars else values[1:] for field, values in saved.items()})
    with caplog.at_level(logging.WARNING, logger="kgqa.rank.storage"):
        assert cls.load(str(tmp_path)) is None
    (warning,) = caplog.records
    assert "fitted over other features" in warning.getMessage() and "`kgqa fit-reranker`" in warning.getMessage()
