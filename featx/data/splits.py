"""Train / val / test splits: names, aliases, and the seeded hash split used when the data has none.

A row's split depends only on its id, its class and the seed: ``u = blake2b(seed, class, id)``
read as a number in [0, 1) is compared with the cumulative ratios. Adding or removing
images therefore never moves an existing image between train, val and test. The one
exception keeps tiny classes usable: a class that would get no train row at all has
its lowest-``u`` row put in train.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from ..errors import DataError

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test", "testing": "test"}
DEFAULT_RATIOS = (0.8, 0.1, 0.1)


def ratios_ok(ratios: tuple[float, ...]) -> bool:
    """Three non-negative numbers that sum to 1 with train > 0: the rule of ``--split-ratios``."""
    return len(ratios) == 3 and min(ratios) >= 0 and abs(sum(ratios) - 1) <= 1e-6 and ratios[0] > 0


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """``ratios`` as a (train, val, test) tuple, or :class:`DataError` naming ``--split-ratios``."""
    ratios = tuple(float(r) for r in ratios)
    if not ratios_ok(ratios):
        raise DataError(f"--split-ratios {','.join(f'{r:g}' for r in ratios)}: need three non-negative numbers "
                        "train,val,test that sum to 1 with train > 0, e.g. 0.8,0.1,0.1")
    return ratios  # type: ignore[return-value]


def parse_ratios(text: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` (the text of ``--split-ratios``) as a (train, val, test) tuple, or :class:`DataError`."""
    try:
        ratios = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise DataError(f"{text!r}: give three numbers train,val,test, e.g. 0.8,0.1,0.1") from None
    if not ratios_ok(ratios):
        raise DataError(f"{text!r}: need three non-negative numbers that sum to 1 with train > 0")
    return ratios  # type: ignore[return-value]


def unit_hash(seed: int, label: str, image_id: str) -> float:
    """A stable number in [0, 1) for (seed, class, id); odd (non-UTF-8) names hash by their bytes."""
    key = f"{seed}\0{label}\0{image_id}".encode("utf-8", "surrogateescape")
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2.0 ** 64


def hash_split(ids: Sequence[str], names: Sequence[str], *, seed: int = 0,
               ratios: Sequence[float] = DEFAULT_RATIOS) -> tuple[str, ...]:
    """Per-row train/val/test from (seed, class, id) alone; see the module docstring."""
    r_train, r_val, _ = check_ratios(ratios)
    u = np.array([unit_hash(seed, c, i) for i, c in zip(ids, names)], dtype=np.float64)
    out = np.where(u < r_train, "train", np.where(u < r_train + r_val, "val", "test")).astype(object)
    names_arr = np.asarray(names, dtype=object)
    for c in set(names):
        rows = np.flatnonzero(names_arr == c)
        if not (out[rows] == "train").any():
            out[rows[np.argmin(u[rows])]] = "train"
    return tuple(out.tolist())
