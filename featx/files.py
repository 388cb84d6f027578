"""Writing output files safely: into a temporary name beside the target, then renamed into place.

A reader (or a later featx command) sees the old file or the whole new one, never half of one,
whatever stops the writer: a kill, or a full disk. A full disk, a quota (``EDQUOT``) or an I/O
error becomes one :class:`~featx.errors.DiskFullError` naming the file and the free space.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import DiskFullError

DISK_ERRNOS = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EIO) if e is not None)


def free_bytes(path: str | Path) -> int | None:
    """Free bytes on the file system that holds ``path`` (its nearest existing folder); None if unknown."""
    p = Path(path).absolute()
    for folder in (p, *p.parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def human(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # pragma: no cover


def is_disk_error(exc: BaseException) -> bool:
    """A full disk, an exceeded quota or an I/O error, however the library wrapped it (h5py's
    ``OSError``/``RuntimeError`` messages carry ``errno = 28`` in their text)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
            return True
        text = str(exc)
        if any(f"errno = {e}," in text or f"errno = {e} " in text for e in DISK_ERRNOS) or \
                "No space left on device" in text or "Disk quota exceeded" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def disk_error(path: str | Path, exc: BaseException, *, kept: str = "") -> DiskFullError:
    """The one-line error for ``exc`` (a disk error) while writing ``path``; ``kept`` says what survived."""
    reason = "disk quota exceeded" if "quota" in str(exc).lower() or getattr(exc, "errno", None) == getattr(
        errno, "EDQUOT", -1) else "I/O error" if getattr(exc, "errno", None) == errno.EIO else "no space left"
    free = free_bytes(path)
    where = f"{human(free)} free there" if free is not None else "free space unknown"
    tail = f"; {kept}" if kept else ""
    return DiskFullError(f"{path}: {reason} on the device ({where}){tail}; free some space (or write elsewhere) "
                         "and run the same command again")


def check_free(path: str | Path, need: int, what: str) -> None:
    """Fail before starting when ``need`` bytes (an estimate) will not fit where ``path`` goes."""
    free = free_bytes(path)
    if free is not None and need > free:
        raise DiskFullError(f"{path}: {what} needs about {human(need)} but only {human(free)} is free there; "
                            "free some space (or write elsewhere) and run the same command again")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends cleanly it is synced and renamed
    onto ``path``. On any error the temporary file is removed and ``path`` is left as it was; a disk
    error becomes :class:`DiskFullError`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(exc, Exception) and not isinstance(exc, DiskFullError) and is_disk_error(exc):
            raise disk_error(path, exc, kept="the previous file, if any, is unchanged") from None
        raise


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj, **kw) -> Path:
    """``json.dumps(obj, indent=2, **kw)`` plus a newline, written atomically."""
    return write_text(path, json.dumps(obj, indent=2, **kw) + "\n")
