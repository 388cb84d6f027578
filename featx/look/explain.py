"""``featx explain``: where the network looked, as class activation maps over the paintings.

A model is a ``featx fit`` run (its ``model.skops`` on frozen features: the store's backbone and the fitted
classifier become one torch network, :mod:`.network`) or a ``featx finetune`` checkpoint (``best.pt``).
:func:`explain_images` gives one :class:`Explanation` per image (the painting as the network saw it, the
map, the class it explains and the top classes with probabilities); :class:`Explanations` draws them
one PNG per image or as one sheet. :func:`explain_mistakes` is ``featx fit --explain N``: the N most
confident held-out mistakes of a fit run, with the map of the class the model wrongly chose.

Torch is imported only when maps are computed (:mod:`.cam`, :mod:`.network`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..config import device_problem
from ..errors import ClassifierError, DataError, FeatxError, OptionError
from ..report import plots

if TYPE_CHECKING:  # pragma: no cover
    from ..store.reader import FeatureSet

METHODS = ("gradcam", "gradcam++", "scorecam")
"""``--method``: Grad-CAM, Grad-CAM++, Score-CAM (:mod:`featx.look.cam`)."""

DIFFERENTIABLE = ("softmax", "linearsvc", "mlp")
"""Classifiers of ``featx fit`` that become torch layers (kNN and the majority baseline have no gradient)."""

MISTAKES_FILE = "explain_mistakes.png"
"""The sheet ``featx fit --explain N`` adds to the run folder."""


@dataclass(frozen=True)
class ExplainOptions:
    """Every option of ``featx explain`` (and :func:`featx.explain`'s keywords), checked as it is built.

    ``target``: the class every map explains (default: each image's top class); ``weights``: the checkpoint
    of a model fit on features of a local checkpoint; ``trust``: also load a pickle model (runs code).
    """

    method: str = "gradcam"
    target: str | None = None
    top_k: int = 3
    out: str | Path | None = None
    sheet: str | Path | None = None
    weights: str | Path | None = None
    trust: bool = False
    device: str = "auto"
    batch_size: int = 8

    def __post_init__(self):
        problem = device_problem(self.device)
        if problem:
            raise OptionError(f"--device: {problem}")
        if self.method not in METHODS:
            raise OptionError(f"--method {self.method!r}: use {', '.join(METHODS)}")
        if self.top_k < 1:
            raise OptionError(f"--top-k {self.top_k}: must be at least 1")
        if self.batch_size < 1:
            raise OptionError(f"--batch-size {self.batch_size}: must be at least 1")
        if self.target is not None and not str(self.target).strip():
            raise OptionError("--class: give a class name of the model (or leave it out for each image's top class)")
        if self.sheet is not None and Path(self.sheet).suffix.lower() not in (".png", ""):
            raise OptionError(f"--sheet {self.sheet}: write a .png file")


@dataclass
class Explanation:
    """One image: ``image`` (uint8 H x W x 3, as the network saw it: resized and centre-cropped), ``map``
    (float32 H x W in [0, 1]) of the class ``target``, and ``top``: ``[(class, probability), ...]``."""

    path: str
    image: np.ndarray
    map: np.ndarray
    target: str
    top: list[tuple[str, float]]
    caption: str = ""

    def mass_in(self, rows: slice, cols: slice) -> float:
        """Share of the map's total in the window ``map[rows, cols]`` (1.0: all of it)."""
        total = float(self.map.sum())
        return float(self.map[rows, cols].sum()) / total if total > 0 else 0.0


class Explanations(list):
    """:class:`Explanation` per readable image, in order.

    Attributes
    ----------
    method : str
        ``gradcam``, ``gradcam++`` or ``scorecam``.
    layer : str
        Module path of the layer the maps were taken at.
    model : str
        What was explained (backbone, layer, pooling and classifier, or the fine-tuned network).
    failures : list of (str, str)
        ``(path, reason)`` of the images that could not be read.
    note : str
        Why the maps come from another layer than the backbone's last conv block, if they do.
    """

    def __init__(self, items: Sequence[Explanation], *, method: str, layer: str, model: str,
                 failures: Sequence[tuple[str, str]] = (), note: str = ""):
        super().__init__(items)
        self.method, self.layer, self.model, self.note = method, layer, model, note
        self.failures = list(failures)

    def __repr__(self) -> str:
        return f"<featx.Explanations {len(self)} maps ({self.method} at {self.layer}) of {self.model}>"

    @property
    def maps(self) -> np.ndarray:
        """(N, H, W) float32: every map."""
        return np.stack([e.map for e in self]) if self else np.zeros((0, 0, 0), np.float32)

    def figure(self, i: int):
        """The Figure of image ``i``: the painting, the map over it, the top classes."""
        return explanation_figure(self[i], self.method)

    def save(self, out_dir: str | Path) -> list[Path]:
        """One PNG per image in ``out_dir`` (``<image stem>.png``, ``-2`` where stems repeat)."""
        out_dir = Path(out_dir)
        written: list[Path] = []
        for e in self:
            path = out_dir / f"{Path(e.path).stem or 'image'}.png"
            k = 2
            while path in written:
                path = out_dir / f"{Path(e.path).stem}-{k}.png"
                k += 1
            written.append(plots.save(self.figure(len(written)), path))
        return written

    def sheet(self, path: str | Path, *, title: str | None = None, per_row: int = 3) -> Path:
        """All images on one PNG: per image the painting and its map, captioned with the top classes."""
        return plots.save(sheet_figure(self, title=title, per_row=per_row), Path(path))


# ---------------------------------------------------------------- figures


def _top_text(e: Explanation, k: int = 3) -> str:
    return "\n".join(f"{c} {100 * p:.0f}%" for c, p in e.top[:k])


def _overlay(ax, e: Explanation) -> None:
    ax.imshow(e.image)
    ax.imshow(e.map, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0, interpolation="bilinear")
    ax.axis("off")


def explanation_figure(e: Explanation, method: str):
    """Painting | map over the painting | the top classes as bars (the explained class highlighted)."""
    fig, axes = plots.subplots(1, 3, figsize=(10.5, 3.6), dpi=100, gridspec_kw={"width_ratios": [1, 1, 0.9]})
    axes[0].imshow(e.image)
    axes[0].axis("off")
    axes[0].set_title(Path(e.path).name, fontsize=9)
    _overlay(axes[1], e)
    axes[1].set_title(f"{method}: {e.target}", fontsize=9)
    names = [c for c, _ in e.top][::-1]
    probs = [p for _, p in e.top][::-1]
    axes[2].barh(range(len(names)), probs, color=["tab:red" if c == e.target else "tab:blue" for c in names])
    axes[2].set_yticks(range(len(names)), labels=names, fontsize=8)
    axes[2].set_xlim(0, 1)
    axes[2].set_xlabel("probability", fontsize=8)
    for i, p in enumerate(probs):
        axes[2].text(min(p + 0.02, 0.8), i, f"{100 * p:.1f}%", va="center", fontsize=8)
    if e.caption:
        fig.suptitle(e.caption, fontsize=9)
    return fig


def sheet_figure(items: Sequence[Explanation], *, title: str | None = None, per_row: int = 3):
    """A grid: per image the painting (named) and its map (captioned with the explained class and top 3)."""
    n = max(1, len(items))
    per_row = max(1, min(per_row, n))
    rows = -(-n // per_row)
    fig, axes = plots.subplots(rows, 2 * per_row, figsize=(2 * per_row * 2.1, rows * 2.75 + (0.4 if title else 0)),
                               dpi=100, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    if not items:
        axes[0, 0].text(0.5, 0.5, "nothing to show", ha="center", va="center")
    for k, e in enumerate(items):
        left, right = axes[k // per_row, 2 * (k % per_row)], axes[k // per_row, 2 * (k % per_row) + 1]
        left.imshow(e.image)
        left.set_title(e.caption or plots.short_name(e.path), fontsize=7)
        _overlay(right, e)
        right.set_title(f"map: {e.target}\n{_top_text(e)}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


# ---------------------------------------------------------------- computing the maps


def _network(model: str | Path, o: ExplainOptions):
    """The :class:`featx.look.network.ExplainNetwork` of a fit run / model.skops or a fine-tuning checkpoint."""
    from ..learn.predict import is_finetune_checkpoint_path

    path = Path(model)
    if not path.exists():
        raise ClassifierError(f"{path}: no such model; pass a run folder or model.skops written by `featx fit`, "
                              "or a best.pt written by `featx finetune`")
    from . import network  # lazy: torch

    if is_finetune_checkpoint_path(path):
        if o.weights is not None:
            raise OptionError("--weights: a fine-tuning checkpoint carries its own weights; drop --weights")
        return network.finetuned_network(path / "best.pt" if path.is_dir() else path)
    return network.fit_network(path, weights=o.weights, trust=o.trust)


def _read(paths: Sequence[Path], data) -> tuple[list[int], list[np.ndarray], list[tuple[str, str]]]:
    from ..data.images import ImageReadError, read_for_model

    ok, images, failures = [], [], []
    for i, p in enumerate(paths):
        try:
            images.append(read_for_model(p, data))
            ok.append(i)
        except ImageReadError as exc:
            failures.append((str(p), str(exc)))
    return ok, images, failures


def _class_index(classes: Sequence[str], name: str) -> int:
    if name in classes:
        return list(classes).index(name)
    shown = ", ".join(classes[:12]) + (", ..." if len(classes) > 12 else "")
    raise OptionError(f"--class {name!r}: not a class of this model; its classes are {shown}")


def explain_images(model: str | Path, images: Sequence[str | os.PathLike], options: ExplainOptions | None = None, *,
                   targets: Sequence[int] | None = None, captions: Sequence[str] | None = None,
                   progress: bool = True) -> Explanations:
    """Maps of ``model`` on ``images`` (see the module). ``targets`` (class indices, one per image) overrides
    ``options.target``; ``captions`` are drawn above each painting. Unreadable images are listed in
    ``failures``; none readable is a :class:`DataError`."""
    from tqdm.auto import tqdm

    from .cam import class_activation_maps

    o = options or ExplainOptions()
    paths = [Path(p) for p in images]
    if not paths:
        raise DataError("no image given; pass one or more image files")
    if targets is not None and len(targets) != len(paths):
        raise OptionError(f"{len(targets)} targets for {len(paths)} images")
    net = _network(model, o)
    fixed = _class_index(net.classes, o.target) if o.target is not None else None
    ok, arrays, failures = _read(paths, net.data)
    if not ok:
        p, reason = failures[0]
        raise DataError(f"{p}: cannot read the image ({reason})" if len(failures) == 1 else
                        f"none of the {len(failures)} images could be read, e.g. {p}: {reason}")
    device = net.place(o.device)
    items: list[Explanation] = []
    with tqdm(total=len(ok), unit="img", desc=f"explain ({o.method})", disable=not progress, mininterval=1.0) as bar:
        for s in range(0, len(ok), o.batch_size):
            idx = ok[s:s + o.batch_size]
            batch = np.stack(arrays[s:s + o.batch_size])
            x = net.prepare(batch, device)
            want = None
            if targets is not None:
                want = [int(targets[i]) for i in idx]
            elif fixed is not None:
                want = [fixed] * len(idx)
            maps, scores, chosen = class_activation_maps(net.net, net.layer, x, want, method=o.method,
                                                         mirrored=net.mirrored, progress=bar.update)
            proba = net.probabilities(scores)
            for j, i in enumerate(idx):
                order = np.argsort(-proba[j], kind="stable")[:o.top_k]
                items.append(Explanation(str(paths[i]), batch[j], maps[j], net.classes[chosen[j]],
                                         [(net.classes[c], float(proba[j, c])) for c in order],
                                         captions[i] if captions is not None else ""))
    return Explanations(items, method=o.method, layer=net.layer_name, model=net.description, failures=failures,
                        note=net.note)


def explain(model: str | Path, images: Sequence[str | os.PathLike], options: ExplainOptions | None = None, *,
            echo: Callable[[str], None] = lambda s: None, progress: bool = True) -> Explanations:
    """``featx explain``: :func:`explain_images`, then one PNG per image in ``options.out`` and the sheet."""
    o = options or ExplainOptions()
    result = explain_images(model, images, o, progress=progress)
    if result.note:
        echo(f"note: {result.note}")
    written = result.save(o.out) if o.out is not None else [None] * len(result)
    for e, path in zip(result, written):
        tops = ", ".join(f"{c} {100 * p:.1f}%" for c, p in e.top)
        echo(f"{Path(e.path).name}: map of {e.target}; {tops}" + (f" -> {path}" if path else ""))
    if o.sheet is not None:
        echo(f"sheet of {len(result)} maps ({result.method} at {result.layer}) -> "
             f"{result.sheet(o.sheet, title=f'{result.method} at {result.layer}: {result.model}')}")
    return result


# ---------------------------------------------------------------- featx fit --explain N


def explain_mistakes(run_dir: str | Path, fs: "FeatureSet", n: int, *, method: str = "gradcam",
                     echo: Callable[[str], None] = lambda s: None) -> Path | None:
    """Write ``explain_mistakes.png`` into a fit run folder: the ``n`` held-out images the model got wrong
    with the highest probability, each with the map of the class it wrongly chose. Returns the sheet, or
    None (with a note) where there is nothing to map: a kNN or majority model, no held-out split."""
    from ..learn import classify
    from ..learn.predict import load_model

    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    clf = metrics.get("classifier")
    if clf not in DIFFERENTIABLE:
        echo(f"note: --explain: a {clf} model has no gradient; no {MISTAKES_FILE} in {run_dir}")
        return None
    plan = classify.plan_splits(fs.split, cv=metrics.get("cv"))
    if plan.mode == "cv":
        echo(f"note: --explain: the store has no test or val split, so no held-out mistakes to map; "
             f"no {MISTAKES_FILE}")
        return None
    loaded = load_model(run_dir)
    rows = plan.eval
    proba = loaded.proba(fs.features[rows])
    pred, true = proba.argmax(1), np.asarray(fs.labels)[rows]
    wrong = np.flatnonzero(pred != true)
    wrong = wrong[np.argsort(-proba[wrong, pred[wrong]], kind="stable")][:n]
    classes = loaded.classes
    title = f"{clf}: the {len(wrong)} most confident {plan.mode} mistakes of {len(rows)}, {method} of the chosen class"
    path = run_dir / MISTAKES_FILE
    if not len(wrong):
        plots.save(sheet_figure([], title=f"{clf}: no {plan.mode} mistakes of {len(rows)}"), path)
        echo(f"no {plan.mode} mistakes to map -> {path}")
        return path
    captions = [f"true: {classes[true[i]]}\npred: {classes[pred[i]]} ({100 * proba[i, pred[i]]:.0f}%)" for i in wrong]
    try:
        result = explain_images(run_dir, [fs.image_path(int(rows[i])) for i in wrong], ExplainOptions(method=method),
                                targets=[int(pred[i]) for i in wrong], captions=captions, progress=False)
    except FeatxError as exc:  # the images moved, the weights are missing...: the fit itself stands
        echo(f"note: --explain: no {MISTAKES_FILE} ({exc})")
        return None
    result.sheet(path, title=title)
    echo(f"{len(result)} most confident mistakes with their maps -> {path}")
    return path
