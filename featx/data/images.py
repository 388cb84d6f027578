"""Robust image reading and eval preprocessing with PIL (no torch).

:func:`load_rgb` opens anything PIL can, applies the EXIF orientation, turns
grayscale / palette / CMYK / alpha / 16-bit / float images into 8-bit RGB, and
decodes huge JPEGs at reduced size (``draft``) instead of tripping PIL's
decompression-bomb guard. :func:`preprocess` is the eval transform of a
:class:`~featx.config.DataCfg`: resize the short side, centre crop, as
torchvision's ``ImageClassification`` and timm's eval transform do it; the result
is uint8 HWC so workers ship 4x fewer bytes; normalisation happens on the batch.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .. import env
from ..config import DataCfg
from .tars import TarMember

MAX_PIXELS = int(env.MAX_PIXELS.get() or 30_000 * 30_000)
"""Decoded images above this many pixels are refused (recorded as failed)."""

_INTERP = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
           "lanczos": Image.LANCZOS, "box": Image.BOX, "hamming": Image.HAMMING}


class ImageReadError(Exception):
    """An image could not be decoded; the message is the reason stored in ``failed``."""


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16") or (img.mode == "I" and arr.max() > 255):
            hi = 65535.0  # 16-bit range
        elif img.mode == "I":
            hi = 255.0  # integer image already in 8-bit range: keep its contrast
        else:  # float: [0, 1] or arbitrary
            hi = 1.0 if arr.max() <= 1.0 else float(arr.max())
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def load_rgb(path: str | Path, min_size: int = 0) -> Image.Image:
    """Decode ``path`` to an upright 8-bit RGB image, or raise :class:`ImageReadError`.

    ``min_size``: a JPEG may be decoded at reduced scale as long as its short side
    stays at least twice this size (keeps the final resize antialiased).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prev, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                with Image.open(path.open() if isinstance(path, TarMember) else path) as img:
                    w, h = img.size
                    if img.format == "JPEG" and min_size and min(w, h) > 4 * min_size:
                        img.draft("RGB", (2 * min_size * w // min(w, h), 2 * min_size * h // min(w, h)))
                        w, h = img.size
                    if w * h > MAX_PIXELS:
                        raise ImageReadError(f"image too large ({w}x{h} > FEATX_MAX_PIXELS={MAX_PIXELS})")
                    img.load()
                    img = ImageOps.exif_transpose(img) or img
                    return _to_rgb(img)
            finally:
                Image.MAX_IMAGE_PIXELS = prev
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError("file not found") from None
    except Exception as exc:  # PIL raises many types for broken files
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageReadError(f"{type(exc).__name__}: {msg}") from None


def resize_short(img: Image.Image, size: int, interpolation: str) -> Image.Image:
    """Resize so the short side is ``size`` (torchvision's rule for an int size)."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    if short == size:
        return img
    new_long = int(size * long / short)
    new_w, new_h = (size, new_long) if w <= h else (new_long, size)
    return img.resize((new_w, new_h), _INTERP[interpolation])


def center_crop(img: Image.Image, size: int) -> Image.Image:
    """Centre crop to ``size`` x ``size`` (torchvision's rounding)."""
    w, h = img.size
    if w < size or h < size:  # pad like torchvision does, with zeros
        padded = Image.new("RGB", (max(w, size), max(h, size)))
        padded.paste(img, ((max(w, size) - w) // 2, (max(h, size) - h) // 2))
        img, (w, h) = padded, padded.size
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def preprocess(img: Image.Image, cfg: DataCfg) -> np.ndarray:
    """Eval transform without normalisation: uint8 array (size, size, 3)."""
    img = center_crop(resize_short(img, cfg.resize_size, cfg.interpolation), cfg.input_size)
    return np.array(img, dtype=np.uint8)


def read_for_model(source: str | Path | Image.Image | np.ndarray, cfg: DataCfg) -> np.ndarray:
    """:func:`load_rgb` then :func:`preprocess`. ``source`` is a file, or an image in memory: a PIL image
    (EXIF orientation applied, converted to RGB like a file) or a uint8 array (H, W), (H, W, 3) or (H, W, 4)."""
    if isinstance(source, Image.Image):
        img = _to_rgb(ImageOps.exif_transpose(source) or source)
    elif isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim not in (2, 3) or (source.ndim == 3 and source.shape[2] not in (3, 4)):
            raise ImageReadError(f"an image array must be uint8 (H, W), (H, W, 3) or (H, W, 4); got {source.dtype} "
                                 f"{source.shape}")
        img = _to_rgb(Image.fromarray(source))
    else:
        img = load_rgb(source, min_size=cfg.resize_size)
    return preprocess(img, cfg)
