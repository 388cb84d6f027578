"""Embedding images named by path or held in memory (PIL images, uint8 arrays): ``ImageEmbedder`` and ``predict``.

The same loader, runtimes and threads as extraction (:mod:`featx.engine.loader`,
:mod:`featx.engine.runtime`); the networks are kept between calls (a few, least recently used
first out), so a grid search over ``pool`` or ``layer`` builds each tapped network once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..backbones.registry import get_cfg
from ..backbones.weights_ref import WeightsRef
from ..config import ExtractCfg
from .base import Embedder
from .loader import iter_batches
from .runtime import blank_batch, build_embedder

KEEP_NETWORKS = 4
_NETWORKS: OrderedDict[tuple, tuple[Embedder, int]] = OrderedDict()
_LOCK = threading.Lock()


def network(cfg: ExtractCfg, weights: str | WeightsRef, *, runtime: str = "auto", device: str = "auto",
            precision: str = "auto", channels_last: bool = True) -> tuple[Embedder, int]:
    """The tapped network of ``cfg`` and its feature width, built once per setting (same weights however
    they were named) and kept."""
    if isinstance(weights, str):
        weights = WeightsRef.parse(weights, get_cfg(cfg.backbone))
    key = (cfg, weights, runtime, device, precision, channels_last)
    with _LOCK:
        if key in _NETWORKS:
            _NETWORKS.move_to_end(key)
            return _NETWORKS[key]
        embed = build_embedder(cfg, weights, runtime=runtime, device=device, precision=precision,
                               channels_last=channels_last)
        dim = int(embed(blank_batch(cfg))[0].shape[1])
        _NETWORKS[key] = (embed, dim)
        while len(_NETWORKS) > KEEP_NETWORKS:
            _NETWORKS.popitem(last=False)
        return embed, dim


def embed_images(cfg: ExtractCfg, weights: str | WeightsRef, images: Sequence, *, runtime: str = "auto",
                 device: str = "auto", precision: str = "auto", batch_size: int | None = None, workers: int | None = 0,
                 channels_last: bool = True, progress: bool = False) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Features of ``images`` (paths, PIL images or uint8 arrays) in order, and ``(index, reason)`` per image
    that could not be read (its row is missing from the features)."""
    from tqdm.auto import tqdm

    embed, dim = network(cfg, weights, runtime=runtime, device=device, precision=precision,
                         channels_last=channels_last)
    items = list(images)
    batches = iter_batches(items, cfg.data, batch_size=batch_size or embed.batch_size, workers=workers,
                           prepare=embed.prepare, gpu=embed.gpu)
    out, failures = [], []
    with tqdm(total=len(items), unit="img", desc=f"{cfg.backbone}:{cfg.layer}", disable=not progress,
              mininterval=1.0) as bar:
        for b, feats, _ in embed.map(batches):
            if feats is not None:
                out.append(feats)
            failures += b.failures
            bar.update(len(b.indices) + len(b.failures))
    feats = np.concatenate(out) if out else np.zeros((0, dim), np.float32)
    if cfg.dtype == "float16":
        feats = feats.astype(np.float16).astype(np.float32)
    return feats.astype(np.float32, copy=False), failures


def embed_paths(fingerprint: dict, paths: Sequence[str | Path], *, weights: str | Path | None = None,
                runtime: str = "auto", device: str = "auto", batch_size: int = 16,
                workers: int | None = 0) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Features of ``paths`` as a store with ``fingerprint`` holds them (used by ``predict``), and (path, reason)
    per image that could not be read. ``weights``: the local checkpoint the features came from, if any."""
    cfg = ExtractCfg.from_dict(fingerprint)
    weights = WeightsRef.from_store(cfg.weights, get_cfg(cfg.backbone), weights)
    paths = [Path(p) for p in paths]
    feats, failed = embed_images(cfg, weights, paths, runtime=runtime, device=device, precision=cfg.precision,
                                 batch_size=batch_size, workers=workers)
    return feats, [(str(paths[j]), reason) for j, reason in failed]
