"""The backbone registry: names -> :class:`BackboneCfg`, and builders per source.

Two halves, so the CLI's fast paths never import torch:

* **configs** (torch-free): the listed backbones are described in
  ``backbones/catalog.json``, generated from torchvision's weights enums and timm's
  ``pretrained_cfg`` by ``python -m featx.backbones.catalog`` (a test checks it
  against the live libraries). ``timm:<name>`` and ``tv:<name>`` resolve on first
  use by building the model, and are remembered under ``<cache>/backbones/``.
* **builders** (torch): ``@register_builder("torchvision")`` functions in
  ``featx.backbones.<source>`` turn an architecture plus a weights choice into an
  ``nn.Module``. This module imports none of them: :func:`builder` imports the
  source's module the first time it is asked for (that registers it).
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Callable

from ..config import BackboneCfg, cache_dir
from ..errors import BackboneError
from ..files import write_json

CATALOG_PATH = Path(__file__).with_name("catalog.json")
DYNAMIC_PREFIXES = ("timm:", "tv:")
SOURCES = ("torchvision", "timm", "pixels")

_BUILDERS: dict[str, Callable] = {}


def register_builder(source: str) -> Callable:
    """Decorator registering the model builder of a source library (raises on duplicates)."""

    def deco(fn: Callable) -> Callable:
        if source in _BUILDERS:
            raise ValueError(f"builder for source {source!r} registered twice")
        _BUILDERS[source] = fn
        return fn

    return deco


def builder(source: str) -> Callable:
    """The model builder of ``source`` (imports ``featx.backbones.<source>``, hence torch, on first use)."""
    if source not in _BUILDERS:
        if source not in SOURCES:
            raise BackboneError(f"unknown backbone source {source!r}; featx builds {', '.join(SOURCES)} models")
        importlib.import_module(f"{__package__}.{source}")
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
        from .catalog import describe_dynamic  # imports torch

        cfg = describe_dynamic(name)
        write_json(path, cfg.to_dict())
        return cfg
    close = difflib.get_close_matches(name, list_backbones(), n=4, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise BackboneError(f"--backbone {name!r} is unknown; {hint}see `featx backbones`, "
                        "or use timm:<name> / tv:<name> for any timm or torchvision model")
