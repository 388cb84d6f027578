"""The fitted model on disk: ``model.skops``, a file that is read without running any code from it.

``featx fit`` writes its Pipeline with :func:`skops.io.dump` (a zip of JSON and ``.npy`` arrays, no
pickle). :func:`read_model` first lists the types the file names (:func:`skops.io.get_untrusted_types`
reads the schema; it imports and builds nothing) and refuses the file unless each one is in
:data:`TRUSTED_TYPES`; only then does :func:`skops.io.load` build it, with that same explicit list.
skops itself trusts scikit-learn's estimators, builtins and numpy/scipy basics; a function or any
other class named in the file is refused.

A pickle (``model.joblib`` of older featx, or any file that is not a skops zip) runs code while
it loads, whatever its name: it is read only with ``trust=True`` (``featx predict --trust``).
"""

from __future__ import annotations

import importlib.abc
import sys
import warnings
import zipfile
from pathlib import Path

from ..errors import ClassifierError
from ..files import atomic_path

MODEL_FILE = "model.skops"
"""The model file of a run folder written by ``featx fit``."""

LEGACY_MODEL_FILE = "model.joblib"
"""The pickle that featx fit wrote before ``model.skops`` (loaded only with ``trust=True``)."""

TRUSTED_TYPES: frozenset[str] = frozenset({
    # featx's own estimators (featx.learn.classify), by full dotted name
    "featx.learn.classify.BlockL2Normalizer",
    "featx.learn.classify.LinearSVCCalibrated",
    # scikit-learn's fitted internals of the classifiers featx offers, which skops does not trust by
    # default: the MLP's optimiser, kNN's tree and metric, and the sigmoid calibration and folds that
    # LinearSVCCalibrated held before it calibrated with one temperature (model files of an earlier featx)
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.model_selection._split.StratifiedKFold",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
})
"""Every type beyond skops' own defaults that a featx model may hold; nothing outside is ever built.

The same eight with scikit-learn 1.6, 1.7 and 1.9 (skops 0.11, 0.13, 0.16); ``tests/learn/test_safe_models.py`` fits
every classifier (and ``--concat``, ``--search``, ``pca:K``, ``--class-weight``) and checks each model's
types are inside it."""

PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")

_TORCH_SHIM = "sklearn.externals.array_api_compat.torch"


class _NoTorchShim(importlib.abc.MetaPathFinder):
    """Refuses scikit-learn's array-API shim for torch, which imports torch (seconds, and ``fit`` never
    needs it): skops lists scikit-learn's estimators as it is imported, and that walk imports every
    sklearn package; a package that fails to import is skipped, and this one holds no estimator."""

    def find_spec(self, name, path=None, target=None):
        if name == _TORCH_SHIM or name.startswith(_TORCH_SHIM + "."):
            raise ModuleNotFoundError(f"{name}: not imported while skops lists estimators", name=name)
        return None


def skops_io():
    """:mod:`skops.io`, imported without importing torch (where torch is not imported already)."""
    if "skops.io" not in sys.modules and "torch" not in sys.modules:
        finder = _NoTorchShim()
        sys.meta_path.insert(0, finder)
        try:
            import skops.io  # noqa: F401
        finally:
            sys.meta_path.remove(finder)
    import skops.io as sio

    return sio


def resolve_model_path(path: str | Path) -> Path:
    """A run folder -> its ``model.skops`` (or, failing that, an old ``model.joblib``); a file as given."""
    path = Path(path)
    if path.is_dir():
        for name in (MODEL_FILE, LEGACY_MODEL_FILE):
            if (path / name).is_file():
                return path / name
        return path / MODEL_FILE
    return path


def save_model(model, path: str | Path) -> Path:
    """Write ``model`` to ``path`` with :func:`skops.io.dump`, atomically."""
    sio = skops_io()
    with atomic_path(path) as tmp:
        sio.dump(model, tmp)
    return Path(path)


def is_skops_file(path: Path) -> bool:
    """A zip holding skops' ``schema.json``; decided by the content, never by the name."""
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as z:
            return "schema.json" in z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def untrusted_types(path: Path) -> list[str]:
    """The types ``path`` names that are neither skops' defaults nor in :data:`TRUSTED_TYPES`; builds nothing."""
    sio = skops_io()
    try:
        named = sio.get_untrusted_types(file=path)
    except Exception as exc:  # noqa: BLE001  (a broken zip or schema)
        raise ClassifierError(f"{path}: not a readable skops model ({type(exc).__name__}: {exc}); "
                              "re-fit with `featx fit`") from None
    return sorted(set(named) - TRUSTED_TYPES)


def read_model(path: str | Path, *, trust: bool = False):
    """The fitted estimator in ``path``: a skops file whose types are all trusted, or (``trust=True`` only)
    a pickle. Anything else is a one-line :class:`ClassifierError`, before any of the file is built."""
    path = Path(path)
    if is_skops_file(path):
        bad = untrusted_types(path)
        if bad:
            raise ClassifierError(f"{path}: the model holds types featx does not trust ({', '.join(bad)}); "
                                  "featx builds only scikit-learn's and its own estimators from a model file, "
                                  "so it did not load it; re-fit with `featx fit` to get a model.skops")
        sio = skops_io()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # sklearn's own version warning: the caller's is clearer
                return sio.load(path, trusted=sorted(TRUSTED_TYPES))
        except Exception as exc:  # noqa: BLE001
            raise ClassifierError(f"{path}: cannot load the model ({type(exc).__name__}: {exc})") from None
    if not trust:
        kind = "a pickle" if path.suffix in PICKLE_SUFFIXES else "not a skops file, so treated as a pickle"
        raise ClassifierError(f"{path}: {kind}, which can run code while it loads; featx loads it only with "
                              "--trust (trust=True), and only pass that for a file you made yourself; or re-fit "
                              "with `featx fit` to get a model.skops, which loads without running code")
    import joblib

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return joblib.load(path)
    except Exception as exc:  # noqa: BLE001  (unpickling can fail in many ways)
        raise ClassifierError(f"{path}: cannot load the model ({type(exc).__name__}: {exc})") from None
