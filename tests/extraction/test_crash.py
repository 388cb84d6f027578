"""Kills at every point of a write, readers beside a writer, held files and refused locks: real processes.

A killed run, re-run with the same command, must end equal to an uninterrupted run (same ids,
order, labels, splits, features); a reader looping beside a writer must never raise and never
see a partial row or a half-applied update; the writer is never refused because of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest
from PIL import Image

from featx.data.discover import load_dataset
from featx.errors import StoreError
from featx.extraction.options import ExtractOptions
from featx.extraction.run import extract
from featx.store.reader import load_features
from helpers import copy_subset

RUN = textwrap.dedent("""
    import json, sys
    from featx.extraction.options import ExtractOptions
    from featx.extraction.run import extract
    extract(ExtractOptions("pixels", sys.argv[1], out=sys.argv[2], batch_size=4, workers=0, progress=False,
                           **json.loads(sys.argv[3])))
""")


@pytest.fixture()
def folder(tmp_path, monet_dir):
    return copy_subset(monet_dir, tmp_path / "data", per_class=8, split="train")


def _px(data, out, **kw):
    return extract(ExtractOptions("pixels", data, out=out, batch_size=4, workers=0, progress=False, **kw))


def _killed_at(point: str, data, out, **kw) -> None:
    env = {**os.environ, "FEATX_FAULT": point}
    proc = subprocess.run([sys.executable, "-c", RUN, str(data), str(out), json.dumps(kw)], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, f"{point}: not killed ({proc.returncode}): {proc.stderr[-800:]}"


def _same(a_path, b_path) -> None:
    a, b = load_features(a_path), load_features(b_path)
    assert list(a.ids) == list(b.ids)
    assert a.labels.tolist() == b.labels.tolist() and a.classes == b.classes
    assert list(a.split) == list(b.split)
    np.testing.assert_allclose(a.features, b.features, rtol=1e-6, atol=1e-6)
    assert sorted(a.failed) == sorted(b.failed)


def _edit(folder, k=2):
    edited = sorted((folder / "claude-monet").iterdir())[:k]
    for p in edited:
        Image.open(p).rotate(90).save(p)
    return edited


@pytest.mark.slow
@pytest.mark.parametrize("point", ["append:features:2", "append:flush:2", "finalize:attrs"])
def test_kill_during_first_extraction_then_rerun_equals_clean_run(point, folder, tmp_path):
    (folder / "claude-monet" / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "killed.h5"
    _killed_at(point, folder, out)
    _px(folder, out)
    _same(out, _px(folder, tmp_path / "clean.h5").path)


@pytest.mark.slow
def test_kill_during_in_place_replacement_then_rerun(folder, tmp_path):
    out = tmp_path / "s.h5"
    _px(folder, out)
    _edit(folder)
    _killed_at("replace:features:1", folder, out)
    t0 = time.monotonic()
    with pytest.raises(StoreError, match="update of this store was interrupted"):
        load_features(out)  # readers are told at once (the writer is gone), not left waiting
    assert time.monotonic() - t0 < 5
    res = _px(folder, out)
    assert res.sync["changed"] >= 1
    _same(out, _px(folder, tmp_path / "clean.h5").path)


@pytest.mark.slow
def test_kill_while_dropping_rows_keeps_the_old_store(folder, tmp_path):
    out = tmp_path / "s.h5"
    _px(folder, out)
    sorted((folder / "alfred-sisley").iterdir())[0].unlink()
    _killed_at("drop:replace", folder, out)
    assert len(load_features(out)) == 16  # the old store, whole
    assert list(tmp_path.glob(".s.h5.compact-*"))  # the half-done copy ...
    assert _px(folder, out).sync["missing"] == 1
    assert not list(tmp_path.glob(".s.h5.compact-*"))  # ... is cleared by the next writer
    _same(out, _px(folder, tmp_path / "clean.h5").path)


@pytest.mark.slow
def test_kill_inside_overwrite_leaves_the_old_store(folder, tmp_path):
    out = tmp_path / "s.h5"
    _px(folder, out, split_seed=1)
    old = load_features(out)
    _edit(folder)
    _killed_at("overwrite:replace", folder, out, overwrite=True)
    kept = load_features(out)
    assert list(kept.ids) == list(old.ids) and np.array_equal(kept.features, old.features)
    _killed_at("append:features:2", folder, out, overwrite=True)
    assert np.array_equal(load_features(out).features, old.features)
    _px(folder, out, overwrite=True)
    _same(out, _px(folder, tmp_path / "clean.h5").path)
    assert not [p for p in tmp_path.iterdir() if ".overwrite" in p.name]


KILL_WITH_WORKERS = textwrap.dedent("""
    import os, signal, sys
    from featx.extraction.options import ExtractOptions
    from featx.extraction.run import extract
    def kill(k):
        if k == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    extract(ExtractOptions("pixels", sys.argv[1], out=sys.argv[2], batch_size=2, workers=2,
                           progress=False), on_batch=kill)
