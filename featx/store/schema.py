"""The store's layout: datasets, attributes, string encoding, and the checks that a file is a usable store."""

from __future__ import annotations

import errno
import json
import os
import platform
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import h5py
import numpy as np

from .. import env
from ..config import SCHEMA_VERSION, ExtractCfg
from ..errors import StoreError, causes
from ..files import is_disk_error

FORMAT = "featx-features"
STR = h5py.string_dtype("utf-8")
JSON_ATTRS = ("classes", "fingerprint", "backbone", "versions", "source", "numeric", "shard", "merged_from")
ROW_DATASETS = ("features", "labels", "ids", "split", "size", "mtime_ns", "hash", "logits")
FAILED_DATASETS = ("id", "reason", "size", "mtime_ns")


def is_lock_error(exc: OSError) -> bool:
    """An HDF5 file-locking refusal (another process's lock, or a file system without locks: errno 38)."""
    return "unable to lock file" in str(exc)


NOT_DAMAGE = ("unable to lock file", "already open", "locking flag", "Permission denied")


def is_access_error(exc: OSError) -> bool:
    """An open refused for who holds the file or may touch it, not for what is in it."""
    return exc.errno in (errno.EACCES, errno.EPERM, errno.EAGAIN) or any(m in str(exc) for m in NOT_DAMAGE)


def damage_of(exc: OSError) -> str | None:
    """What ``exc``, raised opening or reading a file, says is wrong with its content (its first line),
    or None when it is an access error (:func:`is_access_error`)."""
    return None if is_access_error(exc) else str(exc).splitlines()[0]


WRITE_CACHE = {"rdcc_nbytes": 0}  # no chunk cache when writing (see open_h5)


def open_h5(path: Path, mode: str = "r") -> h5py.File:
    """Open without HDF5 file locking: featx's own lock guards writers, and readers must never block them.

    HDF5 reads ``HDF5_USE_FILE_LOCKING`` once per process and lets it override this property; when
    it is TRUE and HDF5 refuses a lock (a reader holds the file, or a Lustre/NFS mount has no locks),
    that is a :class:`StoreError` saying so, never taken for a damaged store.

    Opened for writing, it has no chunk cache: each dataset write puts its chunks in the file at
    once, so a full disk refuses the large writes inside that write, before any of the batch's
    metadata is flushed; the file's structure on disk stays that of the last commit.
    """
    try:
        return h5py.File(path, mode, locking=False, **({} if mode == "r" else WRITE_CACHE))
    except OSError as exc:
        if not is_lock_error(exc):
            raise
        raise StoreError(f"{path}: HDF5 refused a file lock ({str(exc).splitlines()[0]}) because "
                         f"HDF5_USE_FILE_LOCKING={env.HDF5_USE_FILE_LOCKING.get()} is set; unset it or set "
                         "it to FALSE (featx guards writers with its own lock)") from None


_UNCLOSABLE: list[h5py.File] = []  # files HDF5 failed to close even writing nowhere: never freed under it


def is_write_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (or one it came from) is a failed write: a full disk, a quota, an I/O error, or any
    other error HDF5 reports as ``file write failed``."""
    return any("file write failed" in str(e) for e in causes(exc)) or is_disk_error(exc)


def _sink(size: int) -> int:
    """A file descriptor of an anonymous file of ``size`` bytes (in memory where the system allows)."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("featx-discarded-writes", getattr(os, "MFD_CLOEXEC", 0))
    else:  # pragma: no cover  (no memfd: macOS)
        fh = tempfile.TemporaryFile()
        fd = os.dup(fh.fileno())
        fh.close()
    os.ftruncate(fd, size)
    return fd


def close_discarding(f: h5py.File) -> None:
    """Close ``f`` after a failed write without writing to its file again.

    HDF5 cannot drop data it holds unwritten, and a close whose writes fail leaves it half-closed (a
    dataset freed under its file, or its metadata cache refusing every later flush): the segmentation
    fault a full disk used to end in. So the file descriptor HDF5 writes through is first pointed at an
    anonymous in-memory file: the close succeeds, its writes go nowhere, and the file on disk stays as the
    writes that reached it left it: the last commit, plus torn bytes past the committed rows that the next
    writer cuts. Should HDF5 still fail to close it, the handle is kept alive for the life of the process
    rather than freed under HDF5.
    """
    if not f.id.valid:
        return
    try:
        fd = f.id.get_vfd_handle()
        sink = _sink(os.fstat(fd).st_size)
        os.dup2(sink, fd, inheritable=False)  # HDF5's descriptor of the real file now names the sink
        os.close(sink)
    except (OSError, ValueError, TypeError, RuntimeError):
        pass  # not a POSIX descriptor (another HDF5 driver): close as it is
    try:
        f.close()
    except Exception:  # noqa: BLE001  (HDF5's state after a failed write: nothing more can be done with it)
        _UNCLOSABLE.append(f)


