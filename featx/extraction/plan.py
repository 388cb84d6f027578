"""Planning an extraction without torch: the fingerprint (:func:`make_cfg`), the default store path,
the dataset with its file stats, and the comparison with an existing store (:func:`store_state`), so
a finished extraction is answered in well under a second."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..backbones.registry import get_cfg
from ..backbones.weights_ref import WeightsRef
from ..config import BackboneCfg, ExtractCfg, LayerInfo, cache_dir, pooled_dim
from ..data.dataset import ImageDataset
from ..data.discover import HASH_ALGO, load_dataset, reload_dataset
from ..errors import BackboneError, DataError, OptionError, StoreError
from ..store.reader import DamagedStoreError, read_snapshot
from ..store.schema import chunk_rows, decode_attrs, row_dataset_bytes, settings_problem
from ..store.sync import Delta, StoreRows, diff
from ..store.writer import SLACK, STRING_OVERHEAD, check_target
from .options import CHOICES, ExtractOptions, SyncOptions, check_choice
from .shard import Shard


@dataclass(frozen=True)
class Plan:
    """What an extraction will do, resolved without torch."""

    cfg: ExtractCfg
    backbone: BackboneCfg
    dataset: ImageDataset
    out: Path
    weights: WeightsRef  # the --weights argument, parsed once
    shard: Shard | None = None  # set by :meth:`for_shard`: ``dataset`` is the shard's block, ``out`` its store
    whole: Path | None = None  # the store the shards merge into

    def for_shard(self, shard: Shard | None) -> "Plan":
        """This plan restricted to one shard: its block of the dataset, written to its own store."""
        if shard is None:
            return self
        ds = self.dataset.subset(shard.block(len(self.dataset)))
        out = shard.path(self.out)
        check_target(out)
        return dataclasses.replace(self, dataset=ds, out=out, shard=shard, whole=self.out)


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


def make_cfg(backbone: str, *, weights: str | WeightsRef = "imagenet", layer: str | None = None, pool: str | None = None,
             tta: str = "none", dtype: str = "float32", with_logits: bool = False,
             image_size: int | None = None, precision: str = "auto") -> tuple[ExtractCfg, BackboneCfg]:
    """The fingerprint of an extraction request (no torch for listed backbones).

    ``precision="auto"`` stays "auto" here: the run resolves it (the existing store's precision,
    else bf16/fp16 on CUDA and fp32 on CPU) and the store records the resolved value.
    """
    bcfg = get_cfg(backbone)
    weights = weights if isinstance(weights, WeightsRef) else WeightsRef.parse(weights, bcfg)
    info = resolve_layer(bcfg, layer)
    pool = pool or info.pool
    for name, value in (("pool", pool), ("tta", tta), ("precision", precision), ("dtype", dtype)):
        check_choice(name, value, CHOICES[name])
    if len(info.shape) == 1 and pool not in ("none", "avg", "flatten"):
        raise BackboneError(f"--pool {pool}: layer {info.name} of {bcfg.name} is already a vector; use --pool none")
    if len(info.shape) == 1:
        pool = "none"
    if bcfg.source == "pixels" and with_logits:
        raise OptionError("--with-logits: the pixels baseline has no classifier")
    data = bcfg.data if not image_size else bcfg.data.with_input_size(image_size)
    cfg = ExtractCfg(backbone=bcfg.name, arch=bcfg.arch, source=bcfg.source,
                     weights=weights.identity,
                     layer=info.name, module=info.module, pool=pool, data=data, tta=tta, dtype=dtype,
                     with_logits=with_logits, precision="fp32" if bcfg.source == "pixels" else precision)
    return cfg, bcfg


def default_out(cfg: ExtractCfg, dataset: ImageDataset) -> Path:
    """``cache/<dataset>--<backbone>--<layer>-<pool>--<hash>.h5``; the hash covers fingerprint and data root."""
    key = hashlib.sha256(f"{cfg.digest}|{dataset.root}".encode()).hexdigest()[:10]
    weights = "" if cfg.weights != "none" else "-random"
    return cache_dir() / f"{dataset.name}--{cfg.backbone}{weights}--{cfg.layer}-{cfg.pool}--{key}.h5"


def plan_extraction(options: ExtractOptions) -> Plan:
    """Resolve an extraction request: fingerprint, backbone config, dataset (with file stats) and output path."""
    o = options
    weights = WeightsRef.parse(o.weights, get_cfg(o.backbone))  # the one parse of --weights
    cfg, bcfg = make_cfg(o.backbone, weights=weights, layer=o.layer, pool=o.pool, tta=o.tta, dtype=o.dtype,
                         with_logits=o.with_logits, image_size=o.image_size, precision=o.precision)
    dataset = load_dataset(o.data, label_from_name=o.label_from_name, split_seed=o.split_seed,
                           split_ratios=o.split_ratios)
    try:
        str(dataset.root).encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(f"--data {dataset.root}: the folder's path is not valid UTF-8, which the store needs for "
                        "its data root; rename the folder or reach it through a UTF-8 path (a symlink)") from None
    out = Path(o.out) if o.out else default_out(cfg, dataset)
    check_target(out)
    return Plan(cfg, bcfg, dataset, out, weights)


def feature_width(plan: Plan) -> int | None:
    """The feature width ``plan`` will store, from the catalog's layer shape (None for ``module:`` taps)."""
    info = resolve_layer(plan.backbone, plan.cfg.layer)
    shape = tuple(info.shape)
    if not shape:
        return None
    default, size = plan.backbone.data.input_size, plan.cfg.data.input_size
    if len(shape) == 3 and plan.cfg.pool in ("flatten", "none") and default and size != default:
        c, h, w = shape  # a spatial map grows with the input
        shape = (c, max(1, round(h * size / default)), max(1, round(w * size / default)))
    members = len(plan.weights.version.split(",")) if plan.weights.kind == "ensemble" else 1  # side by side
    return members * pooled_dim(shape, plan.cfg.pool)


