"""The models fitted beside a checkpoint's weights (reranker, confidence calibrator, answer kinds,
naming weights, question wording, noisy channel), saved one way and read by one reader.

Each is an `.npz` of named arrays (numbers, and strings as unicode arrays: no pickles), and
`fitted.json` names them: per model its file, the file's sha256 and the kgqa version that fitted
it. A model is written first, then the manifest (each atomically), so a reader sees the old entry
or the new one whole. A file whose hash is not the manifest's (cut short, replaced by hand) or an
unreadable manifest is one `KgqaError` naming the file, whichever model it holds; a model the
manifest does not name is absent (None), and the files of a kgqa before this format are named in a
warning with the command that fits them again.
"""
from __future__ import annotations

import json
import logging
import os
import zipfile
from importlib.metadata import PackageNotFoundError, version

import numpy as np

from kgqa.errors import KgqaError
from kgqa.files import atomic_file, file_sha256

MANIFEST = "fitted.json"
FORMAT = 1
# what a kgqa before fitted.json saved each model as: warned about, not read
EARLIER_FILES = {"reranker": "reranker.json", "calibrator": "confidence.json", "answer_kinds": "answer_kinds.npz",
                 "naming": "naming.json"}
log = logging.getLogger("kgqa.rank.storage")


def _kgqa_version() -> str:
    try:
        return version("kgqa")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _manifest(checkpoint: str) -> dict:
    """The checkpoint's manifest ({"format", "models"}), an empty one where it has none."""
    path = os.path.join(checkpoint, MANIFEST)
    if not os.path.isfile(path):
        return {"format": FORMAT, "models": {}}
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
        if manifest.get("format") != FORMAT or not isinstance(manifest.get("models"), dict):
            raise ValueError(f"expected format {FORMAT} with a models table")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as error:
        raise KgqaError(f"unreadable manifest of fitted models ({type(error).__name__}: {error})", path) from None
    return manifest


def _write_manifest(checkpoint: str, manifest: dict) -> None:
    with atomic_file(os.path.join(checkpoint, MANIFEST)) as out:
        json.dump(manifest, out, indent=1, sort_keys=True)


def _path(checkpoint: str, name: str) -> str:
    """Where model `name` lives: always `name.npz` (the manifest's "file" is for the reader of the
    manifest, never a path kgqa opens or removes)."""
    return os.path.join(checkpoint, f"{name}.npz")


def unreadable(checkpoint: str, name: str, what: str, why: str) -> KgqaError:
    """The one error for a fitted model's file that cannot be used, whichever model it holds."""
    return KgqaError(f"unreadable {what} ({why})", _path(checkpoint, name))


def _drop_earlier(checkpoint: str, name: str) -> None:
    """Remove model `name`'s file from before the manifest, where it is not today's file."""
    earlier = os.path.join(checkpoint, EARLIER_FILES.get(name, f"{name}.npz"))
    if earlier != _path(checkpoint, name) and os.path.isfile(earlier):
        os.unlink(earlier)


def write_fitted(checkpoint: str, name: str, arrays: dict) -> None:
    """Save model `name` as `name.npz` of `arrays` (each value as `np.asarray` reads it: numbers,
    lists, a tuple of names) and name it in the manifest."""
    with atomic_file(_path(checkpoint, name), "wb") as out:
        np.savez_compressed(out, **{field: np.asarray(value) for field, value in arrays.items()})
    manifest = _manifest(checkpoint)
    manifest["models"][name] = {"file": f"{name}.npz", "sha256": file_sha256(_path(checkpoint, name)),
                                "fitted_by": f"kgqa {_kgqa_version()}"}
    _write_manifest(checkpoint, manifest)
    _drop_earlier(checkpoint, name)  # superseded


def remove_fitted(checkpoint: str, name: str) -> None:
    """Drop model `name` (one a new fit could not make: it belonged to what is gone), and its file
    from before the manifest."""
    manifest = _manifest(checkpoint)
    if manifest["models"].pop(name, None) is not None:
        _write_manifest(checkpoint, manifest)
    if os.path.isfile(_path(checkpoint, name)):
        os.unlink(_path(checkpoint, name))
    _drop_earlier(checkpoint, name)


def read_fitted(checkpoint: str, name: str, what: str, fields: tuple[str, ...],
                optional: tuple[str, ...] = ()) -> dict[str, np.ndarray] | None:
    """The arrays `fields` of model `name` (`what` names it in messages), and those of `optional`
    its file holds (arrays a later kgqa added, which an earlier one's fit lacks); None where the
    manifest names none."""
    entry = _manifest(checkpoint)["models"].get(name)
    if entry is None:
        earlier = os.path.join(checkpoint, EARLIER_FILES.get(name, ""))
        if name in EARLIER_FILES and os.path.isfile(earlier):
            log.warning("%s: %s saved by a kgqa before fitted.json: answering without it; "
                        "`kgqa fit-reranker` fits it again", earlier, what)
        return None
    path = _path(checkpoint, name)
    try:
        if file_sha256(path) != entry.get("sha256"):
            raise ValueError(f"its sha256 is not the one {MANIFEST} names: damaged or replaced")
        with np.load(path, allow_pickle=False) as saved:
            missing = [field for field in fields if field not in saved.files]
            if missing:
                raise ValueError(f"no {', '.join(missing)}: fitted by an earlier kgqa; `kgqa fit-reranker` fits it again")
            return {field: saved[field] for field in (*fields, *optional) if field in saved.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise unreadable(checkpoint, name, what, f"{type(error).__name__}: {error}") from None


def per_feature(checkpoint: str, name: str, what: str, names: tuple[str, ...], fields: tuple[str, ...],
                scalars: tuple[str, ...] = ()) -> tuple[list[np.ndarray], list[float]] | None:
    """The per-feature `fields` of model `name`, a linear model over the features its `features`
    array names, each reordered to `names`, and its `scalars`; None where it has none, or one
    fitted over other features than `names` (by another kgqa version: said in one warning naming
    `kgqa fit-reranker`, which fits it again)."""
    arrays = read_fitted(checkpoint, name, what, ("features",) + fields + scalars)
    if arrays is None:
        return None
    saved_names = [str(feature) for feature in arrays["features"]]
    if set(saved_names) != set(names) or len(saved_names) != len(names):
        log.warning("%s of %s was fitted over other features (another kgqa version): answering without it; "
                    "`kgqa fit-reranker` fits it again", what, checkpoint)
        return None
    values = [np.asarray(arrays[field], dtype=float) for field in fields]
    if any(value.shape != (len(saved_names),) for value in values) or any(arrays[s].shape != () for s in scalars):
        raise unreadable(checkpoint, name, what, f"expected {len(saved_names)} numbers in each of {', '.join(fields)}"
                         + (f" and one in {', '.join(scalars)}" if scalars else ""))
    at = {feature: i for i, feature in enumerate(saved_names)}
    return [np.array([value[at[feature]] for feature in names]) for value in values], [float(arrays[s]) for s in scalars]
