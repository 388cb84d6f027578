"""Classify new images with a model written by ``featx fit``, with a network fine-tuned by
``featx finetune`` (its ``best.pt``, whose own head gives the probabilities), or with an ensemble of
``featx finetune --seeds K`` (its run folder or ``ensemble.json``: the mean of the members' probabilities).

``model.skops`` is the fitted Pipeline (:mod:`featx.learn.modelfile`: it loads without running code from
the file); ``model.json`` beside it names the classes
and the fingerprint(s) of the features it was fit on. Images are embedded with
:func:`featx.engine.memory.embed_paths` (imported lazily: it loads a runtime) under each
fingerprint; for concatenated-store models the blocks are joined in the stored
order and the pipeline's first step L2-normalises each, exactly as in ``fit``.

Every classifier reports probabilities: LinearSVC's are its decision scores through one fitted
temperature (their top-1 is the SVM's own prediction), kNN gives neighbour-vote shares.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..backbones.weights_ref import ENSEMBLE_FILE, ensemble_manifest, read_ensemble
from ..errors import ClassifierError
from .modelfile import LEGACY_MODEL_FILE, MODEL_FILE, read_model, resolve_model_path

MODEL_FORMAT = "featx-model"


@dataclass
class LoadedModel:
    model: object
    meta: dict
    path: Path

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def fingerprints(self) -> list[dict]:
        return list(self.meta.get("fingerprints") or [self.meta["fingerprint"]])

    def proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities of feature rows, one column per class of :attr:`classes` (a class the fit
        never saw stays 0)."""
        full = np.zeros((len(X), len(self.classes)))
        full[:, np.asarray(self.model.classes_, dtype=int)] = np.asarray(self.model.predict_proba(X))
        return full


def load_model(path: str | Path, *, trust: bool = False) -> LoadedModel:
    """Read ``model.skops`` (or its run folder) and its ``model.json`` sidecar.

    The model is built only from trusted types (:func:`featx.learn.modelfile.read_model`); a pickle
    (an older ``model.joblib``) runs code as it loads and is read only with ``trust=True``.
    """
    path = resolve_model_path(path)
    sidecar = path.with_suffix(".json")
    if not path.exists():
        raise ClassifierError(f"{path}: no such model; pass the {MODEL_FILE} written by `featx fit`")
    if not sidecar.exists():
        raise ClassifierError(f"{sidecar}: missing sidecar of {path.name}; it is written by `featx fit` next to the model")
    try:
        meta = json.loads(sidecar.read_text())
    except json.JSONDecodeError as exc:
        raise ClassifierError(f"{sidecar}: not valid JSON ({exc.msg})") from None
    if meta.get("format") != MODEL_FORMAT or "classes" not in meta:
        raise ClassifierError(f"{sidecar}: not a featx model sidecar")
    model = read_model(path, trust=trust)
    import sklearn

    if meta.get("sklearn_version") != sklearn.__version__:
        warnings.warn(f"{path} was saved with scikit-learn {meta.get('sklearn_version')}, "
                      f"this is {sklearn.__version__}; predictions may differ", stacklevel=2)
    return LoadedModel(model, meta, path)


def embed_for_model(fingerprints: Sequence[dict], paths: Sequence[Path], *, weights: str | Path | None = None
                    ) -> tuple[np.ndarray, list[Path], list[tuple[str, str]]]:
    """Features of ``paths`` under each fingerprint, side by side, for the images every backbone read.

    ``weights`` (a local checkpoint) is passed on for models fit on checkpoint features.
    """
    try:
        from ..engine.memory import embed_paths  # lazy: a runtime
    except ModuleNotFoundError as exc:
        raise ClassifierError(f"cannot embed images: {exc.name} is not installed") from None

    blocks, failures = [], {}
    for fp in fingerprints:
        kw = {"weights": weights} if weights is not None else {}
        feats, failed = embed_paths(fp, list(paths), **kw)
        bad = {str(p) for p, _ in failed}
        failures.update({str(p): reason for p, reason in failed})
        ok = [p for p in paths if str(p) not in bad]
        if len(ok) != len(feats):
            raise ClassifierError(f"embedding returned {len(feats)} rows for {len(ok)} readable images")
        blocks.append(dict(zip(map(str, ok), np.asarray(feats))))
    keep = [p for p in paths if str(p) not in failures]
    if not keep:
        return np.empty((0, 0), np.float32), [], list(failures.items())
    X = np.hstack([np.stack([b[str(p)] for p in keep]) for b in blocks]).astype(np.float32)
    return X, keep, list(failures.items())


