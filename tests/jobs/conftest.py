"""Fixtures of the cluster tests: a small real painting folder and its single-process store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import copy_subset

BACKBONE = "efficientnet_lite0"


@pytest.fixture(scope="module")
def paintings(tmp_path_factory, monet_dir) -> Path:
    """26 real paintings (13 Monet, 13 Sisley): shards of 4 get unequal blocks (7, 6, 7, 6)."""
    return copy_subset(monet_dir, tmp_path_factory.mktemp("paintings") / "paintings", per_class=13, split="test")


@pytest.fixture(scope="module")
def single_store(tmp_path_factory, paintings) -> Path:
    """What one process writes for ``paintings``: the reference every sharded run must equal."""
    from featx.extraction.run import extract

    out = tmp_path_factory.mktemp("single") / "single.h5"
    extract(BACKBONE, paintings, out=out, progress=False)
    return out


def assert_same_store(got: Path, want: Path) -> None:
    """Same ids in the same order, labels, splits, classes and (numerically) features; complete."""
    from featx.store.reader import load_features

    a, b = load_features(got), load_features(want)
    assert list(a.ids) == list(b.ids)
    assert list(a.classes) == list(b.classes)
    assert (a.labels == b.labels).all()
    assert list(a.split) == list(b.split)
    assert a.features.shape == b.features.shape
    np.testing.assert_allclose(a.features, b.features, rtol=1e-4, atol=1e-5)
    assert a.attrs["fingerprint"] == b.attrs["fingerprint"]
