"""What ``featx fit`` and ``featx audit`` wrote about the opened stores: runs, held-out predictions, flags.

A fit run belongs to a collection when its one store is that store (by path, or by fingerprint and data
folder for a moved copy). Its held-out predictions come from its ``predictions.csv``; a run written before
that file existed is predicted again from its ``model.skops`` (loaded without running code) on the rows
its split rule held out, which gives the same rows and predictions for ``test`` and ``val`` runs. Audit
flags come from the newest ``audit.json`` folder of the store under the runs folder or beside the store.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..learn.classify import plan_splits
from ..learn.predict import LoadedModel, load_model, top_classes
from ..report.predictions import FILE as PREDICTIONS, read_predictions
from .collection import Collection

TOP = 5  # classes shown per prediction


def top_five(proba: np.ndarray, classes: list[str]) -> list[list]:
    """The :data:`TOP` most probable classes of one row, ``[[class, probability (4 decimals)], ...]``."""
    return [[c, round(p, 4)] for c, p in top_classes(proba, classes, TOP)]


FLAGS = ("leak", "duplicate", "label_issue", "outlier", "least_sure")
MAX_RUNS = 500  # metrics.json files looked at under the runs folder


def _unquote(text: str, known: dict) -> str:
    """An id as :func:`featx.report.escape.csv_cell` may have written it (a leading ``'``), back to the id."""
    return text[1:] if text not in known and text.startswith("'") and text[1:] in known else text


def _same_store(entry: dict, c: Collection) -> bool:
    path = entry.get("path")
    if path and Path(path) == c.path:
        return True
    return entry.get("fingerprint") == c.store.fingerprint and entry.get("data_root") == str(c.store.data_root) \
        and entry.get("n_rows") == len(c)


@dataclass
class HeldOut:
    """A fit run's held-out predictions on rows of the current view."""

    rows: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray
    source: str


@dataclass
class FitRunInfo:
    """One ``featx fit`` run folder of one opened store."""

    key: str
    path: Path
    metrics: dict
    collection: Collection
    _model: LoadedModel | None = field(default=None, repr=False)

    def summary(self, runs_dir: Path | None) -> dict:
        m = self.metrics
        try:
            name = str(self.path.relative_to(runs_dir)) if runs_dir else self.path.name
        except ValueError:
            name = str(self.path)
        return {"key": self.key, "run": name, "store": self.collection.key, "store_name": self.collection.path.name,
                "classifier": str(m.get("classifier", "?")), "accuracy": m.get("accuracy"),
                "accuracy_se": m.get("accuracy_se"), "macro_f1": m.get("macro_f1"),
                "eval": f"{m.get('evaluation', {}).get('mode', '?')} n={m.get('evaluation', {}).get('n_eval', '?')}",
                "backbone": str(m.get("fingerprint", {}).get("backbone", "?"))}

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.model().classes]

    def model(self) -> LoadedModel:
        """The fitted pipeline (``model.skops``: only trusted types load; a pickle is refused)."""
        if self._model is None:
            self._model = load_model(self.path)
        return self._model

    def proba(self, rows: np.ndarray) -> np.ndarray:
        """Class probabilities of stored rows (n x classes, in the model's class order)."""
        return self.model().proba(self.collection.features(rows))

    def held_out(self) -> HeldOut | None:
        """The run's held-out predictions mapped to the current view's rows (cached per view)."""
        c = self.collection
        cache = c.derived.setdefault("held_out", {})
        if self.key in cache:
            return cache[self.key]
        got = None
        classes = self.classes
        read = read_predictions(self.path / PREDICTIONS, classes, set(c.row_of))
        if read is not None:
            pairs = [(c.row_of.get(i), k) for k, i in enumerate(read.ids)]
            keep = np.array([k for r, k in pairs if r is not None], np.int64)
            rows = np.array([r for r, _ in pairs if r is not None], np.int64)
            got = HeldOut(rows, read.y_true[keep], read.y_pred[keep], read.proba[keep], PREDICTIONS)
        elif self.metrics.get("evaluation", {}).get("mode") in ("test", "val") and classes == c.classes:
            rows = plan_splits(c.splits).eval
            proba = self.proba(rows)
            got = HeldOut(rows, c.labels[rows], proba.argmax(axis=1), proba, "model.skops on the held-out split")
        cache[self.key] = got
        return got

    def confusion(self) -> dict | None:
        """Counts per (true, predicted) class and the rows of every cell."""
        h = self.held_out()
        if h is None:
            return None
        k = len(self.classes)
        counts = np.zeros((k, k), np.int64)
        cells: dict[str, list[int]] = {}
        for r, t, p in zip(h.rows, h.y_true, h.y_pred):
            counts[t, p] += 1
            cells.setdefault(f"{t},{p}", []).append(int(r))
        return {"classes": self.classes, "matrix": counts.tolist(), "cells": cells, "source": h.source,
                "n": int(len(h.rows))}

    def prediction(self, row: int) -> dict:
        """This run's prediction for one row: held out (as evaluated) or fitted on it (predicted now)."""
        h = self.held_out()
        hit = np.flatnonzero(h.rows == row) if h is not None else []
        if len(hit):
            p, how = h.proba[hit[0]], "held out"
        else:
            p, how = self.proba(np.array([row]))[0], "fitted on this painting or not evaluated"
        return {"run": self.key, "classifier": str(self.metrics.get("classifier", "?")), "how": how,
                "top": top_five(p, self.classes)}


