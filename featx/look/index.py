"""An approximate nearest-neighbour index beside a store (optional extra ``featx[ann]``: faiss-cpu).

The index is faiss's IVF with 8-bit scalar quantisation over the L2-normalised features (inner product =
cosine): k-means cells trained on a sample, then every row added a block at a time. It builds about ten
times faster than an HNSW graph on few cores (``benchmarks/results/neighbors.md``) in a quarter of the
float32 memory. It is written once beside the store, as ``<store>.ann.faiss`` with ``<store>.ann.json``,
keyed by what its rows are: the store's fingerprint digest, generation, row count, and a digest of the ids
and of the first and last rows' features. Any change to the rows (an append, a re-extraction, a drop, an
overwrite) changes the key and the index is rebuilt on next use: it is never used stale. Similarities it
returns are those of the quantised vectors (within about 0.01 of the exact cosine); ``index="exact"``
gives exact ones.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from ..errors import OptionError
from ..files import atomic_path, write_json
from .similarity import normalize

EXTRA = "the approximate index needs faiss-cpu: pip install 'featx[ann]' (or pip install faiss-cpu)"
FORMAT = "featx-ann"
NPROBE = 32  # cells searched per query
NLIST = 1024  # cells at most (4 sqrt(n) below 65k rows): more cells make k-means slow on few cores
TRAIN_ROWS = 50_000  # rows sampled to train the cells


def available() -> bool:
    """Whether faiss is installed."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _faiss():
    try:
        import faiss
    except ImportError:
        raise OptionError(f"--index ann: {EXTRA}") from None
    return faiss


def paths(store) -> tuple[Path, Path]:
    """The index file and its key file beside ``store``."""
    base = store.path.with_suffix("")
    return base.with_name(base.name + ".ann.faiss"), base.with_name(base.name + ".ann.json")


def key(store) -> dict:
    """What the index was built from: equal keys, the same rows."""
    h = hashlib.blake2b(digest_size=16)
    for i in store.ids:
        h.update(str(i).encode() + b"\0")
    n = len(store)
    edge = store.features(ids=[str(i) for i in store.ids[[0, n - 1]]]) if n else np.empty((0, store.dim))
    return {"format": FORMAT, "fingerprint": store.fingerprint_digest, "generation": store.generation, "rows": n,
            "dim": store.dim, "ids": h.hexdigest(),
            "edge_rows": hashlib.blake2b(np.ascontiguousarray(edge).tobytes(), digest_size=16).hexdigest()}


class Index:
    """A built or loaded faiss index over a store's rows (row ``i`` of the store is faiss id ``i``)."""

    def __init__(self, faiss_index, meta: dict, built: bool):
        self.index, self.meta, self.built = faiss_index, meta, built

    def describe(self) -> str:
        return f"ann (faiss IVF{self.meta['nlist']},SQ8, nprobe {self.meta['nprobe']}" + (
            ", built now)" if self.built else ")")

    def search(self, queries: np.ndarray, k: int, *, exclude=None, candidates: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-k rows per query (``-1`` / ``-inf`` where fewer were found), best first."""
        Q = normalize(queries)
        extra = 1 if exclude is not None else 0
        want = k + extra
        # a split filter may drop most candidates: ask for more and widen until k remain
        while True:
            sims, rows = self.index.search(Q, min(want, self.index.ntotal))
            out_r = np.full((len(Q), k), -1, np.int64)
            out_s = np.full((len(Q), k), -np.inf, np.float32)
            short = False
            for i in range(len(Q)):
                keep = rows[i] >= 0
                if candidates is not None:
                    keep &= candidates[np.maximum(rows[i], 0)]
                if exclude is not None and exclude[i] >= 0:
                    keep &= rows[i] != exclude[i]
                r, s = rows[i][keep][:k], sims[i][keep][:k]
                out_r[i, :len(r)], out_s[i, :len(s)] = r, s
                short |= len(r) < k and want < self.index.ntotal
            if not short or candidates is None:
                return out_r, out_s
            want *= 4


def load_or_build(store, *, progress: bool = True, nprobe: int = NPROBE) -> Index:
    """The index beside ``store`` when its key matches the store's rows, else built now (and written)."""
    faiss = _faiss()
    file, meta_file = paths(store)
    want = key(store)
    if file.exists() and meta_file.exists():
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, json.JSONDecodeError):
            meta = {}
        if meta.get("key") == want:
            idx = faiss.read_index(str(file))
            idx.nprobe = nprobe
            return Index(idx, meta, built=False)
    idx, meta = build(store, progress=progress)
    idx.nprobe = nprobe
    meta["key"] = want
    with atomic_path(file) as tmp:
        faiss.write_index(idx, str(tmp))
    write_json(meta_file, meta)
    return Index(idx, {**meta, "nprobe": nprobe}, built=True)


def build(store, *, progress: bool = True, block_rows: int = 50_000):
    """A faiss IVF-SQ8 inner-product index over the store's normalised rows, and its parameters."""
    from tqdm import tqdm

    faiss = _faiss()
    n, d = len(store), store.dim
    nlist = max(1, min(NLIST, int(4 * math.sqrt(n)), n // 39))
    rng = np.random.default_rng(0)
    picked = np.zeros(n, bool)
    picked[rng.choice(n, min(n, max(TRAIN_ROWS, 39 * nlist)), replace=False)] = True
    train = np.concatenate([normalize(block[picked[start:start + len(block)]])
                            for start, block in store.feature_blocks(block_rows)])
    quantizer = faiss.IndexFlatIP(d)
    idx = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, faiss.ScalarQuantizer.QT_8bit,
                                        faiss.METRIC_INNER_PRODUCT)
    idx.cp.niter = 10  # k-means iterations: the cells need not be optimal, only balanced
    idx.train(train)
    del train
    bar = tqdm(total=n, desc="building the ANN index", unit="row", disable=not progress, leave=False)
    for start, block in store.feature_blocks(block_rows):
        idx.add_with_ids(normalize(block), np.arange(start, start + len(block), dtype=np.int64))
        bar.update(len(block))
    bar.close()
    return idx, {"format": FORMAT, "kind": "IVF-SQ8", "nlist": nlist, "nprobe": NPROBE, "rows": n,
                 "faiss": getattr(faiss, "__version__", "?")}
