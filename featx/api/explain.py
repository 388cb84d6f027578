"""``featx.explain``: class activation maps of a fit run or a fine-tuned network (``featx explain``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from ..look.explain import ExplainOptions, Explanations
from .fit import model_path


def explain(model, images: str | os.PathLike | Sequence[str | os.PathLike], *, method: str = "gradcam",
            target: str | None = None, top_k: int = 3, out: str | Path | None = None, sheet: str | Path | None = None,
            weights: str | Path | None = None, trust: bool = False, device: str = "auto", batch_size: int = 8,
            progress: bool = True) -> Explanations:
    """Class activation maps: where in each image the model found the evidence for a class (``featx explain``).

    A fit run's backbone (its tapped layer, pooling and mirrored view) and its fitted classifier (softmax,
    linearsvc or mlp, with their preprocessing) form one torch network, so the maps explain the classifier
    that was trained; a ``best.pt`` of ``featx finetune`` brings its own head. The maps are taken at the
    backbone's last conv block (from the backbone registry).

    Parameters
    ----------
    model : FitRun, its ``.model``, a run folder, a ``model.skops`` or a ``best.pt`` path
        What to explain.
    images : path or list of paths
        Image files.
    method : {"gradcam", "gradcam++", "scorecam"}, default "gradcam"
        Grad-CAM, Grad-CAM++ or Score-CAM (no gradients, one forward pass per channel: slow).
    target : str, optional
        The class whose evidence every map shows; default each image's top class.
    top_k : int, default 3
        Classes (with probabilities) kept per image.
    out : str or Path, optional
        Also write one PNG per image there (painting, map, top classes).
    sheet : str or Path, optional
        Also write every image and its map on one PNG.
    weights : str or Path, optional
        The checkpoint file, for models fit on features of a local checkpoint.
    trust : bool, default False
        Also load a pickle model (an older ``model.joblib``), which can run code as it loads.
    device : str, default "auto"
        ``auto`` (CUDA when there is one), ``cpu``, ``cuda``, ``cuda:N``, ``mps``.
    batch_size : int, default 8
        Images per forward and backward pass.
    progress : bool, default True
        A progress bar.

    Returns
    -------
    Explanations
        A list of :class:`~featx.look.explain.Explanation` (``.image``, ``.map`` in [0, 1], ``.target``,
        ``.top``), with ``.maps``, ``.figure(i)``, ``.save(folder)``, ``.sheet(path)`` and ``.failures``.

    Examples
    --------
    >>> maps = featx.explain(run, ["painting.jpg"], method="gradcam++")  # doctest: +SKIP
    >>> maps[0].top, maps.sheet("maps.png")  # doctest: +SKIP
    """
    options = ExplainOptions(method=method, target=target, top_k=top_k, out=out, sheet=sheet, weights=weights,
                             trust=trust, device=device, batch_size=batch_size)
    return explain_with_options(model, images, options, progress=progress)


def explain_with_options(model, images: str | os.PathLike | Sequence[str | os.PathLike], options: ExplainOptions, *,
                         echo: Callable[[str], None] | None = None, progress: bool = True) -> Explanations:
    """:func:`explain` with its options already built (and so checked): what ``featx explain`` calls."""
    from ..look.explain import explain as run

    paths = [images] if isinstance(images, (str, os.PathLike)) else list(images)
    return run(model_path(model, "explain", "a run folder, a model.skops or a best.pt path"), paths, options, echo=echo or (lambda line: None), progress=progress)
