"""The settings of a fine-tuning run (torch-free): what ``featx finetune``'s options hold, checked once."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ...errors import OptionError

OPTIMIZERS = ("adamw", "sgd", "rmsprop")
SCHEDULERS = ("cosine", "plateau", "constant")
AVERAGES = ("none", "ema", "swa")


@dataclass(frozen=True)
class Augment:
    """Training augmentation for paintings (validation and test images are never augmented)."""

    rotation: float = 15.0  # degrees, uniform in [-rotation, rotation]
    zoom: tuple[float, float] = (0.8, 1.25)  # scale factor range: > 1 zooms in, < 1 zooms out
    hflip: bool = True
    vflip: bool = False
    enabled: bool = True

    @property
    def active(self) -> bool:
        return self.enabled and (self.rotation > 0 or self.zoom != (1.0, 1.0) or self.hflip or self.vflip)


@dataclass(frozen=True)
class FinetuneCfg:
    """Everything that decides a fine-tuning run (saved in its checkpoints)."""

    backbone: str
    weights: str = "imagenet"
    unfreeze: int | str = 2  # last N blocks, or "all"
    hidden: tuple[int, ...] = ()  # hidden widths of the new head
    dropout: float = 0.2
    batchnorm: bool = True
    epochs: int = 12  # the schedule's length; --cv chooses how many of them the final run trains
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float = 1e-3  # the head's learning rate
    backbone_lr: float = 1.0  # the backbone's learning rate, as a fraction of lr
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup: int = 1  # epochs of linear warm-up
    scheduler: str = "cosine"
    label_smoothing: float = 0.1
    class_weight: str | None = None  # None | "balanced"
    patience: int = 5  # early stopping on validation macro F1 (0: off)
    augment: Augment = field(default_factory=Augment)
    views: int = 4  # augmented views per training image in the cached trunk
    cache_trunk: bool = True
    seed: int = 0
    precision: str = "auto"  # fp32 | bf16 | fp16 | auto (bf16/fp16 autocast on CUDA)
    channels_last: bool = True
    # the small-data recipe (docs/finetuning.md "The default recipe"; chosen by k-fold CV, benchmarks/results)
    lp_ft: bool = True  # start the linear head from the frozen linear probe (LP-FT)
    freeze_bn: bool = True  # BatchNorm layers of the trained blocks keep their ImageNet statistics (eval mode)
    llrd: float = 1.0  # layer-wise lr decay: each trainable block below the top gets this factor more (1: off)
    mixup: float = 0.0  # alpha of mixup on the trunk's output (0: off)
    average: str = "none"  # none | ema (per step) | swa (epoch ends of the second half) of the weights
    ema_decay: float = 0.99
    tta: bool = True  # score the mean of the image's and its mirror image's logits (the probe: their features)
    cv: int = 3  # folds of the training rows choosing the epoch count (0: early stopping on the val split)

    def __post_init__(self):
        checks = [
            (self.epochs >= 1, f"--epochs {self.epochs}: must be at least 1"),
            (self.batch_size >= 2, f"--batch-size {self.batch_size}: must be at least 2 (batch norm)"),
            (self.optimizer in OPTIMIZERS, f"--optimizer {self.optimizer!r}: use one of {', '.join(OPTIMIZERS)}"),
            (self.scheduler in SCHEDULERS, f"--scheduler {self.scheduler!r}: use one of {', '.join(SCHEDULERS)}"),
            (self.lr > 0, f"--lr {self.lr}: must be positive"),
            (0 <= self.backbone_lr <= 1, f"--backbone-lr {self.backbone_lr}: a fraction of --lr in [0, 1]"),
            (self.weight_decay >= 0, f"--weight-decay {self.weight_decay}: must be >= 0"),
            (0 <= self.dropout < 1, f"--dropout {self.dropout}: must be in [0, 1)"),
            (0 <= self.label_smoothing < 1, f"--label-smoothing {self.label_smoothing}: must be in [0, 1)"),
            (self.class_weight in (None, "balanced"), f"--class-weight {self.class_weight!r}: use none or balanced"),
            (self.warmup >= 0 and self.patience >= 0, "--warmup and --patience must be >= 0"),
            (self.views >= 1, f"--views {self.views}: must be at least 1"),
            (all(h >= 1 for h in self.hidden), f"--head {self.hidden}: widths must be positive"),
            (0 <= self.augment.rotation <= 180, f"--rotation {self.augment.rotation}: degrees in [0, 180]"),
            (0 < self.augment.zoom[0] <= self.augment.zoom[1],
             f"--zoom {self.augment.zoom}: two positive factors, low <= high"),
            (0 < self.llrd <= 1, f"--llrd {self.llrd}: a factor in (0, 1] (1: the same rate for every block)"),
            (self.mixup >= 0, f"--mixup {self.mixup}: an alpha >= 0 (0: off)"),
            (self.average in AVERAGES, f"--average {self.average!r}: use one of {', '.join(AVERAGES)}"),
            (0 < self.ema_decay < 1, f"--ema-decay {self.ema_decay}: must be in (0, 1)"),
            (self.cv == 0 or self.cv >= 2, f"--cv {self.cv}: 0 (the val split decides) or at least 2 folds"),
        ]
        for ok, message in checks:
            if not ok:
                raise OptionError(message)
        if self.unfreeze != "all" and (not isinstance(self.unfreeze, int) or self.unfreeze < 0):
            raise OptionError(f"--unfreeze {self.unfreeze!r}: a number of blocks (0 = the new head only) or all")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        d["augment"]["zoom"] = list(self.augment.zoom)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FinetuneCfg:
        d = dict(d)
        aug = dict(d.pop("augment"))
        aug["zoom"] = tuple(aug["zoom"])
        known = {f.name for f in dataclasses.fields(cls)}
        legacy = {"lp_ft": False, "cv": 0, "freeze_bn": False, "tta": False}  # checkpoints written before the recipe options existed
        d = {**{k: v for k, v in legacy.items() if k not in d}, **{k: v for k, v in d.items() if k in known}}
        return cls(**{**d, "hidden": tuple(d.get("hidden", ())), "augment": Augment(**aug)})


def parse_unfreeze(text: str) -> int | str:
    """``--unfreeze``: a non-negative number of blocks or ``all``."""
    if text.strip().lower() == "all":
        return "all"
    try:
        n = int(text)
    except ValueError:
        raise OptionError(f"--unfreeze {text!r}: a number of blocks (0 = the new head only) or all") from None
    if n < 0:
        raise OptionError(f"--unfreeze {n}: must be 0 (the new head only) or more blocks, or all")
    return n


def parse_widths(text: str | None, flag: str = "--head") -> tuple[int, ...]:
    """``--head 384,128`` -> ``(384, 128)``; empty or ``none`` -> ``()``."""
    if not text or text.strip().lower() in ("none", "linear"):
        return ()
    try:
        widths = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise OptionError(f"{flag} {text!r}: hidden widths separated by commas, e.g. 384,128") from None
    if any(w < 1 for w in widths):
        raise OptionError(f"{flag} {text!r}: widths must be positive")
    return widths


def parse_pair(text: str, flag: str) -> tuple[float, float]:
    """``--zoom 0.8,1.25`` -> ``(0.8, 1.25)``; one number z means ``(1/z, z)`` when z > 1."""
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise OptionError(f"{flag} {text!r}: give LOW,HIGH, e.g. 0.8,1.25") from None
    if len(vals) == 1:
        z = vals[0]
        return (1 / z, z) if z >= 1 else (z, 1 / z)
    if len(vals) != 2:
        raise OptionError(f"{flag} {text!r}: give LOW,HIGH, e.g. 0.8,1.25")
    return vals[0], vals[1]
