"""Test hooks read from the environment, so tests can break real processes at known points.

``FEATX_FAULT=<point>[:<n>]`` SIGKILLs the process the n-th time it reaches ``point`` (a crash);
``FEATX_FAULT=<point>[:<n>]:enospc`` (or ``:edquot``, ``:eio``) raises ``OSError`` with that errno
there instead, as a full disk, an exceeded quota or a failing device would (a ``write:<file name>``
point sits in every atomic file write, :func:`featx.files.atomic_path`; the store's appends have
``append:features`` and ``append:flush``);
``FEATX_DELAY=<point>:<seconds>`` sleeps there every time (a long job, for signal and requeue tests).
"""

from __future__ import annotations

import errno
import os
import signal
import time
from collections import Counter

from . import env

ERRNOS = {"enospc": (errno.ENOSPC, "No space left on device"), "edquot": (errno.EDQUOT, "Disk quota exceeded"),
          "eio": (errno.EIO, "Input/output error")}
_passes: Counter = Counter()


def _parse(spec: str) -> tuple[str, int, str]:
    """``point[:n][:errno]`` -> (point, n, errno name or "" for a kill)."""
    name, _, last = spec.rpartition(":")
    kind = ""
    if last.lower() in ERRNOS and name:
        kind, spec = last.lower(), name
    name, _, nth = spec.rpartition(":")
    if not nth.isdigit() or not name:
        name, nth = spec, "1"
    return name, int(nth), kind


def fault(point: str) -> None:
    """Act on ``point`` if ``$FEATX_FAULT`` or ``$FEATX_DELAY`` names it; otherwise nothing."""
    delay = env.DELAY.get() or ""
    if delay:
        name, _, seconds = delay.rpartition(":")
        if name == point:
            time.sleep(float(seconds))
    spec = env.FAULT.get() or ""
    if not spec:
        return
    name, nth, kind = _parse(spec)
    if name != point:
        return
    _passes[point] += 1
    if _passes[point] < nth:
        return
    if kind:
        code, text = ERRNOS[kind]
        raise OSError(code, f"{text} (FEATX_FAULT at {point})")
    os.kill(os.getpid(), signal.SIGKILL)
