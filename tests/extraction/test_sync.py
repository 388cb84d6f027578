"""The store follows the folder: edited, new, deleted, relabelled, moved and oddly named files (real files).

Each case of the store issue that featx 0.1 got wrong is one test here; ``forbid_model`` proves a
run changed the store without building a network.
"""

from __future__ import annotations

import os
import shutil

import h5py
import numpy as np
import pytest
from PIL import Image

from featx.data.discover import load_dataset
from featx.errors import StoreError
from featx.extraction.plan import verify_store
from featx.extraction.options import ExtractOptions
from featx.extraction.run import extract
from featx.store.reader import load_features
from helpers import copy_subset, rgb


@pytest.fixture()
def folder(tmp_path, monet_dir):
    return copy_subset(monet_dir, tmp_path / "data", per_class=8, split="train")


def _boom(*a, **k):
    raise AssertionError("a network was built")


def forbid_model(monkeypatch):
    """From now on in this test, building a network fails the test."""
    import featx.engine.runtime as embed

    monkeypatch.setattr(embed, "build_embedder", _boom)


def _px(data, out, **kw):
    return extract(ExtractOptions("pixels", data, out=out, workers=0, progress=False, **kw))


def _first(folder, cls="claude-monet"):
    return sorted((folder / cls).iterdir())[0]


@pytest.mark.slow
def test_edited_image_is_re_extracted_in_place(folder, tmp_path):
    """Case 2: an image rotated and saved under the same name."""
    out = tmp_path / "s.h5"
    _px(folder, out)
    before = load_features(out)
    edited = _first(folder)
    Image.open(edited).rotate(90).save(edited)
    res = _px(folder, out)
    assert not res.cache_hit and res.sync["changed"] == 1 and res.n_new == 1 and res.n_rows == 16
    after = load_features(out)
    assert list(after.ids) == list(before.ids)  # ids and order untouched
    i = list(after.ids).index(f"claude-monet/{edited.name}")
    assert not np.allclose(after.features[i], before.features[i])
    others = np.arange(16) != i
    np.testing.assert_array_equal(after.features[others], before.features[others])
    fresh = load_features(_px(folder, tmp_path / "fresh.h5").path)
    np.testing.assert_allclose(after.features, fresh.features, rtol=1e-6, atol=1e-6)
    assert _px(folder, out).cache_hit


@pytest.mark.slow
def test_new_split_seed_resplits_without_extracting(folder, tmp_path, monkeypatch):
    """Case 3: --split-seed 7 after the default seed."""
    out = tmp_path / "s.h5"
    _px(folder, out)
    forbid_model(monkeypatch)
    res = _px(folder, out, split_seed=7)
    assert not res.cache_hit and res.n_new == 0 and res.sync["resplit"] > 0
    fs = load_features(out)
    seven = load_dataset(folder, split_seed=7)
    expected = dict(zip(seven.ids, seven.split))
    assert [expected[i] for i in fs.ids] == list(fs.split)
    assert fs.attrs["source"]["split"] == {"kind": "hash", "seed": 7, "ratios": [0.8, 0.1, 0.1]}
    assert _px(folder, out, split_seed=7).cache_hit
    assert not _px(folder, out, split_ratios=(0.5, 0.25, 0.25)).cache_hit


@pytest.mark.slow
def test_another_copy_of_the_folder_needs_relocate(folder, tmp_path, monkeypatch):
    """Case 4: the same --out pointed at another copy with one image fewer."""
    out = tmp_path / "s.h5"
    _px(folder, out)
    copy = shutil.copytree(folder, tmp_path / "mounted-elsewhere")  # copy2 keeps sizes and times
    _first(copy).unlink()
    with pytest.raises(StoreError, match="--relocate"):
        _px(copy, out)
    assert load_features(out).data_root == folder.resolve()
    forbid_model(monkeypatch)
    res = _px(copy, out, relocate=True)
    assert res.sync["missing"] == 1 and res.n_new == 0 and res.n_rows == 15
    fs = load_features(out)
    assert fs.data_root == copy.resolve() and fs.image_path(0).exists() and len(fs) == 15


@pytest.mark.slow
def test_latin1_file_name_is_stored_losslessly(folder, tmp_path):
    """Case 5: a file whose name is Latin-1 bytes."""
    odd = os.fsdecode(b"caf\xe9.jpg")
    shutil.copy(_first(folder), os.path.join(folder / "claude-monet", odd))
    out = tmp_path / "s.h5"
    res = _px(folder, out)
    assert res.n_rows == 17 and not res.failures
    fs = load_features(out)
    assert f"claude-monet/{odd}" in list(fs.ids)
    assert fs.image_path(list(fs.ids).index(f"claude-monet/{odd}")).exists()  # round-trips to the real file
    with h5py.File(out, "r", locking=False) as f:
        assert b"claude-monet/caf\xe9.jpg" in list(f["ids"][:])
    assert _px(folder, out).cache_hit  # and the next run does not die at the same place


