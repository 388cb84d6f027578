"""Augmentation of paintings for training, and the dataset of augmented views.

One affine resample per image: the eval preprocessing (short side resized, centre crop at the
backbone's own input size, from its cfg) with a random zoom, rotation and shift folded in, then
random flips. The randomness of an image's view ``v`` comes from ``(seed, image id, v)`` only,
so a view is the same in any run, worker or fold, and a CPU run repeats exactly.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ...config import DataCfg
from ...data.images import ImageReadError, load_rgb, read_for_model, resize_short
from .config import Augment

EVAL_VIEW = -1  # the eval preprocessing
FLIP_VIEW = -2  # the eval preprocessing, flipped left-right (test-time augmentation)

_RESAMPLE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def view_rng(seed: int, image_id: str, view: int) -> np.random.Generator:
    """The random stream of one view of one image."""
    digest = hashlib.blake2b(f"{seed}|{image_id}|{view}".encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def augment_image(img: Image.Image, cfg: DataCfg, aug: Augment, rng: np.random.Generator) -> np.ndarray:
    """A random view of ``img`` as a uint8 (size, size, 3) array at the backbone's input size."""
    img = resize_short(img, cfg.resize_size, cfg.interpolation)
    w, h = img.size
    size = cfg.input_size
    zoom = float(np.exp(rng.uniform(np.log(aug.zoom[0]), np.log(aug.zoom[1]))))
    angle = math.radians(rng.uniform(-aug.rotation, aug.rotation))
    span = size / zoom  # side of the source window
    # window centre: random where the window fits, on whole pixels (zoom 1, no rotation: an exact crop)
    cx = round(w / 2 + rng.uniform(-1, 1) * max(0.0, (w - span) / 2) - span / 2) + span / 2
    cy = round(h / 2 + rng.uniform(-1, 1) * max(0.0, (h - span) / 2) - span / 2) + span / 2
    a, b = math.cos(angle) / zoom, -math.sin(angle) / zoom
    d, e = math.sin(angle) / zoom, math.cos(angle) / zoom
    half = size / 2
    data = (a, b, cx - a * half - b * half, d, e, cy - d * half - e * half)
    resample = _RESAMPLE.get(cfg.interpolation, Image.BILINEAR)
    out = np.asarray(img.transform((size, size), Image.AFFINE, data, resample=resample), dtype=np.uint8)
    if aug.hflip and rng.random() < 0.5:
        out = out[:, ::-1]
    if aug.vflip and rng.random() < 0.5:
        out = out[::-1]
    return np.ascontiguousarray(out)


class Views(torch.utils.data.Dataset):
    """``(index, uint8 HWC array or None, failure reason or None)`` of ``paths[i]``'s view ``views[i]``.

    ``aug`` None (or inactive): the eval preprocessing, no randomness (view ``FLIP_VIEW``: flipped).
    """

    def __init__(self, paths: Sequence[Path], ids: Sequence[str], views: Sequence[int], cfg: DataCfg,
                 aug: Augment | None, seed: int):
        self.paths, self.ids, self.views = list(paths), list(ids), list(views)
        self.cfg, self.aug, self.seed = cfg, aug if aug is not None and aug.active else None, seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            if self.aug is None or self.views[i] < 0:
                a = read_for_model(self.paths[i], self.cfg)
                return i, np.ascontiguousarray(a[:, ::-1]) if self.views[i] == FLIP_VIEW else a, None
            img = load_rgb(self.paths[i], min_size=self.cfg.resize_size)
            return i, augment_image(img, self.cfg, self.aug, view_rng(self.seed, self.ids[i], self.views[i])), None
        except ImageReadError as exc:
            return i, None, str(exc)
