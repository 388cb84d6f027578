"""The frozen linear probe of a fine-tuning run: the baseline it must beat, and LP-FT's starting head.

``fit_probe(trainer)`` must run **before any training step**: it embeds the train, val and test
rows with the pretrained weights (:meth:`Trainer.embed`, un-augmented, eval mode: the pooled
features ``featx extract`` stores at ``pre_logits``; under ``--tta`` the mean of the image's and its
mirror image's, as ``featx extract --tta hflip``) and fits featx's ``softmax`` classifier
(:mod:`featx.learn.classify`, default options: StandardScaler + LogisticRegression ``C=0.1``,
the run's ``class_weight``) on the training rows only.

:class:`Probe` then gives

* ``rows[split]``, ``features[split]`` (pooled features), ``labels[split]``;
* ``proba(split)``: the probe's class probabilities (columns in the run's class order), e.g.
  ``proba("test")`` for the verdict against the fine-tuned network on the same test rows;
* ``as_head_init()``: ``(weight, bias)`` float32 tensors of one ``Linear(dim, n_classes)`` on the
  *raw* pooled features with the StandardScaler folded in (``W / scale``, ``b - W @ (mean / scale)``;
  a binary logistic regression becomes the two logits ``-z/2, z/2``), whose softmax equals
  ``proba``; ``load_into(trainer)`` copies it into the run's linear head (LP-FT), after which the
  network's first evaluation gives the probe's predictions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..classify import make_classifier, two_columns
from .augment import FLIP_VIEW

SPLITS = ("train", "val", "test")
MISSING_BIAS = -30.0  # logit of a class without training rows (never predicted)


@dataclass
class Probe:
    """A softmax classifier fitted on the frozen pooled features of a run's training rows."""

    classes: list[str]
    rows: dict[str, np.ndarray]
    features: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    model: object  # the fitted sklearn Pipeline (standardize -> LogisticRegression)
    seconds: float = 0.0
    _proba: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def proba(self, split: str) -> np.ndarray:
        """Probabilities ``(len(rows[split]), n_classes)`` of ``split``'s rows, in the run's class order."""
        if split not in self._proba:
            X = self.features[split]
            full = np.zeros((len(X), len(self.classes)))
            if len(X):
                full[:, self.model.classes_] = self.model.predict_proba(X)
            self._proba[split] = full
        return self._proba[split]

    def predict(self, split: str) -> np.ndarray:
        return self.proba(split).argmax(1)

    def accuracy(self, split: str) -> float:
        y = self.labels[split]
        return float(np.mean(self.predict(split) == y)) if len(y) else float("nan")

    def as_head_init(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weight (n_classes, dim), bias (n_classes,))`` of the equivalent Linear on raw pooled features."""
        scaler, lr = self.model.named_steps["standardize"], self.model.named_steps["clf"]
        coef, intercept = np.asarray(lr.coef_, np.float64), np.asarray(lr.intercept_, np.float64)
        if coef.shape[0] == 1:  # binary: p(class 1) = sigmoid(z) = softmax([-z/2, z/2])[1]
            coef, intercept = two_columns(coef[0]).T, two_columns(intercept)[0]
        scale = np.asarray(scaler.scale_, np.float64) if scaler.scale_ is not None else 1.0
        mean = np.asarray(scaler.mean_, np.float64) if scaler.mean_ is not None else 0.0
        w_fit = coef / scale
        b_fit = intercept - w_fit @ (mean * np.ones(coef.shape[1]))
        dim = coef.shape[1]
        weight = np.zeros((len(self.classes), dim))
        bias = np.full(len(self.classes), MISSING_BIAS)
        weight[lr.classes_], bias[lr.classes_] = w_fit, b_fit
        return torch.tensor(weight, dtype=torch.float32), torch.tensor(bias, dtype=torch.float32)

    def load_into(self, trainer) -> bool:
        """Copy :meth:`as_head_init` into ``trainer``'s head when it is linear (no hidden layers); whether it did."""
        if trainer.cfg.hidden:
            return False
        linear = trainer.net.head[-1]
        w, b = self.as_head_init()
        with torch.no_grad():
            linear.weight.copy_(w.to(linear.weight.device, linear.weight.dtype))
            linear.bias.copy_(b.to(linear.bias.device, linear.bias.dtype))
        return True


def fit_probe(trainer, *, class_weight: str | None = "run") -> Probe:
    """Embed ``trainer``'s rows with its current (pretrained: call before training) weights and fit the
    ``softmax`` probe on its training rows. ``class_weight="run"`` takes the run's ``--class-weight``."""
    import time

    t0 = time.perf_counter()
    cw = trainer.cfg.class_weight if class_weight == "run" else class_weight
    rows = {s: np.asarray(trainer.rows[s], dtype=int) for s in SPLITS}
    everything = np.concatenate([rows[s] for s in SPLITS])
    X = trainer.embed(everything).astype(np.float64)
    if trainer.cfg.tta:  # --tta: the mean of the image's and its mirror image's features (featx extract --tta hflip)
        X = (X + trainer.embed(everything, FLIP_VIEW)) / 2
    bounds = np.cumsum([0] + [len(rows[s]) for s in SPLITS])
    features = {s: X[bounds[i]:bounds[i + 1]] for i, s in enumerate(SPLITS)}
    labels = {s: np.asarray(trainer.ds.labels)[rows[s]] for s in SPLITS}
    model = make_classifier("softmax", class_weight=cw, random_state=trainer.cfg.seed)
    model.fit(features["train"], labels["train"])
    return Probe(list(trainer.classes), rows, features, labels, model, time.perf_counter() - t0)
