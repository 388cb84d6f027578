"""Merging shard stores into one store, equal to what a single process would have written.

A shard store is ``<store>.shard-<i>-of-<n>.h5`` with a ``shard`` attribute ``{index, count, store}``.
:func:`merge_shards` checks that the set is whole (every index of ``n``, each complete) and
consistent (fingerprint, classes, data root, label and split source), then **copies** the rows
in id order (the order a single run writes) into a new file that replaces the store atomically
(after checking that the shards' size is free there: a full disk fails before anything is written).
A copy, not HDF5 virtual datasets: the merged store is self-contained, survives deleting the
shards, and is read and extended like any other store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from ..config import ExtractCfg
from ..errors import StoreError, StoreLockedError
from ..files import check_free
from .lock import writer_active
from .reader import read_attrs
from .schema import open_h5, read_failed, read_strs
from .writer import COPY_ROWS, SLACK, open_writer

SHARD_FILE = re.compile(r"^(?P<stem>.+)\.shard-(?P<index>\d+)-of-(?P<count>\d+)\.h5$")
MATCHING = ("fingerprint", "classes", "data_root", "source", "hash")  # what every shard must share


def shard_path(store: Path, index: int, count: int) -> Path:
    """Where shard ``index`` of ``count`` of ``store`` lives: beside it."""
    width = max(3, len(str(count - 1)))
    return store.with_name(f"{store.stem}.shard-{index:0{width}d}-of-{count:0{width}d}.h5")


def shard_files(store: Path) -> dict[int, tuple[int, Path]]:
    """Shard stores found beside ``store``: index -> (count, path)."""
    found: dict[int, tuple[int, Path]] = {}
    pattern = re.sub(r"([*?\[])", r"[\1]", store.stem) + ".shard-*-of-*.h5"
    for p in sorted(store.parent.glob(pattern)):
        m = SHARD_FILE.match(p.name)
        if m and m.group("stem") == store.stem:
            found[int(m.group("index"))] = (int(m.group("count")), p)
    return found


@dataclass
class MergeResult:
    path: Path
    shards: int
    rows: int
    failures: int


@dataclass
class ShardInfo:
    path: Path
    attrs: dict

    @property
    def index(self) -> int:
        return int(self.attrs["shard"]["index"])

    @property
    def count(self) -> int:
        return int(self.attrs["shard"]["count"])

    @property
    def stamp(self) -> dict:
        """What identifies this shard's content: the merged store records it to know it is current."""
        return {"file": self.path.name, "rows": int(self.attrs["n_rows"]), "updated": str(self.attrs.get("updated"))}


def is_merge_of(attrs: dict, infos: Sequence[ShardInfo]) -> bool:
    """Whether a store's ``attrs`` say it is the complete merge of exactly these shards as they are now."""
    return bool(attrs.get("complete")) and attrs.get("merged_from") == [i.stamp for i in infos]


def read_shard(path: Path) -> ShardInfo:
    attrs = read_attrs(path)
    if not isinstance(attrs.get("shard"), dict):
        raise StoreError(f"{path}: not a shard store (no shard attribute); merge takes the <store>.shard-i-of-n.h5 "
                         "files that `featx extract --shard i/n` writes")
    return ShardInfo(path, attrs)


def shard_state(info: ShardInfo) -> str:
    """done | running | interrupted."""
    if info.attrs.get("complete"):
        return "done"
    return "running" if writer_active(info.path) else "interrupted"


def check_shards(infos: Sequence[ShardInfo]) -> None:
    """Refuse a set that is not one whole, finished, consistent set of shards (one line naming the culprit)."""
    first = infos[0]
    for info in infos[1:]:
        if info.count != first.count:
            raise StoreError(f"{info.path}: shard of {info.count}, but {first.path} is a shard of {first.count}; "
                             "merge the shards of one run")
        differs = [k for k in MATCHING if info.attrs.get(k) != first.attrs.get(k)]
        if differs:
            raise StoreError(f"{info.path}: another {', '.join(differs)} than {first.path.name}; merge only the "
                             "shards of one extraction (same backbone, options and --data)")
    indices = [i.index for i in infos]
    dupes = sorted({i for i in indices if indices.count(i) > 1})
    if dupes:
        raise StoreError(f"shard {dupes[0]} of {first.count} given twice: "
                         + ", ".join(str(i.path) for i in infos if i.index == dupes[0]))
    whole = first.path.with_name(first.attrs["shard"]["store"])
    for k in range(first.count):
        if k not in indices:
            raise StoreError(f"shard {k} of {first.count} is missing: {shard_path(whole, k, first.count)} "
                             f"(run its task: the same `featx extract` with --shard {k}/{first.count})")
    for info in sorted(infos, key=lambda i: i.index):
        state = shard_state(info)
        if state != "done":
            what = "is still being written" if state == "running" else "was interrupted"
            raise StoreError(f"shard {info.index} of {info.count} ({info.path}) {what} ({info.attrs['n_rows']} rows "
                             "so far); " + ("wait for it" if state == "running" else "re-run its task to finish it"))


