"""``featx.fit``: scikit-learn classifiers on stores, written as run folders, returned as :class:`FitRun`."""

from __future__ import annotations

import csv
import json
import os
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ClassifierError
from ..report import plots
from ..report.metrics import row_normalise
from ..store.handle import Store
from ._common import StoreLike, figures_by_name, store_list

if TYPE_CHECKING:  # pragma: no cover
    from ..learn.fit import FitOptions

_MODEL_FILES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model object -> its model.skops


def model_file(model) -> Path | None:
    """The ``model.skops`` a model object returned by :attr:`FitRun.model` was loaded from (None if unknown)."""
    try:
        return _MODEL_FILES.get(model)
    except TypeError:  # not weak-referenceable: not one of ours
        return None


def model_path(model, command: str, accepts: str) -> Path:
    """The file or folder behind ``model``: a :class:`FitRun`, a model object from :attr:`FitRun.model`, or a path
    (``accepts`` names what a path may be, for the error)."""
    if isinstance(model, FitRun):
        return model.path
    if isinstance(model, (str, os.PathLike)):
        return Path(model)
    found = model_file(model)
    if found is None:
        raise ClassifierError(f"{command}: pass a FitRun, its .model, {accepts} (this {type(model).__name__} was "
                              "not loaded by featx, so its backbone is unknown)")
    return found


class FitRun:
    """One fitted classifier and its run folder.

    Attributes
    ----------
    path : Path
        The run folder: metrics.json, report.txt, confusion_matrix.png, misclassified.png, model.skops, model.json.
    metrics : dict
        The content of metrics.json (accuracy with its standard error, F1s, top-k, per-class table, ...).
    figures : dict
        ``{file name: matplotlib Figure}`` of the PNGs written by the fit (empty for a run opened from disk).
    """

    def __init__(self, path: str | Path, metrics: dict | None = None, figures: dict | None = None):
        self.path = Path(path)
        if metrics is None:
            try:
                metrics = json.loads((self.path / "metrics.json").read_text())
            except FileNotFoundError:
                raise ClassifierError(f"{self.path}: no metrics.json; pass a run folder written by featx fit") from None
        self.metrics = metrics
        self.figures = dict(figures or {})
        self._model = None

    def __repr__(self) -> str:
        m = self.metrics
        return (f"<featx.FitRun {m.get('classifier')} on {m.get('label')}: {m['evaluation']['mode']} accuracy "
                f"{m.get('accuracy_text')} -> {self.path}>")

    @property
    def classifier(self) -> str:
        """The classifier's name (``softmax``, ``linearsvc``, ...)."""
        return self.metrics["classifier"]

    @property
    def accuracy(self) -> float:
        """Accuracy on the held-out rows (the test split, or K-fold CV)."""
        return float(self.metrics["accuracy"])

    @property
    def classes(self) -> list[str]:
        """Class names, in the order of the confusion matrix."""
        return list(self.metrics.get("per_class", {}))

    @property
    def report(self) -> str:
        """scikit-learn's classification report (report.txt)."""
        return (self.path / "report.txt").read_text()

    @property
    def model(self):
        """The fitted scikit-learn Pipeline (model.skops, built from trusted types only), loaded once;
        :func:`featx.predict` accepts it. An older run's pickle ``model.joblib`` is refused: load it with
        ``featx.predict(run.path, ..., trust=True)`` if you made it yourself, or re-fit."""
        if self._model is None:
            from ..learn.predict import load_model

            loaded = load_model(self.path)
            self._model = loaded.model
            try:
                _MODEL_FILES[self._model] = loaded.path
            except TypeError:  # pragma: no cover  (sklearn estimators are weak-referenceable)
                pass
        return self._model

    def confusion_matrix(self, *, normalize: bool = True):
        """The confusion matrix on the held-out rows as a matplotlib Figure, also written to the run folder.

        Parameters
        ----------
        normalize : bool, default True
            Row-normalised (each true class sums to 1, as confusion_matrix.png), else counts
            (written as confusion_matrix_counts.png).

        Returns
        -------
        matplotlib.figure.Figure
        """
        import numpy as np

        cm = np.asarray(self.metrics["confusion_matrix"])
        names = self.classes or [str(i) for i in range(len(cm))]
        title = f"{self.classifier} on {self.metrics.get('label')}\n" + (
            f"row-normalised, n={int(cm.sum())}" if normalize else f"counts, n={int(cm.sum())}")
        fig = plots.heatmap_figure(row_normalise(cm) if normalize else cm, names, names, title=title,
                                   fmt=".2f" if normalize else ".0f", xlabel="predicted", ylabel="true",
                                   vmin=0.0 if normalize else None, vmax=1.0 if normalize else None)
        plots.save(fig, self.path / ("confusion_matrix.png" if normalize else "confusion_matrix_counts.png"))
        return fig


class FitRuns(list):
    """Several :class:`FitRun` (classifiers x stores) and the leaderboard written beside them.

    Attributes
    ----------
    path : Path
        The run folder holding one sub-folder per fit, leaderboard.csv and leaderboard.md.
    """

    def __init__(self, path: str | Path, runs: Sequence[FitRun]):
        super().__init__(runs)
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"<featx.FitRuns {len(self)} fits -> {self.path}>"

    @property
    def leaderboard(self) -> list[dict]:
        """The rows of leaderboard.csv (best first)."""
        with open(self.path / "leaderboard.csv", newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))

    def to_pandas(self):
        """The leaderboard as a pandas DataFrame."""
        import pandas as pd

        return pd.read_csv(self.path / "leaderboard.csv")


