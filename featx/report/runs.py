"""Run folders and the plain files written into them (CSV tables, written atomically: :mod:`featx.files`)."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Callable

from ..files import atomic_path
from .escape import csv_cell, printable  # noqa: F401  (printable: re-exported, used across featx)


def new_run_dir(out: str | Path | None = None, name: str | None = None, root: str | Path = "runs", *,
                overwrite: bool = False, echo: Callable[[str], None] | None = None) -> Path:
    """``out`` as given, else ``root/name``, else ``root/<YYYYmmdd-HHMMSS>``, created.

    An existing run is never written into silently: a named folder that exists and is not
    empty (a timestamped one that exists at all) gives a ``-2``, ``-3``, ... suffix, unless
    ``overwrite``; ``echo`` is told when a folder the user named was taken.
    """
    stamped = out is None and name is None
    base = Path(out) if out is not None else Path(root) / (name or time.strftime("%Y%m%d-%H%M%S"))

    def taken(p: Path) -> bool:
        return p.exists() and (stamped or not p.is_dir() or any(p.iterdir()))

    path, k = base, 1
    while not overwrite and taken(path):
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    path.mkdir(parents=True, exist_ok=True)
    if path != base and not stamped and echo is not None:
        echo(f"note: {base} already holds a run; writing to {path} (--overwrite reuses {base})")
    return path


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    """Rows as CSV with ``columns``, else the union of their keys, as columns (None as an empty cell).

    UTF-8; a non-UTF-8 file name in a cell is written back as its own bytes (surrogateescape). A text cell
    a spreadsheet would take for a formula (a label ``=1+1``) is written as text (:func:`~.escape.csv_cell`).
    """
    cols: list[str] = list(columns or [])
    for r in rows:
        cols += [k for k in r if k not in cols]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else csv_cell(r.get(k))) for k in cols})
    return path
