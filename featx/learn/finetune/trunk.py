"""The fine-tuning network split into a frozen trunk and trainable blocks, and the cached trunk.

``--unfreeze N`` trains the last N blocks, the neck and the new head; ``0`` the head alone;
``all`` everything. The frozen part gives the same output for an image (view) in every epoch,
so :class:`TrunkCache` computes it once per image and augmented view and the trainable blocks
train on those activations: on a CPU most of a forward pass is in the early, high-resolution
blocks, so an epoch on cached activations costs a fraction of one through the whole network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...backbones.blocks import (
    Blocks,
    make_head,
    replace_module,
    run_stages,
    split_blocks,
)
from ...backbones.tap import Normalize
from ...config import DataCfg
from ...engine.loader import default_workers
from ...errors import OptionError
from .augment import Views
from .config import Augment, FinetuneCfg


class Network:
    """The backbone with its new head, and which stages are frozen or trained."""

    def __init__(self, model: nn.Module, cfg: FinetuneCfg, n_classes: int, name: str = ""):
        self.model = model
        self.freeze_bn = cfg.freeze_bn
        blocks: Blocks = split_blocks(model, name)
        self.blocks = blocks
        self.head = make_head(blocks.dim, n_classes, cfg.hidden, cfg.dropout, cfg.batchnorm)
        self.head_spec = {"path": blocks.head_path, "dim": blocks.dim, "n_classes": n_classes,
                          "hidden": list(cfg.hidden), "dropout": cfg.dropout, "batchnorm": cfg.batchnorm}
        replace_module(model, blocks.head_path, self.head)
        n, k = len(blocks), cfg.unfreeze
        if k == "all":
            self.frozen: list[nn.Module] = []
            self.trainable = [blocks.stem, *blocks.blocks, blocks.neck, self.head]
        else:
            if k > n:
                raise OptionError(f"--unfreeze {k}: {name or type(model).__name__} has {n} blocks "
                                  f"({', '.join(blocks.names)}); use 0 to {n}, or all")
            self.frozen = [blocks.stem, *blocks.blocks[: n - k]] + ([blocks.neck] if k == 0 else [])
            self.trainable = [*blocks.blocks[n - k:]] + ([blocks.neck] if k else []) + [self.head]
        for p in model.parameters():
            p.requires_grad_(False)
        for p in self.trainable_parameters():
            p.requires_grad_(True)

    def trainable_parameters(self) -> list[nn.Parameter]:
        seen, params = set(), []
        for stage in self.trainable:
            for p in stage.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
        return params

    def train(self, on: bool = True) -> None:
        """Trainable stages in train mode; the frozen ones (their BatchNorm statistics) always in eval mode."""
        self.model.eval()
        self.head.eval()
        if on:
            for stage in self.trainable:
                stage.train()
            if self.freeze_bn:  # --freeze-bn: batch statistics never replace the pretrained ones
                for stage in self.trainable:
                    for m in stage.modules():
                        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                            m.eval()

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen part's output (no graph)."""
        with torch.no_grad():
            return run_stages(self.frozen, x)

    def top(self, a: torch.Tensor) -> torch.Tensor:
        """Logits from the frozen part's output."""
        return run_stages(self.trainable, a)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.top(self.trunk(x))


class Normalise:
    """uint8 NHWC batch -> normalised float NCHW on the device (the backbone's own mean and std)."""

    def __init__(self, cfg: DataCfg, device: torch.device, channels_last: bool):
        self.device = device
        self.normalize = Normalize(cfg, channels_last).to(device)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return self.normalize(batch.to(self.device, non_blocking=True))


def collate(items):
    """Stack the readable views (uint8 NHWC tensor); pass failures through as (index, reason)."""
    ok = [(i, a) for i, a, _ in items if a is not None]
    failed = [(i, r) for i, a, r in items if a is None]
    x = torch.from_numpy(np.stack([a for _, a in ok])) if ok else None
    return [i for i, _ in ok], x, failed


def view_batches(paths: Sequence[Path], ids: Sequence[str], views: Sequence[int], cfg: DataCfg, aug: Augment | None,
                 seed: int, *, batch_size: int, workers: int | None, shuffle_order: Sequence[int] | None = None,
                 pin_memory: bool = False) -> Iterable[tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]]:
    """Batches ``(indices, uint8 NHWC, failures)`` of the given views, in ``shuffle_order`` if given."""
    order = list(shuffle_order) if shuffle_order is not None else list(range(len(paths)))
    ds = Views([paths[i] for i in order], [ids[i] for i in order], [views[i] for i in order], cfg, aug, seed)
    workers = default_workers() if workers is None else workers
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers,
                                         collate_fn=collate, pin_memory=pin_memory,
                                         prefetch_factor=4 if workers else None)
    for idx, x, failed in loader:
        yield [order[i] for i in idx], x, [(order[i], r) for i, r in failed]


_MEMO: dict[str, dict[tuple[str, int], torch.Tensor]] = {}
"""Activations per trunk key, kept for the process: folds of one benchmark share the cached views."""


class TrunkCache:
    """Frozen-trunk activations per ``(image id, view)``; view -1 is the un-augmented eval view."""

    def __init__(self, key: str, keep: bool = False):
        self.acts: dict[tuple[str, int], torch.Tensor] = _MEMO.setdefault(key, {}) if keep else {}
        self.failed: dict[str, str] = {}

    def fill(self, net: Network, normalise: Normalise, paths: Sequence[Path], ids: Sequence[str],
             views: Sequence[int], cfg: DataCfg, aug: Augment | None, seed: int, *, batch_size: int,
             workers: int | None, on_batch: Callable[[int], None] = lambda n: None) -> None:
        """Compute the activations of the views not cached yet."""
        todo = [i for i, (k, v) in enumerate(zip(ids, views)) if (k, v) not in self.acts and k not in self.failed]
        if not todo:
            return
        sub = [paths[i] for i in todo], [ids[i] for i in todo], [views[i] for i in todo]
        for idx, x, failed in view_batches(*sub, cfg, aug if aug is not None else None, seed,
                                           batch_size=batch_size, workers=workers):
            for j, reason in failed:
                self.failed[sub[1][j]] = reason
            if idx:
                a = net.trunk(normalise(x)).float().cpu()
                for row, j in enumerate(idx):
                    self.acts[(sub[1][j], sub[2][j])] = a[row].clone()
            on_batch(len(idx) + len(failed))

    def batch(self, ids: Sequence[str], views: Sequence[int]) -> torch.Tensor:
        return torch.stack([self.acts[(k, v)] for k, v in zip(ids, views)])

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.acts.values())