""")


@pytest.mark.slow
def test_kill_9_with_dataloader_workers_then_same_command_at_once(folder, tmp_path):
    """Case 6: orphaned DataLoader workers must not keep the writer lock."""
    out = tmp_path / "s.h5"
    proc = subprocess.run([sys.executable, "-c", KILL_WITH_WORKERS, str(folder), str(out)])
    assert proc.returncode == -signal.SIGKILL
    res = _px(folder, out)  # at once, while the orphans may still be alive
    assert res.n_rows == 16 and res.n_new == 12
    _same(out, _px(folder, tmp_path / "clean.h5").path)


READER = textwrap.dedent("""
    import hashlib, json, sys, os, time
    from featx.store.reader import load_features
    path, log, stop = sys.argv[1:4]
    with open(log, "w") as fh:
        while not os.path.exists(stop):
            try:
                fs = load_features(path, require_complete=False)
                rows = [[i, s, fs.classes[l], hashlib.sha1(x.tobytes()).hexdigest()]
                        for i, s, l, x in zip(fs.ids, fs.split, fs.labels, fs.features)]
                ok = len(fs.ids) == len(fs.features) == len(fs.labels) == len(fs.split)
                fh.write(json.dumps({"n": len(rows), "ok": ok, "rows": rows}) + "\\n")
            except Exception as exc:
                fh.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\\n")
            fh.flush()
