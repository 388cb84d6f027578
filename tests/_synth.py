"""Synthetic feature stores for fit/predict tests (sklearn blobs written with store.write_arrays)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from featx.config import DataCfg, ExtractCfg
from featx.store.writer import write_arrays


def cfg(backbone: str = "synthetic", weights: str = "none", **kw) -> ExtractCfg:
    return ExtractCfg(backbone=backbone, arch=backbone, source="test", weights=weights, layer="pre_logits",
                      module="head", pool="avg", data=DataCfg(), **kw)


def blobs(n_per_class=(60, 60, 60), dim: int = 32, sep: float = 3.0, seed: int = 0):
    """Gaussian classes, ~80/10/10 stratified split; returns X, y, split, ids."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(n_per_class), dim)) * sep / np.sqrt(dim) * 2
    X, y, split = [], [], []
    for c, n in enumerate(n_per_class):
        X.append(centers[c] + rng.normal(size=(n, dim)))
        y += [c] * n
        n_test = n_val = max(1, n // 10)
        split += ["train"] * (n - n_val - n_test) + ["val"] * n_val + ["test"] * n_test
    ids = [f"c{c}/img{i:04d}.jpg" for i, c in enumerate(y)]
    return np.vstack(X).astype(np.float32), np.array(y), np.array(split, dtype=object), ids


def store(path: Path, *, classes=("a", "b", "c"), n_per_class=(60, 60, 60), dim=32, sep=3.0, seed=0,
          backbone="synthetic", weights="none", data_root: str | Path = "/nonexistent/data", split=None,
          X=None, y=None, ids=None) -> Path:
    """Write a complete synthetic store; any of X/y/split/ids may be overridden."""
    X0, y0, s0, ids0 = blobs(n_per_class, dim, sep, seed)
    return write_arrays(path, cfg(backbone, weights), features=X0 if X is None else X,
                        labels=y0 if y is None else y, ids=ids0 if ids is None else ids,
                        split=s0 if split is None else split, classes=list(classes), data_root=data_root)


def clusters(n_per_class=40, c=4, d=30, sep=4.0, seed=0):
    """``c`` well separated Gaussian classes in ``d`` dims; returns X, y."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(c), n_per_class)
    centers = rng.normal(size=(c, d)) * sep
    return centers[y] + rng.normal(size=(len(y), d)), y