def is_finetune_checkpoint_path(path: str | Path) -> bool:
    """``best.pt`` / ``last.pt`` of ``featx finetune`` (or its run folder), rather than a ``model.skops``."""
    path = Path(path)
    if path.is_dir():
        return (path / "best.pt").is_file() and not any((path / m).exists() for m in (MODEL_FILE, LEGACY_MODEL_FILE))
    return path.suffix in (".pt", ".pth")


def top_classes(proba: np.ndarray, classes: Sequence[str], top_k: int) -> list[list]:
    """``[[class, probability], ...]``: the ``top_k`` classes of one row of probabilities, best first."""
    order = np.argsort(-proba, kind="stable")[:top_k]
    return [[classes[j], float(proba[j])] for j in order]


def top_k_results(paths: Sequence[Path], proba: np.ndarray, classes: Sequence[str], top_k: int) -> list[dict]:
    """``[{"path", "top": [[class, probability], ...]}]``: the ``top_k`` classes of each row, best first."""
    return [{"path": str(p), "top": top_classes(row, classes, top_k)} for p, row in zip(paths, proba)]


def is_ensemble_path(path: str | Path) -> bool:
    """A run folder of ``featx finetune --seeds K`` (it holds ``ensemble.json``) or such a manifest."""
    path = Path(path)
    return ensemble_manifest(path) is not None and (path.is_dir() or path.name != "model.json")


def predict_finetuned(checkpoint: str | Path, paths: Sequence[Path], *, top_k: int = 3, device: str = "auto",
                      batch_size: int = 16) -> tuple[list[dict], list[tuple[str, str]]]:
    """The fine-tuned network's own head on ``paths`` (softmax of its logits), as :func:`predict_paths`."""
    keep, proba, classes, failures = finetuned_proba(checkpoint, paths, device=device, batch_size=batch_size)
    if not keep:
        return [], failures
    return top_k_results(keep, proba, classes, top_k), failures


def ensemble_proba(ensemble: str | Path, paths: Sequence[Path], *, device: str = "auto", batch_size: int = 16
                   ) -> tuple[list[Path], np.ndarray, list[str], list[tuple[str, str]]]:
    """``(images read, mean of the members' probabilities, classes, failures)`` of an ensemble of
    ``featx finetune --seeds K`` (every member checked against the manifest's sha256 first)."""
    ens = read_ensemble(ensemble)
    classes = list(ens.classes)
    probas, keep, failures = [], None, []
    for m in ens.members:
        k, p, c, f = finetuned_proba(m.path, paths, device=device, batch_size=batch_size)
        if c != classes:
            raise ClassifierError(f"{ens.path}: member {m.path} has classes {c}, the ensemble {classes}")
        if keep is None:
            keep, failures = k, f
        elif [str(x) for x in k] != [str(x) for x in keep]:
            raise ClassifierError(f"{ens.path}: its members read different images; check the files and retry")
        probas.append(p)
    if not keep:
        return [], np.zeros((0, len(classes))), classes, failures
    return keep, np.mean(probas, axis=0), classes, failures


