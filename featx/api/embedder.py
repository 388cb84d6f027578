"""``featx.ImageEmbedder``: a scikit-learn transformer from images (paths, PIL images, arrays) to features.

No store needed: features are computed in memory, img2vec-style, with the network and preprocessing a
store of the same settings would use, so ``make_pipeline(ImageEmbedder(...), LogisticRegression())``
fits on a list of image paths. Given a store (``store=``), images it already holds, unchanged since
extraction and under the same settings, are read from it instead of recomputed.
"""

from __future__ import annotations

import os

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ..errors import DataError
from ..store.handle import Store, feature_names
from ..store.schema import fingerprint_diff


def _is_path(x) -> bool:
    return isinstance(x, (str, os.PathLike))


def _images(X) -> list:
    """``X`` as a list of images: paths, PIL images or uint8 arrays (one per row, e.g. a list or a column)."""
    if _is_path(X) or (isinstance(X, np.ndarray) and X.dtype != object and X.ndim in (2, 3)
                       and X.dtype == np.uint8):
        raise DataError("ImageEmbedder takes a list of images (paths, PIL images or uint8 arrays); wrap a single "
                        "image in a list")
    if hasattr(X, "iloc") and getattr(X, "ndim", 1) == 2:  # a one-column DataFrame
        if X.shape[1] != 1:
            raise DataError(f"ImageEmbedder takes one column of images; got a table of {X.shape[1]} columns")
        X = X.iloc[:, 0]
    items = list(X)
    for x in items:
        ok = _is_path(x) or hasattr(x, "getpixel") or (isinstance(x, np.ndarray) and x.dtype == np.uint8
                                                        and x.ndim in (2, 3))
        if not ok:
            raise DataError(f"ImageEmbedder: {type(x).__name__} {str(x)[:40]!r} is not an image; pass paths, PIL "
                            "images or uint8 (H, W[, 3]) arrays")
    return items


