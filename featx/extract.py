"""Batch extraction: images -> frozen backbone -> HDF5 store, resumable and cached.

:func:`plan_extraction` resolves names, layer, pooling, weights identity and the
output path without importing torch, so :func:`extract` can answer a cache hit in
well under a second. Otherwise it builds the model once and appends batch by batch
(only the ids not yet stored), then marks the store complete.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .config import POOLS, BackboneCfg, ExtractCfg, LayerInfo
from .data import ImageDataset, load_dataset
from .errors import BackboneError, FeatxError
from .registry import cache_dir, get_cfg, weights_identity
from .store import covered_rows, open_writer


@dataclass(frozen=True)
class Plan:
    """What an extraction will do, resolved without torch."""

    cfg: ExtractCfg
    backbone: BackboneCfg
    dataset: ImageDataset
    out: Path
    weights: str  # the --weights argument (imagenet | none | PATH | tag)


@dataclass
class ExtractResult:
    path: Path
    cache_hit: bool
    n_rows: int
    n_new: int
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        return (self.n_new + len(self.failures)) / self.seconds if self.seconds > 0 else 0.0


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
    if tta not in ("none", "hflip"):
        raise FeatxError(f"--tta {tta!r}: use none or hflip")
    if dtype not in ("float32", "float16"):
        raise FeatxError(f"--dtype {dtype!r}: use float32 or float16")
    if bcfg.source == "pixels" and with_logits:
        raise FeatxError("--with-logits: the pixels baseline has no classifier")
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
    cfg, bcfg = make_cfg(backbone, weights=weights, **cfg_kwargs)
    dataset = load_dataset(data, label_from_name=label_from_name, split_seed=split_seed)
    return Plan(cfg, bcfg, dataset, Path(out) if out else default_out(cfg, dataset), weights)


def build_embedder(cfg: ExtractCfg, weights: str, *, device: str = "auto", precision: str = "auto",
                   channels_last: bool = True):
    """Model with its tap, on the device, ready for uint8 NHWC batches (imports torch)."""
    from .backbones import create_model
    from .backbones.tap import TappedModel
    from .engine import Embedder, resolve_device, resolve_precision

    bcfg = get_cfg(cfg.backbone)
    model = create_model(bcfg, weights)
    tapped = TappedModel(model, cfg.module, cfg.pool, with_logits=cfg.with_logits)
    dev = resolve_device(device)
    return Embedder(tapped, cfg.data, dev, precision=resolve_precision(precision, dev),
                    channels_last=channels_last, tta=cfg.tta)


def _meta(plan: Plan) -> dict:
    ds = plan.dataset
    return {"classes": list(ds.classes), "data_root": str(ds.root), "dataset": ds.name, "layout": ds.layout,
            "split_source": ds.split_source, "backbone": plan.backbone.to_dict()}


def extract(backbone: str, data: str | Path, *, out: str | Path | None = None, weights: str = "imagenet",
            layer: str | None = None, pool: str | None = None, tta: str = "none", dtype: str = "float32",
            with_logits: bool = False, image_size: int | None = None, label_from_name: str | None = None,
            split_seed: int = 0, device: str = "auto", batch_size: int | None = None,
            workers: int | None = None, streams: int | None = None, precision: str = "auto", channels_last: bool = True,
            overwrite: bool = False, progress: bool = True,
            on_batch: Callable[[int], None] | None = None) -> ExtractResult:
    """Extract features of every image under ``data`` into a store; see ``featx extract --help``.

    ``on_batch(k)`` is called after the k-th batch is written (tests use it to interrupt).
    """
    t0 = time.perf_counter()
    plan = plan_extraction(backbone, data, out=out, label_from_name=label_from_name, split_seed=split_seed,
                           weights=weights, layer=layer, pool=pool, tta=tta, dtype=dtype,
                           with_logits=with_logits, image_size=image_size)
    ds = plan.dataset
    n_rows = None if overwrite else covered_rows(plan.out, plan.cfg, ds.classes, ds.ids)
    if n_rows is not None:
        return ExtractResult(plan.out, True, n_rows, 0, [], time.perf_counter() - t0)
    return _run(plan, device=device, batch_size=batch_size, workers=workers, streams=streams, precision=precision,
                channels_last=channels_last, overwrite=overwrite, progress=progress, on_batch=on_batch, t0=t0)


def _run(plan: Plan, *, device, batch_size, workers, streams, precision, channels_last, overwrite, progress,
         on_batch, t0) -> ExtractResult:
    from tqdm.auto import tqdm

    from .engine import default_streams, embed_in_order, iter_batches

    embed = build_embedder(plan.cfg, plan.weights, device=device, precision=precision,
                           channels_last=channels_last)
    batch_size = batch_size or (64 if embed.device.type == "cuda" else 10)
    streams = streams or default_streams(embed.device)
    ds = plan.dataset
    probe, logits_probe = embed(_blank(plan.cfg))
    dim = probe.shape[1]
    logits_dim = logits_probe.shape[1] if logits_probe is not None else None
    failures: list[tuple[str, str]] = []
    n_new = 0
    t_start = time.perf_counter()
    with open_writer(plan.out, plan.cfg, dim=dim, logits_dim=logits_dim, meta=_meta(plan),
                     overwrite=overwrite) as writer:
        done = writer.done_ids()
        todo = [i for i, id_ in enumerate(ds.ids) if id_ not in done]
        bar = tqdm(total=len(todo), unit="img", desc=f"{plan.cfg.backbone}:{plan.cfg.layer}", disable=not progress,
                   mininterval=1.0, smoothing=0.1)
        batches = iter_batches([ds.path(i) for i in todo], plan.cfg.data, batch_size=batch_size, workers=workers,
                               pin_memory=embed.device.type == "cuda")
        for k, (idx, failed, feats, logits) in enumerate(embed_in_order(embed, batches, streams), start=1):
            rows = [todo[j] for j in idx]
            if rows:
                writer.append([ds.ids[r] for r in rows], ds.labels[rows], [ds.split[r] for r in rows], feats, logits)
                n_new += len(rows)
            if failed:
                bad = [(ds.ids[todo[j]], reason) for j, reason in failed]
                writer.record_failures(bad)
                failures += bad
            bar.update(len(idx) + len(failed))
            if on_batch is not None:
                on_batch(k)
        bar.close()
        writer.finalize()
        n_rows = writer.n_rows
    return ExtractResult(plan.out, False, n_rows, n_new, failures, time.perf_counter() - t_start)


def _blank(cfg: ExtractCfg):
    import torch

    s = cfg.data.input_size
    return torch.zeros(1, s, s, 3, dtype=torch.uint8)


def embed_paths(fingerprint: dict, paths: Sequence[str | Path], *, weights: str | Path | None = None,
                device: str = "auto", batch_size: int = 16,
                workers: int | None = 0) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Features of ``paths`` exactly as a store with ``fingerprint`` holds them (used by ``predict``).

    Returns the features of the readable images, in order, and (path, reason) failures.
    ``weights`` is needed when the features came from a local checkpoint; it must be that file.
    """
    from .engine import iter_batches

    cfg = ExtractCfg.from_dict(fingerprint)
    weights = _weights_arg(cfg, weights)
    embed = build_embedder(cfg, weights, device=device)
    paths = [Path(p) for p in paths]
    out, failures = [], []
    for idx, x, failed in iter_batches(paths, cfg.data, batch_size=batch_size, workers=workers,
                                       pin_memory=False):
        if idx:
            out.append(embed(x)[0])
        failures += [(str(paths[j]), r) for j, r in failed]
    dim = out[0].shape[1] if out else 0
    feats = np.concatenate(out) if out else np.zeros((0, dim), np.float32)
    if cfg.dtype == "float16":
        feats = feats.astype(np.float16).astype(np.float32)
    return feats, failures


def _weights_arg(cfg: ExtractCfg, path: str | Path | None = None) -> str:
    """Turn a stored weights identity back into a ``--weights`` argument."""
    from .errors import WeightsError

    if cfg.weights == "none":
        return "none"
    bcfg = get_cfg(cfg.backbone)
    if cfg.weights.startswith("file:"):
        if path is None or not Path(path).exists():
            raise WeightsError(f"features came from the local checkpoint {cfg.weights.split(':')[1]!r}; "
                               "pass that file with --weights PATH")
        if weights_identity(bcfg, str(path)) != cfg.weights:
            raise WeightsError(f"--weights {path}: not the checkpoint the features came from ({cfg.weights})")
        return str(path)
    if cfg.weights == weights_identity(bcfg, "imagenet"):
        return "imagenet"
    if cfg.weights.startswith("package:"):
        raise WeightsError(f"features came from {cfg.weights} but {weights_identity(bcfg, 'imagenet')} is "
                           "installed; install the same version")
    return cfg.weights.split(".", 1)[1] if bcfg.source == "torchvision" else cfg.weights