@pytest.mark.slow
def test_deleted_files_follow_missing_policy(folder, tmp_path):
    out = tmp_path / "s.h5"
    _px(folder, out)
    gone = _first(folder, "alfred-sisley")
    gone.unlink()
    kept = _px(folder, out, missing="keep")
    assert kept.cache_hit and kept.sync["kept_missing"] == 1 and kept.n_rows == 16  # said, not silent
    dropped = _px(folder, out)
    assert dropped.sync["missing"] == 1 and dropped.n_rows == 15
    assert f"alfred-sisley/{gone.name}" not in list(load_features(out).ids)
    assert _px(folder, out).cache_hit


@pytest.mark.slow
def test_hash_tells_touched_from_changed(folder, tmp_path, monkeypatch):
    out = tmp_path / "s.h5"
    _px(folder, out, hash=True)
    forbid_model(monkeypatch)
    touched = _first(folder)
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    res = _px(folder, out)  # the store keeps hashing once made with --hash
    assert res.sync["restat"] == 1 and res.n_new == 0
    assert _px(folder, out).cache_hit
    with h5py.File(out, "r", locking=False) as f:
        assert all(len(h) == 32 for h in f["hash"].asstr()[:])


@pytest.mark.slow
def test_failed_images_are_retried_when_fixed_or_asked(folder, tmp_path):
    bad = folder / "claude-monet" / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    out = tmp_path / "s.h5"
    first = _px(folder, out)
    assert [i for i, _ in first.failures] == ["claude-monet/broken.jpg"]
    assert _px(folder, out).cache_hit  # an unchanged failure is not retried forever
    again = _px(folder, out, retry_failed=True)
    assert again.sync["retried"] == 1 and len(again.failures) == 1
    rgb(7).save(bad, "JPEG")  # fixed
    fixed = _px(folder, out)
    assert fixed.sync["retried"] == 1 and not fixed.failures and fixed.n_rows == 17
    fs = load_features(out)
    assert fs.failed == [] and "claude-monet/broken.jpg" in list(fs.ids)


@pytest.mark.slow
def test_manifest_relabel_and_new_class_without_extracting(tmp_path, monet_dir, monkeypatch):
    data = copy_subset(monet_dir, tmp_path / "img", per_class=4, split="train")
    files = sorted(p.relative_to(tmp_path).as_posix() for p in data.rglob("*.jpg"))
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\n" + "".join(f"{p},{p.split('/')[1]}\n" for p in files))
    out = tmp_path / "s.h5"
    _px(manifest, out)
    sha = load_features(out).attrs["source"]["manifest_sha256"]
    relabelled = files[0]
    manifest.write_text("path,label\n" + "".join(f"{p},{'pissarro' if p == relabelled else p.split('/')[1]}\n"
                                                 for p in files))
    forbid_model(monkeypatch)
    res = _px(manifest, out)
    assert res.sync["relabelled"] == 1 and res.n_new == 0
    fs = load_features(out)
    assert fs.classes == ["alfred-sisley", "claude-monet", "pissarro"]
    assert fs.classes[fs.labels[list(fs.ids).index(relabelled)]] == "pissarro"
    assert fs.attrs["source"]["manifest_sha256"] != sha


def test_symlinks_are_followed_and_one_file_is_one_row(folder, tmp_path):
    extra = tmp_path / "elsewhere" / "monet-extra"
    extra.mkdir(parents=True)
    shutil.copy(_first(folder, "alfred-sisley"), extra / "x1.jpg")
    (folder / "claude-monet" / "more").symlink_to(extra, target_is_directory=True)  # a linked folder
    (folder / "claude-monet" / "zz-again.jpg").symlink_to(_first(folder))  # the same file reached twice
    (folder / "claude-monet" / "loop").symlink_to(folder / "claude-monet", target_is_directory=True)  # a cycle
    ds = load_dataset(folder)
    assert "claude-monet/more/x1.jpg" in ds.ids
    assert "claude-monet/zz-again.jpg" not in ds.ids and f"claude-monet/{_first(folder).name}" in ds.ids
    assert not any("loop" in i for i in ds.ids) and len(ds) == 17
    assert _px(folder, tmp_path / "s.h5").n_rows == 17


@pytest.mark.slow
def test_precision_is_part_of_the_fingerprint(folder, tmp_path):
    out = tmp_path / "s.h5"
    extract(ExtractOptions("efficientnet_lite0", folder, weights="none", out=out, precision="fp32", workers=0,
                           progress=False))
    assert load_features(out).fingerprint["precision"] == "fp32"
    with pytest.raises(StoreError, match="different settings \\(precision\\)"):
        extract(ExtractOptions("efficientnet_lite0", folder, weights="none", out=out, precision="bf16", workers=0,
                               progress=False))
    assert extract(ExtractOptions("efficientnet_lite0", folder, weights="none", out=out, workers=0,
                                  progress=False)).cache_hit


@pytest.mark.slow
def test_verify_reports_without_extracting(folder, tmp_path):
    out = tmp_path / "s.h5"
    _px(folder, out)
    Image.open(_first(folder)).rotate(90).save(_first(folder))
    _first(folder, "alfred-sisley").unlink()
    shutil.copy(_first(folder), folder / "claude-monet" / "zz-new.jpg")
    before = out.read_bytes()
    delta, rows, ds = verify_store(out)
    assert (len(delta.changed), len(delta.missing), len(delta.new)) == (1, 1, 1)
    assert ds.ids[delta.new[0]] == "claude-monet/zz-new.jpg"
    assert out.read_bytes() == before  # nothing written
