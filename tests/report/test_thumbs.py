"""ThumbCache: a thumbnail is made once, made again when its painting changes, tar members and hostile ids
are handled, and an unwritable folder falls back to memory."""

from __future__ import annotations

import io
import os
import tarfile
import threading
from pathlib import Path

import pytest
from helpers import rgb
from PIL import Image

from featx.data.locate import ImageLocator
from featx.errors import DataError
from featx.report.thumbs import ThumbCache, jpeg_thumbnail


@pytest.fixture
def store(tmp_path) -> dict:
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    rgb(1, (400, 200)).save(root / "a" / "wide.jpg")
    rgb(2, (90, 300)).save(root / "a" / "tall.png")
    rgb(3).save(tmp_path / "secret.jpg")
    ids = ["a/wide.jpg", "a/tall.png", "../secret.jpg", "a/missing.jpg"]
    return {"root": root, "ids": ids, "path": tmp_path / "stores" / "s.h5",
            "locator": ImageLocator.for_store({"data_root": str(root)}, ids)}


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.jpg"))


def test_a_thumbnail_is_made_once_and_fits_its_size_keeping_the_aspect(store):
    cache = ThumbCache(store["path"], store["locator"], size=160)
    assert cache.folder == store["path"].parent / "s.thumbs"
    data = cache.get(0)
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG" and im.size == (160, 80)
    files = _files(cache.folder)
    assert len(files) == 1 and files[0].parent.name == files[0].name[:2] and files[0].read_bytes() == data
    mtime = files[0].stat().st_mtime_ns
    assert cache.get(0) == data and cache.made == 1
    assert ThumbCache(store["path"], store["locator"]).get(0) == data  # another cache object: read, not re-made
    assert files[0].stat().st_mtime_ns == mtime and _files(cache.folder) == files
    with Image.open(io.BytesIO(cache.get(1))) as im:
        assert im.size == (48, 160)
    assert cache.made == 2 and len(_files(cache.folder)) == 2


def test_a_replaced_painting_gets_a_new_thumbnail(store):
    cache = ThumbCache(store["path"], store["locator"], size=64)
    old = cache.get(0)
    path = store["root"] / "a" / "wide.jpg"
    Image.new("RGB", (300, 300), (250, 10, 10)).save(path)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    new = cache.get(0)
    assert new != old and cache.made == 2 and len(_files(cache.folder)) == 2
    with Image.open(io.BytesIO(new)) as im:
        assert im.size == (64, 64) and im.getpixel((32, 32))[0] > 200


def test_hostile_and_missing_ids_are_refused(store):
    cache = ThumbCache(store["path"], store["locator"])
    with pytest.raises(DataError, match="refused"):
        cache.get(2)
    with pytest.raises(DataError, match="not found"):
        cache.get(3)
    assert cache.warm(range(4)) == 2 and cache.warm(range(4)) == 0 and cache.made == 2


def test_concurrent_gets_of_one_row_make_it_once(store):
    cache = ThumbCache(store["path"], store["locator"])
    got: list[bytes] = []
    threads = [threading.Thread(target=lambda: got.append(cache.get(1))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.made == 1 and len(set(got)) == 1 and len(got) == 8
    assert not [p for p in cache.folder.rglob("*") if p.name.startswith(".")]  # no temporary file left


def test_tar_members_get_thumbnails(tmp_path):
    rgb(5, (120, 60)).save(tmp_path / "x.jpg")
    with tarfile.open(tmp_path / "t.tar", "w") as tf:
        tf.add(tmp_path / "x.jpg", arcname="c/x.jpg")
    loc = ImageLocator.for_store({"layout": "tar", "source": {"data": str(tmp_path / "t.tar")}}, ["c/x"])
    cache = ThumbCache(tmp_path / "t.h5", loc, size=32)
    with Image.open(io.BytesIO(cache.get(0))) as im:
        assert im.size == (32, 16)
    assert cache.get(0) == jpeg_thumbnail(loc.source(0), 32) and cache.made == 1


def test_an_unwritable_folder_keeps_thumbnails_in_memory(store, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cache = ThumbCache(store["path"], store["locator"], folder=blocker / "thumbs")
    assert cache.folder is None
    data = cache.get(0)
    assert cache.get(0) == data and cache.made == 1 and cache.warm([0, 1]) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; run as a normal user")
def test_a_read_only_store_folder_keeps_thumbnails_in_memory(store):
    folder = store["path"].parent
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    try:
        cache = ThumbCache(store["path"], store["locator"])
        assert cache.folder is None and cache.get(0) == cache.get(0) and cache.made == 1
    finally:
        folder.chmod(0o755)
