"""featx: frozen-backbone features, classifiers and transferability on cached embeddings.

The package imports no torch at import time: the store, the classical-ML side and
the CLI's fast paths stay light. Deep-learning modules (``featx.extract``,
``featx.backbones``) import torch when they are used.
"""

__version__ = "0.1.0"

from .config import BackboneCfg, DataCfg, ExtractCfg  # noqa: E402
from .errors import FeatxError  # noqa: E402
from .store import FeatureSet, load_features  # noqa: E402

__all__ = ["__version__", "BackboneCfg", "DataCfg", "ExtractCfg", "FeatxError", "FeatureSet", "load_features"]
