"""A small world for featx explore: real paintings extracted twice, a fit run, an audit, and a running server."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import ExploreServer, labelled_manifest, run_featx as featx, split_subset

XSS = "<img src=x onerror=document.title='PWNED'>"
# Tests start the app with helpers.ExploreServer(*args, cwd=...) (.url, .base, .stop()) and run featx with
# helpers.run_featx; a test module cannot import from this conftest.


@pytest.fixture(scope="session")
def world(tmp_path_factory, monet_dir) -> dict[str, Path]:
    """72 Monet/Sisley paintings (train 24, val 6, test 6 per painter) as two stores of the same ids
    (EfficientNet-Lite0 with ImageNet weights, and with random weights), a softmax fit run of the first
    and its audit, all under one working folder."""
    root = tmp_path_factory.mktemp("explore")
    data = split_subset(monet_dir, root / "paintings", {"train": 24, "val": 6, "test": 6})
    cache = root / "cache"
    featx("extract", "-b", "efficientnet_lite0", "-d", data, "--out", cache / "lite0.h5", "-q", cwd=root)
    featx("extract", "-b", "efficientnet_lite0", "--weights", "none", "-d", data, "--out", cache / "random.h5",
          "-q", cwd=root)
    featx("fit", cache / "lite0.h5", "--clf", "softmax", "--out", root / "runs" / "fit-softmax", cwd=root)
    featx("audit", cache / "lite0.h5", "--out", root / "runs" / "audit", cwd=root)
    return {"root": root, "data": data, "store": cache / "lite0.h5", "random": cache / "random.h5",
            "runs": root / "runs", "fit": root / "runs" / "fit-softmax"}


@pytest.fixture(scope="session")
def hostile_world(tmp_path_factory) -> dict[str, Path]:
    """16 small images labelled with a script tag (and a plain class), extracted with the pixels backbone and fitted."""
    root = tmp_path_factory.mktemp("explore-hostile")
    manifest = labelled_manifest(root / "data", [XSS, "plain"], name="<b>img{c}-{i}.png", size=(32, 32))
    store = root / "cache" / "hostile.h5"
    featx("extract", "-b", "pixels", "-d", manifest, "--out", store, "-q", cwd=root)
    featx("fit", store, "--clf", "softmax", "--out", root / "runs" / "fit", cwd=root)
    return {"root": root, "store": store, "runs": root / "runs"}


@pytest.fixture(scope="module")
def world_server(world):
    """``featx explore`` on both stores of ``world`` with its runs (one server per test module)."""
    s = ExploreServer(world["store"], world["random"], "--runs", world["runs"], cwd=world["root"])
    yield s
    s.stop()
