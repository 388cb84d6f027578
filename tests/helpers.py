"""Builders of small image folders for tests (real paintings copied to tmp, or synthetic files), and a headless browser."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


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


def chrome(tmp_path: Path, width: int = 1300, height: int = 900):
    """Headless Chromium through Selenium showing pages at ``width`` x ``height`` CSS pixels, or a skip that says
    what to install. The caller quits it."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed; install: apt-get install chromium chromium-driver; pip install selenium")
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing; install: apt-get install chromium chromium-driver; "
                    "pip install selenium")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--hide-scrollbars",
                 f"--window-size={width},{height + 200}", f"--user-data-dir={tmp_path / 'chrome-profile'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    # the page itself gets width x height (a headless window's size counts browser chrome it does not draw)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    return driver


def run_featx(*args, cwd: Path, timeout: int = 600):
    """``python -m featx ARGS`` in ``cwd``; asserts exit 0 and returns the completed process."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "featx", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                       timeout=timeout)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


class ExploreServer:
    """``featx explore ARGS --port 0 --no-browser`` in a subprocess; ``url`` is the URL it printed (with the
    token when there is one), ``base`` the URL without it. :meth:`stop` sends Ctrl-C."""

    def __init__(self, *args, cwd: Path, env: dict | None = None):
        import os
        import re
        import subprocess
        import sys
        import time

        self.proc = subprocess.Popen([sys.executable, "-m", "featx", "explore", *map(str, args), "--port", "0",
                                      "--no-browser"], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env={**os.environ, **(env or {})})
        self.lines: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            m = re.search(r"serving at (http://\S+)", line)
            if m:
                self.url = m.group(1)
                self.base = self.url.split("?")[0].rstrip("/")
                return
        self.stop()
        raise AssertionError("featx explore did not start:\n" + "".join(self.lines))

    def stop(self) -> None:
        import signal
        import subprocess

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def labelled_manifest(folder: Path, labels, *, per_label: int = 8, name: str = "img{c}-{i}.png",
                      size=(24, 24)) -> Path:
    """``folder/labels.csv`` (path,label) over ``per_label`` small random PNGs per label, named by ``name``
    (``{c}``: the label's index, ``{i}``: the image's): hostile labels and file names for the tests."""
    import csv

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        for c, label in enumerate(labels):
            for i in range(per_label):
                file = name.format(c=c, i=i)
                rgb(100 * c + i, size).save(folder / file)
                w.writerow([file, label])
    return folder / "labels.csv"
