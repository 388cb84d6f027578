"""Shared fixtures: real paintings from ../shared/data and real stores extracted from them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("FEATX_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
MONET = SHARED / "monet-sisley"
STYLES = SHARED / "styles"
IMPRESSIONISTS = SHARED / "impressionists"


@pytest.fixture(scope="session", autouse=True)
def shared_model_cache(tmp_path_factory):
    """One OpenVINO model cache for the session (``$FEATX_MODELS``), so each network is converted once
    although tests give every store its own ``$FEATX_CACHE``; subprocesses inherit it."""
    old = os.environ.get("FEATX_MODELS")
    os.environ["FEATX_MODELS"] = str(tmp_path_factory.mktemp("models"))
    yield Path(os.environ["FEATX_MODELS"])
    if old is None:
        os.environ.pop("FEATX_MODELS", None)
    else:
        os.environ["FEATX_MODELS"] = old


def need_data(path: Path) -> Path:
    """``path`` under the shared paintings, or skip: a plain clone has no ``../shared/data``."""
    if not path.is_dir():
        pytest.skip(f"needs the public-domain WikiArt paintings at {path}: the featx workspace keeps them in "
                    f"../shared/data beside the checkout (monet-sisley/, styles/, impressionists/); "
                    f"set FEATX_SHARED_DATA to another copy")
    return path


@pytest.fixture(scope="session")
def monet_dir() -> Path:
    return need_data(MONET)


@pytest.fixture(scope="session")
def styles_dir() -> Path:
    return need_data(STYLES)


def _extract(tmp_path_factory, name: str, backbone: str, data: Path, **kw) -> Path:
    from featx.extraction.options import ExtractOptions
    from featx.extraction.run import extract

    out = tmp_path_factory.mktemp("stores") / f"{name}.h5"
    extract(ExtractOptions(backbone, data, out=out, progress=False, **kw))
    return out


@pytest.fixture(scope="session")
def monet_lite0_store(tmp_path_factory, monet_dir) -> Path:
    """EfficientNet-Lite0 (real ImageNet weights) on 600 Monet/Sisley paintings, with logits."""
    return _extract(tmp_path_factory, "monet-lite0", "efficientnet_lite0", monet_dir, with_logits=True)


@pytest.fixture(scope="session")
def monet_random_store(tmp_path_factory, monet_dir) -> Path:
    """The same network with random weights (--weights none), with logits."""
    return _extract(tmp_path_factory, "monet-lite0-random", "efficientnet_lite0", monet_dir, weights="none",
                    with_logits=True)


@pytest.fixture(scope="session")
def styles_lite0_store(tmp_path_factory, styles_dir) -> Path:
    """EfficientNet-Lite0 on 1,953 imbalanced paintings of 5 styles (stratified split)."""
    return _extract(tmp_path_factory, "styles-lite0", "efficientnet_lite0", styles_dir)


@pytest.fixture(scope="module")
def paintings(tmp_path_factory, monet_dir) -> Path:
    """26 real paintings (13 Monet, 13 Sisley): shards of 4 get unequal blocks (7, 6, 7, 6)."""
    from helpers import copy_subset

    return copy_subset(monet_dir, tmp_path_factory.mktemp("paintings") / "paintings", per_class=13, split="test")


@pytest.fixture(scope="module")
def single_store(tmp_path_factory, paintings) -> Path:
    """What one process writes for ``paintings`` (EfficientNet-Lite0): the reference sharded runs must equal."""
    return _extract(tmp_path_factory, "single", "efficientnet_lite0", paintings)
