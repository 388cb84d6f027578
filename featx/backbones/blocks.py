"""A backbone seen as blocks, for fine-tuning: ``stem -> blocks[0] ... blocks[-1] -> neck -> head``.

:func:`split_blocks` reads the blocks off the built network (references into it, so training a
block trains the model): EfficientNet / EfficientNet-Lite (timm and torchvision), ResNet (timm
and torchvision), VGG and ConvNeXt. Running ``stem``, the blocks and ``neck`` in order gives the
pooled embedding the original head sees; ``head_path`` names the classifier that fine-tuning
replaces with :func:`make_head`. ``--unfreeze N`` trains the last N blocks (and the neck).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import BackboneError

FAMILIES = "EfficientNet / EfficientNet-Lite, ResNet, VGG and ConvNeXt"


@dataclass
class Blocks:
    """The network's blocks in forward order; each entry runs on the previous one's output."""

    stem: nn.Module
    blocks: list[nn.Module]
    names: list[str]  # module paths of each block, for messages and the checkpoint
    neck: nn.Module  # pooling (and any norm) from the last block's map to the embedding
    head_path: str  # the classifier module replaced by fine-tuning
    dim: int  # embedding width (the head's input)

    def __len__(self) -> int:
        return len(self.blocks)

    def stages(self) -> list[nn.Module]:
        """``[stem, *blocks, neck]``: their composition maps an image batch to the embedding."""
        return [self.stem, *self.blocks, self.neck]


def _seq(*mods: nn.Module) -> nn.Module:
    return mods[0] if len(mods) == 1 else nn.Sequential(*mods)


def _linear_in(model: nn.Module, path: str) -> int:
    """Input width of the classifier at ``path`` (its first Linear when a fine-tuned head replaced it)."""
    head = model.get_submodule(path)
    first = head if isinstance(head, nn.Linear) else next(m for m in head.modules() if isinstance(m, nn.Linear))
    return int(first.in_features)


def split_blocks(model: nn.Module, name: str = "") -> Blocks:
    """The blocks of ``model`` (see the module docstring), or a :class:`BackboneError` for other families."""
    kind = type(model).__name__
    if kind == "EfficientNet" and hasattr(model, "conv_stem"):  # timm EfficientNet / -Lite
        b = list(model.blocks)
        blocks = [*b[:-1], nn.Sequential(b[-1], model.conv_head, model.bn2)]
        names = [f"blocks.{i}" for i in range(len(b) - 1)] + [f"blocks.{len(b) - 1}+conv_head+bn2"]
        return Blocks(nn.Sequential(model.conv_stem, model.bn1), blocks, names, model.global_pool, "classifier",
                      _linear_in(model, "classifier"))
    if kind == "ResNet":  # timm and torchvision share the layer names
        act = getattr(model, "act1", None) or model.relu
        pool = model.global_pool if hasattr(model, "global_pool") else nn.Sequential(model.avgpool, nn.Flatten(1))
        return Blocks(nn.Sequential(model.conv1, model.bn1, act, model.maxpool),
                      [model.layer1, model.layer2, model.layer3, model.layer4],
                      ["layer1", "layer2", "layer3", "layer4"], pool, "fc", _linear_in(model, "fc"))
    if kind == "VGG":
        feats, cls = model.features, model.classifier
        cuts = [i + 1 for i, m in enumerate(feats) if isinstance(m, nn.MaxPool2d)]
        starts = [0, *cuts[:-1]]
        blocks = [_seq(*feats[a:b]) for a, b in zip(starts, cuts)]
        blocks += [nn.Sequential(model.avgpool, nn.Flatten(1), *cls[0:3]), _seq(*cls[3:6])]
        names = [f"features.{a}-{b - 1}" for a, b in zip(starts, cuts)] + ["fc1", "fc2"]
        return Blocks(nn.Identity(), blocks, names, nn.Identity(), "classifier.6", _linear_in(model, "classifier.6"))
    if kind in ("EfficientNet", "ConvNeXt") and hasattr(model, "features"):  # torchvision
        f = list(model.features)
        if kind == "EfficientNet":
            blocks = [*f[1:-2], nn.Sequential(f[-2], f[-1])]
            names = [f"features.{i}" for i in range(1, len(f) - 2)] + [f"features.{len(f) - 2}-{len(f) - 1}"]
            neck, head = nn.Sequential(model.avgpool, nn.Flatten(1)), "classifier.1"
        else:  # stages with their downsampling layer
            blocks = [f[1], *(nn.Sequential(f[i], f[i + 1]) for i in range(2, len(f), 2))]
            names = ["features.1"] + [f"features.{i}-{i + 1}" for i in range(2, len(f), 2)]
            neck, head = nn.Sequential(model.avgpool, *model.classifier[:-1]), f"classifier.{len(model.classifier) - 1}"
        return Blocks(f[0], blocks, names, neck, head, _linear_in(model, head))
    raise BackboneError(f"--backbone {name or kind}: fine-tuning knows the blocks of {FAMILIES} networks, "
                        f"not {kind}")


def make_head(dim: int, n_classes: int, hidden: Sequence[int] = (), dropout: float = 0.0,
              batchnorm: bool = True) -> nn.Sequential:
    """A new classifier: ``[Linear -> BatchNorm -> ReLU -> Dropout] per hidden width -> Dropout -> Linear``."""
    layers: list[nn.Module] = []
    width = dim
    for h in hidden:
        layers += [nn.Linear(width, h), *([nn.BatchNorm1d(h)] if batchnorm else []), nn.ReLU(inplace=True)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    if dropout and not hidden:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


def head_from_spec(spec: dict) -> nn.Sequential:
    """The head a fine-tuning checkpoint describes (``spec``: dim, n_classes, hidden, dropout, batchnorm)."""
    return make_head(int(spec["dim"]), int(spec["n_classes"]), [int(h) for h in spec.get("hidden", ())],
                     float(spec.get("dropout", 0.0)), bool(spec.get("batchnorm", True)))


def replace_module(model: nn.Module, path: str, new: nn.Module) -> None:
    """Put ``new`` at dotted ``path`` of ``model``."""
    parent, _, leaf = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def run_stages(stages: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """Apply ``stages`` in order."""
    for s in stages:
        x = s(x)
    return x
