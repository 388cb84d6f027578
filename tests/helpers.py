"""Builders of small image folders for tests (real paintings copied to tmp, or synthetic files)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
from PIL import Image


def copy_subset(src: Path, dst: Path, per_class: int, split: str | None = None) -> Path:
    """Copy the first ``per_class`` images of each class of ``src`` (optionally of one split) into ``dst``."""
    base = src / split if split else src
    for cls in sorted(p for p in base.iterdir() if p.is_dir()):
        target = dst / cls.name
        target.mkdir(parents=True, exist_ok=True)
        for f in sorted(cls.iterdir())[:per_class]:
            shutil.copy(f, target / f.name)
    return dst


def split_subset(src: Path, dst: Path, per_split: dict[str, int]) -> Path:
    """A train/val/test copy of ``src`` with ``per_split[split]`` images per class of each split."""
    for split, n in per_split.items():
        copy_subset(src, dst / split, n, split=split)
    return dst


def rgb(seed: int, size=(64, 48)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def bad_inputs_folder(root: Path) -> dict[str, list[str]]:
    """A class folder of hard cases; returns the ids expected to fail and to succeed."""
    a, b = root / "a", root / "b"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    ok, bad = [], []
    # good ones
    rgb(0).save(a / "plain.jpg")
    rgb(1).convert("CMYK").save(a / "cmyk.jpg")
    arr16 = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    Image.fromarray(arr16).save(a / "sixteen.png")  # PIL picks mode I;16
    rgba = rgb(2).convert("RGBA")
    rgba.putalpha(Image.fromarray(np.full((48, 64), 128, np.uint8)))
    rgba.save(a / "alpha.png")
    rgb(3).convert("L").save(b / "gray.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90
    rgb(4, (80, 40)).save(b / "rotated.jpg", exif=exif)
    Image.new("RGB", (9000, 7000), (200, 30, 30)).save(b / "huge.jpg", quality=50)
    rgb(5).convert("P").save(b / "palette.gif")
    ok += ["a/plain.jpg", "a/cmyk.jpg", "a/sixteen.png", "a/alpha.png", "b/gray.jpg", "b/rotated.jpg",
           "b/huge.jpg", "b/palette.gif"]
    # bad ones
    (a / "empty.jpg").write_bytes(b"")
    buf = io.BytesIO()
    rgb(6).save(buf, "JPEG")
    (b / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (b / "notes.jpg").write_text("this is not an image\n")
    bad += ["a/empty.jpg", "b/truncated.jpg", "b/notes.jpg"]
    (a / "README.txt").write_text("ignored: not an image extension\n")
    return {"ok": sorted(ok), "bad": sorted(bad)}


def assert_png(path, min_side=150):
    """``path`` is a valid PNG of a sensible size; returns its (width, height)."""
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and min(im.size) >= min_side and max(im.size) < 5000, im.size
        return im.size


def assert_same_store(got: Path, want: Path) -> None:
    """Same ids in the same order, labels, splits, classes, fingerprint and (numerically) features."""
    from featx.store.reader import load_features

    a, b = load_features(got), load_features(want)
    assert list(a.ids) == list(b.ids)
    assert list(a.classes) == list(b.classes)
    assert (a.labels == b.labels).all()
    assert list(a.split) == list(b.split)
    assert a.features.shape == b.features.shape
    np.testing.assert_allclose(a.features, b.features, rtol=1e-4, atol=1e-5)
    assert a.attrs["fingerprint"] == b.attrs["fingerprint"]


def store_rows(path: Path) -> int:
    """The committed row count of a store being written (0 while it does not exist yet)."""
    import h5py

    try:
        with h5py.File(path, "r", locking=False) as f:
            return int(f.attrs.get("rows", 0))
    except OSError:
        return 0


def one_error_line(r, code: int, *needles: str) -> str:
    """A finished ``featx`` process failed with exit ``code`` and exactly one ``error:`` line on stderr (valid
    UTF-8 whatever the file names were), holding each of ``needles``; no traceback, nothing on stdout."""
    err = r.stderr.decode("utf-8") if isinstance(r.stderr, bytes) else r.stderr
    lines = err.strip().splitlines()
    assert r.returncode == code, (r.returncode, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and not r.stdout
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def tiny_split_folder(root: Path, per_split: dict[str, int] | None = None) -> Path:
    """Two classes of small synthetic images (class ``b`` brighter) under ``train/``, ``val/``, ``test/``
    (default 5, 2 and 3 per class): enough for one quick epoch of fine-tuning."""
    k = 0
    for split, n in (per_split or {"train": 5, "val": 2, "test": 3}).items():
        for c in ("a", "b"):
            d = root / split / c
            d.mkdir(parents=True)
            for _ in range(n):
                img = rgb(k, (40, 40))
                k += 1
                (img.point(lambda v: min(255, v + 70)) if c == "b" else img).save(d / f"{c}{k}.jpg")
    return root
