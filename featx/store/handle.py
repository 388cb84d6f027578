"""The :class:`Store` object: a read-only, lazy view of one feature store for Python users.

A Store is opened on the rows committed at that moment (``len(store)``) and keeps answering
about exactly those rows while ``featx extract`` appends more, so ``store.features(split="train")``
and ``store.labels(split="train")`` always match even when they are called seconds apart.
Each read opens the file through :func:`featx.store.reader.read_snapshot` (no HDF5 lock, the
seqlock on ``attrs["generation"]``), reads only the rows asked for, and closes it again: nothing
is held open, so a notebook never blocks a writer. :meth:`Store.refresh` moves the view to the rows
committed now. When a writer changed the view's rows in place (re-extracted files, relabels,
dropped rows), reads raise :class:`StoreChangedError` instead of mixing old and new rows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Self

import h5py
import numpy as np

from ..errors import StoreError
from .reader import FeatureSet, checked_attrs, read_feature_set, read_snapshot
from .schema import committed_rows, decode_attrs, generation, read_failed, read_strs

BLOCK_ROWS = 4096  # rows read at a time when picking scattered rows out of a dataset
IDENTITY = ("ids", "labels", "split", "size", "mtime_ns")  # per-row columns that change when a row is rewritten


class StoreChangedError(StoreError):
    """The rows a :class:`Store` was opened on were rewritten in place; :meth:`Store.refresh` to go on."""


def feature_names(fingerprint: dict, dim: int) -> list[str]:
    """Column names of a store's features: ``<backbone>.<layer>.<pool>_<i>`` (the ``ImageEmbedder`` names too)."""
    prefix = f"{fingerprint.get('backbone', 'feature')}.{fingerprint.get('layer', '')}.{fingerprint.get('pool', '')}"
    return [f"{prefix}_{i}" for i in range(dim)]


def _file_id(f: h5py.File) -> tuple[int, int]:
    """(device, inode) of the open file: a drop or ``--overwrite`` swaps in another file under the same name."""
    st = os.fstat(f.id.get_vfd_handle())
    return st.st_dev, st.st_ino


