"""Reading stores: :func:`load_features` into a :class:`FeatureSet`, :func:`read_attrs`, and the cache-hit test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from ..config import ExtractCfg
from ..errors import StoreError
from .schema import format_problem, settings_problem, summary_attrs


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

    @property
    def complete(self) -> bool:
        return bool(self.attrs.get("complete", False))

    @property
    def name(self) -> str:
        return self.path.stem

    def image_path(self, i: int) -> Path:
        return self.data_root / str(self.ids[i])

    def mask(self, split: str) -> np.ndarray:
        return self.split == split

    def __len__(self) -> int:
        return len(self.ids)


def open_store(path: Path) -> h5py.File:
    """Open a store read-only, or raise :class:`StoreError` saying why it cannot be read."""
    if not path.exists():
        raise StoreError(f"{path}: no such feature store; run `featx extract` first")
    if path.is_dir():
        raise StoreError(f"{path}: is a folder, not a feature store; pass the .h5 file written by `featx extract`")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise StoreError(f"{path}: not a readable HDF5 file ({str(exc).splitlines()[0]}); "
                         "re-run `featx extract` to rebuild it") from None
    problem = format_problem(f.attrs)
    if problem:
        f.close()
        raise StoreError(f"{path}: {problem}")
    return f


def _attrs(f: h5py.File, path: Path, require_complete: bool) -> dict:
    attrs = summary_attrs(f)
    if require_complete and not attrs.get("complete", False):
        raise StoreError(f"{path}: extraction was interrupted (store not finalised); "
                         "re-run the same `featx extract` command to finish it")
    return attrs


def read_attrs(path: str | Path, *, require_complete: bool = False) -> dict:
    """The store's attributes, decoded, with n_rows, dim, dtype, n_failed (cheap: reads no rows)."""
    with open_store(Path(path)) as f:
        return _attrs(f, Path(path), require_complete)


def load_features(path: str | Path, *, require_complete: bool = True, with_features: bool = True) -> FeatureSet:
    """Read a store. Raises :class:`StoreError` if it is missing, foreign or unfinished."""
    path = Path(path)
    with open_store(path) as f:
        attrs = _attrs(f, path, require_complete)
        feats = f["features"][...].astype(np.float32) if with_features else np.empty((0, 0), np.float32)
        return FeatureSet(
            path=path,
            features=feats,
            labels=f["labels"][...].astype(np.int64),
            ids=np.array(f["ids"].asstr()[...], dtype=object),
            split=np.array(f["split"].asstr()[...], dtype=object),
            classes=list(attrs["classes"]),
            fingerprint=attrs.get("fingerprint", {}),
            logits=f["logits"][...].astype(np.float32) if "logits" in f else None,
            failed=list(zip(f["failed/id"].asstr()[...], f["failed/reason"].asstr()[...])),
            data_root=Path(attrs.get("data_root", ".")),
            attrs=attrs,
        )


def covered_rows(path: Path, cfg: ExtractCfg, classes: Sequence[str], ids: Sequence[str]) -> int | None:
    """Row count of ``path`` if it is a finished store of ``cfg`` holding (or having failed) every id, else None."""
    if not path.is_file():
        return None
    try:
        with open_store(path) as f:
            attrs = summary_attrs(f)
            if not attrs.get("complete") or settings_problem(attrs, cfg, classes):
                return None
            stored = f["ids"].asstr()[...]
            have = set(stored) | set(f["failed/id"].asstr()[...])
    except StoreError:
        return None
    return len(stored) if have.issuperset(ids) else None
