"""ImageLocator: ids of folder stores stay inside the data folder (hostile ids and outward symlinks refused),
tar stores find their members, and a real tar store made by ``featx extract`` locates every row."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from helpers import copy_subset, rgb

from featx.data.images import load_rgb
from featx.data.locate import ImageLocator
from featx.data.tars import TarMember, image_members
from featx.errors import DataError

HOSTILE = ["../../etc/passwd", "/etc/passwd", "a/../../outside.jpg", "a/../a/one.jpg", "", "a/\x00.jpg"]


@pytest.fixture
def folder(tmp_path) -> dict:
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    rgb(1).save(root / "a" / "one.jpg")
    rgb(2).save(tmp_path / "outside.jpg")
    (root / "a" / "out.jpg").symlink_to(tmp_path / "outside.jpg")  # a link leading out of the data folder
    (root / "a" / "in.jpg").symlink_to(root / "a" / "one.jpg")  # a link that stays inside
    (root / "a" / "dir.jpg").mkdir()  # not a regular file
    return {"root": root, "ids": ["a/one.jpg", "a/out.jpg", "a/in.jpg", "a/dir.jpg", "a/missing.jpg", *HOSTILE]}


def test_folder_ids_resolve_inside_the_data_root_and_hostile_ones_are_refused(folder):
    loc = ImageLocator.for_store({"data_root": str(folder["root"]), "layout": "class-folders"}, folder["ids"])
    root = folder["root"].resolve()
    assert loc.source(0) == root / "a" / "one.jpg" and loc.source(2) == root / "a" / "one.jpg"
    st = os.stat(root / "a" / "one.jpg")
    assert loc.stat(0) == (st.st_size, st.st_mtime_ns)
    for row in range(1, len(folder["ids"])):
        if row == 2:
            continue
        with pytest.raises(DataError) as err:
            loc.source(row)
        assert "\n" not in str(err.value)
        assert loc.find(row) is None
    with pytest.raises(DataError, match="outside the data folder"):
        loc.source(1)
    with pytest.raises(DataError, match="refused"):
        loc.source(folder["ids"].index("/etc/passwd"))
    with pytest.raises(DataError, match="rows 0 to"):
        loc.source(len(folder["ids"]))
    with pytest.raises(DataError, match="rows 0 to"):
        loc.source(-1)
    assert load_rgb(loc.source(0)).size == (64, 48)


def test_links_outside_follows_symlinks_but_never_absolute_or_dotdot_ids(folder):
    loc = ImageLocator.for_store({"data_root": str(folder["root"])}, folder["ids"], links_outside=True)
    assert load_rgb(loc.source(1)).size == (64, 48)  # the outward symlink (a symlinked class folder, say)
    for bad in HOSTILE:
        assert loc.find(folder["ids"].index(bad)) is None


def test_a_missing_data_folder_is_one_clear_error(tmp_path):
    loc = ImageLocator.for_store({"data_root": str(tmp_path / "gone")}, ["a.jpg"])
    with pytest.raises(DataError, match="data folder is missing"):
        loc.source(0)


def test_tar_members_are_found_by_key(tmp_path):
    for k in range(2):
        with tarfile.open(tmp_path / f"s-{k}.tar", "w") as tf:
            for i in range(3):
                rgb(10 * k + i).save(tmp_path / "x.png")
                tf.add(tmp_path / "x.png", arcname=f"c{k}/img{i}.png")
    pattern = str(tmp_path / "s-{0..1}.tar")
    assert sorted(image_members(pattern)) == [f"c{k}/img{i}" for k in range(2) for i in range(3)]
    ids = ["c1/img2", "c0/img0", "../../etc/passwd", "c9/none"]
    loc = ImageLocator.for_store({"layout": "tar", "data_root": str(tmp_path), "source": {"data": pattern}}, ids)
    src = loc.source(0)
    assert isinstance(src, TarMember) and src.name == "c1/img2.png"
    assert np.array_equal(np.asarray(load_rgb(src)), np.asarray(rgb(12)))
    assert loc.stat(0) == (src.size, os.stat(tmp_path / "s-1.tar").st_mtime_ns)
    assert loc.find(2) is None and loc.find(3) is None
    with pytest.raises(DataError, match="not found in the store's tar files"):
        loc.source(3)


def test_a_tar_store_made_by_featx_extract_locates_every_row(monet_dir, tmp_path):
    from featx import Store

    paintings = copy_subset(monet_dir, tmp_path / "p", per_class=3, split="test")
    with tarfile.open(tmp_path / "shard-0.tar", "w") as tf:
        for f in sorted(paintings.rglob("*.jpg")):
            tf.add(f, arcname=f"{f.parent.name}/{f.stem}.jpg")
    out = tmp_path / "tar.h5"
    r = subprocess.run([sys.executable, "-m", "featx", "extract", "-b", "pixels", "-d", str(tmp_path / "shard-0.tar"),
                        "--out", str(out), "-q"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    with Store(out) as store:
        assert store.attrs["layout"] == "tar"
        loc = ImageLocator.for_store(store.attrs, store.ids)
        for row, image_id in enumerate(store.ids):
            src = loc.source(row)
            assert isinstance(src, TarMember)
            original = paintings / f"{image_id}.jpg"
            assert np.array_equal(np.asarray(load_rgb(src)), np.asarray(load_rgb(original)))
        assert len(store) == 6
