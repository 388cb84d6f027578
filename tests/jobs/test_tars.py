"""WebDataset-style tar shards as --data: the same paintings packed in 3 tars give the folder's features."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from featx.data.discover import load_dataset
from featx.data.tars import expand
from featx.errors import DataError

BACKBONE = "efficientnet_lite0"


def pack(folder: Path, out: Path, shards: int, label: str = "folder") -> str:
    """Pack ``folder``'s class folders into ``shards`` tars; labels from key folders, .cls or .json members."""
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(folder.rglob("*.jpg"))
    for k in range(shards):
        with tarfile.open(out / f"train-{k:06d}.tar", "w") as tf:
            for f in files[k::shards]:
                key = f"{f.parent.name}/{f.stem}" if label == "folder" else f"{f.stem}"
                tf.add(f, arcname=f"{key}.jpg")
                if label != "folder":
                    text = f.parent.name if label == "cls" else json.dumps({"label": f.parent.name})
                    info = tarfile.TarInfo(f"{key}.{label}")
                    info.size = len(text.encode())
                    tf.addfile(info, io.BytesIO(text.encode()))
    return str(out / f"train-{{000000..{shards - 1:06d}}}.tar")


def test_brace_patterns_expand_with_their_zero_padding():
    assert [p.name for p in expand("s/a-{000..002}.tar")] == ["a-000.tar", "a-001.tar", "a-002.tar"]
    assert [p.name for p in expand("a-{8..10}.tar")] == ["a-8.tar", "a-9.tar", "a-10.tar"]
    assert expand("one.tar") == [Path("one.tar")]


@pytest.mark.slow
def test_three_tar_shards_give_the_features_of_the_folder(paintings, single_store, tmp_path):
    from featx.store.reader import load_features

    spec = pack(paintings, tmp_path / "tars", 3)
    out = tmp_path / "tar.h5"
    r = subprocess.run([sys.executable, "-m", "featx", "extract", "-b", BACKBONE, "-d", spec, "--out", str(out), "-q"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "wrote 26 new rows" in r.stdout, r.stderr
    tar, folder = load_features(out), load_features(single_store)
    assert list(tar.ids) == [i.rsplit(".", 1)[0] for i in folder.ids]  # ids are the tar keys
    assert (tar.labels == folder.labels).all() and list(tar.classes) == list(folder.classes)
    np.testing.assert_allclose(tar.features, folder.features, rtol=1e-4, atol=1e-5)
    assert tar.attrs["layout"] == "tar"
    again = subprocess.run([sys.executable, "-m", "featx", "extract", "-b", BACKBONE, "-d", spec, "--out", str(out)],
                           capture_output=True, text=True)
    assert "cache hit" in again.stdout
    verify = subprocess.run([sys.executable, "-m", "featx", "info", str(out), "--verify"], capture_output=True,
                            text=True)
    assert verify.returncode == 0 and "in sync" in verify.stdout, verify.stdout + verify.stderr


@pytest.mark.slow
@pytest.mark.parametrize("label", ["cls", "json"])
def test_labels_come_from_cls_or_json_members(paintings, tmp_path, label):
    ds = load_dataset(pack(paintings, tmp_path / label, 2, label=label))
    want = load_dataset(paintings)
    assert ds.classes == want.classes and len(ds) == len(want)
    assert sorted(ds.classes[k] for k in ds.labels) == sorted(want.classes[k] for k in want.labels)
    img = ds.path(0).open().read(3)
    assert img[:2] == b"\xff\xd8"  # read straight from the tar at its offset: a JPEG


@pytest.mark.slow
def test_tar_errors_are_one_line(paintings, tmp_path):
    spec = pack(paintings, tmp_path / "t", 2)
    Path(spec.replace("{000000..000001}", "000001")).unlink()
    with pytest.raises(DataError, match="1 of 2 tar files missing"):
        load_dataset(spec)
    (tmp_path / "bad.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(DataError, match="not a readable tar file"):
        load_dataset(tmp_path / "bad.tar")
    r = subprocess.run([sys.executable, "-m", "featx", "extract", "-b", BACKBONE, "-d",
                        spec.replace("{000000..000001}", "000000"), "--out", str(tmp_path / "h.h5"), "--hash"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--hash: tar shards" in r.stderr and len(r.stderr.splitlines()) == 1


def _colourful(png: Path) -> float:
    """Share of a PNG's pixels with colour (channels > 30 apart): paintings have it, the grey "missing"
    placeholders, white margins and black captions have none."""
    from PIL import Image

    with Image.open(png) as im:
        a = np.asarray(im.convert("RGB"), dtype=np.int16)
    return float(((a.max(axis=2) - a.min(axis=2)) > 30).mean())


def test_sheets_of_a_tar_store_show_its_paintings(paintings, tmp_path):
    """``featx neighbors --sheet``, ``featx audit`` and ``featx analyze --outliers`` of a tar store draw the
    paintings read from the tars; with the tars gone they fall back to grey placeholders."""
    spec = pack(paintings, tmp_path / "tars", 2)
    store = tmp_path / "tar.h5"

    def featx(*args) -> subprocess.CompletedProcess:
        r = subprocess.run([sys.executable, "-m", "featx", *map(str, args)], capture_output=True, text=True,
                           cwd=tmp_path, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        return r

    featx("extract", "-b", "pixels", "-d", spec, "--out", store, "-q")

    def sheets(tag: str) -> dict[str, float]:
        featx("neighbors", store, "--row", 0, "--row", 5, "--k", 4, "--sheet", tmp_path / f"nn-{tag}.png")
        featx("audit", store, "--top", 6, "--out", tmp_path / f"audit-{tag}", "-q")
        featx("analyze", store, "--outliers", "--out", tmp_path / f"analyze-{tag}")
        return {"neighbors": _colourful(tmp_path / f"nn-{tag}.png"),
                "audit": _colourful(tmp_path / f"audit-{tag}" / "least_sure.png"),
                "outliers": _colourful(tmp_path / f"analyze-{tag}" / "tar-outliers.png")}

    shown = sheets("tars")
    (tmp_path / "tars").rename(tmp_path / "gone")
    placeholders = sheets("gone")
    for name in shown:
        assert placeholders[name] < 0.02 and shown[name] > 0.1, (name, shown, placeholders)
