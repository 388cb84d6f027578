"""The backbone registry: names -> :class:`BackboneCfg`, torch-free for the listed backbones.

The listed backbones are described in ``backbones/catalog.json``, generated from torchvision's
weights enums and timm's ``pretrained_cfg`` by ``python -m featx.backbones.catalog`` (a test checks
it against the live libraries). ``timm:<name>`` and ``tv:<name>`` resolve on first use by building
the model (:func:`featx.backbones.describe.describe_dynamic`, torch), and are remembered under
``<cache>/backbones/``.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
from functools import lru_cache
from pathlib import Path

from ..config import BackboneCfg, cache_dir
from ..errors import BackboneError
from ..files import write_json

CATALOG_PATH = Path(__file__).with_name("catalog.json")
DYNAMIC_PREFIXES = ("timm:", "tv:")


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
        from .describe import describe_dynamic  # lazy: torch

        cfg = describe_dynamic(name)
        write_json(path, cfg.to_dict())
        return cfg
    close = difflib.get_close_matches(name, list_backbones(), n=4, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise BackboneError(f"--backbone {name!r} is unknown; {hint}see `featx backbones`, "
                        "or use timm:<name> / tv:<name> for any timm or torchvision model")
