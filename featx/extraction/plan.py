"""Planning an extraction without torch: the fingerprint (:func:`make_cfg`), the default store path,
the dataset, and the cache-hit test, so a finished extraction is answered in well under a second."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..backbones.registry import get_cfg
from ..backbones.weights import weights_identity
from ..config import DTYPES, POOLS, TTAS, BackboneCfg, ExtractCfg, LayerInfo, cache_dir
from ..data.discover import ImageDataset, load_dataset
from ..errors import BackboneError, DataError, OptionError
from ..store.reader import covered_rows
from ..store.writer import check_target


@dataclass(frozen=True)
class Plan:
    """What an extraction will do, resolved without torch."""

    cfg: ExtractCfg
    backbone: BackboneCfg
    dataset: ImageDataset
    out: Path
    weights: str  # the --weights argument (imagenet | none | PATH | tag)


def resolve_layer(bcfg: BackboneCfg, layer: str | None) -> LayerInfo:
    """A named tap point, or ``module:<path>`` for any module (checked when the model is built)."""
    if layer and layer.startswith("module:"):
        return LayerInfo(layer, layer.split(":", 1)[1], (), "avg")
    try:
        return bcfg.layer(layer)
    except KeyError:
        raise BackboneError(f"--layer {layer!r} is not a layer of {bcfg.name}; valid: "
                            f"{', '.join(bcfg.layer_names)} (default {bcfg.default_layer}), "
                            "or module:<path> for any module (`featx backbones nodes NAME`)") from None


def make_cfg(backbone: str, *, weights: str = "imagenet", layer: str | None = None, pool: str | None = None,
             tta: str = "none", dtype: str = "float32", with_logits: bool = False,
             image_size: int | None = None) -> tuple[ExtractCfg, BackboneCfg]:
    """The fingerprint of an extraction request (no torch for listed backbones)."""
    bcfg = get_cfg(backbone)
    info = resolve_layer(bcfg, layer)
    pool = pool or info.pool
    if pool not in POOLS:
        raise BackboneError(f"--pool {pool!r}: use one of {', '.join(POOLS)}")
    if len(info.shape) == 1 and pool not in ("none", "avg", "flatten"):
        raise BackboneError(f"--pool {pool}: layer {info.name} of {bcfg.name} is already a vector; use --pool none")
    if len(info.shape) == 1:
        pool = "none"
    if tta not in TTAS:
        raise OptionError(f"--tta {tta!r}: use one of {', '.join(TTAS)}")
    if dtype not in DTYPES:
        raise OptionError(f"--dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    if bcfg.source == "pixels" and with_logits:
        raise OptionError("--with-logits: the pixels baseline has no classifier")
    data = bcfg.data if not image_size else bcfg.data.with_input_size(image_size)
    cfg = ExtractCfg(backbone=bcfg.name, arch=bcfg.arch, source=bcfg.source,
                     weights="none" if bcfg.source == "pixels" else weights_identity(bcfg, weights),
                     layer=info.name, module=info.module, pool=pool, data=data, tta=tta, dtype=dtype,
                     with_logits=with_logits)
    return cfg, bcfg


def default_out(cfg: ExtractCfg, dataset: ImageDataset) -> Path:
    """``cache/<dataset>--<backbone>--<layer>-<pool>--<hash>.h5``; the hash covers fingerprint and data root."""
    key = hashlib.sha256(f"{cfg.digest}|{dataset.root}".encode()).hexdigest()[:10]
    weights = "" if cfg.weights != "none" else "-random"
    return cache_dir() / f"{dataset.name}--{cfg.backbone}{weights}--{cfg.layer}-{cfg.pool}--{key}.h5"


def plan_extraction(backbone: str, data: str | Path, *, out: str | Path | None = None,
                    label_from_name: str | None = None, split_seed: int = 0,
                    weights: str = "imagenet", **cfg_kwargs) -> Plan:
    """Resolve an extraction request: fingerprint, backbone config, dataset and output path."""
    cfg, bcfg = make_cfg(backbone, weights=weights, **cfg_kwargs)
    dataset = load_dataset(data, label_from_name=label_from_name, split_seed=split_seed)
    try:
        str(dataset.root).encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(f"--data {dataset.root}: the folder's path is not valid UTF-8, which the store needs for "
                        "its data root; rename the folder or reach it through a UTF-8 path (a symlink)") from None
    out = Path(out) if out else default_out(cfg, dataset)
    check_target(out)
    return Plan(cfg, bcfg, dataset, out, weights)


def store_meta(plan: Plan) -> dict:
    """What a new store records about the data beside the fingerprint."""
    ds = plan.dataset
    return {"classes": list(ds.classes), "data_root": str(ds.root), "dataset": ds.name, "layout": ds.layout,
            "split_source": ds.split_source, "backbone": plan.backbone.to_dict()}


def cached_rows(plan: Plan) -> int | None:
    """Row count when ``plan.out`` is a finished store of this fingerprint covering every image, else None."""
    ds = plan.dataset
    return covered_rows(plan.out, plan.cfg, ds.classes, ds.ids)
