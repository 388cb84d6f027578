"""One differentiable network per model to explain, and the layer its maps are taken at (imports torch).

* A ``featx fit`` run (``model.skops``): the backbone of the store's fingerprint (weights, tapped layer,
  pooling, mirrored view) followed by the fitted Pipeline in torch: L2 blocks, ``StandardScaler``, PCA
  and the classifier's coefficients (softmax's ``LogisticRegression``, LinearSVC's SVM, the MLP's layers).
  Its scores are the classifier's decision function on the same features, its probabilities the
  model's ``predict_proba`` (LinearSVC's temperature, or an earlier featx's sigmoid calibration, included).
* A ``featx finetune`` checkpoint (``best.pt``, read with ``weights_only``): the network with its own head.

The layer is the backbone registry's ``cam_layer`` (:class:`featx.config.BackboneCfg`, the last conv block);
when the store taps a layer before it (or the backbone has none, ``timm:``/``tv:`` ones), the last layer
giving maps before the tap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..backbones.build import create_model, load_finetuned
from ..backbones.registry import get_cfg
from ..backbones.tap import TappedModel, resolve_module
from ..backbones.weights_ref import WeightsRef
from ..config import BackboneCfg, DataCfg, ExtractCfg
from ..errors import BackboneError, ClassifierError
from ..learn.predict import load_model

@dataclass
class ExplainNetwork:
    """What :func:`featx.look.cam.class_activation_maps` needs: ``net`` maps normalised images (N, 3, H, W)
    (:meth:`prepare`) to class scores; ``layer`` sits inside it."""

    net: nn.Module
    layer: nn.Module
    layer_name: str
    classes: list[str]
    data: DataCfg
    mirrored: tuple[bool, ...]
    proba: Callable[[torch.Tensor], torch.Tensor]
    description: str
    note: str = ""

    def place(self, device: str = "auto") -> torch.device:
        """Move the network to ``device`` (``auto``: CUDA when there is one) and return it."""
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else torch.device(device)
        self.net.to(dev)
        return dev

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        """Class probabilities of scores (N, C), as the model's ``predict_proba``."""
        with torch.no_grad():
            return self.proba(torch.from_numpy(np.asarray(scores, dtype=np.float32))).double().numpy()

    def prepare(self, images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        """uint8 (N, H, W, 3) -> normalised float (N, 3, H, W) on ``device``, as the backbone reads them."""
        mean = torch.tensor(self.data.mean, device=device).view(1, 3, 1, 1) * 255
        std = torch.tensor(self.data.std, device=device).view(1, 3, 1, 1) * 255
        x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float()
        return ((x - mean) / std).contiguous()


# ---------------------------------------------------------------- the fitted Pipeline in torch


class Affine(nn.Module):
    """``(x - shift) @ matrix / scale`` (``matrix`` None: elementwise): scalers and PCA."""

    def __init__(self, shift, scale, matrix=None):
        super().__init__()
        self.register_buffer("shift", _t(shift))
        self.register_buffer("scale", _t(scale))
        self.register_buffer("matrix", None if matrix is None else _t(matrix))

    def forward(self, x):
        x = x - self.shift
        if self.matrix is not None:
            x = x @ self.matrix
        return x / self.scale


class L2Blocks(nn.Module):
    """Each block of consecutive columns scaled to unit norm (``BlockL2Normalizer``, ``Normalizer``)."""

    def __init__(self, widths=None):
        super().__init__()
        self.widths = None if widths is None else list(widths)  # None: the whole row

    def forward(self, x):
        parts = torch.split(x, self.widths or [x.shape[1]], dim=1)
        return torch.cat([p / torch.where(n > 0, n, torch.ones_like(n))
                          for p, n in ((p, p.norm(dim=1, keepdim=True)) for p in parts)], 1)


class TwoColumns(nn.Module):
    """A binary model's one score ``d`` -> ``(-d/2, d/2)``: softmax gives ``sigmoid(d)``, column 1 minus
    column 0 is ``d``, and the gradient of class 0 is that of ``-d``."""

    def forward(self, d):
        return torch.cat([-d / 2, d / 2], 1)


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=torch.float32)


def _linear(coef, intercept) -> nn.Linear:
    coef = np.atleast_2d(np.asarray(coef))
    lin = nn.Linear(coef.shape[1], coef.shape[0])
    with torch.no_grad():
        lin.weight.copy_(_t(coef))
        lin.bias.copy_(_t(np.atleast_1d(intercept)))
    return lin


