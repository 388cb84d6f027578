"""Figures written into run folders: heatmaps and image contact sheets.

Figures are bare :class:`matplotlib.figure.Figure` objects (:func:`subplots`), never pyplot's:
no backend is switched (a notebook's inline backend stays), no display is needed, and nothing
is left in pyplot's registry. matplotlib is imported inside the functions, so importing this
module costs nothing. Every PNG goes through :func:`save` (or :func:`write_figure` and :func:`saved`),
which write it atomically; inside :func:`collect_figures` the Figures written are also handed back
(the Python API returns them). No torch, no h5py.
"""

from __future__ import annotations

import contextvars
import functools
import io
import math
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..files import atomic_path

_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")
_COLLECTED: contextvars.ContextVar[dict | None] = contextvars.ContextVar("featx_figures", default=None)


@functools.cache
def _figure_class() -> type:
    from matplotlib.figure import Figure

    class ReportFigure(Figure):
        """A Figure that shows itself in Jupyter without pyplot (IPython calls ``_repr_png_``) and draws
        every text as written: a label such as ``$\\bad{$`` is data, never mathtext to parse."""

        def _repr_png_(self) -> bytes:
            buf = io.BytesIO()
            self.savefig(buf, format="png", bbox_inches="tight")
            return buf.getvalue()

        def tight_layout(self, *args, **kwargs):
            _literal_text(self)
            return super().tight_layout(*args, **kwargs)

        def savefig(self, *args, **kwargs):
            _literal_text(self)
            return super().savefig(*args, **kwargs)

    return ReportFigure


def _literal_text(fig) -> None:
    """Every text of ``fig`` drawn as written: each unescaped ``$`` becomes ``\\$`` (which matplotlib draws as
    ``$``), so no label is parsed as mathtext. Escaping rather than ``set_parse_math(False)``: wrapped texts
    (contact-sheet captions) measure themselves as math whatever that flag says."""
    from matplotlib.text import Text

    for text in fig.findobj(Text):
        s = text.get_text()
        if "$" in s:
            text.set_text(_UNESCAPED_DOLLAR.sub(r"\\$", s))


def new_figure(figsize: tuple[float, float], dpi: int = 100):
    """A bare :class:`matplotlib.figure.Figure` (no backend, not in pyplot's registry) that Jupyter displays."""
    return _figure_class()(figsize=figsize, dpi=dpi)


def subplots(*args, figsize: tuple[float, float], dpi: int = 100, **kwargs):
    """``(figure, axes)`` like ``pyplot.subplots``, on :func:`new_figure`."""
    fig = new_figure(figsize, dpi)
    return fig, fig.subplots(*args, **kwargs)


@contextmanager
def collect_figures() -> Iterator[dict]:
    """Within the block, every figure written as a PNG is also put in the yielded dict, keyed by its path."""
    found: dict = {}
    token = _COLLECTED.set(found)
    try:
        yield found
    finally:
        _COLLECTED.reset(token)


def saved(fig, path: Path) -> Path:
    """Record ``fig``, already written at ``path``, with the active :func:`collect_figures` block."""
    found = _COLLECTED.get()
    if found is not None:
        found[Path(path)] = fig
    return Path(path)


def heatmap(matrix: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], path: str | Path, *,
            title: str = "", fmt: str = ".2f", xlabel: str = "", ylabel: str = "", cmap: str = "Blues",
            vmin: float | None = None, vmax: float | None = None) -> Path:
    """Annotated heatmap of ``matrix`` (rows x cols) saved as a PNG at ``path``.

    Used for the row-normalised confusion matrix (``fmt=".2f"``, vmin 0, vmax 1).
    Cell text is omitted when the matrix is larger than 30 x 30.
    """
    return save(heatmap_figure(matrix, row_labels, col_labels, title=title, fmt=fmt, xlabel=xlabel, ylabel=ylabel,
                               cmap=cmap, vmin=vmin, vmax=vmax), path)