""")


def _digests(path) -> dict[str, str]:
    fs = load_features(path)
    return {i: hashlib.sha1(x.tobytes()).hexdigest() for i, x in zip(fs.ids, fs.features)}


@pytest.mark.slow
def test_reader_beside_a_writer_sees_only_whole_rows_and_whole_updates(tmp_path, monet_dir):
    data = copy_subset(monet_dir, tmp_path / "data", per_class=48, split="train")
    later = tmp_path / "later"
    for cls in ("alfred-sisley", "claude-monet"):
        (later / cls).mkdir(parents=True)
        for p in sorted((data / cls).iterdir())[8:]:
            os.rename(p, later / cls / p.name)  # rename keeps the files' times
    out = tmp_path / "s.h5"
    _px(data, out)
    old = _digests(out)
    for p in later.rglob("*.jpg"):
        os.rename(p, data / p.parent.name / p.name)
    edited = {f"claude-monet/{p.name}" for p in _edit(data)}
    log, stop = tmp_path / "reads.jsonl", tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(out), str(log), str(stop)])
    try:
        time.sleep(1.0)  # the reader is reading
        res = extract(ExtractOptions("pixels", data, out=out, batch_size=4, workers=0, progress=False,
                                     split_seed=3), on_batch=lambda k: time.sleep(0.05))
    finally:
        stop.touch()
        reader.wait(timeout=60)
    assert res.n_rows == 96 and res.sync["changed"] == 2 and res.sync["new"] == 80 and res.sync["resplit"] > 0
    new = _digests(out)
    seed0, seed3 = (dict(zip(d.ids, d.split)) for d in (load_dataset(data), load_dataset(data, split_seed=3)))
    reads = [json.loads(line) for line in log.read_text().splitlines()]
    assert reads and not [r for r in reads if "error" in r]
    sizes = {r["n"] for r in reads}
    assert len(sizes) >= 3 and min(sizes) == 16 and max(sizes) == 96  # it read while rows were being added
    for r in reads:
        assert r["ok"]
        ids = [row[0] for row in r["rows"]]
        splits = [row[1] for row in r["rows"]]
        assert splits in ([seed0[i] for i in ids], [seed3[i] for i in ids])  # all old or all new, never mixed
        for image_id, _, label, digest in r["rows"]:
            assert label == image_id.split("/")[0]
            assert digest == new[image_id] or (image_id in edited and digest == old[image_id])


@pytest.mark.slow
def test_plain_h5py_reader_holding_the_store_while_extract_adds_an_image(folder, tmp_path):
    """Case 1: a notebook holds the store open read-only; extract appends the one new image."""
    out = tmp_path / "s.h5"
    _px(folder, out)
    notebook = subprocess.Popen([sys.executable, "-c", "import h5py, sys, time\n"
                                 f"f = h5py.File(r'{out}', 'r'); print(f.attrs['rows'], flush=True)\n"
                                 "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert notebook.stdout.readline().strip() == "16"
        shutil.copy(sorted((folder / "claude-monet").iterdir())[0], folder / "claude-monet" / "zz-new.jpg")
        res = _px(folder, out)
        assert res.n_new == 1 and res.n_rows == 17
    finally:
        notebook.kill()
        notebook.wait()
    assert not list(tmp_path.glob("*.corrupt-*"))


@pytest.mark.slow
def test_hdf5_locking_environment(folder, tmp_path):
    """HDF5_USE_FILE_LOCKING=FALSE (cluster scratch advice) works; TRUE with a lock refused is one clear line."""
    out = tmp_path / "s.h5"
    env = {**os.environ, "HDF5_USE_FILE_LOCKING": "FALSE"}
    cli = [sys.executable, "-m", "featx.cli", "extract", "-b", "pixels", "-d", str(folder), "-o", str(out), "-q",
           "--workers", "0"]
    assert subprocess.run(cli, env=env, capture_output=True).returncode == 0
    info = subprocess.run([sys.executable, "-m", "featx.cli", "info", str(out)], env=env, capture_output=True,
                          text=True)
    assert info.returncode == 0 and "rows 16" in info.stdout
    notebook = subprocess.Popen([sys.executable, "-c", "import h5py, time\n"
                                 f"f = h5py.File(r'{out}', 'r'); print('open', flush=True); time.sleep(60)"],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert notebook.stdout.readline().strip() == "open"
        shutil.copy(sorted((folder / "claude-monet").iterdir())[0], folder / "claude-monet" / "zz-new.jpg")
        proc = subprocess.run(cli, env={**os.environ, "HDF5_USE_FILE_LOCKING": "TRUE"}, capture_output=True,
                              text=True)
    finally:
        notebook.kill()
        notebook.wait()
    assert proc.returncode == 4 and "HDF5_USE_FILE_LOCKING=TRUE" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("*.corrupt-*")) and len(load_features(out)) == 16
    with h5py.File(out, "r", locking=False) as f:
        assert int(f.attrs["rows"]) == 16


def test_damaged_store_is_kept_aside_and_rebuilt_by_extract(folder, tmp_path):
    out = tmp_path / "s.h5"
    _px(folder, out)
    data = out.read_bytes()
    out.write_bytes(data[: len(data) // 2])  # e.g. a disk filled up while another tool copied it
    with pytest.warns(UserWarning, match="damaged store"):
        res = _px(folder, out)
    assert res.n_rows == 16 and not res.cache_hit
    aside = list(tmp_path.glob("s.h5.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == data[: len(data) // 2]
    _same(out, _px(folder, tmp_path / "clean.h5").path)
