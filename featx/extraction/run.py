"""Batch extraction: images -> frozen backbone -> HDF5 store, resumable and cached.

:func:`extract` plans without torch (:mod:`featx.extraction.plan`) and answers a
cache hit at once. Otherwise it builds the model once and appends batch by batch
(only the ids not yet stored), then marks the store complete; torch is imported
only then.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..store.writer import open_writer
from .plan import Plan, cached_rows, plan_extraction, store_meta


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
    n_rows = None if overwrite else cached_rows(plan)
    if n_rows is not None:
        return ExtractResult(plan.out, True, n_rows, 0, [], time.perf_counter() - t0)
    return _run(plan, device=device, batch_size=batch_size, workers=workers, streams=streams, precision=precision,
                channels_last=channels_last, overwrite=overwrite, progress=progress, on_batch=on_batch, t0=t0)


def _run(plan: Plan, *, device, batch_size, workers, streams, precision, channels_last, overwrite, progress,
         on_batch, t0) -> ExtractResult:
    from tqdm.auto import tqdm

    from ..engine.embed import blank_batch, build_embedder, default_streams, embed_in_order
    from ..engine.loader import iter_batches

    embed = build_embedder(plan.cfg, plan.weights, device=device, precision=precision,
                           channels_last=channels_last)
    batch_size = batch_size or (64 if embed.device.type == "cuda" else 10)
    streams = streams or default_streams(embed.device)
    ds = plan.dataset
    probe, logits_probe = embed(blank_batch(plan.cfg))
    dim = probe.shape[1]
    logits_dim = logits_probe.shape[1] if logits_probe is not None else None
    failures: list[tuple[str, str]] = []
    n_new = 0
    t_start = time.perf_counter()
    with open_writer(plan.out, plan.cfg, dim=dim, logits_dim=logits_dim, meta=store_meta(plan),
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
