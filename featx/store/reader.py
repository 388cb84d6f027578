"""Reading stores: :func:`load_features` into a :class:`FeatureSet`, :func:`read_attrs`, and
:func:`read_snapshot`, the consistent read that every featx reader goes through.

Plain h5py readers get the same guarantee by opening with ``locking=False`` and using the
first ``attrs["rows"]`` rows of each dataset (see docs/store.md, "What the store guarantees").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

import h5py
import numpy as np

from ..data.locate import ImageLocator
from ..data.tars import TarMember
from ..errors import StoreError
from .lock import writer_active
from .schema import (damage_of, format_problem, generation, open_h5, read_failed, read_strs, structure_problem,
                     summary_attrs)

T = TypeVar("T")


@dataclass
class FeatureSet:
    """A store read into memory: what ``fit`` and ``analyze`` consume."""

    path: Path
    features: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    split: np.ndarray
    classes: list[str]
    fingerprint: dict
    logits: np.ndarray | None
    failed: list[tuple[str, str]]
    data_root: Path
    attrs: dict
    _locator: ImageLocator | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def complete(self) -> bool:
        return bool(self.attrs.get("complete", False))

    @property
    def name(self) -> str:
        return self.path.stem

    def image_path(self, i: int) -> Path:
        return self.data_root / str(self.ids[i])

    def image_source(self, i: int) -> Path | TarMember | None:
        """The image of row ``i`` for the pictures featx draws: a file under :attr:`data_root` or a member of
        the store's tar shards; None when it cannot be located (:class:`~featx.data.locate.ImageLocator`;
        symlinked folders leading outside the data root are followed, as discovery follows them)."""
        if self._locator is None:
            self._locator = ImageLocator.for_store({**self.attrs, "data_root": str(self.data_root)}, self.ids,
                                                   links_outside=True)
        return self._locator.find(int(i))

    def mask(self, split: str) -> np.ndarray:
        return self.split == split

    def __len__(self) -> int:
        return len(self.ids)


ERROR_WAIT_S = 2.0  # how long a reader retries a file that looks damaged (it may be mid-write)
UPDATE_WAIT_S = 30.0  # how long it waits for an in-place update of existing rows to finish


def _check_path(path: Path) -> None:
    if not path.exists():
        raise StoreError(f"{path}: no such feature store; run `featx extract` first")
    if path.is_dir():
        raise StoreError(f"{path}: is a folder, not a feature store; pass the .h5 file written by `featx extract`")


def read_snapshot(path: str | Path, read: Callable[[h5py.File], T], *, wait_updates: bool = True) -> T:
    """``read(f)`` on a consistent view of the store while a writer may be appending or updating it.

    Readers see only committed rows (``attrs["rows"]``, written after the rows). An in-place update
    (changed files, relabels) brackets itself with an odd ``attrs["generation"]``; a read that saw an
    odd or changed generation is repeated (``wait_updates=False``: read once, as a writer planning
    to repair the store does). An odd generation with no writer alive is an interrupted update,
    reported at once. A file that fails structural checks is retried for ``ERROR_WAIT_S`` (a write
    may be in flight) and then reported as damaged.
    """
    path = Path(path)
    _check_path(path)
    start, delay, problem = time.monotonic(), 0.01, ""
    while True:
        try:
            with _open_checked(path) as f:
                gen = generation(f)
                result = read(f) if gen % 2 == 0 or not wait_updates else None
            if not wait_updates:
                return result
            if gen % 2 == 0:
                with _open_checked(path) as f:
                    if generation(f) == gen:
                        return result
            elif not writer_active(path):
                raise StoreError(f"{path}: an update of this store was interrupted (no featx process is writing "
                                 "it); re-run the same `featx extract` command to finish it")
            waited, problem, limit = time.monotonic() - start, "", UPDATE_WAIT_S
        except _Damaged as exc:
            waited, problem, limit = time.monotonic() - start, str(exc), ERROR_WAIT_S
        if waited > limit:
            if problem:
                raise DamagedStoreError(f"{path}: damaged feature store ({problem}); re-run `featx extract` (it keeps "
                                 "this file aside as .corrupt-<time> and rebuilds)")
            raise StoreError(f"{path}: an update of this store has not finished for {limit:.0f} s; if no featx "
                             "extract is running, re-run the extract command to finish it")
        time.sleep(delay)
        delay = min(0.2, delay * 2)


class _Damaged(Exception):
    pass


class DamagedStoreError(StoreError):
    """The file is a featx store whose structure is broken (a writer keeps it aside and rebuilds)."""


def _open_checked(path: Path) -> h5py.File:
    try:
        f = open_h5(path, "r")
    except OSError as exc:
        damage = damage_of(exc)
        if damage is None:
            raise StoreError(f"{path}: cannot be read ({str(exc).splitlines()[0]})") from None
        raise _Damaged(f"not a readable HDF5 file: {damage}") from None
    problem = format_problem(f.attrs)
    if problem:
        f.close()
        raise StoreError(f"{path}: {problem}")
    problem = structure_problem(f)
    if problem:
        f.close()
        raise _Damaged(problem)
    return _Guarded(f)


class _Guarded:
    """Context manager over an open file turning read errors into :class:`_Damaged` (retried)."""

    def __init__(self, f: h5py.File):
        self.f = f

    def __enter__(self) -> h5py.File:
        return self.f

    def __exit__(self, kind, exc, tb):
        self.f.close()
        if exc is not None and isinstance(exc, (OSError, KeyError, ValueError, RuntimeError, TypeError)):
            raise _Damaged(str(exc).splitlines()[0] if str(exc) else kind.__name__) from None
        return False


def checked_attrs(f: h5py.File, path: Path, require_complete: bool) -> dict:
    """The decoded attributes of an open store (:func:`summary_attrs`); StoreError if ``require_complete`` and
    its first extraction has not finished."""
    attrs = summary_attrs(f)
    if require_complete and not attrs.get("complete", False):
        if writer_active(path):
            raise StoreError(f"{path}: its first extraction is still running ({attrs['n_rows']} rows so far); "
                             "wait for it to finish")
        raise StoreError(f"{path}: extraction was interrupted (store not finalised); "
                         "re-run the same `featx extract` command to finish it")
    return attrs


def read_attrs(path: str | Path, *, require_complete: bool = False) -> dict:
    """The store's attributes, decoded, with n_rows, dim, dtype, n_failed (cheap: reads no rows)."""
    return read_snapshot(path, lambda f: checked_attrs(f, Path(path), require_complete))


