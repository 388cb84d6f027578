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

A full disk (or a quota, or an I/O error) is one :class:`~featx.errors.DiskFullError` naming the store,
the free space and the rows kept. Each write first checks that its estimated growth fits (so it is
normally refused before HDF5 writes anything); a write that fails anyway is abandoned without writing
again (:func:`~featx.store.schema.close_discarding`), which leaves the last commit intact. Every dataset
stays open while writing: a dataset closed by garbage collection would flush inside a deallocator, where
a failed write cannot be reported and leaves HDF5 half-closed.
"""

from __future__ import annotations

import errno
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
from ..errors import StoreError, causes
from ..faults import fault
from ..files import disk_error, free_bytes, is_disk_error, unreported_disk_error
from .lock import store_lock
from .schema import (FAILED_DATASETS, JSON_ATTRS, ROW_DATASETS, close_discarding, committed_rows, damage_of,
                     decode_attrs, encode_strs, format_problem, generation, is_access_error, is_write_failure,
                     library_versions, new_h5, new_store, now, open_h5, read_failed, settings_problem,
                     structure_problem)

COPY_ROWS = 1 << 15
APPEND_ORDER = ("features", "logits", "labels", "split", "size", "mtime_ns", "hash", "ids")  # ids last
SLACK = 64 << 10  # bytes of HDF5 bookkeeping (index nodes, string heaps, headers) allowed for beside a write
STRING_OVERHEAD = 32  # bytes a variable-length string costs beyond its own (heap object header, alignment)


class NoRoom(OSError):
    """A write refused before it started: its estimated growth (``need`` bytes) exceeds the free space."""

    def __init__(self, path: Path, need: int):
        super().__init__(errno.ENOSPC, "No space left on device", str(path))
        self.need = need


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
        self.f: h5py.File | None = None
        self._ds: dict[str, h5py.Dataset] = {}
        self._chunks: dict[str, tuple[int, int]] = {}
        if f is not None:
            self._attach(f)

    def _attach(self, f: h5py.File) -> None:
        """Write to ``f``, holding each of its datasets open until it is closed (see the module's notes)."""
        self.f, self._ds = f, {}

        def hold(name: str, obj) -> None:  # returns None: visititems stops at the first other value
            if isinstance(obj, h5py.Dataset):
                self._ds[name] = obj

        f.visititems(hold)
        self._chunks = {name: (ds.chunks[0], int(np.prod(ds.chunks)) * ds.id.get_type().get_size())
                        for name, ds in self._ds.items() if name in ROW_DATASETS and ds.chunks}

    def close(self, *, discard: bool = False) -> None:
        """Close the file; with ``discard`` (after a failed write) without writing to it again."""
        f, held = self.f, self._ds  # the datasets stay referenced until the file is closed: dropped
        self.f, self._ds = None, {}  # before, each would close itself, flushing (see the module's notes)
        if f is None or not f.id.valid:
            return
        if discard:
            close_discarding(f)
            return
        try:
            f.flush()  # the close's own writes, where a failure can still be handled
        except BaseException:
            close_discarding(f)
            raise
        f.close()
        del held

    def _room(self, need: int) -> None:
        """Refuse (:class:`NoRoom`) a write of about ``need`` bytes (plus :data:`SLACK`) that will not fit."""
        need += SLACK
        free = free_bytes(self.target)
        if free is not None and need > free:
            raise NoRoom(self.target, need)

    def _growth(self, n: int, k: int, strings: int) -> int:
        """Bytes appending ``k`` rows after ``n`` adds: the chunks it starts and its strings."""
        need = strings
        for rows, nbytes in self._chunks.values():
            need += (-(-(n + k) // rows) + (n // -rows)) * nbytes  # ceil((n+k)/rows) - ceil(n/rows) new chunks
        return need

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
        self._room(0)
        new_store(self.target, cfg, dim, logits_dim, meta)
        self._attach(open_h5(self.target, "a"))

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
        self._room(self._growth(n, k, _string_bytes(ids, split, hashes or ())))
        for name in APPEND_ORDER:
            if name not in self._ds or (name == "logits" and logits is None):
                continue
            ds = self._ds[name]
            ds.resize(n + k, axis=0)
            ds[n:] = _strs_or_ints(name, columns[name])
            if name == "features":
                fault("append:features")
        f.flush()  # the rows' chunks are in the file already (no chunk cache: see open_h5); this is metadata
        fault("append:flush")
        f.attrs["rows"] = n + k
        f.attrs["updated"] = now()
        f.flush()

    def replace(self, rows: Sequence[int], features: np.ndarray, logits: np.ndarray | None, *,
                size: Sequence[int], mtime_ns: Sequence[int], hashes: Sequence[str] | None = None) -> None:
        """Overwrite the features of existing rows in place (their files changed); stats last."""
        order = np.argsort(rows)
        rows = np.asarray(rows)[order]
        self._room(_string_bytes(hashes or ()))
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
        self._room(_string_bytes(hashes or ()))
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
        self._room(_string_bytes(split if split is not None else (), classes))
        with self._updating() as f:
            f.attrs["classes"] = json.dumps(list(classes))
            if labels is not None:
                f["labels"][:n] = labels
            if split is not None:
                f["split"][:n] = encode_strs(split)

    def set_failures(self, failures: Sequence[tuple[str, str, int, int]]) -> None:
        """The whole failed list: (id, reason, size, mtime_ns) per image that could not be read."""
        self._room(_string_bytes([row[0] for row in failures], [row[1] for row in failures]))
        with self._updating() as f:
            for j, name in enumerate(FAILED_DATASETS):
                ds = f[f"failed/{name}"]
                ds.resize(len(failures), axis=0)
                if failures:
                    ds[:] = _strs_or_ints(name, [row[j] for row in failures])

    def failures(self) -> list[tuple[str, str, int, int]]:
        return read_failed(self.f)

    def set_attrs(self, **attrs) -> None:
        self._room(0)
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
        self._room(os.stat(self.target).st_size * int(keep.sum()) // max(1, n))
        with new_h5(tmp) as g:
            _copy_rows(self.f, g, keep)
            g.attrs["rows"] = int(keep.sum())
            g.attrs["generation"] = 0
        self.close()
        fault("drop:replace")
        os.replace(tmp, self.target)
        self._attach(open_h5(self.target, "a"))

    def finalize(self, **attrs) -> None:
        """Mark the store complete (it holds every image of its data as of this run)."""
        f = self.f
        self._room(0)
        f.attrs["versions"] = json.dumps(library_versions())
        fault("finalize:attrs")
        self.set_attrs(**attrs)
        f.attrs["complete"] = True
        f.attrs["updated"] = now()
        f.flush()


def _string_bytes(*columns) -> int:
    """Bytes the strings of ``columns`` take in a store (encoded, plus their heap overhead)."""
    return sum(len(str(v).encode("utf-8", "surrogateescape")) + STRING_OVERHEAD for col in columns for v in col)


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
    except OSError as exc:
        return damage_of(exc)


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
        if is_disk_error(exc):
            raise disk_error(path, exc, kept=_kept(path)) from exc
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
        try:
            _cut(f, n)
        except Exception as exc:  # noqa: BLE001  (HDF5 cannot follow the file's own structure)
            if is_write_failure(exc):
                raise
            close_discarding(f)  # write nothing more through a view HDF5 lost its way in
            return _salvage(path, n, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except BaseException as exc:
        if f.id.valid:
            close_discarding(f) if is_write_failure(exc) else f.close()
        raise
    return f


def _cut(f: h5py.File, n: int) -> None:
    """Cut a torn batch (rows past the ``n`` committed ones) and close a killed update's bracket."""
    held = [f[name] for name in ROW_DATASETS if name in f]  # open until flushed (see the module's notes)
    for ds in held:
        if ds.shape[0] != n:
            ds.resize(n, axis=0)
    if generation(f) % 2:
        f.attrs["generation"] = generation(f) + 1  # a killed update: this run re-applies it
    f.flush()


def _salvage(path: Path, n: int, why: str) -> h5py.File | None:
    """A store whose torn tail HDF5 cannot cut (a write stopped inside a flush left its index pointing past
    the file): its ``n`` committed rows are copied into a new file that replaces it, as :meth:`drop` does.
    Only if even they cannot be read is it kept aside as damaged (never deleted) and a new store started."""
    tmp = path.with_name(f".{path.name}.compact-{os.getpid()}")
    try:
        with open_h5(path, "r") as src, new_h5(tmp) as dst:
            _copy_rows(src, dst, np.ones(n, bool))
            dst.attrs["rows"] = n
            dst.attrs["generation"] = 0
    except Exception as exc:  # noqa: BLE001
        tmp.unlink(missing_ok=True)
        if is_write_failure(exc):
            raise
        _move_aside(path, f"{why}; its {n} committed rows could not be read either "
                          f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
        return None
    os.replace(tmp, path)
    warnings.warn(f"{path}: its torn last batch could not be cut ({why}); its {n} committed rows were copied into "
                  "a new file, which replaces it")
    return open_h5(path, "a")


def _kept(path: Path) -> str:
    """What a failed write left of the store at ``path``: its committed rows, read back from the file."""
    if not path.exists():
        return "no store was written"
    try:
        with open_h5(path, "r") as f:
            n = committed_rows(f)
    except (OSError, StoreError, KeyError, ValueError):
        return "the rows committed before are kept"
    return f"{n} row{'s' * (n != 1)} committed {'are' if n != 1 else 'is'} kept"


def _need(exc: BaseException) -> int | None:
    """The estimate a :class:`NoRoom` refusal (``exc`` or one it came from) was made on."""
    return next((e.need for e in causes(exc) if isinstance(e, NoRoom)), None)


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
        try:
            w = StoreWriter(staged if overwrite else path,
                            _reopen(path, cfg) if path.exists() and not overwrite else None)
        except Exception as exc:
            if unreported_disk_error(exc):
                raise disk_error(path, exc, kept=_kept(path)) from exc
            raise
        try:
            yield w
            w.close()
        except BaseException as exc:
            w.close(discard=is_write_failure(exc))
            if overwrite:
                staged.unlink(missing_ok=True)
            if unreported_disk_error(exc):
                kept = "the store is as it was before this run" if overwrite and path.exists() else _kept(path)
                raise disk_error(path, exc, kept=kept, need=_need(exc)) from exc
            raise
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
