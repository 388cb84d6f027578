"""Embedding images named by path or held in memory (PIL images, uint8 arrays), for ``ImageEmbedder``.

The same loader, embedder and threads as extraction (:mod:`featx.engine.loader`,
:mod:`featx.engine.embed`); the networks are kept between calls (a few, least recently used
first out), so a grid search over ``pool`` or ``layer`` builds each tapped network once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from ..config import ExtractCfg
from .embed import (
    Embedder,
    blank_batch,
    build_embedder,
    default_streams,
    embed_in_order,
)
from .loader import iter_batches

KEEP_NETWORKS = 4
_NETWORKS: OrderedDict[tuple, tuple[Embedder, int]] = OrderedDict()
_LOCK = threading.Lock()


def network(cfg: ExtractCfg, weights: str, *, device: str = "auto", precision: str = "auto",
            channels_last: bool = True) -> tuple[Embedder, int]:
    """The tapped network of ``cfg`` and its feature width, built once per setting and kept."""
    key = (cfg, weights, device, precision, channels_last)
    with _LOCK:
        if key in _NETWORKS:
            _NETWORKS.move_to_end(key)
            return _NETWORKS[key]
        embed = build_embedder(cfg, weights, device=device, precision=precision, channels_last=channels_last)
        dim = int(embed(blank_batch(cfg))[0].shape[1])
        _NETWORKS[key] = (embed, dim)
        while len(_NETWORKS) > KEEP_NETWORKS:
            _NETWORKS.popitem(last=False)
        return embed, dim


def embed_images(cfg: ExtractCfg, weights: str, images: Sequence, *, device: str = "auto", precision: str = "auto",
                 batch_size: int | None = None, workers: int | None = 0, channels_last: bool = True,
                 progress: bool = False) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Features of ``images`` (paths, PIL images or uint8 arrays) in order, and ``(index, reason)`` per image
    that could not be read (its row is missing from the features)."""
    from tqdm.auto import tqdm

    embed, dim = network(cfg, weights, device=device, precision=precision, channels_last=channels_last)
    items = list(images)
    in_memory = any(not isinstance(x, (str, bytes)) and not hasattr(x, "__fspath__") for x in items)
    batches = iter_batches(items, cfg.data, batch_size=batch_size or (64 if embed.device.type == "cuda" else 10),
                           workers=0 if in_memory else workers, pin_memory=embed.device.type == "cuda")
    out, failures = [], []
    with tqdm(total=len(items), unit="img", desc=f"{cfg.backbone}:{cfg.layer}", disable=not progress,
              mininterval=1.0) as bar:
        for _, failed, feats, _ in embed_in_order(embed, batches, default_streams(embed.device)):
            if feats is not None:
                out.append(feats)
            failures += failed
            bar.update((0 if feats is None else len(feats)) + len(failed))
    feats = np.concatenate(out) if out else np.zeros((0, dim), np.float32)
    if cfg.dtype == "float16":
        feats = feats.astype(np.float16).astype(np.float32)
    return feats.astype(np.float32, copy=False), failures
