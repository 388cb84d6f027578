"""The memory budget of ``featx analyze --transferability``: what the machine has, ``--max-memory``
sizes, and the guarded call that turns one score's failure into ``null`` plus a note.

Each score's peak memory is estimated from (n, d, classes) by its registered model
(:func:`featx.analysis.transfer.peak_bytes`) before it runs; :mod:`featx.analysis.scoring` compares it with
the budget and runs the score on the features, on their first ``--score-dims`` principal components, or not
at all.
"""

from __future__ import annotations

import math
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

from ..errors import OptionError
from ..files import human
from .transfer import ScoreWarning

DEFAULT_FRACTION = 0.5
"""Default budget: this share of the memory available once a store's features are loaded (the rest
stays for the OS, estimate slack and whatever else runs on the machine)."""
FALLBACK_BUDGET = 2 * 2**30
"""Budget when the available memory cannot be read (not Linux, no sysconf)."""
DEFAULT_SCORE_DIMS = 256
"""Principal components kept for a score whose estimate on the full features exceeds the budget."""

_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 10**3, "kib": 2**10, "m": 2**20, "mb": 10**6, "mib": 2**20,
          "g": 2**30, "gb": 10**9, "gib": 2**30, "t": 2**40, "tb": 10**12, "tib": 2**40}


def available_bytes() -> int | None:
    """Memory available to new work now (Linux ``MemAvailable``, else free physical pages), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return None


def default_budget() -> int:
    """:data:`DEFAULT_FRACTION` of :func:`available_bytes` (:data:`FALLBACK_BUDGET` when unknown)."""
    avail = available_bytes()
    return FALLBACK_BUDGET if not avail else int(avail * DEFAULT_FRACTION)


def parse_size(text: str, flag: str = "--max-memory") -> int:
    """Bytes from ``4G``, ``512M``, ``1.5GiB``, ``2GB`` or a plain byte count (K/M/G/T are binary)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS:
        raise OptionError(f"{flag}: {text!r} is not a size; use e.g. 4G, 512M, 1.5GiB or a byte count")
    size = float(m.group(1)) * _UNITS[unit]
    if not math.isfinite(size) or size < 2**20:
        raise OptionError(f"{flag}: {text!r} is below 1 MiB; scores need more than that")
    return int(size)


def fmt_bytes(n: float) -> str:
    """A size as the budget notes state it, whole MiB below 1 GiB: ``350 MiB``, ``1.2 GiB``."""
    return human(n, "MiB", "GiB")


@dataclass
class ScoreLog:
    """What happened to the scores of one feature matrix, for scores.json and the warning lines."""

    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # score -> "ExceptionType: message"

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def guarded(self, key: str, fn: Callable[[], object]):
        """``fn()`` timed; an exception (MemoryError included) becomes None plus a note and an
        ``errors`` entry, a non-finite number becomes None plus a note, and featx's
        :class:`ScoreWarning` or scikit-learn's ConvergenceWarning become notes."""
        t = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                value = fn()
            except Exception as exc:  # noqa: BLE001  (one score failing never loses the others)
                detail = " ".join(str(exc).split())[:300]
                self.errors[key] = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
                self.note(f"{key} failed and is null ({self.errors[key]})")
                value = None
            finally:
                self.seconds[key] = round(time.perf_counter() - t, 3)
        for w in caught:
            if issubclass(w.category, ScoreWarning) or w.category.__name__ == "ConvergenceWarning":
                self.note(f"{key}: {' '.join(str(w.message).split())[:300]}")
        if isinstance(value, float) and not math.isfinite(value):
            self.errors[key] = f"not a finite number ({value})"
            self.note(f"{key} is null: the computation gave {value}")
            return None
        return value
