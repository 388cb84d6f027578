"""The HDF5 feature store: one file per (dataset, fingerprint). No torch.

Layout (any h5py user can read it; strings are UTF-8, read them with ``.asstr()``)::

    /features        float32|float16 (N, D), chunked, rows appended batch by batch
    /labels          int64 (N,)            index into attrs["classes"]
    /ids             str (N,)              image path relative to attrs["data_root"]
    /split           str (N,)              "train" | "val" | "test"
    /logits          float32 (N, K)        source-model logits (only with --with-logits)
    /failed/id       str (M,)              images that could not be read ...
    /failed/reason   str (M,)              ... and why
    attrs: format="featx-features", schema_version, classes (JSON list),
           fingerprint (JSON), backbone (JSON), data_root, dataset, layout,
           split_source, versions (JSON), created, updated, complete (bool)

A writer holds an exclusive lock on ``.<name>.lock`` beside the file, so a second
writer is refused instead of interleaving rows. Rows are flushed after every
batch; an interrupted run is resumed by skipping the ids already stored.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import h5py
import numpy as np

from .config import SCHEMA_VERSION, ExtractCfg
from .errors import StoreError, StoreLockedError

FORMAT = "featx-features"
_STR = h5py.string_dtype("utf-8")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape the numbers (only those already imported)."""
    import sys

    from . import __version__

    out = {"featx": __version__, "python": platform.python_version(), "numpy": np.__version__,
           "h5py": h5py.__version__}
    for mod in ("torch", "torchvision", "timm", "PIL"):
        m = sys.modules.get(mod)
        if m is not None:
            out[mod] = getattr(m, "__version__", "?")
    return out


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


def _decode_attrs(attrs) -> dict:
    out = {}
    for k, v in attrs.items():
        if isinstance(v, bytes):
            v = v.decode()
        if isinstance(v, np.bool_):
            v = bool(v)
        if k in ("classes", "fingerprint", "backbone", "versions") and isinstance(v, str):
            v = json.loads(v)
        out[k] = v
    return out


def _open_read(path: Path) -> h5py.File:
    if not path.exists():
        raise StoreError(f"{path}: no such feature store; run `featx extract` first")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise StoreError(f"{path}: not a readable HDF5 file ({str(exc).splitlines()[0]}); "
                         "re-run `featx extract` to rebuild it") from None
    if f.attrs.get("format") != FORMAT:
        f.close()
        raise StoreError(f"{path}: not a featx feature store (no format={FORMAT!r} attribute)")
    version = int(f.attrs.get("schema_version", 0))
    if version > SCHEMA_VERSION:
        f.close()
        raise StoreError(f"{path}: store schema v{version} is newer than this featx (v{SCHEMA_VERSION}); "
                         "upgrade featx")
    return f


def _summary_attrs(f: h5py.File) -> dict:
    """Decoded attributes plus the shapes a summary needs (reads no rows)."""
    attrs = _decode_attrs(f.attrs)
    attrs["n_rows"] = int(f["ids"].shape[0])
    attrs["dim"] = int(f["features"].shape[1])
    attrs["dtype"] = str(f["features"].dtype)
    attrs["n_failed"] = int(f["failed/id"].shape[0])
    return attrs


def read_attrs(path: str | Path) -> dict:
    """The store's attributes, decoded, with n_rows, dim, dtype, n_failed (cheap: reads no rows)."""
    with _open_read(Path(path)) as f:
        return _summary_attrs(f)


def load_features(path: str | Path, *, require_complete: bool = True, with_features: bool = True) -> FeatureSet:
    """Read a store. Raises :class:`StoreError` if it is missing, foreign or unfinished."""
    path = Path(path)
    with _open_read(path) as f:
        attrs = _summary_attrs(f)
        if require_complete and not attrs.get("complete", False):
            raise StoreError(f"{path}: extraction was interrupted (store not finalised); "
                             "re-run the same `featx extract` command to finish it")
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


@contextmanager
def store_lock(path: Path) -> Iterator[None]:
    """Exclusive, non-blocking writer lock on ``path`` (released when the process dies)."""
    lock_path = path.with_name(f".{path.name}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(lock_path, "a+")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreLockedError(f"{path}: another featx process is writing this store; wait for it to finish "
                                   "or choose another --out") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield
    finally:
        fh.close()


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
        f.attrs["updated"] = _now()
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
        self.f.attrs["updated"] = _now()
        self.f.flush()


def _repair(f: h5py.File) -> None:
    """Cut rows of a batch torn by a kill (ids are written last)."""
    n = f["ids"].shape[0]
    for name in ("features", "labels", "split", "logits"):
        if name in f and f[name].shape[0] != n:
            f[name].resize(n, axis=0)


