"""Writing stores: locked, resumable, crash-safe appends and updates (:func:`open_writer`), and whole arrays.

Every write keeps the file readable by a concurrent reader and recoverable after a kill:

* appends write every row dataset, ``/ids`` last, flush, and only then raise
  ``attrs["rows"]``: a torn batch is invisible to readers and cut on reopen;
* in-place updates of existing rows (changed files, relabels, failures) are bracketed
  by an odd ``attrs["generation"]`` so readers retry (:func:`featx.store.reader.read_snapshot`);
  a killed update is simply re-applied by the next run, which sees the same differences;
* dropping rows and ``--overwrite`` build a new file beside the store and ``os.replace`` it
  at the end, so a kill leaves the old store whole.

A writer holds the store's lock (:mod:`featx.store.lock`). A file that fails the structural
checks is renamed ``<name>.corrupt-<time>`` (never deleted) and a new store is started.
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
from ..faults import fault
from .lock import store_lock
from .schema import (FAILED_DATASETS, JSON_ATTRS, ROW_DATASETS, committed_rows, decode_attrs, encode_strs,
                     format_problem, generation, is_access_error, library_versions, new_store, now, open_h5,
                     read_failed, settings_problem, structure_problem)

COPY_ROWS = 1 << 15
APPEND_ORDER = ("features", "logits", "labels", "split", "size", "mtime_ns", "hash", "ids")  # ids last


def _strs_or_ints(name: str, values) -> list | np.ndarray:
    if name in ("ids", "split", "hash", "id", "reason"):
        return encode_strs(values)
    return np.asarray(values)


class StoreWriter:
    """Appends and updates rows of a store under its lock. Use :func:`open_writer`.

    ``f`` is None until :meth:`create` when the store does not exist yet (or is being overwritten).
    """

    def __init__(self, target: Path, f: h5py.File | None):
        self.target = target  # the file written: the store, or a new file beside it for --overwrite
        self.f = f

    @property
    def exists(self) -> bool:
        return self.f is not None

    @property
    def n_rows(self) -> int:
        return committed_rows(self.f) if self.f is not None else 0

    @property
    def dim(self) -> int:
        return int(self.f["features"].shape[1])

    def create(self, cfg: ExtractCfg, dim: int, logits_dim: int | None, meta: dict) -> None:
        new_store(self.target, cfg, dim, logits_dim, meta)
        self.f = open_h5(self.target, "a")

    def attrs(self) -> dict:
        return decode_attrs(self.f.attrs)

    @contextmanager
    def _updating(self) -> Iterator[h5py.File]:
        """Bracket an in-place change of committed rows: readers retry while the generation is odd."""
        f = self.f
        g = generation(f)
        f.attrs["generation"] = g + 1 if g % 2 == 0 else g
        f.flush()
        yield f
        f.attrs["generation"] = (g + 2) if g % 2 == 0 else g + 1
        f.attrs["updated"] = now()
        f.flush()

    def append(self, ids: Sequence[str], labels: Sequence[int], split: Sequence[str], features: np.ndarray,
               logits: np.ndarray | None = None, *, size: Sequence[int] | None = None,
               mtime_ns: Sequence[int] | None = None, hashes: Sequence[str] | None = None) -> None:
        """Append one batch: every dataset, ``ids`` last, flush, then commit the row count."""
        f, k = self.f, len(ids)
        if k == 0:
            return
        if features.shape[1] != f["features"].shape[1]:
            raise StoreError(f"feature width {features.shape[1]} != store width {f['features'].shape[1]}")
        n = self.n_rows
        columns = {"features": features, "labels": labels, "split": split, "logits": logits,
                   "size": [-1] * k if size is None else size, "mtime_ns": [-1] * k if mtime_ns is None else mtime_ns,
                   "hash": [""] * k if hashes is None else hashes, "ids": ids}
        for name in APPEND_ORDER:
            if name not in f or (name == "logits" and logits is None):
                continue
            ds = f[name]
            ds.resize(n + k, axis=0)
            ds[n:] = _strs_or_ints(name, columns[name])
            if name == "features":
                fault("append:features")
        f.flush()
        fault("append:flush")
        f.attrs["rows"] = n + k
        f.attrs["updated"] = now()
        f.flush()

    def replace(self, rows: Sequence[int], features: np.ndarray, logits: np.ndarray | None, *,
                size: Sequence[int], mtime_ns: Sequence[int], hashes: Sequence[str] | None = None) -> None:
        """Overwrite the features of existing rows in place (their files changed); stats last."""
        order = np.argsort(rows)
        rows = np.asarray(rows)[order]
        with self._updating() as f:
            f["features"][rows] = np.asarray(features)[order]
            fault("replace:features")
            if logits is not None and "logits" in f:
                f["logits"][rows] = np.asarray(logits)[order]
            self._set_stats(rows, np.asarray(size)[order], np.asarray(mtime_ns)[order],
                            None if hashes is None else [hashes[i] for i in order])

    def set_stats(self, rows: Sequence[int], size: Sequence[int], mtime_ns: Sequence[int],
                  hashes: Sequence[str] | None = None) -> None:
        """New stats (and hashes) for rows whose bytes are unchanged."""
        if len(rows) == 0:
            return
        order = np.argsort(rows)
        with self._updating():
            self._set_stats(np.asarray(rows)[order], np.asarray(size)[order], np.asarray(mtime_ns)[order],
                            None if hashes is None else [hashes[i] for i in order])

    def _set_stats(self, rows, size, mtime_ns, hashes) -> None:
        f = self.f
        f["size"][rows] = size
        f["mtime_ns"][rows] = mtime_ns
        if hashes is not None:
            f["hash"][rows] = encode_strs(hashes)

    def relabel(self, classes: Sequence[str], labels: np.ndarray | None, split: np.ndarray | None) -> None:
        """Rewrite the class list, labels and splits of the committed rows (no features touched)."""
        n = self.n_rows
        with self._updating() as f:
            f.attrs["classes"] = json.dumps(list(classes))
            if labels is not None:
                f["labels"][:n] = labels
            if split is not None:
                f["split"][:n] = encode_strs(split)

    def set_failures(self, failures: Sequence[tuple[str, str, int, int]]) -> None:
        """The whole failed list: (id, reason, size, mtime_ns) per image that could not be read."""
        with self._updating() as f:
            for j, name in enumerate(FAILED_DATASETS):
                ds = f[f"failed/{name}"]
                ds.resize(len(failures), axis=0)
                if failures:
                    ds[:] = _strs_or_ints(name, [row[j] for row in failures])

    def failures(self) -> list[tuple[str, str, int, int]]:
        return read_failed(self.f)

    def set_attrs(self, **attrs) -> None:
        for k, v in attrs.items():
            self.f.attrs[k] = json.dumps(v, sort_keys=True) if k in JSON_ATTRS else v
        self.f.flush()

    def drop(self, rows: Sequence[int]) -> None:
        """Remove rows: the kept ones are copied to a new file beside the store, which then replaces it."""
        if len(rows) == 0:
            return
        n = self.n_rows
        keep = np.ones(n, bool)
        keep[np.asarray(rows)] = False
        tmp = self.target.with_name(f".{self.target.name}.compact-{os.getpid()}")
        try:
            with h5py.File(tmp, "w", locking=False) as g:
                _copy_rows(self.f, g, keep)
                g.attrs["rows"] = int(keep.sum())
                g.attrs["generation"] = 0
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.f.close()
        fault("drop:replace")
        os.replace(tmp, self.target)
        self.f = open_h5(self.target, "a")

    def finalize(self, **attrs) -> None:
        """Mark the store complete (it holds every image of its data as of this run)."""
        f = self.f
        f.attrs["versions"] = json.dumps(library_versions())
        fault("finalize:attrs")
        self.set_attrs(**attrs)
        f.attrs["complete"] = True
        f.attrs["updated"] = now()
        f.flush()


def _copy_rows(src: h5py.File, dst: h5py.File, keep: np.ndarray) -> None:
    """Copy the rows where ``keep`` is true of every row dataset (in blocks), the failed group and attributes."""
    n, m = len(keep), int(keep.sum())
    for name in ROW_DATASETS:
        if name not in src:
            continue
        s = src[name]
        d = dst.create_dataset(name, (m,) + s.shape[1:], dtype=s.dtype, maxshape=(None,) + s.shape[1:],
                               chunks=s.chunks)
        at = 0
        for a in range(0, n, COPY_ROWS):
            block = s[a:min(n, a + COPY_ROWS)][keep[a:a + COPY_ROWS]]
            d[at:at + len(block)] = block
            at += len(block)
    src.copy(src["failed"], dst, "failed")
    for k, v in src.attrs.items():
        dst.attrs[k] = v


def _damage(path: Path) -> str | None:
    """What is structurally wrong with the store at ``path`` when read-only, or None if nothing is."""
    try:
        with open_h5(path, "r") as f:
            return structure_problem(f)
    except StoreError:
        raise
    except OSError as exc:
        return None if is_access_error(exc) else str(exc).splitlines()[0]


def _move_aside(path: Path, why: str) -> None:
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(path, aside)
    warnings.warn(f"{path}: damaged store ({why}); kept as {aside.name}, starting a new one")


def _reopen(path: Path, cfg: ExtractCfg) -> h5py.File | None:
    """The existing store open for appending (a torn batch cut), or None when it was damaged and moved aside.

    Raises :class:`StoreError` when it is not a featx store or belongs to other settings.
    """
    try:
        f = open_h5(path, "a")
    except StoreError:
        raise
    except OSError as exc:
        reason = str(exc).splitlines()[0]
        damage = None if is_access_error(exc) else _damage(path)
        if damage is None:  # readable and whole: something else refuses the write (never taken for damage)
            raise StoreError(f"{path}: cannot be opened for writing ({reason}); close other handles to it in this "
                             "process, check the file's permissions, and re-run") from None
        _move_aside(path, damage)
        return None
    try:
        problem = format_problem(f.attrs)
        if problem:
            raise StoreError(f"--out {path}: {problem}; choose another --out (featx never overwrites other files)")
        damage = structure_problem(f)
        if damage:
            f.close()
            _move_aside(path, damage)
            return None
        problem = settings_problem(decode_attrs(f.attrs), cfg)
        if problem:
            raise StoreError(f"{path}: {problem}; choose another --out or pass --overwrite")
        n = committed_rows(f)
        for name in ROW_DATASETS:
            if name in f and f[name].shape[0] != n:
                f[name].resize(n, axis=0)
        if generation(f) % 2:
            f.attrs["generation"] = generation(f) + 1  # a killed update: this run re-applies it
        f.flush()
    except BaseException:
        if f.id.valid:
            f.close()
        raise
    return f


def check_target(path: Path) -> None:
    """Refuse an output path that holds something other than an HDF5 file (a folder, a CSV ...)."""
    if path.is_dir():
        raise StoreError(f"--out {path}: is a folder; pass the path of a .h5 file to write")
    if path.exists() and not h5py.is_hdf5(path):
        raise StoreError(f"--out {path}: exists and is not an HDF5 store; choose another --out "
                         "(featx never overwrites other files)")


@contextmanager
def open_writer(path: str | Path, cfg: ExtractCfg, *, overwrite: bool = False) -> Iterator[StoreWriter]:
    """Lock ``path`` and open it for writing (``writer.f`` is None until :meth:`StoreWriter.create` if new).

    With ``overwrite`` the rows go to a new file beside ``path``, which replaces it when the block
    ends normally; an interrupted overwrite leaves the old store as it was.
    """
    path = Path(path)
    check_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with store_lock(path):
        staged = path.with_name(f".{path.name}.overwrite")
        for pattern in (staged.name, f".{path.name}.compact-*", f".{path.name}.tmp-*"):
            for leftover in path.parent.glob(pattern):  # left by a killed run; we hold the lock
                leftover.unlink(missing_ok=True)
        if overwrite:
            w = StoreWriter(staged, None)
        else:
            w = StoreWriter(path, _reopen(path, cfg) if path.exists() else None)
        try:
            yield w
        except BaseException:
            if w.f is not None:
                w.f.close()
            if overwrite:
                staged.unlink(missing_ok=True)
            raise
        if w.f is not None:
            w.f.close()
        if overwrite and staged.exists():
            fault("overwrite:replace")
            os.replace(staged, path)


def write_arrays(path: str | Path, cfg: ExtractCfg, *, features: np.ndarray, labels: Sequence[int],
                 ids: Sequence[str], split: Sequence[str], classes: Sequence[str], data_root: str | Path = ".",
                 logits: np.ndarray | None = None, failed: Sequence[tuple[str, str]] = (),
                 overwrite: bool = True) -> Path:
    """Write a complete store from in-memory arrays (synthetic data, tests, merges); no file stats."""
    path = Path(path)
    meta = {"classes": list(classes), "data_root": str(data_root), "dataset": Path(str(data_root)).name}
    with open_writer(path, cfg, overwrite=overwrite) as w:
        if not w.exists:
            w.create(cfg, features.shape[1], None if logits is None else logits.shape[1], meta)
        w.append(list(ids), labels, list(split), np.asarray(features), logits)
        w.set_failures([(i, r, -1, -1) for i, r in failed])
        w.finalize()
    return path
