"""featx.Store: lazy reads by split and ids, len/repr, context manager, a pinned view beside a writer."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from helpers import copy_subset

import featx
from featx.errors import StoreError
from featx.store.reader import load_features


@pytest.mark.slow
def test_store_reads_what_load_features_reads(monet_lite0_store):
    fs = load_features(monet_lite0_store)
    with featx.Store(monet_lite0_store) as store:
        assert len(store) == len(fs) == 600
        assert store.classes == fs.classes and store.fingerprint == fs.fingerprint and store.dim == 1280
        text = repr(store)
        assert "600 rows x 1280 dims" in text and "alfred-sisley" in text and store.fingerprint_digest in text
        train = fs.split == "train"
        np.testing.assert_array_equal(store.features(split="train"), fs.features[train])
        np.testing.assert_array_equal(store.labels(split="train"), fs.labels[train])
        np.testing.assert_array_equal(store.features(split=["val", "test"]), fs.features[~train])
        np.testing.assert_array_equal(store.logits(split="test"), fs.logits[fs.split == "test"])
        np.testing.assert_array_equal(store.ids, fs.ids)
        picked = [fs.ids[7], fs.ids[590], fs.ids[3]]  # any order, far apart: rows come back in this order
        np.testing.assert_array_equal(store.features(ids=picked), fs.features[[7, 590, 3]])
        assert list(store.labels(ids=picked, names=True)) == [fs.classes[fs.labels[i]] for i in (7, 590, 3)]
        assert store.image_paths(ids=picked[:1])[0].is_file()
        with pytest.raises(StoreError, match="not in the store"):
            store.features(ids=["no/such.jpg"])
        with pytest.raises(StoreError, match="split='training'"):
            store.labels(split="training")
    assert store.closed
    with pytest.raises(StoreError, match="closed"):
        store.features()


@pytest.mark.slow
def test_to_pandas_columns_or_one_array_column(monet_lite0_store):
    store = featx.Store(monet_lite0_store)
    df = store.to_pandas(split="test")
    assert list(df.columns[:3]) == ["id", "label", "split"] and len(df.columns) == 3 + 1280
    assert df.columns[3] == "efficientnet_lite0.pre_logits.none_0" and set(df["split"]) == {"test"}
    np.testing.assert_array_equal(df.iloc[:, 3:].to_numpy(), store.features(split="test"))
    arr = store.to_pandas(features="array")
    assert list(arr.columns) == ["id", "label", "split", "features"] and arr["features"].iloc[0].shape == (1280,)
    assert set(arr["label"]) == set(store.classes)


@pytest.mark.slow
def test_to_pandas_without_pandas_says_so(monet_lite0_store, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="pip install pandas"):
        featx.Store(monet_lite0_store).to_pandas()


@pytest.mark.slow
def test_a_store_keeps_its_rows_while_extraction_appends_and_refuses_rewritten_ones(tmp_path, monet_dir):
    data = copy_subset(monet_dir / "train", tmp_path / "data", per_class=4)
    out = tmp_path / "s.h5"
    first = featx.extract("efficientnet_lite0", data, out=out, weights="none", progress=False)
    assert not first.extraction.cache_hit and len(first) == 8
    X8, ids8 = first.features(), first.ids
    for cls in ("alfred-sisley", "claude-monet"):  # two more paintings per class: appended
        for f in sorted((monet_dir / "val" / cls).iterdir())[:2]:
            shutil.copy(f, data / cls / f.name)
    again = featx.extract("efficientnet_lite0", data, out=out, weights="none", progress=False)
    assert again.extraction.n_new == 4 and len(again) == 12
    assert len(first) == 8  # the old view still answers about its 8 rows
    np.testing.assert_array_equal(first.features(), X8)
    np.testing.assert_array_equal(first.ids, ids8)
    assert len(first.refresh()) == 12
    np.testing.assert_array_equal(first.features()[:8], X8)
    # a re-split rewrites the rows' splits in place: a view taken before refuses to mix old and new
    before = featx.Store(out)
    before.labels(split="train")
    resplit = featx.extract("efficientnet_lite0", data, out=out, weights="none", split_seed=7, progress=False)
    assert resplit.extraction.sync.get("resplit")
    with pytest.raises(featx.StoreChangedError, match="refresh"):
        before.features(split="train")
    np.testing.assert_array_equal(before.refresh().splits, resplit.splits)


def test_store_reads_a_small_store_by_split(tmp_path):
    """The quick tier's Store: a synthetic store read by split, the same rows load_features reads."""
    import _synth

    path = _synth.store(tmp_path / "s.h5", n_per_class=(20, 20, 20), dim=8)
    fs = load_features(path)
    with featx.Store(path) as store:
        assert len(store) == len(fs) == 60 and store.dim == 8 and store.classes == fs.classes == ["a", "b", "c"]
        assert "60 rows x 8 dims" in repr(store)
        train = fs.split == "train"
        np.testing.assert_array_equal(store.features(split="train"), fs.features[train])
        np.testing.assert_array_equal(store.labels(split=["val", "test"]), fs.labels[~train])
        np.testing.assert_array_equal(store.ids, fs.ids)