def _create(path: Path, cfg: ExtractCfg, dim: int, logits_dim: int | None, meta: dict) -> h5py.File:
    tmp = path.with_name(path.name + ".tmp")
    f = h5py.File(tmp, "w")
    dtype = np.float16 if cfg.dtype == "float16" else np.float32
    rows = max(1, min(1024, (1 << 20) // max(1, dim * np.dtype(dtype).itemsize)))
    f.create_dataset("features", (0, dim), dtype=dtype, maxshape=(None, dim), chunks=(rows, dim))
    f.create_dataset("labels", (0,), dtype=np.int64, maxshape=(None,), chunks=(4096,))
    f.create_dataset("ids", (0,), dtype=_STR, maxshape=(None,), chunks=(4096,))
    f.create_dataset("split", (0,), dtype=_STR, maxshape=(None,), chunks=(4096,))
    if logits_dim:
        f.create_dataset("logits", (0, logits_dim), dtype=np.float32, maxshape=(None, logits_dim),
                         chunks=(max(1, (1 << 20) // (4 * logits_dim)), logits_dim))
    g = f.create_group("failed")
    for name in ("id", "reason"):
        g.create_dataset(name, (0,), dtype=_STR, maxshape=(None,), chunks=(1024,))
    f.attrs.update({
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "fingerprint": json.dumps(cfg.to_dict(), sort_keys=True),
        "classes": json.dumps(list(meta["classes"])),
        "backbone": json.dumps(meta.get("backbone", {}), sort_keys=True),
        "data_root": str(meta["data_root"]),
        "dataset": meta.get("dataset", ""),
        "layout": meta.get("layout", ""),
        "split_source": meta.get("split_source", ""),
        "versions": json.dumps(library_versions()),
        "created": _now(),
        "updated": _now(),
        "complete": False,
    })
    f.close()
    os.replace(tmp, path)
    return h5py.File(path, "a")


def check_compatible(attrs: dict, path: Path, cfg: ExtractCfg, classes: Sequence[str]) -> None:
    """Refuse to append to a store made with other settings or other classes."""
    if attrs.get("fingerprint") != cfg.to_dict():
        old = attrs.get("fingerprint") or {}
        new = cfg.to_dict()
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise StoreError(f"{path}: store was made with different settings ({', '.join(diff)}); "
                         "choose another --out or pass --overwrite")
    if list(attrs.get("classes", [])) != list(classes):
        raise StoreError(f"{path}: store has classes {attrs.get('classes')} but the data now has {list(classes)}; "
                         "choose another --out or pass --overwrite")


@contextmanager
def open_writer(path: str | Path, cfg: ExtractCfg, *, dim: int, logits_dim: int | None, meta: dict,
                overwrite: bool = False) -> Iterator[StoreWriter]:
    """Lock ``path`` and open it for appending, creating it if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with store_lock(path):
        f = None
        if path.exists() and not overwrite:
            try:
                f = h5py.File(path, "a")
            except OSError:
                aside = path.with_name(path.name + f".corrupt-{int(time.time())}")
                os.replace(path, aside)
                import warnings

                warnings.warn(f"{path}: unreadable partial store moved to {aside}; starting afresh")
            if f is not None:
                try:
                    if f.attrs.get("format") != FORMAT:
                        raise StoreError(f"{path}: exists and is not a featx store; choose another --out")
                    check_compatible(_decode_attrs(f.attrs), path, cfg, meta["classes"])
                    if f["features"].shape[1] != dim:
                        raise StoreError(f"{path}: width {f['features'].shape[1]} != {dim}; pass --overwrite")
                    _repair(f)
                except BaseException:
                    f.close()
                    raise
        if f is None:
            f = _create(path, cfg, dim, logits_dim, meta)
        else:
            f.attrs["complete"] = False
        try:
            yield StoreWriter(f)
        finally:
            f.close()


def covered_rows(path: Path, cfg: ExtractCfg, classes: Sequence[str], ids: Sequence[str]) -> int | None:
    """Row count of ``path`` if it is a finished store of ``cfg`` holding (or having failed) every id, else None."""
    if not path.exists():
        return None
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                return None
            attrs = _decode_attrs(f.attrs)
            if not attrs.get("complete") or attrs.get("fingerprint") != cfg.to_dict():
                return None
            if list(attrs.get("classes", [])) != list(classes):
                return None
            stored = f["ids"].asstr()[...]
            have = set(stored) | set(f["failed/id"].asstr()[...])
    except OSError:
        return None
    return len(stored) if have.issuperset(ids) else None


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