def merge_shards(paths: Sequence[str | Path], out: str | Path | None = None) -> MergeResult:
    """Merge a whole set of shard stores into ``out`` (default: the store they were sharded from)."""
    if not paths:
        raise StoreError("no shard stores given")
    infos = sorted((read_shard(Path(p)) for p in paths), key=lambda i: i.index)
    check_shards(infos)
    first = infos[0].attrs
    out = Path(out) if out else infos[0].path.with_name(first["shard"]["store"])
    check_free(out, sum(i.path.stat().st_size for i in infos) + SLACK, f"merging {len(infos)} shards")
    cfg = ExtractCfg.from_dict(first["fingerprint"])
    handles = [open_h5(i.path) for i in infos]
    try:
        ids = [read_strs(f["ids"], i.attrs["n_rows"]) for f, i in zip(handles, infos)]
        owner = np.concatenate([np.full(len(a), k) for k, a in enumerate(ids)])
        local = np.concatenate([np.arange(len(a)) for a in ids])
        all_ids = np.concatenate(ids)
        order = np.argsort(all_ids, kind="stable")
        dup = np.flatnonzero(all_ids[order][1:] == all_ids[order][:-1])
        if len(dup):
            a, b = order[dup[0]], order[dup[0] + 1]
            raise StoreError(f"image {all_ids[a]!r} is in {infos[owner[a]].path.name} and {infos[owner[b]].path.name}: "
                             "the data changed between shard tasks; re-run all shards with the same --data")
        failures = [row for f in handles for row in read_failed(f)]
        numeric = []
        for i in infos:
            numeric += [n for n in i.attrs.get("numeric") or [] if n not in numeric]
        meta = {k: first.get(k) for k in ("classes", "data_root", "dataset", "layout", "split_source", "source",
                                          "backbone", "hash")}
        logits_dim = handles[0]["logits"].shape[1] if "logits" in handles[0] else None
        with open_writer(out, cfg, overwrite=True) as w:
            w.create(cfg, int(handles[0]["features"].shape[1]), logits_dim, meta)
            for a in range(0, len(order), COPY_ROWS):
                block = order[a:a + COPY_ROWS]
                cols = _gather(handles, owner[block], local[block], logits_dim is not None)
                w.append(list(all_ids[block]), cols["labels"], list(cols["split"]), cols["features"],
                         cols.get("logits"), size=cols["size"], mtime_ns=cols["mtime_ns"], hashes=list(cols["hash"]))
            w.set_failures(failures)
            w.finalize(numeric=numeric, merged_from=[i.stamp for i in infos])
            rows = w.n_rows
    finally:
        for f in handles:
            f.close()
    return MergeResult(out, len(infos), rows, len(failures))


def _gather(handles: Sequence[h5py.File], owner: np.ndarray, local: np.ndarray, logits: bool) -> dict:
    """Rows ``local[j]`` of shard ``owner[j]`` for every j, in that order, for each row dataset."""
    names = ["features", "labels", "split", "size", "mtime_ns", "hash"] + (["logits"] if logits else [])
    out: dict = {}
    for k in np.unique(owner):
        pick = np.flatnonzero(owner == k)
        rows = local[pick]
        sorted_rows, back = np.unique(rows, return_inverse=True)  # h5py reads increasing indices
        for name in names:
            ds = handles[k][name]
            values = read_strs(ds, rows=sorted_rows) if ds.dtype.kind == "O" else ds[sorted_rows]
            if name not in out:
                out[name] = np.empty((len(owner),) + values.shape[1:], values.dtype)
            out[name][pick] = values[back]
    return out


def merge_when_complete(store: Path, count: int) -> MergeResult | None:
    """Merge the shards of ``store`` if all ``count`` are done and the store is not already their merge.

    Called by each shard task when it finishes: the last one merges. Returns None when there is
    nothing to do yet (or another task is merging right now).
    """
    found = shard_files(store)
    if sorted(found) != list(range(count)) or any(c != count for c, _ in found.values()):
        return None
    try:
        infos = [read_shard(found[k][1]) for k in range(count)]
    except StoreError:
        return None
    if any(not i.attrs.get("complete") for i in infos):
        return None
    if store.is_file():
        try:
            if is_merge_of(read_attrs(store), infos):
                return None
        except StoreError:
            pass  # unreadable or unfinished: merge again
    try:
        return merge_shards([i.path for i in infos], store)
    except StoreLockedError:
        return None