class ImageEmbedder(TransformerMixin, BaseEstimator):
    """Frozen-backbone features of images, as a scikit-learn transformer.

    Parameters
    ----------
    backbone : str, default "efficientnet_lite0"
        A name from :func:`featx.list_backbones`, or ``timm:<name>`` / ``tv:<name>``.
    weights : str, default "imagenet"
        ``imagenet``, ``none`` (random init, seeded) or a local checkpoint path.
    layer : str, optional
        Tap point; default: the backbone's (e.g. ``pre_logits``). Searchable in ``GridSearchCV``.
    pool : {"avg", "max", "gem", "flatten", "spp", "none"}, optional
        Pooling of a feature map; default: the layer's. Searchable in ``GridSearchCV``.
    tta : {"none", "hflip"}, default "none"
        ``hflip``: the mean of the features of each image and its mirror.
    image_size : int, optional
        Override the input size.
    device : str, default "auto"
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    runtime : {"auto", "torch", "openvino"}, default "auto"
        ``auto``: OpenVINO on CPU (converted once, cached under ``cache/models``), PyTorch on a GPU.
    precision : {"auto", "fp32", "bf16", "fp16"}, default "auto"
        Numeric path (``auto``: bf16 where the CPU or GPU has it natively, else fp32).
    batch_size : int, optional
        Images per batch (32 with OpenVINO, 10 with PyTorch on CPU, 64 on CUDA).
    workers : int, default 0
        Decoding threads (0: decode in the calling thread).
    store : Store or path, optional
        A store used as a cache: an image path under its data root that it holds, unchanged since
        extraction (size and mtime), under the same settings, is read from the store.
    progress : bool, default False
        A ``tqdm.auto`` progress bar while embedding.

    Attributes
    ----------
    fingerprint_ : dict
        The resolved settings (backbone, weights identity, layer, pool, preprocessing, ...) the
        features are computed under; a store with the same fingerprint holds the same features.
    n_features_out_ : int
        Feature width.
    n_cached_ : int
        Rows the last ``transform`` read from ``store`` instead of computing.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> model = make_pipeline(ImageEmbedder("efficientnet_lite0"), LogisticRegression())  # doctest: +SKIP
    >>> model.fit(paths, labels).predict(["new.jpg"])  # doctest: +SKIP
    """

    def __init__(self, backbone: str = "efficientnet_lite0", *, weights: str = "imagenet", layer: str | None = None,
                 pool: str | None = None, tta: str = "none", image_size: int | None = None, device: str = "auto",
                 runtime: str = "auto", precision: str = "auto", batch_size: int | None = None, workers: int = 0,
                 store: Store | str | os.PathLike | None = None, progress: bool = False):
        self.backbone = backbone
        self.weights = weights
        self.layer = layer
        self.pool = pool
        self.tta = tta
        self.image_size = image_size
        self.device = device
        self.runtime = runtime
        self.precision = precision
        self.batch_size = batch_size
        self.workers = workers
        self.store = store
        self.progress = progress

    def _cfg(self):
        from ..extraction.plan import make_cfg

        cfg, _ = make_cfg(self.backbone, weights=self.weights, layer=self.layer, pool=self.pool, tta=self.tta,
                          image_size=self.image_size, precision=self.precision)
        return cfg

    def fit(self, X=None, y=None):
        """Resolve the settings and build the network (nothing is learned from ``X``).

        Parameters
        ----------
        X : list of images, optional
            Checked to be images; not used otherwise.
        y : ignored

        Returns
        -------
        self
        """
        if X is not None:
            _images(X)
        from ..engine.memory import network  # a runtime

        cfg = self._cfg()
        _, dim = network(cfg, self.weights, runtime=self.runtime, device=self.device, precision=self.precision)
        self.fingerprint_ = cfg.to_dict()
        self.n_features_out_ = dim
        self.n_cached_ = 0
        return self

    def transform(self, X) -> np.ndarray:
        """Features of the images in ``X``.

        Parameters
        ----------
        X : list of images
            Paths, PIL images or uint8 arrays (H, W[, 3 or 4]), one per row; a list, array or one-column table.

        Returns
        -------
        numpy.ndarray of shape (n_images, n_features_out_), float32

        Raises
        ------
        featx.errors.DataError
            When an image cannot be read (the message names it and says why).
        """
        check_is_fitted(self, "fingerprint_")
        from ..config import ExtractCfg
        from ..engine.memory import embed_images  # a runtime

        items = _images(X)
        out = np.zeros((len(items), self.n_features_out_), np.float32)
        todo = np.ones(len(items), bool)
        self.n_cached_ = 0
        if self.store is not None:
            self.n_cached_ = self._from_store(items, out, todo)
        if todo.any():
            idx = np.flatnonzero(todo)
            feats, failed = embed_images(ExtractCfg.from_dict(self.fingerprint_), self.weights, [items[i] for i in idx],
                                         runtime=self.runtime, device=self.device, precision=self.precision,
                                         batch_size=self.batch_size,
                                         workers=self.workers, progress=self.progress)
            if failed:
                j, reason = failed[0]
                what = items[idx[j]] if _is_path(items[idx[j]]) else f"image {idx[j]}"
                raise DataError(f"{len(failed)} image(s) could not be read, e.g. {what}: {reason}")
            out[idx] = feats
        return out

    def _from_store(self, items: list, out: np.ndarray, todo: np.ndarray) -> int:
        """Fill ``out`` with the rows the store holds for these images; returns how many."""
        from ..config import ExtractCfg

        store = self.store if isinstance(self.store, Store) else Store(self.store)
        if set(fingerprint_diff(store.fingerprint, ExtractCfg.from_dict(self.fingerprint_))) - {"with_logits"}:
            return 0  # other features (logits or not, the features are the same)
        where = [i for i, x in enumerate(items) if _is_path(x)]
        rows = store.lookup([items[i] for i in where])
        hits = [(i, r) for i, r in zip(where, rows) if r >= 0]
        if hits:
            pos, rr = zip(*hits)
            out[list(pos)] = store.features(ids=list(store.ids[list(rr)]))
            todo[list(pos)] = False
        return len(hits)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names of the output features: ``<backbone>.<layer>.<pool>_<i>``, as ``Store.to_pandas`` names them."""
        check_is_fitted(self, "fingerprint_")
        return np.asarray(feature_names(self.fingerprint_, self.n_features_out_), dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # one image per row, not a numeric table
        tags.input_tags.string = True  # file paths
        tags.requires_fit = True
        tags.transformer_tags.preserves_dtype = []  # images in, float32 out
        return tags