@contextmanager
def new_h5(path: Path) -> Iterator[h5py.File]:
    """A new HDF5 file at ``path`` (a temporary name) for the block; removed if the block fails, closed
    without writing again if a write failed (:func:`close_discarding`)."""
    try:
        f = h5py.File(path, "w", locking=False, **WRITE_CACHE)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    try:
        yield f
        f.flush()
    except BaseException:
        close_discarding(f)
        path.unlink(missing_ok=True)
        raise
    f.close()


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape the numbers (only those already imported)."""
    from .. import __version__

    out = {"featx": __version__, "python": platform.python_version(), "numpy": np.__version__,
           "h5py": h5py.__version__}
    for mod in ("torch", "torchvision", "timm", "PIL"):
        m = sys.modules.get(mod)
        if m is not None:
            out[mod] = getattr(m, "__version__", "?")
    return out


def encode_strs(values: Sequence[str]) -> list[bytes]:
    """Strings as stored: UTF-8, with non-UTF-8 file-name bytes kept as they were (``os.fsencode``)."""
    return [str(v).encode("utf-8", "surrogateescape") for v in values]


def read_strs(ds: h5py.Dataset, n: int | None = None, *, rows: np.ndarray | None = None) -> np.ndarray:
    """A string dataset's first ``n`` entries (or its increasing ``rows``) as an object array of str
    (odd bytes surrogate-escaped)."""
    sel = rows if rows is not None else slice(None) if n is None else slice(0, n)
    return np.array(ds.asstr(errors="surrogateescape")[sel], dtype=object).reshape(-1)


def read_failed(f: h5py.File) -> list[tuple[str, str, int, int]]:
    """The failed list: (id, reason, size, mtime_ns) per image that could not be read (v1: stats -1)."""
    g = f["failed"]
    names = [k for k in FAILED_DATASETS if k in g]
    n = min(g[k].shape[0] for k in names)
    ids, reasons = read_strs(g["id"], n), read_strs(g["reason"], n)
    stats = [g[k][:n].tolist() if k in g else [-1] * n for k in ("size", "mtime_ns")]
    return list(zip(ids, reasons, *stats))


def decode_attrs(attrs) -> dict:
    """HDF5 attributes as Python values (JSON attributes parsed)."""
    out = {}
    for k, v in attrs.items():
        if isinstance(v, bytes):
            v = v.decode()
        if isinstance(v, (np.bool_, np.integer)):
            v = v.item()
        if k in JSON_ATTRS and isinstance(v, str):
            v = json.loads(v)
        out[k] = v
    return out


def committed_rows(f: h5py.File) -> int:
    """Rows a reader may use: the ``rows`` attribute, written after the rows themselves (v1: ids length)."""
    if "rows" in f.attrs:
        return int(f.attrs["rows"])
    return int(f["ids"].shape[0])


def generation(f: h5py.File) -> int:
    """Bumped to odd before an in-place update of existing rows and to even after it."""
    return int(f.attrs.get("generation", 0))


def format_problem(attrs) -> str | None:
    """Why an open HDF5 file (its raw ``attrs``) is not a store this featx can read, or None."""
    if attrs.get("format") != FORMAT:
        return f"not a featx feature store (no format={FORMAT!r} attribute)"
    version = int(attrs.get("schema_version", 0))
    if version > SCHEMA_VERSION:
        return f"store schema v{version} is newer than this featx (v{SCHEMA_VERSION}); upgrade featx"
    return None


def structure_problem(f: h5py.File) -> str | None:
    """Why a featx store's datasets are damaged (missing, mis-shaped, shorter than the committed rows), or None."""
    try:
        needed = ["features", "labels", "ids", "split", "failed/id", "failed/reason"]
        if int(f.attrs.get("schema_version", 1)) >= 2:
            needed += ["size", "mtime_ns", "hash", "failed/size", "failed/mtime_ns"]
        missing = [name for name in needed if name not in f]
        if missing:
            return f"dataset(s) {', '.join('/' + m for m in missing)} missing"
        n = committed_rows(f)
        short = [name for name in ROW_DATASETS if name in f and f[name].shape[0] < n]
        if short:
            return f"dataset(s) {', '.join('/' + s for s in short)} shorter than its {n} committed rows"
        if f["features"].ndim != 2:
            return "/features is not a 2-D array"
        for name in JSON_ATTRS:
            if name in f.attrs:
                v = f.attrs[name]
                json.loads(v.decode() if isinstance(v, bytes) else v)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        return f"unreadable structure ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    return None