def finetuned_proba(checkpoint: str | Path, paths: Sequence[Path], *, device: str = "auto", batch_size: int = 16
                    ) -> tuple[list[Path], np.ndarray, list[str], list[tuple[str, str]]]:
    """``(images read, softmax of the fine-tuned head, classes, failures)`` of one ``best.pt``."""
    from ..backbones.build import load_finetuned  # lazy: torch
    from ..backbones.tap import FeatureNet, TappedModel
    from ..engine.embed import TorchEmbedder, resolve_device
    from ..engine.loader import iter_batches

    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():
        checkpoint = checkpoint / "best.pt"
    if not checkpoint.is_file():
        raise ClassifierError(f"{checkpoint}: no such checkpoint; pass the best.pt written by `featx finetune`")
    model, bcfg, ck = load_finetuned(checkpoint)
    # a run trained with --tta is scored on the mean of the image's and its mirror image's logits: so is predict
    net = FeatureNet(TappedModel(model, ck["head"]["path"] + ":in", "none", with_logits=True), bcfg.data,
                     hflip=bool((ck.get("config") or {}).get("tta")), channels_last=False)
    embed = TorchEmbedder(net, resolve_device(device), streams=1)
    keep, proba, failures = [], [], []
    for b, _, logits in embed.map(iter_batches(paths, bcfg.data, batch_size=batch_size, workers=0)):
        if logits is not None:
            z = np.exp(logits - logits.max(1, keepdims=True))
            proba.append(z / z.sum(1, keepdims=True))
            keep += [paths[j] for j in b.indices]
        failures += [(str(paths[j]), r) for j, r in b.failures]
    classes = list(ck["classes"])
    return keep, np.concatenate(proba) if proba else np.zeros((0, len(classes))), classes, failures


def predict_paths(model_path: str | Path, paths: Sequence[str | Path], *, top_k: int = 3,
                  weights: str | Path | None = None, trust: bool = False
                  ) -> tuple[list[dict], list[tuple[str, str]]]:
    """``[{"path", "top": [[class, probability], ...]}]`` per readable image, plus ``(path, reason)`` failures.

    ``model_path``: a ``model.skops`` of ``featx fit`` (or its run folder), a ``best.pt`` of
    ``featx finetune`` (or its run folder), whose own head classifies the images, or an ensemble of
    ``featx finetune --seeds K`` (its run folder or ``ensemble.json``), whose members' probabilities are
    averaged (a missing or changed member is a :class:`~featx.errors.WeightsError`). ``trust``: also load
    a pickle model (an older ``model.joblib``), which can run code; checkpoints are always read with
    ``torch.load(weights_only=True)``.
    """
    if top_k < 1:
        raise ClassifierError(f"--top-k {top_k}: must be at least 1")
    paths = [Path(p) for p in paths]
    if is_ensemble_path(model_path):
        if weights is not None:
            raise ClassifierError(f"--weights: an ensemble ({ENSEMBLE_FILE}) carries its members' weights; "
                                  "drop --weights")
        keep, proba, classes, failures = ensemble_proba(model_path, paths)
        return (top_k_results(keep, proba, classes, top_k) if keep else []), failures
    if is_finetune_checkpoint_path(model_path):
        if weights is not None:
            raise ClassifierError("--weights: a fine-tuning checkpoint carries its own weights; drop --weights")
        return predict_finetuned(model_path, paths, top_k=top_k)
    loaded = load_model(model_path, trust=trust)
    X, keep, failures = embed_for_model(loaded.fingerprints, paths, weights=weights)
    if not keep:
        return [], failures
    expected = getattr(loaded.model, "n_features_in_", X.shape[1])
    if X.shape[1] != expected:
        raise ClassifierError(f"{loaded.path}: model expects {expected} features but its backbone gave {X.shape[1]}")
    return top_k_results(keep, loaded.proba(X), loaded.classes, top_k), failures


def format_prediction(result: dict) -> str:
    """``painting.jpg: claude-monet 72.9%, alfred-sisley 27.1%``."""
    tops = ", ".join(f"{c} {100 * p:.1f}%" for c, p in result["top"])
    return f"{Path(result['path']).name}: {tops}"