def _preprocess_layer(name: str, step) -> nn.Module | None:
    kind = type(step).__name__
    if kind == "BlockL2Normalizer":
        return L2Blocks(step.widths)
    if kind == "Normalizer" and step.norm == "l2":
        return L2Blocks()
    if kind == "StandardScaler":
        mean = step.mean_ if step.mean_ is not None else np.zeros(step.n_features_in_)
        scale = step.scale_ if step.scale_ is not None else np.ones(step.n_features_in_)
        return Affine(mean, scale)
    if kind == "PCA":
        scale = np.sqrt(step.explained_variance_) if step.whiten else np.ones(step.n_components_)
        scale = np.maximum(scale, np.finfo(np.float64).eps)
        return Affine(step.mean_, scale, step.components_.T)
    if step is None or step == "passthrough":
        return None
    raise ClassifierError(f"step {name!r} ({kind}) of the model has no torch equivalent; featx explain takes the "
                          "preprocessing featx fit writes (standardize, l2, pca:K)")


_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "logistic": nn.Sigmoid, "identity": nn.Identity}


def classifier_head(pipeline) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor], str]:
    """``(scores module, probabilities of scores, classifier kind)`` of a fitted featx Pipeline.

    The scores are ``decision_function`` of LogisticRegression and of LinearSVC's SVM, and the MLP's output
    layer before its softmax (one column ``d`` of a binary model becomes ``(-d/2, d/2)``); the probabilities
    equal the Pipeline's ``predict_proba``.
    """
    steps = list(getattr(pipeline, "steps", [("clf", pipeline)]))
    clf = steps[-1][1]
    layers: list[nn.Module] = []
    for name, step in steps[:-1]:
        layer = _preprocess_layer(name, step)
        if layer is not None:
            layers.append(layer)
    kind = type(clf).__name__

    def softmax(s):
        return torch.softmax(s, 1)

    if kind == "LogisticRegression":
        layers.append(_linear(clf.coef_, clf.intercept_))
        proba = softmax
    elif kind == "LinearSVCCalibrated" and hasattr(clf, "temperature_"):  # softmax(scores / T)
        svm = clf.svm_
        layers.append(_linear(svm.coef_, svm.intercept_))
        t = float(clf.temperature_)

        def proba(s, t=t):
            return torch.softmax(s / t, 1)
    elif kind == "LinearSVCCalibrated":  # an earlier featx's sigmoid calibration, one calibrator per class
        svm = clf.svm_
        layers.append(_linear(svm.coef_, svm.intercept_))
        cal = clf.calibrated_.calibrated_classifiers_[0].calibrators
        a = _t([c.a_ for c in cal])
        b = _t([c.b_ for c in cal])

        def proba(s, a=a, b=b):
            if s.shape[1] == 2 and len(a) == 1:  # binary: one calibrator on d = s1 - s0
                p1 = torch.sigmoid(-(a * (s[:, 1:] - s[:, :1]) + b))
                return torch.cat([1 - p1, p1], 1)
            p = torch.sigmoid(-(a.to(s.device) * s + b.to(s.device)))
            total = p.sum(1, keepdim=True)
            return torch.where(total > 0, p / torch.where(total > 0, total, torch.ones_like(total)),
                               torch.full_like(p, 1 / p.shape[1]))
    elif kind == "MLPClassifier":
        act = _ACTIVATIONS.get(clf.activation)
        if act is None:
            raise ClassifierError(f"MLP activation {clf.activation!r} has no torch equivalent here")
        for i, (w, b) in enumerate(zip(clf.coefs_, clf.intercepts_)):
            layers.append(_linear(np.asarray(w).T, b))
            if i < len(clf.coefs_) - 1:
                layers.append(act())
        proba = softmax
    else:
        name = {"KNeighborsClassifier": "knn", "DummyClassifier": "majority"}.get(kind, kind)
        raise ClassifierError(f"a {name} model has no gradient, so featx cannot map where it looked; explain a "
                              "softmax, linearsvc or mlp model (featx fit --clf softmax)")
    out = layers[-1].out_features if isinstance(layers[-1], nn.Linear) else 0
    if out == 1:
        layers.append(TwoColumns())
    return nn.Sequential(*layers).eval(), proba, kind


# ---------------------------------------------------------------- backbone + head


