"""The single-writer lock of a store: an exclusive ``flock`` on ``.<name>.lock`` beside it."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import StoreLockedError


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
