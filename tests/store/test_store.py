"""The HDF5 store: schema readable with plain h5py, torn batches, refusals."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from featx.config import DataCfg, ExtractCfg
from featx.errors import StoreError
from featx.store.reader import load_features, read_attrs
from featx.store.writer import open_writer, write_arrays


def _cfg(**kw) -> ExtractCfg:
    base = dict(backbone="pixels", arch="pixels", source="pixels", weights="none", layer="pixels", module="",
                pool="flatten", data=DataCfg())
    return ExtractCfg(**{**base, **kw})


def test_schema_is_readable_with_plain_h5py(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 4)).astype(np.float32)
    path = write_arrays(tmp_path / "s.h5", _cfg(with_logits=True), features=X, labels=[0, 1, 0, 1, 1],
                        ids=[f"c/{i}.jpg" for i in range(5)], split=["train"] * 3 + ["val", "test"],
                        classes=["a", "b"], data_root=tmp_path, logits=rng.normal(size=(5, 3)).astype(np.float32),
                        failed=[("c/bad.jpg", "truncated")])
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["features"][:], X)
        assert f["labels"][:].tolist() == [0, 1, 0, 1, 1]
        assert f["ids"].asstr()[0] == "c/0.jpg" and f["split"].asstr()[4] == "test"
        assert json.loads(f.attrs["classes"]) == ["a", "b"]
        assert json.loads(f.attrs["fingerprint"])["with_logits"] is True
        assert f["logits"].shape == (5, 3) and bool(f.attrs["complete"])
        assert f["failed/reason"].asstr()[0] == "truncated"
        assert f["features"].chunks is not None and f["features"].maxshape == (None, 4)
    attrs = read_attrs(path)
    assert attrs["n_rows"] == 5 and attrs["dim"] == 4 and attrs["n_failed"] == 1


def test_torn_batch_is_cut_on_reopen(tmp_path):
    path = write_arrays(tmp_path / "s.h5", _cfg(), features=np.ones((3, 2), np.float32), labels=[0, 1, 0],
                        ids=["a", "b", "c"], split=["train"] * 3, classes=["x", "y"])
    with h5py.File(path, "a") as f:  # a kill between features and ids leaves extra feature rows
        f["features"].resize(5, axis=0)
        f["labels"].resize(4, axis=0)
    meta = {"classes": ["x", "y"], "data_root": "."}
    with open_writer(path, _cfg(), dim=2, logits_dim=None, meta=meta) as w:
        assert w.n_rows == 3 and w.done_ids() == {"a", "b", "c"}
        assert w.f["features"].shape[0] == 3 and w.f["labels"].shape[0] == 3
        w.finalize()


def test_refusals(tmp_path):
    path = write_arrays(tmp_path / "s.h5", _cfg(), features=np.ones((2, 2), np.float32), labels=[0, 1],
                        ids=["a", "b"], split=["train"] * 2, classes=["x", "y"])
    with pytest.raises(StoreError, match="different settings \\(pool\\)"):
        with open_writer(path, _cfg(pool="avg"), dim=2, logits_dim=None, meta={"classes": ["x", "y"],
                                                                              "data_root": "."}):
            pass
    with pytest.raises(StoreError, match="has classes"):
        with open_writer(path, _cfg(), dim=2, logits_dim=None, meta={"classes": ["x", "z"], "data_root": "."}):
            pass
    with h5py.File(path, "a") as f:
        f.attrs["complete"] = False
    with pytest.raises(StoreError, match="interrupted"):
        load_features(path)
    assert len(load_features(path, require_complete=False)) == 2
    with pytest.raises(StoreError, match="no such feature store"):
        load_features(tmp_path / "nope.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(StoreError, match="not a featx feature store"):
        load_features(tmp_path / "other.h5")