def estimated_bytes(plan: Plan, rows: int) -> tuple[int, int] | None:
    """(bytes, feature width): about what ``rows`` new rows of ``plan`` add to its store, whole chunks
    and strings counted; None when the width is only known once the model runs."""
    dim = feature_width(plan)
    if dim is None:
        return None

    def chunked(row_bytes: int, per_chunk: int) -> int:
        return -(-rows // per_chunk) * per_chunk * row_bytes

    width = dim * (2 if plan.cfg.dtype == "float16" else 4)
    need = chunked(width, chunk_rows(width)) + row_dataset_bytes(rows) + SLACK
    need += rows * (max((len(i) for i in plan.dataset.ids[:1000]), default=0) + 3 * STRING_OVERHEAD + 8)
    if plan.cfg.with_logits:
        need += chunked(4 * plan.backbone.num_classes, chunk_rows(4 * plan.backbone.num_classes, most=1 << 30))
    return need, dim


def store_meta(plan: Plan) -> dict:
    """What a new store records about the data beside the fingerprint."""
    ds = plan.dataset
    meta = {"classes": list(ds.classes), "data_root": str(ds.root), "dataset": ds.name, "layout": ds.layout,
            "split_source": ds.split_source, "source": ds.source, "backbone": plan.backbone.to_dict()}
    if plan.shard is not None:
        meta["shard"] = {"index": plan.shard.index, "count": plan.shard.count, "store": plan.whole.name}
    return meta


@dataclass
class StoreState:
    """An existing store as the plan sees it: its attributes, rows, and the delta to the data."""

    attrs: dict
    delta: Delta

    @property
    def cache_hit(self) -> bool:
        unfinished_update = int(self.attrs.get("generation", 0)) % 2
        return bool(self.attrs.get("complete")) and self.delta.empty and not unfinished_update


def compare(plan: Plan, attrs: dict, rows: StoreRows | None, sync: SyncOptions) -> Delta:
    """The delta from a store (its decoded ``attrs`` and ``rows``) to the plan's data, or a StoreError."""
    problem = settings_problem(attrs, plan.cfg)
    if problem:
        raise StoreError(f"{plan.out}: {problem}; choose another --out or pass --overwrite")
    assert rows is not None  # a store of this schema has rows
    root = str(plan.dataset.root)
    if rows.data_root and rows.data_root != root and not sync.relocate:
        raise StoreError(f"{plan.out}: made from {rows.data_root}, but --data is {root}; pass --relocate to point "
                         "the store at the new place (files compared by size and time, changed ones re-extracted) "
                         "or choose another --out")
    return diff(rows, plan.dataset, missing=sync.missing, retry_failed=sync.retry_failed,
                hash_algo=HASH_ALGO if sync.hash else "")


def store_state(plan: Plan, sync: SyncOptions) -> StoreState | None:
    """How ``plan.out`` compares with the data (None when there is no usable store yet); torch-free and cheap."""
    if not plan.out.is_file():
        return None
    try:
        attrs, rows = read_snapshot(plan.out, _read_rows, wait_updates=False)  # the run repairs a killed update
    except DamagedStoreError:
        return None  # the writer keeps it aside and starts afresh
    return StoreState(attrs, compare(plan, attrs, rows, sync))


def _read_rows(f) -> tuple[dict, StoreRows | None]:
    attrs = decode_attrs(f.attrs)
    return attrs, StoreRows.read(f) if int(attrs.get("schema_version", 1)) >= 2 else None


def verify_store(path: str | Path) -> tuple[Delta, StoreRows, ImageDataset]:
    """Compare a store with its data as recorded (root, label source, split rule); extracts nothing."""
    path = Path(path)
    attrs, rows = read_snapshot(path, _read_rows)
    if rows is None:
        raise StoreError(f"{path}: schema v1 (featx 0.1) records no file stats to verify; rebuild it with "
                         "`featx extract ... --overwrite`")
    source = attrs.get("source") or {}
    if not source.get("data"):
        raise StoreError(f"{path}: records no data source (written from arrays); nothing to verify against")
    ds = reload_dataset(source)
    return diff(rows, ds), rows, ds
