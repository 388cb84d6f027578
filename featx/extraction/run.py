"""Batch extraction: images -> frozen backbone -> HDF5 store, kept in step with the folder.

:func:`extract` plans without torch (:mod:`featx.extraction.plan`) and compares the store
with the data (:mod:`featx.store.sync`). Nothing changed: a cache hit, answered at once.
Only labels, splits, stats or deletions changed: those are applied without a model.
Otherwise the model is built once and runs over the new, changed and retried images only;
changed rows are replaced in place, new ones appended, and the store is marked complete.
torch is imported only then.
"""

from __future__ import annotations

import dataclasses
import functools
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ..data.discover import HASH_ALGO, file_digest
from ..errors import OptionError, Stopped, StoreError
from ..faults import fault
from ..files import check_free
from ..store.merge import MergeResult, merge_when_complete
from ..store.sync import Delta, StoreRows
from ..store.writer import StoreWriter, open_writer
from .background import BackgroundWriter
from .options import ExtractOptions
from .plan import Plan, StoreState, compare, estimated_bytes, plan_extraction, store_meta, store_state
from .shard import Shard, resolve_shard


@dataclass
class ExtractResult:
    path: Path
    cache_hit: bool
    n_rows: int
    n_new: int  # rows computed by the network this run (new, changed and retried images)
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    sync: dict[str, int] = field(default_factory=dict)  # what changed against the store (Delta.summary)
    precision: str = ""
    device: str = ""
    shard: Shard | None = None
    merged: MergeResult | None = None  # the shards were merged into the whole store after this one finished
    runtime: str = ""  # torch | openvino (empty on a cache hit)
    note: str = ""  # why this runtime and precision
    timings: dict[str, float] = field(default_factory=dict)  # seconds: start, decode, data_wait, infer, write, loop

    @property
    def images_per_s(self) -> float:
        return (self.n_new + len(self.failures)) / self.seconds if self.seconds > 0 else 0.0


def extract(options: ExtractOptions, *, on_batch: Callable[[int], None] | None = None) -> ExtractResult:
    """Extract features of every image under ``options.data`` into a store; see ``featx extract --help``.

    ``options.shard``: ``"i/n"`` (or a :class:`Shard`) extracts the i-th of n blocks of the sorted ids into
    ``<store>.shard-i-of-n.h5``; ``"auto"`` takes it from a SLURM array task or a torchrun rank.
    With ``merge`` the shard that completes the set merges all of them into the store.
    SIGUSR1 / SIGTERM stop the run after the current batch (:class:`Stopped`); it resumes when re-run.
    ``on_batch(k)`` is called after the k-th batch is written (tests use it to interrupt).
    """
    t0 = time.perf_counter()
    sync = options.sync
    the_shard = resolve_shard(options.shard)
    plan = plan_extraction(options).for_shard(the_shard)
    if options.hash and plan.dataset.members:
        raise OptionError("--hash: tar shards are compared by their members' size and time; drop --hash")
    state = None if options.overwrite else store_state(plan, sync)
    if state is None or not state.cache_hit:
        _check_room(plan, state)
    if state is not None and state.cache_hit:
        fp = state.attrs.get("fingerprint", {})
        result = ExtractResult(plan.out, True, int(state.attrs.get("rows", 0)), 0, [], 0.0, state.delta.summary(),
                               fp.get("precision", ""), shard=the_shard)
    else:
        device = options.device if the_shard is None else the_shard.device(options.device)
        run = _Run(plan, options, device=device, on_batch=on_batch)
        with stop_on_signals() as stop, open_writer(plan.out, plan.cfg, overwrite=options.overwrite) as writer:
            run.stop = stop
            result = run(writer)
        result.shard = the_shard
    if the_shard is not None and options.merge:
        result.merged = merge_when_complete(plan.whole, the_shard.count)
    result.seconds = time.perf_counter() - t0
    return result