def fingerprint_diff(stored: dict, cfg: ExtractCfg) -> list[str]:
    """Fingerprint keys where a store differs from a request (a requested precision of "auto" matches any)."""
    new = cfg.to_dict()
    keys = set(stored) | set(new)
    if cfg.precision == "auto":
        keys.discard("precision")
    return sorted(k for k in keys if stored.get(k) != new.get(k))


def settings_problem(attrs: dict, cfg: ExtractCfg) -> str | None:
    """Why a store's decoded ``attrs`` cannot take rows of an extraction of ``cfg``, or None."""
    if int(attrs.get("schema_version", 1)) < SCHEMA_VERSION:
        return (f"store schema v{attrs.get('schema_version', 1)} (featx 0.1) records no file stats and cannot be "
                "extended; pass --overwrite to rebuild it (readers still read it)")
    diff = fingerprint_diff(attrs.get("fingerprint") or {}, cfg)
    if diff:
        return f"store was made with different settings ({', '.join(diff)})"
    return None


def summary_attrs(f: h5py.File) -> dict:
    """Decoded attributes plus the shapes a summary needs (reads no rows)."""
    attrs = decode_attrs(f.attrs)
    attrs["n_rows"] = committed_rows(f)
    attrs["dim"] = int(f["features"].shape[1])
    attrs["dtype"] = str(f["features"].dtype)
    attrs["n_failed"] = min(int(f[f"failed/{n}"].shape[0]) for n in ("id", "reason"))
    return attrs


def new_store(path: Path, cfg: ExtractCfg, dim: int, logits_dim: int | None, meta: dict) -> None:
    """Write an empty store at ``path`` (under a temporary name, then renamed into place)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with new_h5(tmp) as f:
        _layout(f, cfg, dim, logits_dim)
        f.attrs.update(_attrs(cfg, meta))
    os.replace(tmp, path)


BOOKKEEPING_CHUNK = 4096  # rows per chunk of the one-value-per-row datasets
VLEN_BYTES = 16  # what a variable-length string takes in its dataset (the string itself is in a heap)


def chunk_rows(row_bytes: int, most: int = 1024) -> int:
    """Rows per chunk of a 2-D row dataset whose rows take ``row_bytes``: chunks of about 1 MiB."""
    return max(1, min(most, (1 << 20) // max(1, row_bytes)))


def row_dataset_bytes(rows: int) -> int:
    """Bytes the chunks of the one-value-per-row datasets (labels, size, mtime_ns; ids, split, hash) take
    for ``rows`` rows, whole chunks counted (their strings are extra)."""
    chunks = -(-rows // BOOKKEEPING_CHUNK)
    return chunks * BOOKKEEPING_CHUNK * (3 * 8 + 3 * VLEN_BYTES)


def _layout(f: h5py.File, cfg: ExtractCfg, dim: int, logits_dim: int | None) -> None:
    dtype = np.float16 if cfg.dtype == "float16" else np.float32
    rows = chunk_rows(dim * np.dtype(dtype).itemsize)
    f.create_dataset("features", (0, dim), dtype=dtype, maxshape=(None, dim), chunks=(rows, dim))
    for name, dt in (("labels", np.int64), ("ids", STR), ("split", STR), ("size", np.int64), ("mtime_ns", np.int64),
                     ("hash", STR)):
        f.create_dataset(name, (0,), dtype=dt, maxshape=(None,), chunks=(BOOKKEEPING_CHUNK,))
    if logits_dim:
        f.create_dataset("logits", (0, logits_dim), dtype=np.float32, maxshape=(None, logits_dim),
                         chunks=(chunk_rows(4 * logits_dim, most=1 << 30), logits_dim))
    g = f.create_group("failed")
    for name in FAILED_DATASETS:
        g.create_dataset(name, (0,), dtype=np.int64 if name in ("size", "mtime_ns") else STR, maxshape=(None,),
                         chunks=(1024,))


def _attrs(cfg: ExtractCfg, meta: dict) -> dict:
    return {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "rows": 0,
        "generation": 0,
        "fingerprint": json.dumps(cfg.to_dict(), sort_keys=True),
        "classes": json.dumps(list(meta["classes"])),
        "backbone": json.dumps(meta.get("backbone", {}), sort_keys=True),
        "data_root": str(meta["data_root"]),
        "dataset": meta.get("dataset", ""),
        "layout": meta.get("layout", ""),
        "split_source": meta.get("split_source", ""),
        "source": json.dumps(meta.get("source", {}), sort_keys=True),
        "numeric": json.dumps(meta.get("numeric", {}), sort_keys=True),
        "hash": meta.get("hash", ""),
        "versions": json.dumps(library_versions()),
        "created": now(),
        "updated": now(),
        "complete": False,
        **({"shard": json.dumps(meta["shard"], sort_keys=True)} if meta.get("shard") else {}),
    }