def find_fit_runs(runs_dir: Path | None, collections: list[Collection]) -> list[FitRunInfo]:
    """Every finished fit run (``metrics.json`` + ``model.json`` + ``model.skops``) of one opened store."""
    if runs_dir is None or not Path(runs_dir).is_dir():
        return []
    found = []
    for i, mfile in enumerate(sorted(Path(runs_dir).rglob("metrics.json"))):
        if i >= MAX_RUNS:
            break
        run = mfile.parent
        if not (run / "model.json").is_file() or not (run / "model.skops").is_file():
            continue
        try:
            m = json.loads(mfile.read_text())
        except (OSError, ValueError):
            continue
        stores = m.get("stores") or []
        if len(stores) != 1:
            continue  # a --concat run needs several stores' features side by side: listed by featx fit, not here
        match = next((c for c in collections if _same_store(stores[0], c)), None)
        if match is not None:
            found.append(FitRunInfo(f"r{len(found)}", run, m, match))
    found.sort(key=lambda r: -(r.metrics.get("accuracy") or 0.0))
    for i, r in enumerate(found):
        r.key = f"r{i}"
    return found


@dataclass
class AuditFlags:
    """One audit of a collection: per row, the flags it raised (``FLAGS``) with a short note each."""

    path: Path
    flags: dict[int, dict[str, str]]

    def counts(self) -> dict[str, int]:
        return {f: sum(f in v for v in self.flags.values()) for f in FLAGS}


def _read_rows(path: Path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
            return list(csv.DictReader(fh))
    except (OSError, csv.Error):
        return []


def read_audit(folder: Path, c: Collection) -> AuditFlags:
    """The flags of an audit folder, on the collection's rows (ids no longer in the store are left out)."""
    flags: dict[int, dict[str, str]] = {}

    def flag(ident: str, name: str, note: str) -> None:
        r = c.row_of.get(_unquote(ident, c.row_of))
        if r is not None:
            flags.setdefault(r, {})[name] = note

    for rec in _read_rows(folder / "leaks.csv"):
        note = f"{rec.get('kind', '')} duplicate, cosine {rec.get('similarity', '')}"
        flag(rec.get("id", ""), "leak", f"{note} of {_unquote(rec.get('duplicate_id', ''), c.row_of)}")
        flag(rec.get("duplicate_id", ""), "leak", f"{note} of {_unquote(rec.get('id', ''), c.row_of)}")
    for rec in _read_rows(folder / "duplicates.csv"):
        flag(rec.get("id", ""), "duplicate", f"group {rec.get('group', '')} of {rec.get('size', '')}")
    for rec in _read_rows(folder / "label_issues.csv"):
        flag(rec.get("id", ""), "label_issue", f"suggested: {rec.get('suggested_label', '')} "
                                               f"(p={rec.get('p_suggested', '')})")
    for rec in _read_rows(folder / "outliers.csv"):
        flag(rec.get("id", ""), "outlier", f"mean distance to same-class neighbours {rec.get('knn_distance', '')}")
    for rec in _read_rows(folder / "least_sure.csv"):
        flag(rec.get("id", ""), "least_sure", f"predicted {rec.get('predicted', '')}, gap {rec.get('gap', '')}")
    return AuditFlags(folder, flags)


def find_audit(runs_dir: Path | None, c: Collection) -> AuditFlags | None:
    """The newest ``featx audit`` folder of the collection's store (under ``runs_dir`` or beside the store)."""
    cache = c.derived.setdefault("audit", {})
    if "flags" in cache:
        return cache["flags"]
    candidates = []
    for root in {Path(runs_dir)} if runs_dir and Path(runs_dir).is_dir() else set():
        candidates += list(root.rglob("audit.json"))[:MAX_RUNS]
    candidates += list(c.path.parent.glob("audit*/audit.json"))
    best = None
    for f in sorted(set(candidates), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            store = json.loads(f.read_text()).get("store")
        except (OSError, ValueError):
            continue
        if store and Path(store) == c.path:
            best = read_audit(f.parent, c)
            break
    cache["flags"] = best
    return best