def _check_room(plan: Plan, state: StoreState | None) -> None:
    """Refuse up front (one line, nothing created) a run whose new rows will not fit where the store goes.

    An existing store's bytes beyond what its committed rows need (a torn batch a full disk left, which
    the writer cuts) count as room."""
    delta = state.delta if state is not None else None
    rows = len(plan.dataset) if delta is None else len(delta.new) + len(delta.retry)
    estimate = estimated_bytes(plan, rows) if rows else None
    if estimate is None:
        return
    need, dim = estimate
    if state is not None:
        try:
            held = plan.out.stat().st_blocks * 512  # allocated bytes (st_blocks counts 512-byte units)
        except (OSError, AttributeError):
            held = 0
        committed = estimated_bytes(plan, int(state.attrs.get("rows", 0)))
        need -= max(0, held - committed[0]) if committed else 0
    check_free(plan.out, need, f"extracting {rows} image{'s' * (rows != 1)} ({dim} x {plan.cfg.dtype} "
                               f"features{' and logits' if plan.cfg.with_logits else ''} each)")


class StopRequest:
    """Set by SIGUSR1 / SIGTERM; the extraction loop stops after the batch in hand."""

    def __init__(self):
        self.signum: int | None = None

    def __call__(self, signum, _frame) -> None:
        self.signum = signum

    def check(self, embedded: int, rows: int) -> None:
        """Raise :class:`Stopped` if a signal came (call it once the batches in hand are written)."""
        if self.signum is not None:
            name = signal.Signals(self.signum).name
            raise Stopped(f"stopped by {name} after a finished batch: {embedded} images embedded this run, all "
                          f"written ({rows} rows in the store); the same command resumes from there", self.signum)


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Catch SIGUSR1 and SIGTERM while extracting (main thread only; elsewhere they keep their handlers)."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {s: signal.signal(s, stop) for s in (signal.SIGUSR1, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class _Run:
    """One extraction run against an open writer: reconcile, embed what is missing, finalise."""

    def __init__(self, plan: Plan, options: ExtractOptions, *, device: str,
                 on_batch: Callable[[int], None] | None):
        self.plan, self.options, self.device, self.on_batch = plan, options, device, on_batch
        self.failures: list[tuple[str, str]] = []
        self.n_new = 0
        self.stop = StopRequest()
        self.embedder = None
        self.timings: dict[str, float] = {}

    @staticmethod
    def echo(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def __call__(self, w: StoreWriter) -> ExtractResult:
        ds = self.plan.dataset
        delta = self._reconcile(w) if w.exists else None
        items = delta.to_extract if delta is not None else list(range(len(ds)))
        numeric: dict = {}
        if items or not w.exists:
            numeric = self._embed(w, delta, items)
        attrs = w.attrs()
        paths = [p for p in attrs.get("numeric", []) if isinstance(p, dict)]
        if numeric:  # each numeric path once, the latest last (``--runtime auto`` reuses it)
            paths = [p for p in paths if p != numeric] + [numeric]
        w.finalize(numeric=paths)
        summary = delta.summary() if delta is not None else {}
        e = self.embedder
        return ExtractResult(self.plan.out, False, w.n_rows, self.n_new, self.failures, 0.0, summary,
                             attrs["fingerprint"].get("precision", ""), numeric.get("device", ""),
                             runtime=e.runtime if e else "", note=e.note if e else "", timings=self.timings)

    def _delta(self, w: StoreWriter) -> Delta:
        return compare(self.plan, w.attrs(), StoreRows.read(w.f), self.options.sync)

    def _reconcile(self, w: StoreWriter) -> Delta:
        """Apply every change that needs no model (drops, labels, splits, stats, failures, attributes)."""
        delta = self._delta(w)
        dropped = delta.missing
        if dropped:
            w.drop(dropped)
            delta = self._delta(w)
            delta.missing = dropped  # reported; the rows are gone now
        if delta.labels is not None or delta.split is not None:
            w.relabel(delta.classes, delta.labels, delta.split)
        ds, root = self.plan.dataset, self.plan.dataset.root
        fresh = delta.restat + delta.rehash
        if fresh:
            rows, items = zip(*fresh)
            algo = delta.attrs.get("hash", w.attrs().get("hash", ""))
            w.set_stats(rows, ds.size[list(items)], ds.mtime_ns[list(items)],
                        [delta.digests.get(j) or file_digest(root / ds.ids[j]) for j in items] if algo else None)
        retried = {ds.ids[j] for j in delta.retry}
        forgotten = set(delta.forgotten)
        if retried or forgotten:
            w.set_failures([f for f in w.failures() if f[0] not in retried and f[0] not in forgotten])
        if delta.attrs:
            w.set_attrs(**delta.attrs)
        return delta

    def _embed(self, w: StoreWriter, delta: Delta | None, items: list[int]) -> dict:
        """Run the network over ``items`` (dataset indices), writing each batch as it comes; the numeric path."""
        from ..engine.loader import default_workers, iter_batches

        embed, cfg = self._open_runtime(w)
        o = self.options
        workers = default_workers(embed.gpu) if o.workers is None else o.workers
        loader = iter_batches([self.plan.dataset.path(j) for j in items], cfg.data,
                              batch_size=o.batch_size or embed.batch_size, workers=workers, prepare=embed.prepare)
        clock = _Clock(loader)
        t_loop = time.perf_counter()
        writer = self._write_batches(w, embed, clock, items, _BatchRows(w, self.plan.dataset, delta, self.on_batch),
                                     desc=f"{cfg.backbone}:{cfg.layer}")
        self.timings.update(clock.split(), write=writer.busy_s, write_wait=writer.wait_s,
                            loop=time.perf_counter() - t_loop, decode_threads=workers)
        numeric = {"device": embed.device.split(":")[0], "precision": cfg.precision, "runtime": embed.runtime}
        numeric[embed.runtime] = _runtime_version(embed.runtime)
        return numeric

    def _numeric_path(self, w: StoreWriter) -> tuple[str, str]:
        """(runtime, precision) asked: an existing store keeps its precision and, under auto, its runtime."""
        from ..config import RUNTIMES

        runtime, precision = self.options.runtime, self.options.precision
        if w.exists:
            if precision == "auto":
                precision = w.attrs()["fingerprint"].get("precision", "auto")
            if runtime == "auto":
                last = [p for p in w.attrs().get("numeric", []) if isinstance(p, dict) and p.get("runtime")]
                runtime = last[-1]["runtime"] if last and last[-1]["runtime"] in RUNTIMES else "auto"
        return runtime, precision

    def _open_runtime(self, w: StoreWriter):
        """Build the network and probe it with a blank batch: the store is created, or its width checked."""
        from ..engine.runtime import blank_batch, build_embedder

        plan, o = self.plan, self.options
        runtime, precision = self._numeric_path(w)
        t0 = time.perf_counter()
        embed = build_embedder(plan.cfg, plan.weights, runtime=runtime, device=self.device, precision=precision,
                               channels_last=o.channels_last, streams=o.streams,
                               echo=self.echo if o.progress else None)
        self.embedder = embed
        cfg = dataclasses.replace(plan.cfg, precision=embed.precision)
        probe, logits_probe = embed(blank_batch(cfg))
        self.timings["start"] = time.perf_counter() - t0
        logits_dim = logits_probe.shape[1] if logits_probe is not None else None
        if not w.exists:
            w.create(cfg, probe.shape[1], logits_dim, {**store_meta(plan), "hash": HASH_ALGO if o.hash else ""})
        elif probe.shape[1] != w.dim:
            raise StoreError(f"{plan.out}: the network gives {probe.shape[1]} features, the store holds {w.dim}; "
                             "pass --overwrite")
        return embed, cfg

    def _write_batches(self, w: StoreWriter, embed, clock: _Clock, items: list[int], rows: _BatchRows, *,
                       desc: str) -> BackgroundWriter:
        """Hand each batch the model finishes to a background writer, with a progress bar; between batches,
        stop if a signal came. Returns the (drained) writer, which knows its seconds."""
        from tqdm.auto import tqdm

        ds = self.plan.dataset
        bar = tqdm(total=len(items), unit="img", desc=desc, disable=not self.options.progress, mininterval=1.0,
                   smoothing=0.1)
        with BackgroundWriter() as writer:
            results = embed.map(clock)
            k = 0
            while (step := clock.next(results, "in_model")) is not None:
                b, feats, logits = step
                k += 1
                if k == 1:
                    self.timings["first_batch_at"] = time.time()  # epoch seconds (benchmarks: start-up to 1st batch)
                got = [items[i] for i in b.indices]
                bad = [(items[i], reason) for i, reason in b.failures]
                self.failures += [(ds.ids[j], reason) for j, reason in bad]
                self.n_new += len(got)
                writer.submit(functools.partial(rows.write, k, got, feats, logits, bad))
                bar.update(len(got) + len(bad))
                fault("extract:batch")
                if self.stop.signum is not None:
                    writer.drain()
                    self.stop.check(self.n_new, w.n_rows)
            writer.drain()
            w.drop(rows.broken)  # a changed file that no longer reads keeps no stale row
        bar.close()
        return writer


class _BatchRows:
    """Writes one batch's rows: changed images replace their row, new ones are appended, failures recorded."""

    def __init__(self, w: StoreWriter, ds, delta: Delta | None, on_batch: Callable[[int], None] | None):
        self.w, self.ds, self.on_batch = w, ds, on_batch
        self.index = {c: k for k, c in enumerate(w.attrs()["classes"])}
        self.hashing = bool(w.attrs().get("hash"))
        self.row_of = {j: i for i, j in delta.changed} if delta is not None else {}
        self.failures = w.failures()
        self.broken: list[int] = []  # rows of changed files that no longer read

    def write(self, k: int, got: list[int], feats, logits, bad: list[tuple[int, str]]) -> None:
        """Write batch ``k``: ``got`` (dataset indices) with their features and logits; ``bad`` unreadable."""
        w, ds = self.w, self.ds
        digests = [file_digest(ds.path(j)) for j in got] if self.hashing else None
        old = [n for n, j in enumerate(got) if j in self.row_of]
        new = [n for n, j in enumerate(got) if j not in self.row_of]
        for part, store in ((old, self._replace), (new, self._append)):
            if part:
                sel = [got[n] for n in part]
                store(sel, feats[part], None if logits is None else logits[part], size=ds.size[sel],
                      mtime_ns=ds.mtime_ns[sel], hashes=None if digests is None else [digests[n] for n in part])
        if bad:
            self.failures.extend((ds.ids[j], reason, int(ds.size[j]), int(ds.mtime_ns[j])) for j, reason in bad)
            self.broken.extend(self.row_of[j] for j, _ in bad if j in self.row_of)
            w.set_failures(self.failures)
        if self.on_batch is not None:
            self.on_batch(k)

    def _replace(self, sel: list[int], feats, logits, **stats) -> None:
        self.w.replace([self.row_of[j] for j in sel], feats, logits, **stats)

    def _append(self, sel: list[int], feats, logits, **stats) -> None:
        ds = self.ds
        self.w.append([ds.ids[j] for j in sel], [self.index[ds.classes[ds.labels[j]]] for j in sel],
                      [ds.split[j] for j in sel], feats, logits, **stats)


class _Clock:
    """Wraps the loader: seconds the model waited for decoded images, and decoding seconds (summed over threads)."""

    def __init__(self, loader):
        self.loader = loader
        self.waited = self.decode = self.in_model = 0.0

    def next(self, it, counter: str):
        """``next(it, None)``, its seconds added to ``counter``."""
        t0 = time.perf_counter()
        item = next(it, None)
        setattr(self, counter, getattr(self, counter) + time.perf_counter() - t0)
        return item

    def __iter__(self):
        it = iter(self.loader)
        while (b := self.next(it, "waited")) is not None:
            self.decode += b.decode_s
            yield b

    def split(self) -> dict:
        """``decode`` (thread-seconds), ``data_wait`` (model idle for images), ``infer`` (waiting on the model)."""
        return {"decode": self.decode, "data_wait": self.waited, "infer": max(0.0, self.in_model - self.waited)}


def _runtime_version(runtime: str) -> str:
    from importlib.metadata import version

    return version(runtime)

