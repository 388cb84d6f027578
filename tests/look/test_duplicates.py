"""Near-duplicates and leaks (featx.look.duplicates): planted copies found as leaks, a clean set reports nothing."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from _synth import blobs
from _synth import store as synth_store
from helpers import split_subset
from PIL import Image

import featx
from featx.errors import OptionError
from featx.look.duplicates import DEFAULT_THRESHOLD, find_duplicates, groups_of
from featx.look.similarity import Vectors, pairs_above


def planted_store(tmp_path, dim=64):
    """Blobs with planted near-copies: test row <- exact copy of a train row, test row <- a slightly
    perturbed train row (a 'resized' copy), val row <- copy of a train row (train/val, not a leak)."""
    X, y, split, ids = blobs((60, 60, 60), dim=dim, seed=1)
    rng = np.random.default_rng(5)
    train, val, test = (np.flatnonzero(split == s) for s in ("train", "val", "test"))
    X[test[0]] = X[train[3]]  # exact copy
    X[test[1]] = X[train[40]] + rng.normal(size=dim) * 0.05 * np.linalg.norm(X[train[40]]) / np.sqrt(dim)
    X[val[2]] = X[train[7]] * 1.5  # a copy at another scale: cosine 1.0
    path = synth_store(tmp_path / "planted.h5", X=X.astype(np.float32), y=y, split=split, ids=ids, dim=dim)
    return path, {(min(a, b), max(a, b)) for a, b in ((test[0], train[3]), (test[1], train[40]))}, \
        (min(val[2], train[7]), max(val[2], train[7]))


def test_planted_copies_across_train_test_are_leaks(tmp_path):
    path, leaks, train_val = planted_store(tmp_path)
    d = find_duplicates(featx.Store(path))
    assert d.threshold == DEFAULT_THRESHOLD
    assert {(p.row_a, p.row_b) for p in d.leaks} == leaks
    assert [(p.row_a, p.row_b) for p in d.train_val] == [train_val]
    assert {(p.row_a, p.row_b) for p in d.pairs} == leaks | {train_val}
    assert all(p.similarity >= d.threshold for p in d.pairs)
    assert d.pairs == sorted(d.pairs, key=lambda p: -p.similarity)
    assert sorted(map(tuple, d.groups)) == sorted(leaks | {train_val})
    test_rows = {r for pair in leaks for r in pair if d.splits[r] == "test"}
    assert set(d.leaked_rows("test").tolist()) == test_rows
    recs = d.records("leaks")
    assert {r["split_a"] for r in recs} | {r["split_b"] for r in recs} == {"train", "test"}
    assert all(r["label_a"] in ("a", "b", "c") and r["id_a"].endswith(".jpg") for r in recs)


def test_clean_synthetic_set_reports_nothing(tmp_path):
    path = synth_store(tmp_path / "clean.h5", dim=64, seed=3)
    d = find_duplicates(featx.Store(path))
    assert len(d) == 0 and d.leaks == [] and d.groups == []
    # the threshold is what keeps it clean: at a low one the same rows do pair up
    assert len(find_duplicates(featx.Store(path), threshold=0.3)) > 0


def test_split_restricts_the_search_and_threshold_is_checked(tmp_path):
    path, _, train_val = planted_store(tmp_path)
    store = featx.Store(path)
    d = find_duplicates(store, split=["train", "val"])
    assert [(p.row_a, p.row_b) for p in d.pairs] == [train_val] and d.leaks == []
    for bad in (0, 1.5, "x"):
        with pytest.raises(OptionError, match="--threshold"):
            find_duplicates(store, threshold=bad)


def test_blocked_and_streamed_pairs_equal_brute_force(tmp_path):
    X, y, split, ids = blobs((150, 150, 150), dim=16, sep=6.0, seed=2)
    path = synth_store(tmp_path / "s.h5", X=X, y=y, split=split, ids=ids, dim=16)
    store = featx.Store(path)
    N = X / np.linalg.norm(X, axis=1, keepdims=True)
    S = N @ N.T
    i, j = np.nonzero(np.triu(S >= 0.95, 1))
    assert len(i) > 10
    for vec in (Vectors(store, block_rows=64), Vectors(store, in_memory=False, block_rows=100)):
        a, b, s = pairs_above(vec, 0.95)
        assert set(zip(a.tolist(), b.tolist())) == set(zip(i.tolist(), j.tolist()))
        np.testing.assert_allclose(s, S[a, b], atol=1e-5)


def test_groups_join_pairs_that_share_a_row():
    assert groups_of(np.array([1, 2, 7]), np.array([2, 5, 9])) == [[1, 2, 5], [7, 9]]


def _resized(src, dst):
    im = Image.open(src).convert("RGB")
    w, h = im.size
    im.resize((w * 160 // 224, h * 160 // 224), Image.BICUBIC).resize((w, h), Image.BICUBIC).save(dst, quality=75)


@pytest.mark.slow
def test_real_paintings_planted_copy_and_resized_copy_are_leaks(tmp_path, monet_dir):
    from featx.extraction.options import ExtractOptions
    from featx.extraction.run import extract

    data = split_subset(monet_dir, tmp_path / "data", {"train": 12, "val": 3, "test": 3})
    tests = sorted((data / "test").rglob("*.jpg"))
    planted = {}
    for k, src in enumerate(tests[:4]):
        dst = data / "train" / src.parent.name / f"planted-{src.name}"
        if k % 2:
            _resized(src, dst)
        else:
            shutil.copyfile(src, dst)
        planted[dst.relative_to(data).as_posix()] = src.relative_to(data).as_posix()
    out = tmp_path / "store.h5"
    extract(ExtractOptions("efficientnet_lite0", data, out=out, progress=False))
    d = find_duplicates(featx.Store(out))
    found = {frozenset((d.ids[p.row_a], d.ids[p.row_b])) for p in d.leaks}
    assert {frozenset(pair) for pair in planted.items()} <= found
    # nothing else is reported but true duplicates of the collection (none among these paintings)
    assert len(d.pairs) == len(planted)
