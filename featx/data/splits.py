"""Train / val / test splits: names, aliases, and the seeded stratified split used when the data has none."""

from __future__ import annotations

import numpy as np

from ..errors import DataError

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test", "testing": "test"}
DEFAULT_RATIOS = (0.8, 0.1, 0.1)


def stratified_split(labels: np.ndarray, *, seed: int = 0,
                     ratios: tuple[float, float, float] = DEFAULT_RATIOS) -> tuple[str, ...]:
    """Seeded per-class train/val/test assignment (every class gets train rows first)."""
    if len(ratios) != 3 or min(ratios) < 0 or abs(sum(ratios) - 1) > 1e-6:
        raise DataError(f"--split-ratios {ratios}: need three non-negative numbers that sum to 1")
    rng = np.random.default_rng(seed)
    out = np.empty(len(labels), dtype=object)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n = len(idx)
        n_test = int(round(ratios[2] * n)) if n >= 3 else 0
        n_val = int(round(ratios[1] * n)) if n >= 3 else 0
        n_train = max(1, n - n_val - n_test)
        n_val = min(n_val, n - n_train)
        out[idx[:n_train]] = "train"
        out[idx[n_train:n_train + n_val]] = "val"
        out[idx[n_train + n_val:]] = "test"
    return tuple(out.tolist())
