"""Figures of projected features: class-coloured 2-D / 3-D scatters, image thumbnails at their
projected positions, the PCA variance curve, the separability curve, and a standalone
interactive HTML page, drawn on bare Figures (:func:`featx.report.plots.subplots`); no torch, no h5py.

Heatmaps and contact sheets live in :mod:`featx.report.plots`, the HTML view in :mod:`featx.report.html`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from .plots import new_figure, saved, subplots, thumbnail, write_figure

MARKERS = ("o", "s", "^", "D", "v", "P")


def class_colors(n: int) -> list[tuple[float, float, float, float]]:
    """Distinct RGBA colours for ``n`` classes: tab10, tab20, then tab20 + tab20b + tab20c, then hsv."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    pool = [colormaps[name](i) for name in ("tab20", "tab20b", "tab20c") for i in range(20)]
    if n <= len(pool):
        return pool[:n]
    return [colormaps["hsv"](i / n) for i in range(n)]


def _marker(i: int, n: int) -> str:
    return MARKERS[(i // 20) % len(MARKERS)] if n > 20 else "o"


def _point_size(n: int, three_d: bool = False) -> float:
    return float(np.clip(6e4 / max(n, 1), 1.0, 30.0 if three_d else 40.0))


def _legend(fig, ax, classes: Sequence[str], labels: np.ndarray, colors) -> None:
    from matplotlib.lines import Line2D

    counts = np.bincount(labels, minlength=len(classes))
    handles = [Line2D([], [], ls="", marker=_marker(i, len(classes)), color=colors[i], markersize=6,
                      label=f"{name} ({counts[i]:,})") for i, name in enumerate(classes) if counts[i]]
    ncol = 1 if len(handles) <= 20 else 2 if len(handles) <= 40 else 3
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=ncol, frameon=False,
              fontsize=8 if len(handles) <= 20 else 6, title="class", borderaxespad=0.0)


def _finish(fig, path: str | Path, title: str, note: str) -> Path:
    if title:
        fig.suptitle(title)
    if note:
        fig.text(0.01, 0.01, note, fontsize=8, color="0.3", ha="left", va="bottom")
    return saved(fig, write_figure(fig, path, bbox_inches="tight"))


def _draw_points(ax, coords: np.ndarray, labels: np.ndarray, n_classes: int, colors, seed: int,
                 three_d: bool = False, size: float | None = None) -> None:
    order = np.random.default_rng(seed).permutation(len(coords))  # no class painted over the others
    s = _point_size(len(coords), three_d) if size is None else size
    for m in sorted({_marker(i, n_classes) for i in range(n_classes)}):
        rows = order[np.array([_marker(int(c), n_classes) == m for c in labels[order]], dtype=bool)]
        if not len(rows):
            continue
        pts = [coords[rows, j] for j in range(coords.shape[1])]
        ax.scatter(*pts, c=[colors[c] for c in labels[rows]], s=s, marker=m, linewidths=0,
                   alpha=0.8 if len(coords) < 5000 else 0.5, rasterized=True)


def scatter(coords: np.ndarray, labels: np.ndarray, classes: Sequence[str], path: str | Path, *, title: str = "",
            note: str = "", axis_names: Sequence[str] = ("1", "2", "3"), seed: int = 0) -> Path:
    """Class-coloured scatter (2-D, or 3-D shown from two angles), legend with class counts,
    ``note`` (e.g. the sub-sampling) written under the figure. Fine for 2-50 classes and 100k points."""
    coords = np.asarray(coords, dtype=float)
    labels = np.asarray(labels, dtype=int)
    colors = class_colors(len(classes))
    three_d = coords.shape[1] == 3
    if three_d:
        fig = new_figure((15, 6.5), dpi=100)
        axes = [fig.add_subplot(1, 2, i + 1, projection="3d") for i in range(2)]
        for ax, (elev, azim) in zip(axes, ((20, -60), (20, 30))):
            _draw_points(ax, coords, labels, len(classes), colors, seed, three_d=True)
            ax.view_init(elev=elev, azim=azim)
            ax.set_xlabel(axis_names[0]), ax.set_ylabel(axis_names[1]), ax.set_zlabel(axis_names[2])
        legend_ax = axes[1]
    else:
        fig, ax = subplots(figsize=(9, 7), dpi=100)
        _draw_points(ax, coords, labels, len(classes), colors, seed)
        ax.set_xlabel(axis_names[0]), ax.set_ylabel(axis_names[1])
        legend_ax = ax
    _legend(fig, legend_ax, classes, labels, colors)
    return _finish(fig, path, title, note)


def side_by_side(panels: Sequence[tuple[str, np.ndarray, np.ndarray, Sequence[str]]], path: str | Path, *,
                 title: str = "", seed: int = 0) -> Path:
    """2-D scatters of several stores side by side, ``(label, coords, labels, classes)`` each; a class (matched
    by name) has the same colour in every panel, one legend for all."""
    names: list[str] = []
    for _, _, _, classes in panels:
        names += [c for c in classes if c not in names]
    colors = class_colors(len(names))
    cols = min(len(panels), 3)
    rows = math.ceil(len(panels) / cols)
    fig, axes = subplots(rows, cols, figsize=(5.5 * cols + 2.5, 5 * rows), dpi=100, squeeze=False)
    flat = axes.ravel()
    everything = []
    for ax, (label, coords, labels, classes) in zip(flat, panels):
        idx = np.array([names.index(c) for c in classes], dtype=int)[np.asarray(labels, dtype=int)]
        _draw_points(ax, np.asarray(coords, dtype=float)[:, :2], idx, len(names), colors, seed)
        ax.set_title(label, fontsize=9)
        everything.append(idx)
    for ax in flat[len(panels):]:
        ax.axis("off")
    first = everything[0]  # counts of one store (the stores hold the same images), plus classes only others have
    seen = set(first.tolist())
    extra = sorted({int(i) for e in everything[1:] for i in e} - seen)
    _legend(fig, flat[len(panels) - 1], names, np.concatenate([first, np.asarray(extra, dtype=int)]), colors)
    return _finish(fig, path, title, "")


def thumbnail_scatter(coords: np.ndarray, labels: np.ndarray, classes: Sequence[str],
                      image_paths: Sequence, path: str | Path, *, title: str = "", note: str = "",
                      max_thumbs: int = 150, thumb: int = 48, seed: int = 0) -> Path:
    """2-D scatter with small images drawn at their projected positions (one per cell of a grid,
    at most ``max_thumbs``, framed in the class colour). Missing or unreadable images stay plain dots."""
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    coords = np.asarray(coords, dtype=float)[:, :2]
    labels = np.asarray(labels, dtype=int)
    colors = class_colors(len(classes))
    fig, ax = subplots(figsize=(14, 11), dpi=100)
    _draw_points(ax, coords, labels, len(classes), colors, seed)
    g = max(1, int(math.sqrt(max_thumbs)))
    lo, span = coords.min(axis=0), np.ptp(coords, axis=0) + 1e-12
    cell = np.minimum((g * (coords - lo) / span).astype(int), g - 1)
    cell_id = cell[:, 0] * g + cell[:, 1]
    order = np.random.default_rng(seed).permutation(len(coords))
    _, first = np.unique(cell_id[order], return_index=True)
    drawn = 0
    for i in order[first]:
        img = thumbnail(image_paths[i], thumb)
        if img is None:
            continue
        box = AnnotationBbox(OffsetImage(img, zoom=0.6), coords[i], frameon=True, pad=0.1,
                             bboxprops={"edgecolor": colors[labels[i]], "linewidth": 1.5})
        ax.add_artist(box)
        drawn += 1
    _legend(fig, ax, classes, labels, colors)
    shown = f"{drawn} thumbnails (one per grid cell)" + ("" if drawn else "; no image files found")
    return _finish(fig, path, title, "; ".join(s for s in (note, shown) if s))


def variance_curve(ratios: np.ndarray, path: str | Path, *, title: str = "PCA explained variance") -> Path:
    """Per-component and cumulative explained-variance ratio, with the 50/80/90% points marked."""
    ratios = np.asarray(ratios, dtype=float)
    cum = np.cumsum(ratios)
    k = np.arange(1, len(ratios) + 1)
    fig, ax = subplots(figsize=(8, 5), dpi=100)
    ax.bar(k, ratios, color="0.7", label="per component")
    ax.plot(k, cum, color="C0", label="cumulative")
    for level in (0.5, 0.8, 0.9):
        if cum[-1] >= level:
            j = int(np.searchsorted(cum, level)) + 1
            ax.axhline(level, color="0.85", lw=0.8, zorder=0)
            ax.annotate(f"{level:.0%} at {j}", (j, level), textcoords="offset points", xytext=(5, -12), fontsize=8)
    ax.set_xlabel("principal component")
    ax.set_ylabel("explained variance ratio")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="center right")
    return _finish(fig, path, title, "")


def separability_curve(acc: dict[int, float], path: str | Path, *, chance: float | None = None,
                       title: str = "Linear separability on the first k principal components") -> Path:
    """Linear-SVM cross-validated accuracy against the number of principal components k."""
    fig, ax = subplots(figsize=(7, 4.5), dpi=100)
    ks = sorted(acc)
    ax.plot(ks, [acc[k] for k in ks], marker="o")
    for k in ks:
        ax.annotate(f"{acc[k]:.2f}", (k, acc[k]), textcoords="offset points", xytext=(0, 6), fontsize=7,
                    ha="center")
    if chance is not None:
        ax.axhline(chance, color="0.6", ls="--", label="majority class")
        ax.legend(loc="lower right")
    ax.set_xscale("log")
    ax.set_xlabel("k (principal components)")
    ax.set_ylabel("CV accuracy (LinearSVC)")
    ax.set_ylim(0, 1.05)
    return _finish(fig, path, title, "")
