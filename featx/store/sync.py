"""What a store holds versus what the data now is: :func:`diff` gives the :class:`Delta` a run must apply.

Files are compared by size and modification time (ns), read from the same directory walk
that finds them, so checking a tree costs one ``stat`` per file. A store made with
``--hash`` also keeps a content hash per row: a file whose stats changed but whose bytes
did not (a copy, a ``touch``) only gets its stats refreshed. Labels and splits are
re-derived from the data every run and rewritten in place when they differ; no features
are recomputed for that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ..data.dataset import ImageDataset
from ..data.discover import file_digest
from .schema import committed_rows, decode_attrs, read_failed, read_strs

MISSING_POLICIES = ("drop", "keep")


@dataclass
class StoreRows:
    """A store's per-row bookkeeping (no features): what :func:`diff` compares with the data."""

    ids: np.ndarray
    names: np.ndarray  # class name per row
    split: np.ndarray
    size: np.ndarray
    mtime_ns: np.ndarray
    hashes: np.ndarray
    failed: dict[str, tuple[str, int, int]]  # id -> (reason, size, mtime_ns)
    classes: list[str]
    data_root: str
    hash_algo: str
    source: dict

    @classmethod
    def read(cls, f: h5py.File) -> "StoreRows":
        attrs = decode_attrs(f.attrs)
        n = committed_rows(f)
        classes = list(attrs["classes"])
        labels = f["labels"][:n]
        failed = {image_id: (reason, size, mtime) for image_id, reason, size, mtime in read_failed(f)}
        return cls(ids=read_strs(f["ids"], n), names=np.array(classes, dtype=object)[labels] if n else
                   np.zeros(0, object), split=read_strs(f["split"], n), size=f["size"][:n], mtime_ns=f["mtime_ns"][:n],
                   hashes=read_strs(f["hash"], n), failed=failed, classes=classes,
                   data_root=str(attrs.get("data_root", "")), hash_algo=str(attrs.get("hash", "")),
                   source=attrs.get("source") or {})


@dataclass
class Delta:
    """What differs between a store and the data. Indices: ``rows`` into the store, ``items`` into the dataset."""

    new: list[int] = field(default_factory=list)  # items not in the store, never tried
    changed: list[tuple[int, int]] = field(default_factory=list)  # (row, item): the file changed since
    retry: list[int] = field(default_factory=list)  # items that failed before and get another try
    missing: list[int] = field(default_factory=list)  # rows whose file is gone
    forgotten: list[str] = field(default_factory=list)  # failed ids whose file is gone
    restat: list[tuple[int, int]] = field(default_factory=list)  # (row, item): same bytes, new stats
    rehash: list[tuple[int, int]] = field(default_factory=list)  # (row, item): unchanged rows lacking a hash
    relabelled: int = 0
    resplit: int = 0
    classes: list[str] = field(default_factory=list)  # the store's classes after the run
    labels: np.ndarray | None = None  # per store row, into ``classes`` (None: unchanged)
    split: np.ndarray | None = None  # per store row (None: unchanged)
    attrs: dict = field(default_factory=dict)  # attributes to rewrite (source, data root, hash)
    kept: int = 0  # missing rows kept (--missing keep)
    digests: dict[int, str] = field(default_factory=dict)  # item -> content hash computed while comparing

    @property
    def to_extract(self) -> list[int]:
        """Items to run through the network: new, retried and changed ones."""
        return sorted(self.new + self.retry + [item for _, item in self.changed])

    @property
    def metadata_only(self) -> bool:
        return not (self.new or self.retry or self.changed)

    @property
    def empty(self) -> bool:
        return self.metadata_only and not (self.missing or self.forgotten or self.restat or self.rehash
                                           or self.labels is not None or self.split is not None or self.attrs)

    def summary(self) -> dict[str, int]:
        return {"new": len(self.new), "changed": len(self.changed), "retried": len(self.retry),
                "missing": len(self.missing), "forgotten_failures": len(self.forgotten),
                "relabelled": self.relabelled, "resplit": self.resplit, "restat": len(self.restat),
                "hashed": len(self.rehash), "kept_missing": self.kept}


def diff(have: StoreRows, ds: ImageDataset, *, missing: str = "drop", retry_failed: bool = False,
         hash_algo: str = "") -> Delta:
    """The :class:`Delta` that brings a store holding ``have`` up to date with ``ds``.

    ``missing`` says what happens to rows whose file is gone: ``drop`` (listed in ``Delta.missing``)
    or ``keep`` (counted in ``Delta.kept``). ``hash_algo`` turns content hashes on for this store.
    """
    d = Delta()
    item_of = {image_id: j for j, image_id in enumerate(ds.ids)}
    row_of = {image_id: i for i, image_id in enumerate(have.ids)}
    algo = have.hash_algo or hash_algo
    root = Path(ds.root)
    for i, image_id in enumerate(have.ids):
        j = item_of.get(image_id)
        if j is None:
            d.missing.append(i)
        elif (int(ds.size[j]), int(ds.mtime_ns[j])) != (int(have.size[i]), int(have.mtime_ns[i])):
            if algo and have.hashes[i] and ds.size[j] >= 0:
                d.digests[j] = file_digest(root / image_id)
            (d.restat if d.digests.get(j) == have.hashes[i] else d.changed).append((i, j))
        elif algo and not have.hashes[i]:
            d.rehash.append((i, j))
    for image_id, (_, size, mtime) in have.failed.items():
        j = item_of.get(image_id)
        if j is None:
            d.forgotten.append(image_id)
        elif retry_failed or (int(ds.size[j]), int(ds.mtime_ns[j])) != (size, mtime):
            d.retry.append(j)
    d.new = [j for j, image_id in enumerate(ds.ids) if image_id not in row_of and image_id not in have.failed]
    if missing == "keep":
        d.kept, d.missing = len(d.missing), []
    _relabel(d, have, ds)
    if str(ds.root) != have.data_root:
        d.attrs["data_root"] = str(ds.root)
    if ds.source != have.source:
        d.attrs["source"] = ds.source
        d.attrs["layout"] = ds.layout
        d.attrs["split_source"] = ds.split_source
    if algo != have.hash_algo:
        d.attrs["hash"] = algo
    return d


def _relabel(d: Delta, have: StoreRows, ds: ImageDataset) -> None:
    """Labels and splits of the rows that stay, re-derived from the data; the store's new class list."""
    dropped = set(d.missing)
    item_of = {image_id: j for j, image_id in enumerate(ds.ids)}
    names, split = have.names.copy(), have.split.copy()
    kept_names = set()
    for i, image_id in enumerate(have.ids):
        j = item_of.get(image_id)
        if j is None:
            if i not in dropped:
                kept_names.add(names[i])
            continue
        name, s = ds.classes[ds.labels[j]], ds.split[j]
        d.relabelled += names[i] != name
        d.resplit += split[i] != s
        names[i], split[i] = name, s
    d.classes = sorted(set(ds.classes) | kept_names)
    if d.relabelled or d.classes != have.classes:
        index = {c: k for k, c in enumerate(d.classes)}
        d.labels = np.array([index.get(n, -1) for n in names], dtype=np.int64)
    if d.resplit:
        d.split = split
