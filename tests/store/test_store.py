"""The HDF5 store: schema readable with plain h5py, committed rows, torn batches, refusals, damage."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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


def _store(path, n=3, **kw):
    return write_arrays(path, _cfg(), features=np.arange(n * 2, dtype=np.float32).reshape(n, 2),
                        labels=[i % 2 for i in range(n)], ids=[f"c/{i}.jpg" for i in range(n)],
                        split=["train"] * n, classes=["x", "y"], **kw)


def test_schema_is_readable_with_plain_h5py(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 4)).astype(np.float32)
    ids = [f"c/{i}.jpg" for i in range(4)] + [os.fsdecode(b"c/caf\xe9.jpg")]
    path = write_arrays(tmp_path / "s.h5", _cfg(with_logits=True), features=X, labels=[0, 1, 0, 1, 1],
                        ids=ids, split=["train"] * 3 + ["val", "test"],
                        classes=["a", "b"], data_root=tmp_path, logits=rng.normal(size=(5, 3)).astype(np.float32),
                        failed=[("c/bad.jpg", "truncated")])
    with h5py.File(path, "r", locking=False) as f:
        n = int(f.attrs["rows"])
        assert n == 5 and bool(f.attrs["complete"])
        np.testing.assert_array_equal(f["features"][:n], X)
        assert f["labels"][:n].tolist() == [0, 1, 0, 1, 1]
        assert f["ids"].asstr()[0] == "c/0.jpg" and f["split"].asstr()[4] == "test"
        assert f["ids"][4] == b"c/caf\xe9.jpg"  # the file name's own bytes, losslessly
        assert os.fsdecode(f["ids"][4]) == ids[4] == f["ids"].asstr(errors="surrogateescape")[4]
        assert json.loads(f.attrs["classes"]) == ["a", "b"]
        assert json.loads(f.attrs["fingerprint"])["with_logits"] is True
        assert f["logits"].shape == (5, 3)
        assert f["failed/reason"].asstr()[0] == "truncated"
        assert f["features"].chunks is not None and f["features"].maxshape == (None, 4)
    attrs = read_attrs(path)
    assert attrs["n_rows"] == 5 and attrs["dim"] == 4 and attrs["n_failed"] == 1
    assert list(load_features(path).ids) == ids


def test_readers_see_committed_rows_only_and_torn_batch_is_cut_on_reopen(tmp_path):
    path = _store(tmp_path / "s.h5")
    with h5py.File(path, "a") as f:  # a kill after the rows were written but before they were committed
        for name in ("features", "labels", "ids", "split", "size", "mtime_ns", "hash"):
            f[name].resize(5, axis=0)
    fs = load_features(path)
    assert len(fs) == 3 and fs.features.shape == (3, 2) and list(fs.ids) == ["c/0.jpg", "c/1.jpg", "c/2.jpg"]
    with open_writer(path, _cfg()) as w:
        assert w.n_rows == 3 and w.f["features"].shape[0] == 3 and w.f["ids"].shape[0] == 3
        w.append(["c/9.jpg"], [1], ["val"], np.ones((1, 2), np.float32))
    assert load_features(path).ids.tolist()[-1] == "c/9.jpg"


def test_refusals(tmp_path):
    path = _store(tmp_path / "s.h5", n=2)
    with pytest.raises(StoreError, match="different settings \\(pool\\)"):
        with open_writer(path, _cfg(pool="avg")):
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
    with pytest.raises(StoreError, match="not a featx feature store"):
        with open_writer(tmp_path / "other.h5", _cfg()):
            pass
    assert h5py.is_hdf5(tmp_path / "other.h5")  # never overwritten


def test_featx_01_store_is_read_but_not_extended(tmp_path):
    path = _store(tmp_path / "old.h5")
    with h5py.File(path, "a") as f:  # what featx 0.1 wrote: schema v1, no stats, no committed count
        f.attrs["schema_version"] = 1
        del f.attrs["rows"]
        for name in ("size", "mtime_ns", "hash", "failed/size", "failed/mtime_ns"):
            del f[name]
    assert len(load_features(path)) == 3
    with pytest.raises(StoreError, match="schema v1 .*--overwrite"):
        with open_writer(path, _cfg()):
            pass


def test_damaged_store_is_reported_then_kept_aside(tmp_path, monkeypatch):
    import featx.store.reader as reader

    monkeypatch.setattr(reader, "ERROR_WAIT_S", 0.2)
    path = _store(tmp_path / "s.h5", n=200)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])  # cut: the HDF5 signature survives, the rest does not
    with pytest.raises(StoreError, match="damaged feature store|not a readable HDF5") as err:
        load_features(path)
    assert "\n" not in str(err.value) and path.exists()
    with pytest.warns(UserWarning, match="kept as s.h5.corrupt-"):
        with open_writer(path, _cfg()) as w:
            assert not w.exists
    aside = list(tmp_path.glob("s.h5.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == data[: len(data) // 3]  # kept, byte for byte


def test_a_plain_reader_holding_the_file_never_blocks_the_writer(tmp_path):
    """Case 1 of the store issue at the store level: HDF5's own lock is never taken for damage."""
    path = _store(tmp_path / "s.h5")
    notebook = subprocess.Popen([sys.executable, "-c", "import h5py, sys, time\n"
                                 f"f = h5py.File(r'{path}', 'r'); print(f['ids'].shape[0], flush=True)\n"
                                 "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert notebook.stdout.readline().strip() == "3"  # holds the file with HDF5's default (shared) lock
        with open_writer(path, _cfg()) as w:
            w.append(["c/7.jpg"], [0], ["test"], np.zeros((1, 2), np.float32))
        assert len(load_features(path)) == 4
    finally:
        notebook.kill()
        notebook.wait()
    with h5py.File(path, "r") as same_process:  # in one process HDF5 refuses a second, writing open:
        with pytest.raises(StoreError, match="cannot be opened for writing"):  # said so, not taken for damage
            with open_writer(path, _cfg()):
                pass
        assert same_process["features"].shape[0] == 4
    assert not list(tmp_path.glob("*.corrupt-*"))


def test_unfinished_store_says_whether_its_writer_is_still_at_work(tmp_path):
    path = tmp_path / "s.h5"
    with open_writer(path, _cfg()) as w:
        w.create(_cfg(), 2, None, {"classes": ["x", "y"], "data_root": "."})
        w.append(["a"], [0], ["train"], np.zeros((1, 2), np.float32))
        with pytest.raises(StoreError, match="still running \\(1 rows so far\\)"):
            load_features(path)
        assert len(load_features(path, require_complete=False)) == 1  # committed rows are readable meanwhile
    with pytest.raises(StoreError, match="interrupted"):
        load_features(path)
