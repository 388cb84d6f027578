"""The single-writer lock of a store, beside it as ``.<name>.lock``, keyed by the store's resolved path.

* Normally a POSIX record lock (``fcntl.lockf``) on the lock file: the kernel drops it
  when the holding process dies, and unlike ``flock`` it is not inherited by forked
  children, so orphaned DataLoader workers of a killed run never keep it.
* Where the file system refuses record locks (``ENOLCK``, ``EOPNOTSUPP``, ``ENOSYS``: some
  NFS / Lustre mounts) it falls back to an ``O_EXCL`` lock file ``.<name>.lock.owner``
  holding the holder's host, pid and start time. On the same host a holder that is gone
  is detected and its lock broken; a holder on another host is reported with the file
  to delete if that job is known to be dead.

Both symlinked spellings of one store share one lock (the path is resolved first), and
a second writer in the same process is refused too.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import struct
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import StoreLockedError

UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_HELD: set[str] = set()


def lock_path(path: Path) -> Path:
    real = Path(path).resolve()
    return real.with_name(f".{real.name}.lock")


def _holder() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid())}


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (tells a live pid from a reused one), where /proc has it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def _alive(holder: dict) -> bool:
    pid = int(holder.get("pid", -1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    started = _start_time(pid)
    return holder.get("start") is None or started is None or started == holder.get("start")


def _refuse(store: Path, holder: dict | None, extra: str = "") -> StoreLockedError:
    who = f" (pid {holder.get('pid')} on {holder.get('host')})" if holder else ""
    return StoreLockedError(f"{store}: another featx process{who} is writing this store; wait for it to finish "
                            f"or choose another --out{extra}")


def _read_holder(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text() or "null")
    except (OSError, ValueError):
        return None


@contextmanager
def _record_lock(store: Path, lpath: Path) -> Iterator[bool]:
    """Yields True holding a record lock, False when the file system has none (caller falls back)."""
    fd = os.open(lpath, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        locked = True
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise _refuse(store, _read_holder(lpath)) from None
            if exc.errno not in UNSUPPORTED:
                raise
            locked = False
        if locked:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(_holder()).encode(), 0)
        yield locked
    finally:
        os.close(fd)


@contextmanager
def _owner_file(store: Path, lpath: Path) -> Iterator[None]:
    """The O_EXCL fallback: create ``<lock>.owner`` or find its holder gone and take it over."""
    owner = lpath.with_name(lpath.name + ".owner")
    for _ in range(3):
        try:
            fd = os.open(owner, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            holder = _read_holder(owner)
            if holder is None and time.time() - _mtime(owner) < 5:
                time.sleep(0.2)  # being written by its creator right now
                continue
            if holder is not None and (holder.get("host") != socket.gethostname() or _alive(holder)):
                raise _refuse(store, holder, f" (no file locks on this file system: if that job is gone, "
                                             f"delete {owner})") from None
            stale = owner.with_name(f"{owner.name}.stale-{os.getpid()}")
            try:
                os.replace(owner, stale)  # only one breaker wins the rename
                stale.unlink()
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as fh:
            json.dump(_holder(), fh)
        try:
            yield
        finally:
            owner.unlink(missing_ok=True)
        return
    raise _refuse(store, _read_holder(owner))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def writer_active(path: Path) -> bool:
    """Whether some process holds the writer lock of ``path`` (asks the kernel; takes nothing)."""
    lpath = lock_path(path)
    if str(lpath) in _HELD:
        return True
    owner = lpath.with_name(lpath.name + ".owner")
    holder = _read_holder(owner) if owner.exists() else None
    if holder is not None:
        return holder.get("host") != socket.gethostname() or _alive(holder)
    try:
        fd = os.open(lpath, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        probe = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        return struct.unpack("hhqqi4x", fcntl.fcntl(fd, fcntl.F_GETLK, probe))[0] != fcntl.F_UNLCK
    except OSError:
        return True  # cannot tell: assume someone is writing
    finally:
        os.close(fd)


@contextmanager
def store_lock(path: Path) -> Iterator[None]:
    """Exclusive, non-blocking writer lock on the store ``path`` (released when the process dies)."""
    lpath = lock_path(path)
    key = str(lpath)
    if key in _HELD:
        raise _refuse(Path(path), _holder(), " (this very process already holds it)")
    lpath.parent.mkdir(parents=True, exist_ok=True)
    with _record_lock(Path(path), lpath) as locked:
        _HELD.add(key)
        try:
            if locked:
                yield
            else:
                with _owner_file(Path(path), lpath):
                    yield
        finally:
            _HELD.discard(key)
