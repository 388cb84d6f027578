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

from .errors import DiskFullError, causes
from .faults import fault

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


UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human(n: float, smallest: str = "B", largest: str = "TiB") -> str:
    """1536 -> '1.5 KiB': the first unit from ``smallest`` to ``largest`` that holds ``n`` under 1024,
    whole numbers in ``smallest`` (``human(3e8, "MiB", "GiB")`` -> '286 MiB')."""
    units = UNITS[UNITS.index(smallest):UNITS.index(largest) + 1]
    n /= 1024 ** UNITS.index(smallest)
    for unit in units:
        if abs(n) < 1024 or unit == units[-1]:
            return f"{n:.0f} {unit}" if unit == units[0] else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # pragma: no cover


def is_disk_error(exc: BaseException) -> bool:
    """A full disk, an exceeded quota or an I/O error, however the library wrapped it (h5py's
    ``OSError``/``RuntimeError`` messages carry ``errno = 28`` in their text)."""
    return _errno(exc) is not None


def unreported_disk_error(exc: BaseException) -> bool:
    """A disk error (:func:`is_disk_error`) not yet turned into a :class:`DiskFullError`."""
    return isinstance(exc, Exception) and not isinstance(exc, DiskFullError) and is_disk_error(exc)


def _errno(exc: BaseException | None) -> int | None:
    """The disk errno of ``exc`` or of an exception it was raised from (h5py keeps it only in the text)."""
    for e in causes(exc):
        if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
            return e.errno
        text = str(e)
        for code in DISK_ERRNOS:
            if f"errno = {code}," in text or f"errno = {code} " in text:
                return code
        if "Disk quota exceeded" in text:
            return getattr(errno, "EDQUOT", None)
        if "No space left on device" in text:
            return errno.ENOSPC
    return None


def disk_error(path: str | Path, exc: BaseException | None, *, kept: str = "", need: int | None = None
               ) -> DiskFullError:
    """The one-line error for ``exc`` (a disk error) while writing ``path``; ``kept`` says what survived,
    ``need`` (bytes) what the refused write needed, when that is known."""
    code = _errno(exc)
    reason = ("disk quota exceeded" if code is not None and code == getattr(errno, "EDQUOT", None)
              else "I/O error" if code == errno.EIO else "no space left")
    free = free_bytes(path)
    where = f"{human(free)} free there" if free is not None else "free space unknown"
    if need is not None:
        where += f", about {human(need)} needed"
    tail = f"; {kept}" if kept else ""
    todo = ("check the device" if code == errno.EIO else "free some space" + (" within your quota" if "quota" in
                                                                               reason else ""))
    return DiskFullError(f"{path}: {reason} on the device ({where}){tail}; {todo} (or write elsewhere) and run the "
                         "same command again")


def check_free(path: str | Path, need: int, what: str) -> None:
    """Fail before starting when ``need`` bytes (an estimate) will not fit where ``path`` goes."""
    free = free_bytes(path)
    if free is not None and need > free:
        raise DiskFullError(f"{path}: {what} needs about {human(need)} but only {human(free)} is free there; "
                            "free some space (or write elsewhere) and run the same command again")


def temp_name(path: Path) -> Path:
    """The temporary name :func:`atomic_path` writes ``path`` under: hidden, beside it, same suffix
    (so libraries that pick a format by suffix, such as matplotlib, still do)."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends cleanly it is synced and renamed
    onto ``path``. On any error the temporary file is removed and ``path`` is left as it was; a disk
    error becomes :class:`DiskFullError`. Every output file featx writes goes through here (the store's
    HDF5 files have their own protocol: :mod:`featx.store.writer`)."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        fault(f"write:{path.name}")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        if unreported_disk_error(exc):
            raise disk_error(path, exc, kept="the previous file, if any, is unchanged") from exc
        raise


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj, *, indent: int = 2, **kw) -> Path:
    """``json.dumps(obj, indent=indent, **kw)`` plus a newline, written atomically."""
    return write_text(path, json.dumps(obj, indent=indent, **kw) + "\n")