class Store:
    """A feature store written by :func:`featx.extract` (or ``featx extract``), read lazily.

    Parameters
    ----------
    path : str or Path
        The ``.h5`` file.
    require_complete : bool, default False
        Refuse a store whose first extraction has not finished (``fit`` and ``analyze`` do). Without
        it, a store still being extracted can be read: the view holds the rows committed so far.

    Attributes
    ----------
    path : Path
        The store file.
    attrs : dict
        The store's decoded attributes (fingerprint, classes, data root, ...) when the view was taken,
        with ``n_rows``, ``dim``, ``dtype`` and ``n_failed``.
    extraction : ExtractResult or None
        What the :func:`featx.extract` call that returned this Store did (cache hit, rows computed,
        failures, timing); None for a Store opened directly.

    Examples
    --------
    >>> with featx.Store("cache/monet-sisley--....h5") as store:  # doctest: +SKIP
    ...     X, y = store.features(split="train"), store.labels(split="train")
    """

    def __init__(self, path: str | Path, *, require_complete: bool = False):
        self.path = Path(path)
        self.require_complete = require_complete
        self.extraction: Any = None
        self._closed = False
        self.refresh()

    # ---------------------------------------------------------------- the view

    def refresh(self) -> Self:
        """Move the view to the rows committed now (after an extraction appended or updated).

        Returns
        -------
        Store
            This store.
        """
        self._check_open()

        def pin(f: h5py.File) -> tuple:
            attrs = checked_attrs(f, self.path, self.require_complete)
            return attrs, _file_id(f), generation(f), int(attrs["n_rows"])

        self.attrs, self._file, self._generation, self._n = read_snapshot(self.path, pin)
        self._columns: dict[str, np.ndarray] | None = None  # read on first use, under the same pin
        self._row_of: dict[str, int] | None = None
        return self

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self.path}: this Store was closed; open it again with featx.Store(path)")

    def _read(self, fn):
        """``fn(f)`` on a consistent snapshot in which the view's rows are still the rows it was opened on."""
        self._check_open()

        def read(f: h5py.File):
            if (_file_id(f), generation(f)) != (self._file, self._generation):
                self._verify(f)
            return fn(f)

        return read_snapshot(self.path, read)

    def _verify(self, f: h5py.File) -> None:
        """The file or its generation changed: go on if the view's rows are untouched (only the failed list or
        rows past the view were written), else raise :class:`StoreChangedError`. Rows never read before the
        change cannot be compared, so they count as changed."""
        if self._columns is not None and committed_rows(f) >= self._n:
            now = _identity(f, self._n)
            if (set(now) == set(self._columns) and all(np.array_equal(now[k], self._columns[k]) for k in now)
                    and _classes(f) == list(self.attrs["classes"])):
                self._file, self._generation = _file_id(f), generation(f)
                return
        raise StoreChangedError(f"{self.path}: rows of this Store were rewritten since it was opened (files "
                                "re-extracted, relabelled or dropped); call store.refresh() to read the store as "
                                "it is now")

    def _column(self, name: str) -> np.ndarray:
        """A per-row column of the view (ids, labels, split, size, mtime_ns), read once for all of them."""
        if self._columns is None:
            self._columns = self._read(lambda f: _identity(f, self._n))
        return self._columns[name]

    # ---------------------------------------------------------------- what it is

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        fp = self.fingerprint
        state = "closed" if self._closed else ("complete" if self.complete else "incomplete")
        classes = ", ".join(map(str, self.classes[:6])) + (", ..." if len(self.classes) > 6 else "")
        return (f"<featx.Store {self.path.name}: {len(self)} rows x {self.dim} dims ({self.attrs['dtype']}), "
                f"{len(self.classes)} classes [{classes}], {fp.get('backbone')}:{fp.get('layer')}/{fp.get('pool')}, "
                f"fingerprint {self.fingerprint_digest}, {state}>")

    def __enter__(self) -> Self:
        self._check_open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Forget the cached columns; later reads raise. (No file is held open between reads.)"""
        self._closed = True
        self._columns = None
        self._row_of = None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (or the ``with`` block left)."""
        return self._closed

    @property
    def name(self) -> str:
        """The file name without ``.h5``."""
        return self.path.stem

    @property
    def fingerprint(self) -> dict:
        """Backbone, weights, layer, pool, preprocessing, dtype, precision, ...: what made the features."""
        return dict(self.attrs.get("fingerprint") or {})

    @property
    def fingerprint_digest(self) -> str:
        """A short hash of :attr:`fingerprint` (equal fingerprints, equal digests)."""
        import hashlib
        import json

        return hashlib.sha256(json.dumps(self.fingerprint, sort_keys=True).encode()).hexdigest()[:10]

    @property
    def classes(self) -> list[str]:
        """Class names; ``labels()`` are indices into this list."""
        return list(self.attrs["classes"])

    @property
    def dim(self) -> int:
        """Feature width."""
        return int(self.attrs["dim"])

    @property
    def complete(self) -> bool:
        """Whether the store's first extraction had finished when the view was taken."""
        return bool(self.attrs.get("complete", False))

    @property
    def generation(self) -> int:
        """The store's update counter when the view was taken: it rises when committed rows are changed in
        place (re-extracted, relabelled); an append raises ``len(store)`` instead."""
        return int(self._generation)

    @property
    def has_logits(self) -> bool:
        """Whether the store holds the source model's logits (``with_logits=True``)."""
        return bool(self._read(lambda f: "logits" in f))

    @property
    def data_root(self) -> Path:
        """The folder the ids are relative to."""
        return Path(self.attrs.get("data_root", "."))

    @property
    def ids(self) -> np.ndarray:
        """Image ids (paths relative to :attr:`data_root`) of the view's rows, in store order."""
        return self._column("ids").copy()

    @property
    def splits(self) -> np.ndarray:
        """``"train"``, ``"val"`` or ``"test"`` per row."""
        return self._column("split").copy()

    @property
    def failed(self) -> list[tuple[str, str]]:
        """``(id, reason)`` of the images that could not be read."""
        return [(i, r) for i, r, _, _ in self._read(read_failed)]

    # ---------------------------------------------------------------- rows

    def rows(self, split: str | Sequence[str] | None = None, ids: Sequence[str] | None = None) -> np.ndarray:
        """Row numbers of a selection.

        Parameters
        ----------
        split : str or list of str, optional
            ``"train"``, ``"val"``, ``"test"`` or several; every row when None (and no ``ids``).
        ids : list of str, optional
            Image ids (as in :attr:`ids`); their rows come back in this order.

        Returns
        -------
        numpy.ndarray of int64

        Raises
        ------
        StoreError
            An unknown split or id, or both ``split`` and ``ids`` given.
        """
        if split is not None and ids is not None:
            raise StoreError("pass split= or ids=, not both")
        if ids is not None:
            if isinstance(ids, (str, bytes)):
                raise StoreError("ids= takes a list of ids; wrap a single id in a list")
            if self._row_of is None:
                self._row_of = {str(i): r for r, i in enumerate(self._column("ids"))}
            missing = [str(i) for i in ids if str(i) not in self._row_of]
            if missing:
                raise StoreError(f"{self.path}: {len(missing)} id(s) not in the store, e.g. {missing[0]!r}")
            return np.array([self._row_of[str(i)] for i in ids], dtype=np.int64)
        if split is None:
            return np.arange(self._n)
        wanted = [split] if isinstance(split, str) else list(split)
        bad = [s for s in wanted if s not in ("train", "val", "test")]
        if bad:
            raise StoreError(f"split={bad[0]!r}: use 'train', 'val' or 'test' (or a list of them)")
        return np.flatnonzero(np.isin(self._column("split"), wanted))

    def lookup(self, paths: Sequence[str | os.PathLike]) -> np.ndarray:
        """The rows holding these image files.

        Parameters
        ----------
        paths : list of path
            Image files, anywhere; those under :attr:`data_root` may be in the store.

        Returns
        -------
        numpy.ndarray of int64
            Per file, its row in the view, or -1 when the store does not hold it or the file changed since
            it was extracted (its size or modification time differ, or it is gone).
        """
        root = os.path.abspath(self.data_root)
        if self._row_of is None:
            self._row_of = {str(i): r for r, i in enumerate(self._column("ids"))}
        self._column("ids")
        size, mtime = self._columns.get("size"), self._columns.get("mtime_ns")
        out = np.full(len(paths), -1, np.int64)
        for k, p in enumerate(paths):
            rel = os.path.relpath(os.path.abspath(os.fspath(p)), root)
            r = self._row_of.get(Path(rel).as_posix()) if not rel.startswith("..") else None
            if r is None:
                continue
            try:
                st = os.stat(p)
            except OSError:
                continue
            if size is not None and mtime is not None and (st.st_size, st.st_mtime_ns) != (size[r], mtime[r]):
                continue
            out[k] = r
        return out

    def _take(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` of dataset ``name``, reading only the blocks that hold them."""

        def read(f: h5py.File) -> np.ndarray:
            ds = f[name]
            if len(rows) == self._n and np.array_equal(rows, np.arange(self._n)):
                return ds[: self._n]
            order = np.argsort(rows, kind="stable")
            srt = rows[order]
            parts = []
            for start in range(0, self._n, BLOCK_ROWS):
                lo, hi = np.searchsorted(srt, [start, start + BLOCK_ROWS])
                if hi > lo:
                    block = ds[start: min(start + BLOCK_ROWS, self._n)]
                    parts.append(block[srt[lo:hi] - start])
            out = np.empty((len(rows), *ds.shape[1:]), ds.dtype)
            if parts:
                out[order] = np.concatenate(parts)
            return out

        return self._read(read)

    def features(self, split: str | Sequence[str] | None = None, ids: Sequence[str] | None = None) -> np.ndarray:
        """Features of the selected rows (see :meth:`rows`) as a float32 ``(n, dim)`` array.

        Parameters
        ----------
        split : str or list of str, optional
            ``"train"``, ``"val"``, ``"test"`` or several; all rows when None.
        ids : list of str, optional
            Image ids (as in :attr:`ids`), returned in this order.

        Returns
        -------
        numpy.ndarray
            Only the selected rows are read from the file.
        """
        return self._take("features", self.rows(split, ids)).astype(np.float32, copy=False)

    def feature_blocks(self, block_rows: int = 16384) -> Iterator[tuple[int, np.ndarray]]:
        """The view's features a block at a time, as ``(first row, block)`` in the store's dtype (float32 or
        float16): all rows without holding them all in memory."""
        for start in range(0, self._n, block_rows):
            stop = min(start + block_rows, self._n)
            yield start, self._read(lambda f: f["features"][start:stop])

    def labels(self, split: str | Sequence[str] | None = None, ids: Sequence[str] | None = None, *,
               names: bool = False) -> np.ndarray:
        """Labels of the selected rows: class indices into :attr:`classes`, or the class names.

        Parameters
        ----------
        split, ids
            The selection, as in :meth:`rows`.
        names : bool, default False
            Class names (object array) instead of indices (int64).

        Returns
        -------
        numpy.ndarray
        """
        y = self._column("labels")[self.rows(split, ids)].astype(np.int64)
        return np.asarray(self.classes, dtype=object)[y] if names else y

    def logits(self, split: str | Sequence[str] | None = None, ids: Sequence[str] | None = None) -> np.ndarray:
        """Source-model logits, float32 ``(n, 1000)``, of the rows ``split`` or ``ids`` select (:meth:`rows`).

        A :class:`StoreError` when the store holds none (extract with ``with_logits=True``).
        """
        if not self.has_logits:
            raise StoreError(f"{self.path}: no logits in the store; extract with with_logits=True")
        return self._take("logits", self.rows(split, ids)).astype(np.float32, copy=False)

    def image_paths(self, split: str | Sequence[str] | None = None, ids: Sequence[str] | None = None) -> list[Path]:
        """Image files (:attr:`data_root` / id) of the rows ``split`` or ``ids`` select (:meth:`rows`)."""
        return [self.data_root / str(i) for i in self._column("ids")[self.rows(split, ids)]]

    def to_feature_set(self, *, require_complete: bool = True) -> FeatureSet:
        """Every row of the view in memory, as ``fit`` and ``analyze`` consume it.

        Parameters
        ----------
        require_complete : bool, default True
            Refuse a store whose first extraction has not finished.

        Returns
        -------
        FeatureSet
        """
        return self._read(lambda f: read_feature_set(f, self.path, require_complete=require_complete, rows=self._n))

    def to_pandas(self, split: str | Sequence[str] | None = None, *, features: str = "columns"):
        """The selected rows as a :class:`pandas.DataFrame` (pandas is needed only here).

        Parameters
        ----------
        split : str or list of str, optional
            Rows of these splits; all rows when None.
        features : {"columns", "array", "none"}, default "columns"
            One column per feature (named by :func:`feature_names`), one ``features`` column holding
            each row's vector, or no features.

        Returns
        -------
        pandas.DataFrame
            Columns ``id``, ``label`` (class name), ``split``, then the features; indexed by row number.
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Store.to_pandas needs pandas, which is not installed: pip install pandas") from None
        if features not in ("columns", "array", "none"):
            raise StoreError(f"features={features!r}: use 'columns', 'array' or 'none'")
        rows = self.rows(split)
        df = pd.DataFrame({"id": self._column("ids")[rows], "label": self.labels(names=True)[rows],
                           "split": self._column("split")[rows]}, index=pd.Index(rows, name="row"))
        if features == "none":
            return df
        X = self._take("features", rows).astype(np.float32, copy=False)
        if features == "array":
            df["features"] = list(X)
            return df
        return pd.concat([df, pd.DataFrame(X, index=df.index, columns=feature_names(self.fingerprint, X.shape[1]))],
                         axis=1)


def _identity(f: h5py.File, n: int) -> dict[str, np.ndarray]:
    """The first ``n`` rows' per-row columns that change when a row is rewritten (ids, labels, split, stats)."""
    return {name: read_strs(f[name], n) if name in ("ids", "split") else f[name][:n]
            for name in IDENTITY if name in f}


def _classes(f: h5py.File) -> list[str]:
    return list(decode_attrs({"classes": f.attrs["classes"]})["classes"])
