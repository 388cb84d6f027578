"""A small real image set that ships with featx's dependencies (scikit-learn's handwritten digits)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..files import write_bytes


def export_digits(out: str | Path, per_class: int | None = 100) -> Path:
    """Write scikit-learn's bundled handwritten digits (real scans, 8x8) as class-per-folder PNGs.

    A small real image set that installs with featx's dependencies: the README's
    quick start runs the whole pipeline on it without downloading anything. A file that
    already holds the same image is left untouched, so a store made from it stays a cache hit.
    """
    import io

    from PIL import Image
    from sklearn.datasets import load_digits

    out = Path(out)
    digits = load_digits()
    seen: dict[int, int] = {}
    for i, (img, label) in enumerate(zip(digits.images, digits.target)):
        if per_class is not None and seen.get(label, 0) >= per_class:
            continue
        seen[label] = seen.get(label, 0) + 1
        folder = out / f"digit-{label}"
        folder.mkdir(parents=True, exist_ok=True)
        arr = (255 - img * 255 / 16).astype(np.uint8)  # dark ink on white, like a scan
        buf = io.BytesIO()
        Image.fromarray(arr, "L").resize((64, 64), Image.NEAREST).save(buf, "PNG")
        path = folder / f"{i:04d}.png"
        if not path.is_file() or path.read_bytes() != buf.getvalue():
            write_bytes(path, buf.getvalue())
    return out
