"""Test hooks read from the environment, so tests can break real processes at known points.

``FEATX_FAULT=<point>[:<n>]`` SIGKILLs the process the n-th time it reaches ``point`` (a crash);
``FEATX_DELAY=<point>:<seconds>`` sleeps there every time (a long job, for signal and requeue tests).
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

FAULT_ENV = "FEATX_FAULT"
DELAY_ENV = "FEATX_DELAY"
_passes: Counter = Counter()


def fault(point: str) -> None:
    """Act on ``point`` if ``$FEATX_FAULT`` or ``$FEATX_DELAY`` names it; otherwise nothing."""
    delay = os.environ.get(DELAY_ENV, "")
    if delay:
        name, _, seconds = delay.rpartition(":")
        if name == point:
            time.sleep(float(seconds))
    spec = os.environ.get(FAULT_ENV, "")
    name, _, nth = spec.rpartition(":")
    if not nth.isdigit():
        name, nth = spec, "1"
    if name != point:
        return
    _passes[point] += 1
    if _passes[point] >= int(nth):
        os.kill(os.getpid(), signal.SIGKILL)
