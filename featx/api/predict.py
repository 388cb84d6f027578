"""``featx.predict``: classify new images with a model written by :func:`featx.fit` or ``featx finetune``
(one network or an ensemble)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from ..errors import ClassifierError
from .fit import model_path


class Predictions(list):
    """``[{"path": str, "top": [(class, probability), ...]}, ...]``, one per readable image, in order.

    Attributes
    ----------
    failures : list of (str, str)
        ``(path, reason)`` of the images that could not be read (they have no entry).
    """

    def __init__(self, results: Sequence[dict], failures: Sequence[tuple[str, str]] = ()):
        super().__init__(results)
        self.failures = list(failures)


def predict(model, images: str | os.PathLike | Sequence[str | os.PathLike], *, top_k: int = 3,
            weights: str | Path | None = None, errors: str = "warn", trust: bool = False) -> Predictions:
    """Embed images with the model's backbone and give the top-k classes with probabilities (``featx predict``).

    Parameters
    ----------
    model : FitRun, its ``.model``, a run folder or a ``model.skops`` path
        A model written by :func:`featx.fit`; the backbone, layer, pooling and preprocessing are
        rebuilt from the fingerprint beside it. A ``best.pt`` of ``featx finetune`` is read with
        ``torch.load(weights_only=True)``; an ensemble of ``featx finetune --seeds K`` (its run folder
        or ``ensemble.json``) gives the mean of its members' probabilities, after checking each
        member's sha256 against the manifest (:class:`~featx.errors.WeightsError` if one is missing or
        changed).
    images : path or list of paths
        Image files to classify.
    top_k : int, default 3
        Classes given per image.
    weights : str or Path, optional
        The checkpoint file, for models fit on features of a local checkpoint.
    errors : {"warn", "raise", "ignore"}, default "warn"
        What to do about images that cannot be read: a warning, a :class:`~featx.errors.DataError`, or
        nothing (they are always listed in ``failures``).
    trust : bool, default False
        Also load a pickle model (the ``model.joblib`` of older featx), which can run code as it loads:
        only for a file you made yourself. ``model.skops`` never needs it (only trusted types are built).

    Returns
    -------
    Predictions
        A list of ``{"path": str, "top": [(class, probability), ...]}``, best class first.

    Examples
    --------
    >>> featx.predict(run.model, ["new.jpg"], top_k=3)  # doctest: +SKIP
    [{'path': 'new.jpg', 'top': [('claude-monet', 0.93), ('alfred-sisley', 0.07)]}]
    """
    from ..errors import DataError
    from ..learn.predict import predict_paths

    if errors not in ("warn", "raise", "ignore"):
        raise ClassifierError(f"errors={errors!r}: use 'warn', 'raise' or 'ignore'")
    paths = [images] if isinstance(images, (str, os.PathLike)) else list(images)
    results, failures = predict_paths(model_path(model, "predict", "a run folder or a model.skops path"), paths, top_k=top_k, weights=weights, trust=trust)
    if failures and errors != "ignore":
        text = f"{len(failures)} image(s) could not be read, e.g. {failures[0][0]}: {failures[0][1]}"
        if errors == "raise":
            raise DataError(text)
        warnings.warn(text, stacklevel=2)
    return Predictions([{"path": r["path"], "top": [tuple(t) for t in r["top"]]} for r in results], failures)
