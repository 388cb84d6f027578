"""featx: frozen-backbone features, classifiers and transferability on cached embeddings.

Importing featx is light: no torch, no h5py. The stages (``featx.extraction``,
``featx.learn``, ``featx.analysis``) import what they need when used, and the public
names below are loaded on first access. From Python::

    store = featx.extract("efficientnet_lite0", "paintings/")   # a Store over the HDF5 file
    run = featx.fit(store, clf="linearsvc")                      # a FitRun: metrics, model, figures
    featx.predict(run.model, ["new.jpg"], top_k=3)
    featx.analyze(store, transferability=True, umap=True)        # an Analysis: scores, Figures
    featx.ImageEmbedder("efficientnet_lite0")                    # a scikit-learn transformer
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
    "extract": "featx.api",
    "fit": "featx.api",
    "predict": "featx.api",
    "explain": "featx.api",
    "Explanations": "featx.look.explain",
    "analyze": "featx.api",
    "ImageEmbedder": "featx.api",
    "Store": "featx.api",
    "StoreChangedError": "featx.api",
    "FitRun": "featx.api",
    "FitRuns": "featx.api",
    "Analysis": "featx.api",
    "Predictions": "featx.api",
    "neighbors": "featx.api",
    "neighbors_overlap": "featx.api",
    "audit": "featx.api",
    "Audit": "featx.api",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'featx' has no attribute {name!r}")
