"""``featx.audit``: near-duplicates and leaks, likely label errors, outliers and least-sure images of a store."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..report import plots
from ..store.handle import Store
from ._common import StoreLike, figures_by_name


@dataclass
class Audit:
    """What :func:`audit` found and wrote.

    Attributes
    ----------
    path : Path
        The audit folder: leaks.csv, duplicates.csv, label_issues.csv, outliers.csv, least_sure.csv, a contact
        sheet PNG for each but duplicates, oof_proba.npz, audit.json and summary.md.
    leaks, duplicates, label_issues, outliers, least_sure : list of dict
        The rows of each CSV (id, path, label, split and the scores), most important first.
    summary : dict
        The content of audit.json: counts, the duplicate threshold, the held-out accuracy with and without the
        leaked rows, the classifier and its options.
    files : list of Path
        Every file written.
    figures : dict
        ``{file name: matplotlib Figure}`` of the contact sheets.
    """

    path: Path
    leaks: list = field(default_factory=list)
    duplicates: list = field(default_factory=list)
    label_issues: list = field(default_factory=list)
    outliers: list = field(default_factory=list)
    least_sure: list = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    files: list = field(default_factory=list)
    figures: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"<featx.Audit of {Path(self.summary.get('store', '?')).name}: {len(self.leaks)} leaks, "
                f"{len(self.label_issues)} label issues -> {self.path}>")

    def to_pandas(self, table: str = "label_issues"):
        """One table (``leaks``, ``duplicates``, ``label_issues``, ``outliers`` or ``least_sure``) as a pandas
        DataFrame, read from its CSV (pandas is needed only here)."""
        from ..errors import OptionError
        from ..look.audit import TABLES

        if table not in TABLES:
            raise OptionError(f"to_pandas({table!r}): use one of {', '.join(TABLES)}")
        import pandas as pd

        return pd.read_csv(self.path / f"{table}.csv", keep_default_na=False, dtype={"id": str})

    @classmethod
    def open(cls, path: str | Path) -> "Audit":
        """An audit folder written before (its CSVs and audit.json), without figures."""
        import json

        from ..errors import OptionError
        from ..look.audit import TABLES

        path = Path(path)
        try:
            summary = json.loads((path / "audit.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise OptionError(f"{path}: no audit.json; pass a folder written by featx audit") from None
        tables = {}
        for name in TABLES:
            with open(path / f"{name}.csv", newline="", encoding="utf-8", errors="surrogateescape") as fh:
                tables[name] = list(csv.DictReader(fh))
        return cls(path, summary=summary, files=[path / f for f in summary.get("files", [])], **tables)


def audit(store: StoreLike, *, clf: str | None = None, fit: str | Path | None = None, folds: int = 5,
          rank_by: str = "self_confidence", threshold: float | None = None, top: int = 30, k: int = 10,
          per_class: int = 5, out: str | Path | None = None, overwrite: bool = False, seed: int = 0,
          progress: bool = False, echo: Callable[[str], None] | None = None) -> Audit:
    """Look for leaks, wrong labels, outliers and hard images in a store (``featx audit``; no torch).

    Parameters
    ----------
    store : Store or path
        A feature store written by :func:`featx.extract`.
    clf : str, optional
        The classifier of the out-of-fold probabilities and the held-out accuracy (a name of
        :data:`featx.learn.classify.CLASSIFIERS`); default softmax.
    fit : str or Path, optional
        A :func:`featx.fit` run folder (``run.path``) fitted on this store: its classifier, preprocessing,
        class weights and searched parameters are used instead of ``clf``.
    folds : int, default 5
        Stratified folds of the out-of-fold probabilities.
    rank_by : {"self_confidence", "normalized_margin"}, default "self_confidence"
        How likely label errors are ranked.
    threshold : float, optional
        Cosine similarity at or above which two rows are near-duplicates; default the calibrated
        :data:`featx.look.duplicates.DEFAULT_THRESHOLD`.
    top : int, default 30
        Rows in the least-sure table, and images drawn per contact sheet.
    k : int, default 10
        Same-class neighbours of the outlier distance.
    per_class : int, default 5
        Outliers listed per class.
    out : str or Path, optional
        The audit folder; default ``audit/`` beside the store (``audit-2/``, ... when that holds an audit).
    overwrite : bool, default False
        Write into an existing audit folder.
    seed : int, default 0
        Seed of the folds and the classifier.
    progress : bool, default False
        Progress bars over the duplicate search and the folds.
    echo : callable, optional
        Receives the summary lines (``print`` shows them).

    Returns
    -------
    Audit

    Examples
    --------
    >>> found = featx.audit(store)  # doctest: +SKIP
    >>> found.label_issues[:3], found.summary["held_out"]  # doctest: +SKIP
    >>> featx.fit(store, exclude=found.path / "leaks.csv")  # doctest: +SKIP
    """
    from ..look.audit import AuditOptions

    options = AuditOptions(clf=clf, fit=fit, folds=folds, rank_by=rank_by, threshold=threshold, top=top, k=k,
                           per_class=per_class, out=out, overwrite=overwrite, seed=seed, progress=progress)
    return audit_with_options(store, options, echo=echo)


def audit_with_options(store: StoreLike, options, *, echo: Callable[[str], None] | None = None) -> Audit:
    """:func:`audit` with its :class:`~featx.look.audit.AuditOptions` already built: what ``featx audit`` calls."""
    from ..look.audit import audit_store

    handle = store if isinstance(store, Store) else Store(store, require_complete=True)
    try:
        with plots.collect_figures() as found:
            res = audit_store(handle, options, echo=echo or (lambda line: None))
    finally:
        if handle is not store:
            handle.close()
    return Audit(res.path, summary=res.summary, files=list(res.files), figures=figures_by_name(found), **res.tables)