def read_feature_set(f: h5py.File, path: Path, *, require_complete: bool = True, with_features: bool = True,
                     rows: int | None = None) -> FeatureSet:
    """The :class:`FeatureSet` of an open store (inside :func:`read_snapshot`): its committed rows, or the
    first ``rows`` of them (a :class:`~featx.store.handle.Store` reads the rows it was opened with)."""
    attrs = checked_attrs(f, path, require_complete)
    n = attrs["n_rows"] if rows is None else min(rows, attrs["n_rows"])
    feats = f["features"][:n].astype(np.float32, copy=False) if with_features else np.empty((0, 0), np.float32)
    return FeatureSet(
        path=path,
        features=feats,
        labels=f["labels"][:n].astype(np.int64),
        ids=read_strs(f["ids"], n),
        split=read_strs(f["split"], n),
        classes=list(attrs["classes"]),
        fingerprint=attrs.get("fingerprint", {}),
        logits=f["logits"][:n].astype(np.float32) if "logits" in f else None,
        failed=[(i, r) for i, r, _, _ in read_failed(f)],
        data_root=Path(attrs.get("data_root", ".")),
        attrs=attrs,
    )


def load_features(path: str | Path, *, require_complete: bool = True, with_features: bool = True) -> FeatureSet:
    """Read a store's committed rows. Raises :class:`StoreError` if it is missing, foreign, damaged or unfinished."""
    path = Path(path)
    return read_snapshot(path, lambda f: read_feature_set(f, path, require_complete=require_complete,
                                                          with_features=with_features))