def heatmap_figure(matrix: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], *, title: str = "",
                   fmt: str = ".2f", xlabel: str = "", ylabel: str = "", cmap: str = "Blues",
                   vmin: float | None = None, vmax: float | None = None):
    """The Figure :func:`heatmap` writes (not saved)."""
    m = np.asarray(matrix, dtype=float)
    n_rows, n_cols = m.shape
    if len(row_labels) != n_rows or len(col_labels) != n_cols:
        raise ValueError(f"labels ({len(row_labels)}, {len(col_labels)}) do not match matrix shape {m.shape}")
    width = min(24.0, max(5.0, 0.6 * n_cols + 2.5))
    height = min(24.0, max(3.5, 0.5 * n_rows + 2.0))
    fig, ax = subplots(figsize=(width, height), dpi=100)
    im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n_cols), labels=[str(c) for c in col_labels], rotation=45, ha="right")
    ax.set_yticks(range(n_rows), labels=[str(r) for r in row_labels])
    if n_rows <= 30 and n_cols <= 30:
        finite = m[np.isfinite(m)]
        mid = (finite.max() + finite.min()) / 2 if finite.size else 0.0
        for i in range(n_rows):
            for j in range(n_cols):
                v = m[i, j]
                ax.text(j, i, "" if not np.isfinite(v) else format(v, fmt), ha="center", va="center",
                        fontsize=8, color="white" if v > mid else "black")
    ax.set_title(title, fontsize=9, wrap=True)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return fig


def short_name(path_or_id: str | Path, width: int = 30) -> str:
    """The file name of ``path_or_id`` cut in the middle to ``width`` characters, for captions side by side
    (the start and the end, often a year or an extension, stay)."""
    name = Path(path_or_id).name
    return name if len(name) <= width else name[:width // 2 - 1] + "..." + name[-(width - width // 2 - 2):]


def thumbnail(source, size: int) -> np.ndarray | None:
    """RGB uint8 thumbnail fitting ``size`` x ``size`` (featx's robust reader), or None when unreadable.

    ``source``: an image file, a :class:`~featx.data.tars.TarMember` (``FeatureSet.image_source``), or None
    (an image that could not be located)."""
    from ..data.images import ImageReadError, load_rgb

    if source is None:
        return None
    try:
        im = load_rgb(source, min_size=size)
    except ImageReadError:
        return None
    im.thumbnail((size, size))
    return np.asarray(im)


def save(fig, path: str | Path) -> Path:
    """Lay out and write ``fig`` as a PNG at ``path`` (parents created)."""
    fig.tight_layout()
    return saved(fig, write_figure(fig, path))


def write_figure(fig, path: str | Path, **savefig_kw) -> Path:
    """``fig.savefig`` to ``path`` atomically (:func:`featx.files.atomic_path`): a full disk leaves the
    previous file, never half a PNG. The format is the suffix's (PNG when there is none)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix[1:].lower() or "png", **savefig_kw)
    return path


def contact_sheet(image_paths: Sequence, captions: Sequence[str], path: str | Path, *,
                  title: str = "", cols: int = 6, thumb: int = 160, max_images: int = 60) -> Path:
    """Grid of thumbnails with a caption under each, saved as a PNG at ``path``.

    ``image_paths``: what :func:`thumbnail` takes (files, tar members, None). Images that are missing
    or unreadable are drawn as a grey placeholder that still
    carries the caption. At most ``max_images`` are drawn; an empty list draws a
    single "nothing to show" panel so the file always exists.
    """
    if len(image_paths) != len(captions):
        raise ValueError(f"{len(image_paths)} images but {len(captions)} captions")
    items = list(zip(image_paths, captions))[:max_images]
    n = max(1, len(items))
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    inch = thumb / 100
    fig, axes = subplots(rows, cols, figsize=(cols * inch * 1.1, rows * inch * 1.35 + (0.4 if title else 0)),
                         dpi=100, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    if not items:
        axes[0, 0].text(0.5, 0.5, "nothing to show", ha="center", va="center")
    for ax, (img_path, caption) in zip(axes.ravel(), items):
        img = thumbnail(img_path, thumb)
        if img is None:
            ax.imshow(np.full((thumb, thumb, 3), 160, np.uint8))
            ax.text(thumb / 2, thumb / 2, "missing", ha="center", va="center", color="white")
        else:
            ax.imshow(img)
        ax.set_title(str(caption), fontsize=7, wrap=True)
    if title:
        fig.suptitle(title)
    return save(fig, path)