class ScoreNet(nn.Module):
    """Normalised images (N, 3, H, W) -> class scores: the tapped backbone (and its mirrored view, averaged,
    as the store's ``--tta hflip``) and the head on the pooled features, or the backbone's own logits
    (``head`` None: a fine-tuned network)."""

    def __init__(self, tapped: TappedModel, head: nn.Module | None, hflip: bool = False):
        super().__init__()
        self.tapped = tapped
        self.head = head
        self.hflip = hflip

    def _one(self, x):
        feats, logits = self.tapped(x)
        return logits if self.head is None else feats.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._one(x)
        if self.hflip:
            out = (out + self._one(x.flip(3))) / 2
        return out if self.head is None else self.head(out)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features the head reads (as the store holds them)."""
        out = self._one(x)
        return (out + self._one(x.flip(3))) / 2 if self.hflip else out


def target_layer(model: nn.Module, cfg: BackboneCfg, tap: str, size: int) -> tuple[str, str]:
    """``(module path, note)``: ``cfg.cam_layer`` where the forward pass reaches it before the tap, else the
    last module giving (N, K, h, w) maps (h, w > 1) before the tap, found on a blank image."""
    tap_path, _, side = tap.partition(":")
    resolve_module(model, tap_path)
    order: list[tuple[str, tuple[int, ...]]] = []
    reached: list[bool] = []
    handles = []

    def record(name):
        def hook(mod, inp, out):
            if not reached and isinstance(out, torch.Tensor):
                order.append((name, tuple(out.shape)))
            if name == tap_path and side != "in":
                reached.append(True)
        return hook

    def before_tap(mod, inp):
        reached.append(True)

    for name, mod in model.named_modules():
        if name == tap_path and side == "in":
            handles.append(mod.register_forward_pre_hook(before_tap))
        handles.append(mod.register_forward_hook(record(name)))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, size, size))
    finally:
        for h in handles:
            h.remove()
    seen = dict(order)
    wanted = cfg.cam_layer or _listed_cam_layer(cfg.name)
    if wanted and wanted in seen:
        return wanted, ""
    maps = [n for n, s in order if len(s) == 4 and s[2] > 1 and s[3] > 1]
    if not maps:
        raise BackboneError(f"{cfg.name}: no layer gives maps before the tapped layer {tap!r}; featx cannot draw "
                            "class activation maps for features of this layer")
    note = f"{cfg.name}'s last conv block {wanted} comes after the tapped layer {tap}; maps from {maps[-1]}" \
        if wanted else ""
    return maps[-1], note


def _listed_cam_layer(name: str) -> str:
    """The registry's ``cam_layer`` of a listed backbone (a checkpoint's older copy of its entry lacks it)."""
    if name.startswith(("timm:", "tv:")):
        return ""
    try:
        return get_cfg(name).cam_layer
    except BackboneError:
        return ""


def fit_network(model_path: str | Path, *, weights: str | Path | None = None, trust: bool = False) -> ExplainNetwork:
    """The network of a ``featx fit`` model: its store's backbone and its classifier as torch layers."""
    loaded = load_model(model_path, trust=trust)
    fps = loaded.fingerprints
    if len(fps) != 1:
        raise ClassifierError(f"{loaded.path}: a model fit on {len(fps)} concatenated stores; featx explain maps "
                              "a model fit on one store")
    head, proba, kind = classifier_head(loaded.model)
    cfg = ExtractCfg.from_dict(fps[0])
    bcfg = get_cfg(cfg.backbone)
    ref = WeightsRef.from_store(cfg.weights, bcfg, weights)
    model = create_model(bcfg, ref)
    name, note = target_layer(model, bcfg, cfg.module, cfg.data.input_size)
    tapped = TappedModel(model, cfg.module, cfg.pool)
    hflip = cfg.tta == "hflip"
    net = ScoreNet(tapped, head, hflip=hflip).eval()
    n_classes = len(loaded.classes)
    order = np.asarray(getattr(loaded.model, "classes_", np.arange(n_classes)), dtype=int)
    if list(order) != list(range(n_classes)):
        raise ClassifierError(f"{loaded.path}: the model knows {len(order)} of {n_classes} classes; re-fit it")
    return ExplainNetwork(net, resolve_module(model, name), name, loaded.classes, cfg.data,
                          (False, True) if hflip else (False,), proba,
                          f"{cfg.backbone}:{cfg.layer} ({cfg.pool}) + {kind}", note)


def finetuned_network(checkpoint: str | Path) -> ExplainNetwork:
    """The network of a ``featx finetune`` checkpoint with its own head (read with ``weights_only``)."""
    model, bcfg, ck = load_finetuned(checkpoint)
    tap = ck["head"]["path"] + ":in"
    name, note = target_layer(model, bcfg, tap, bcfg.data.input_size)
    net = ScoreNet(TappedModel(model, tap, "none", with_logits=True), None).eval()
    return ExplainNetwork(net, resolve_module(model, name), name, list(ck["classes"]), bcfg.data, (False,),
                          lambda s: torch.softmax(s, 1), f"{bcfg.name} fine-tuned", note)
