"""Writing stores: locked, resumable appends batch by batch (:func:`open_writer`), and whole arrays at once.

A writer holds the store's lock (:mod:`featx.store.lock`), so a second writer is
refused instead of interleaving rows. Rows are flushed after every batch, ids last,
so a batch torn by a kill is cut on reopen and an interrupted run resumes by
skipping the ids already stored.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import h5py
import numpy as np

from ..config import ExtractCfg
from ..errors import StoreError
from .lock import store_lock
from .schema import create, decode_attrs, format_problem, library_versions, now, settings_problem


class StoreWriter:
    """Appends rows to a store under its lock. Use :func:`open_writer`."""

    def __init__(self, f: h5py.File):
        self.f = f

    @property
    def n_rows(self) -> int:
        return int(self.f["ids"].shape[0])

    def done_ids(self) -> set[str]:
        """Ids already stored or recorded as failed (skipped on resume)."""
        return set(self.f["ids"].asstr()[...]) | set(self.f["failed/id"].asstr()[...])

    def append(self, ids: Sequence[str], labels: Sequence[int], split: Sequence[str],
               features: np.ndarray, logits: np.ndarray | None = None) -> None:
        """Append one batch; ``ids`` is written last so a torn batch is detectable."""
        f, k = self.f, len(ids)
        if k == 0:
            return
        n = self.n_rows
        feats = f["features"]
        if features.shape[1] != feats.shape[1]:
            raise StoreError(f"feature width {features.shape[1]} != store width {feats.shape[1]}")
        for name, rows in (("features", features), ("labels", np.asarray(labels)), ("split", list(split)),
                           ("logits", logits)):
            if name == "logits" and (rows is None or "logits" not in f):
                continue
            ds = f[name]
            ds.resize(n + k, axis=0)
            ds[n:] = rows
        ids_ds = f["ids"]
        ids_ds.resize(n + k, axis=0)
        ids_ds[n:] = list(ids)
        f.attrs["updated"] = now()
        f.flush()

    def record_failures(self, failures: Sequence[tuple[str, str]]) -> None:
        if not failures:
            return
        for j, name in enumerate(("id", "reason")):
            ds = self.f[f"failed/{name}"]
            n = ds.shape[0]
            ds.resize(n + len(failures), axis=0)
            ds[n:] = [row[j] for row in failures]
        self.f.flush()

    def finalize(self) -> None:
        self.f.attrs["complete"] = True
        self.f.attrs["versions"] = json.dumps(library_versions())
        self.f.attrs["updated"] = now()
        self.f.flush()


def _repair(f: h5py.File) -> None:
    """Cut rows of a batch torn by a kill (ids are written last)."""
    n = f["ids"].shape[0]
    for name in ("features", "labels", "split", "logits"):
        if name in f and f[name].shape[0] != n:
            f[name].resize(n, axis=0)


def _reopen(path: Path, cfg: ExtractCfg, dim: int, classes: Sequence[str]) -> h5py.File | None:
    """The existing store at ``path`` open for appending (torn batch cut), or None when it was unreadable
    and has been moved aside. Raises :class:`StoreError` when it belongs to other settings."""
    try:
        f = h5py.File(path, "a")
    except OSError:
        aside = path.with_name(path.name + f".corrupt-{int(time.time())}")
        os.replace(path, aside)
        warnings.warn(f"{path}: unreadable partial store moved to {aside}; starting afresh")
        return None
    try:
        problem = format_problem(f.attrs) or settings_problem(decode_attrs(f.attrs), cfg, classes)
        if problem:
            raise StoreError(f"{path}: {problem}; choose another --out or pass --overwrite")
        if f["features"].shape[1] != dim:
            raise StoreError(f"{path}: width {f['features'].shape[1]} != {dim}; pass --overwrite")
        _repair(f)
    except BaseException:
        f.close()
        raise
    f.attrs["complete"] = False
    return f


def check_target(path: Path) -> None:
    """Refuse an output path that holds something other than an HDF5 file (a folder, a CSV ...)."""
    if path.is_dir():
        raise StoreError(f"--out {path}: is a folder; pass the path of a .h5 file to write")
    if path.exists() and not h5py.is_hdf5(path):
        raise StoreError(f"--out {path}: exists and is not an HDF5 store; choose another --out "
                         "(featx never overwrites other files)")


@contextmanager
def open_writer(path: str | Path, cfg: ExtractCfg, *, dim: int, logits_dim: int | None, meta: dict,
                overwrite: bool = False) -> Iterator[StoreWriter]:
    """Lock ``path`` and open it for appending, creating it if needed."""
    path = Path(path)
    check_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with store_lock(path):
        f = _reopen(path, cfg, dim, meta["classes"]) if path.exists() and not overwrite else None
        if f is None:
            f = create(path, cfg, dim, logits_dim, meta)
        try:
            yield StoreWriter(f)
        finally:
            f.close()


def write_arrays(path: str | Path, cfg: ExtractCfg, *, features: np.ndarray, labels: Sequence[int],
                 ids: Sequence[str], split: Sequence[str], classes: Sequence[str], data_root: str | Path = ".",
                 logits: np.ndarray | None = None, failed: Sequence[tuple[str, str]] = (),
                 overwrite: bool = True) -> Path:
    """Write a complete store from in-memory arrays (synthetic data, tests, merges)."""
    path = Path(path)
    meta = {"classes": list(classes), "data_root": str(data_root), "dataset": Path(str(data_root)).name}
    with open_writer(path, cfg, dim=features.shape[1], logits_dim=None if logits is None else logits.shape[1],
                     meta=meta, overwrite=overwrite) as w:
        w.append(list(ids), labels, list(split), np.asarray(features), logits)
        w.record_failures(list(failed))
        w.finalize()
    return path
