"""Frozen configuration records shared by the registry, the extractor and the store.

Nothing here imports torch: the CLI resolves configs and fingerprints without it,
so a cache-hit ``featx extract`` never pays for the deep-learning stack.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import env

SCHEMA_VERSION = 2
"""Version of the HDF5 store layout (bumped when the layout changes; v2 added file stats and precision)."""

POOLS = ("avg", "max", "gem", "flatten", "spp", "none")
TTAS = ("none", "hflip")
DTYPES = ("float32", "float16")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
RUNTIMES = ("auto", "torch", "openvino")
DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def device_problem(device: str) -> str | None:
    """Why ``device`` is not auto, cpu, cuda, cuda:N or mps (None when it is one): ``--device``'s one check."""
    return None if DEVICE.fullmatch(device) else f"{device!r} is not one of auto, cpu, cuda, cuda:N, mps"


def cache_dir() -> Path:
    """Default home of stores and caches: ``$FEATX_CACHE`` or ``./cache``."""
    value = env.CACHE.get()
    return Path("cache" if value is None else value)


@dataclass(frozen=True)
class DataCfg:
    """Eval preprocessing: resize the short side, centre-crop, normalise.

    Values are read from torchvision's weights transforms or timm's data config,
    never typed by hand. ``resize_size`` is the short side before the crop.
    """

    input_size: int = 224
    resize_size: int = 256
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DataCfg":
        return cls(
            input_size=int(d["input_size"]),
            resize_size=int(d["resize_size"]),
            interpolation=str(d["interpolation"]),
            mean=tuple(float(v) for v in d["mean"]),
            std=tuple(float(v) for v in d["std"]),
        )

    def with_input_size(self, size: int) -> "DataCfg":
        """Same crop ratio at another input size (``--image-size``)."""
        ratio = self.resize_size / self.input_size
        return dataclasses.replace(self, input_size=size, resize_size=int(round(size * ratio)))


@dataclass(frozen=True)
class LayerInfo:
    """A tap point: ``module`` is a module path, ``module:in`` taps its input."""

    name: str
    module: str
    shape: tuple[int, ...]  # per-image output shape at the default input size
    pool: str  # default pooling for this layer ("none" for vectors)

    def dim(self, pool: str | None = None) -> int:
        """Feature width after ``pool`` (the layer's default when None)."""
        return pooled_dim(self.shape, pool or self.pool)


def pooled_dim(shape: tuple[int, ...], pool: str) -> int:
    """Width of a pooled feature for a per-image tensor of ``shape``."""
    if len(shape) == 1 or pool == "none":
        n = 1
        for s in shape:
            n *= s
        return n
    channels = shape[0] if len(shape) == 3 else shape[-1]
    if pool in ("avg", "max", "gem"):
        return channels
    if pool == "spp":
        return channels * (1 + 4 + 9) if len(shape) == 3 else channels
    if pool == "flatten":
        n = 1
        for s in shape:
            n *= s
        return n
    raise ValueError(pool)


@dataclass(frozen=True)
class BackboneCfg:
    """What featx knows about a backbone without building it (like timm's pretrained_cfg)."""

    name: str  # featx name, e.g. "resnet50"
    source: str  # "torchvision", "timm", "pixels"
    arch: str  # builder name in the source library
    weights: str  # default pretrained weights id, e.g. "ResNet50_Weights.IMAGENET1K_V2"
    weights_offline: str  # how the default weights are found offline: "package", "cache", "none"
    data: DataCfg
    layers: tuple[LayerInfo, ...]
    default_layer: str
    num_classes: int = 1000
    description: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)
    cam_layer: str = ""  # module whose maps class activation maps weigh (the last conv block); "" = found at use

    def layer(self, name: str | None) -> LayerInfo:
        name = name or self.default_layer
        for info in self.layers:
            if info.name == name:
                return info
        raise KeyError(name)

    @property
    def layer_names(self) -> list[str]:
        return [info.name for info in self.layers]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["data"] = self.data.to_dict()
        d["layers"] = [
            {"name": i.name, "module": i.module, "shape": list(i.shape), "pool": i.pool} for i in self.layers
        ]
        d["aliases"] = list(self.aliases)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BackboneCfg":
        return cls(
            name=d["name"],
            source=d["source"],
            arch=d["arch"],
            weights=d["weights"],
            weights_offline=d["weights_offline"],
            data=DataCfg.from_dict(d["data"]),
            layers=tuple(
                LayerInfo(i["name"], i["module"], tuple(i["shape"]), i["pool"]) for i in d["layers"]
            ),
            default_layer=d["default_layer"],
            num_classes=int(d.get("num_classes", 1000)),
            description=d.get("description", ""),
            aliases=tuple(d.get("aliases", ())),
            cam_layer=d.get("cam_layer", ""),
        )


@dataclass(frozen=True)
class ExtractCfg:
    """Everything that decides the numbers in a store: its fingerprint."""

    backbone: str
    arch: str
    source: str
    weights: str  # identity: enum name, "package:<name>==<version>", "none", "file:<sha256>"
    layer: str
    module: str
    pool: str
    data: DataCfg
    tta: str = "none"
    dtype: str = "float32"
    with_logits: bool = False
    precision: str = "fp32"  # numeric path of the network: fp32 | bf16 | fp16 ("auto" only in a request)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["data"] = self.data.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ExtractCfg":
        d = dict(d)
        d["data"] = DataCfg.from_dict(d["data"])
        return cls(**d)

    @property
    def digest(self) -> str:
        """Short stable hash of the fingerprint (used in default file names)."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:10]
