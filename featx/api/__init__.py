"""featx from Python: one function per command, the :class:`~featx.store.handle.Store` object and the
:class:`ImageEmbedder` transformer.

:func:`extract`, :func:`fit`, :func:`predict` and :func:`analyze` take the options of ``featx extract``,
``fit``, ``predict`` and ``analyze`` as keyword arguments with the same names and defaults; the CLI
parses its options, calls them and prints. Only :func:`extract`, :func:`predict` and
:class:`ImageEmbedder` import torch, and only when they run.
"""

from ..store.handle import Store, StoreChangedError
from .analyze import Analysis, analyze
from .audit import Audit, audit
from .explain import explain
from .extract import extract
from .fit import FitRun, FitRuns, fit
from .neighbors import neighbors, neighbors_overlap
from .predict import Predictions, predict

__all__ = ["Analysis", "Audit", "FitRun", "FitRuns", "ImageEmbedder", "Predictions", "Store", "StoreChangedError",
           "analyze", "audit", "explain", "extract", "fit", "neighbors", "neighbors_overlap", "predict"]


def __getattr__(name: str):
    if name == "ImageEmbedder":  # imports scikit-learn: only when asked for (the CLI never is)
        from .embedder import ImageEmbedder

        return ImageEmbedder
    raise AttributeError(f"module 'featx.api' has no attribute {name!r}")