def fit(stores: StoreLike | Sequence[StoreLike], clf: str | Sequence[str] = "softmax", *, concat: bool = False,
        out: str | Path | None = None, name: str | None = None, runs_dir: str | Path = "runs",
        preprocess: str | None = None, class_weight: str = "none", search: bool = False, cv: int | None = None,
        n_jobs: int | None = None, seed: int = 0, overwrite: bool = False, dask_scheduler: str | None = None,
        exclude: str | Path | Sequence[str | Path] = (), explain: int = 0,
        echo: Callable[[str], None] | None = None) -> FitRun | FitRuns:
    """Fit classifiers on cached features and write metrics, report, figures and the model (``featx fit``).

    Never loads a backbone (no torch). The stored split is honoured: fit on train, select on val,
    test scored once; a store without a test split gets stratified K-fold CV.

    Parameters
    ----------
    stores : Store, path, or a list of them
        Feature stores written by :func:`featx.extract`. Paths are read as they are now; a
        :class:`Store` contributes the rows of its view.
    clf : str or list of str, default "softmax"
        Names from :data:`featx.learn.classify.CLASSIFIERS` (``softmax``, ``linearsvc``, ``mlp``, ``knn``,
        ``majority``, ...), a comma list, or ``all`` (every one but the baselines).
    concat : bool, default False
        Join the stores by image id (each block L2-normalised) and fit one model.
    out : str or Path, optional
        Run folder; default ``<runs_dir>/<timestamp>/`` (``<runs_dir>/<name>/`` with ``name``).
    name : str, optional
        Run name.
    runs_dir : str or Path, default "runs"
        Folder of run folders.
    preprocess : str, optional
        ``standardize``, ``l2``, ``pca:K`` or ``none``, chained with ``+``; default standardize (knn: l2).
    class_weight : {"none", "balanced"}, default "none"
        ``balanced`` weights classes by inverse frequency (classifiers that take class weights: softmax,
        linearsvc, mlp, ...; the others note that they ignored it).
    search : bool, default False
        Grid-search the main hyper-parameter with stratified 5-fold CV on the training rows.
    cv : int, optional
        Fit on train+val and add a stratified K-fold estimate.
    n_jobs : int, optional
        Parallel jobs for ``search`` and knn.
    seed : int, default 0
        Seed of CV folds and stochastic classifiers.
    overwrite : bool, default False
        Write into an existing run folder instead of a new one with a ``-2`` suffix.
    dask_scheduler : str, optional
        Address of a running dask.distributed scheduler (``tcp://HOST:8786``): the ``search``
        fits run on its workers through joblib's dask backend (``pip install 'featx[dask]'``).
    exclude : path or list of paths, optional
        CSVs with an ``id`` column (:func:`featx.audit`'s ``leaks.csv``, ...): their rows are left out of
        fitting and scoring; ``metrics["excluded"]`` says how many rows went and from which files.
    explain : int, default 0
        Add ``explain_mistakes.png`` to each run folder: the N held-out images the classifier got wrong most
        confidently, with Grad-CAM maps of the class it chose (softmax, linearsvc, mlp; loads the backbone
        and imports torch, only when N > 0; see :func:`featx.explain`).
    echo : callable, optional
        Receives one summary line per fit (``print`` shows them).

    Returns
    -------
    FitRun or FitRuns
        A :class:`FitRun` for one classifier on one store (or on a concatenation), else a
        :class:`FitRuns` list with the leaderboard.

    Examples
    --------
    >>> run = featx.fit(store, clf="linearsvc", class_weight="balanced")  # doctest: +SKIP
    >>> run.metrics["accuracy"], run.confusion_matrix()  # doctest: +SKIP
    """
    from ..learn.fit import FitOptions

    options = FitOptions(clf=clf, concat=concat, out=out, name=name, runs_dir=runs_dir, preprocess=preprocess,
                         class_weight=class_weight, search=search, cv=cv, n_jobs=n_jobs, seed=seed,
                         overwrite=overwrite, dask_scheduler=dask_scheduler, exclude=exclude,
                         explain=explain)
    return fit_with_options(stores, options, echo=echo)


def fit_with_options(stores: StoreLike | Sequence[StoreLike], options: FitOptions, *,
                     echo: Callable[[str], None] | None = None) -> FitRun | FitRuns:
    """:func:`fit` with its options already built (and so checked): what ``featx fit`` calls."""
    from ..learn.fit import fit_stores
    from ..store.reader import load_features

    loaded = [s.to_feature_set(require_complete=True) if isinstance(s, Store) else load_features(s)
              for s in store_list(stores)]
    with plots.collect_figures() as found:
        run_dir, entries = fit_stores(loaded, options, echo=echo or (lambda line: None))
        if options.explain:
            explain_mistakes_of(loaded, options, entries, echo=echo or (lambda line: None))
    runs = [FitRun(sub, metrics, figures_by_name({p: f for p, f in found.items() if Path(p).parent == Path(sub)}))
            for metrics, sub in entries]
    return runs[0] if len(runs) == 1 and Path(entries[0][1]) == Path(run_dir) else FitRuns(run_dir, runs)


def explain_mistakes_of(loaded: Sequence, options: FitOptions, entries: Sequence[tuple[dict, Path]], *,
                        echo: Callable[[str], None]) -> None:
    """``featx fit --explain N``: each fit's ``explain_mistakes.png`` (:func:`featx.look.explain.explain_mistakes`)."""
    from ..learn.fit import exclude_rows
    from ..look.explain import explain_mistakes

    if options.concat:
        echo("note: --explain: a model on concatenated stores has several backbones; no maps drawn")
        return
    stores = exclude_rows(loaded, options.exclude)[0] if options.exclude else list(loaded)
    per_store = len(options.classifiers)
    for k, (_, sub) in enumerate(entries):
        explain_mistakes(sub, stores[k // per_store], options.explain, echo=echo)
