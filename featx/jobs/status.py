"""The state of a (sharded) extraction, read from the store files alone: no scheduler is asked.

A shard is *done* (complete), *running* (a writer holds its lock), *interrupted* (neither) or
*missing* (no file); the merged store is *current* when it records exactly the shards' present content.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import StoreError
from ..store.merge import (
    SHARD_FILE,
    ShardInfo,
    is_merge_of,
    read_shard,
    shard_files,
    shard_path,
    shard_state,
)
from ..store.reader import read_attrs


@dataclass
class ShardRow:
    index: int
    path: Path
    state: str  # done | running | interrupted | missing | unreadable
    rows: int = 0
    failures: int = 0
    note: str = ""


@dataclass
class Status:
    store: Path
    count: int  # shards expected (0: not sharded)
    shards: list[ShardRow] = field(default_factory=list)
    merged: str = "absent"  # absent | current | stale | incomplete | single
    rows: int = 0
    failures: int = 0

    @property
    def done(self) -> bool:
        return self.merged in ("current", "single")

    def to_dict(self) -> dict:
        return {"store": str(self.store), "shards": self.count, "merged": self.merged, "rows": self.rows,
                "failures": self.failures,
                "tasks": [{"index": s.index, "path": str(s.path), "state": s.state, "rows": s.rows,
                           "failures": s.failures, **({"note": s.note} if s.note else {})} for s in self.shards]}


def whole_store(path: Path) -> Path:
    """The store a shard file belongs to (``x.shard-001-of-004.h5`` -> ``x.h5``); other paths unchanged."""
    m = SHARD_FILE.match(path.name)
    return path.with_name(m.group("stem") + ".h5") if m else path


def extraction_status(path: str | Path) -> Status:
    """Shards and merged store of the extraction whose store (or any shard file) is ``path``."""
    store = whole_store(Path(path))
    found = shard_files(store)
    counts = {c for c, _ in found.values()}
    if len(counts) > 1:
        raise StoreError(f"{store}: shard files of several runs lie beside it ({', '.join(map(str, sorted(counts)))} "
                         "shards); remove the stale ones")
    count = counts.pop() if counts else 0
    status = Status(store, count)
    infos: list[ShardInfo] = []
    for k in range(count):
        if k not in found:
            status.shards.append(ShardRow(k, shard_path(store, k, count), "missing"))
            continue
        p = found[k][1]
        try:
            info = read_shard(p)
        except StoreError as exc:
            status.shards.append(ShardRow(k, p, "unreadable", note=str(exc)))
            continue
        infos.append(info)
        status.shards.append(ShardRow(k, p, shard_state(info), info.attrs["n_rows"], info.attrs["n_failed"]))
    if not store.is_file():
        if not count:
            raise StoreError(f"{store}: no such store and no shards of it; check the path (`featx extract` prints it)")
        return status
    attrs = read_attrs(store)
    status.rows, status.failures = int(attrs["n_rows"]), int(attrs["n_failed"])
    if not attrs.get("complete"):
        status.merged = "incomplete"
    elif not count:
        status.merged = "single"
    elif len(infos) == count and is_merge_of(attrs, infos):  # infos are in index order
        status.merged = "current"
    else:
        status.merged = "stale"
    return status
