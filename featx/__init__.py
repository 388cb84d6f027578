"""featx: frozen-backbone features, classifiers and transferability on cached embeddings.

Importing featx is light: no torch, no h5py. The stages (``featx.extraction``,
``featx.learn``, ``featx.analysis``) import what they need when used, and the public
names below are loaded on first access.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "BackboneCfg": "featx.config",
    "DataCfg": "featx.config",
    "ExtractCfg": "featx.config",
    "FeatxError": "featx.errors",
    "FeatureSet": "featx.store.reader",
    "load_features": "featx.store.reader",
    "load_dataset": "featx.data.discover",
    "list_backbones": "featx.backbones.registry",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'featx' has no attribute {name!r}")
