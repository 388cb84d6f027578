"""Exact cosine similarity over a store's rows, a block at a time (shared by neighbours and duplicates).

:class:`Vectors` holds a store's L2-normalised features: in memory when they fit :data:`MEMORY_BYTES`
(kept in the store's dtype, float32 or float16), otherwise read from the store block by block on each
pass (:meth:`featx.store.handle.Store.feature_blocks`), so no search ever needs more than a block and the
running results in memory. :func:`top_k` merges each block's best rows into a running top-k;
:func:`pairs_above` walks the upper triangle of the all-pairs similarity matrix block by block and keeps
the pairs at or above a threshold, never an ``n x n`` matrix.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

MEMORY_BYTES = 4 << 30  # normalised features up to this size are held in memory; larger ones are streamed
BLOCK_ROWS = 16384  # rows per block read from the store
PRODUCT_CELLS = 1 << 24  # the largest (queries x block) similarity matrix computed at once (64 MiB float32)


def normalize(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, as float32 (a zero row stays zero)."""
    X = np.array(X, dtype=np.float32)  # a copy: the caller's array is left as it was
    norms = np.sqrt(np.einsum("ij,ij->i", X, X))  # 10x faster than np.linalg.norm(axis=1) on float32 rows
    X /= np.where(norms > 0, norms, 1.0)[:, None]
    return X


class Vectors:
    """The L2-normalised features of a store's rows, searchable block by block.

    Parameters
    ----------
    store : featx.Store
        The store (its view: ``len(store)`` rows).
    in_memory : bool, optional
        Hold the normalised rows in memory (in the store's dtype); by default when they fit
        :data:`MEMORY_BYTES`, otherwise each search reads the store a block at a time.
    """

    def __init__(self, store, *, in_memory: bool | None = None, block_rows: int = BLOCK_ROWS):
        self.store = store
        self.n, self.dim = len(store), store.dim
        self.dtype = np.dtype(store.attrs.get("dtype", "float32"))
        self.block_rows = int(block_rows)
        if in_memory is None:
            in_memory = self.n * self.dim * self.dtype.itemsize <= MEMORY_BYTES
        self._X: np.ndarray | None = None
        if in_memory:
            X = np.empty((self.n, self.dim), self.dtype)
            for start, block in store.feature_blocks(self.block_rows):
                X[start:start + len(block)] = normalize(block)
            self._X = X

    @classmethod
    def from_array(cls, X: np.ndarray) -> Vectors:
        """Vectors of an in-memory array (rows normalised here), without a store."""
        self = cls.__new__(cls)
        self.store, self._X = None, normalize(X)
        self.n, self.dim = self._X.shape
        self.dtype, self.block_rows = np.dtype(np.float32), BLOCK_ROWS
        return self

    @property
    def in_memory(self) -> bool:
        """Whether the normalised rows are held in memory."""
        return self._X is not None

    def blocks(self, block_rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, normalised float32 block)`` over every row."""
        step = block_rows or self.block_rows
        if self._X is not None:
            for start in range(0, self.n, step):
                yield start, self._X[start:start + step].astype(np.float32, copy=False)
        else:
            for start, block in self.store.feature_blocks(step):
                yield start, normalize(block)

    def take(self, rows: Sequence[int]) -> np.ndarray:
        """The normalised float32 rows ``rows``, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        if self._X is not None:
            return self._X[rows].astype(np.float32, copy=False)
        ids = self.store.ids[rows]
        return normalize(self.store.features(ids=list(ids)))


def _merge(best_s: np.ndarray, best_r: np.ndarray, S: np.ndarray, rows: np.ndarray, k: int) -> None:
    """Fold the candidates ``S`` (q x b) of rows ``rows`` into the running top-k (in place)."""
    if S.shape[1] > k:
        part = np.argpartition(-S, k - 1, axis=1)[:, :k]
        S, R = np.take_along_axis(S, part, axis=1), rows[part]
    else:
        R = np.broadcast_to(rows, S.shape)
    allS = np.concatenate([best_s, S], axis=1)
    allR = np.concatenate([best_r, R], axis=1)
    keep = np.argpartition(-allS, k - 1, axis=1)[:, :k]
    best_s[:] = np.take_along_axis(allS, keep, axis=1)
    best_r[:] = np.take_along_axis(allR, keep, axis=1)


def top_k(queries: np.ndarray, vectors: Vectors, k: int, *, exclude: Sequence[int] | None = None,
          candidates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows most cosine-similar to each query, exactly.

    Parameters
    ----------
    queries : (q, dim) array
        Query vectors (normalised here).
    vectors : Vectors
        The rows searched.
    k : int
        Rows per query (at most the number of rows).
    exclude : list of int, optional
        Per query, a row never returned (-1: none), e.g. the query's own row.
    candidates : bool array of shape (n,), optional
        Only these rows are searched (e.g. one split).

    Returns
    -------
    rows : (q, k) int64, sims : (q, k) float32
        Best first; ties broken by the lower row. Fewer than ``k`` rows leave ``-1`` / ``-inf``.
    """
    Q = normalize(queries)
    q = len(Q)
    best_s = np.full((q, k), -np.inf, np.float32)
    best_r = np.full((q, k), -1, np.int64)
    if q == 0 or k <= 0:
        return best_r, best_s
    ex = None if exclude is None else np.asarray(exclude, dtype=np.int64)
    step = max(k + 1, PRODUCT_CELLS // q)  # rows per product: (q x step) similarities at a time
    for start, B in vectors.blocks(step if vectors.in_memory else None):
        for lo in range(0, len(B), step):
            part = B[lo:lo + step]
            rows = np.arange(start + lo, start + lo + len(part))
            S = Q @ part.T
            if candidates is not None:
                S[:, ~candidates[rows]] = -np.inf
            if ex is not None:
                hit = (ex >= rows[0]) & (ex <= rows[-1])
                S[np.flatnonzero(hit), ex[hit] - rows[0]] = -np.inf
            _merge(best_s, best_r, S, rows, k)
    order = np.lexsort((best_r, -best_s), axis=-1)
    best_s = np.take_along_axis(best_s, order, axis=1)
    best_r = np.take_along_axis(best_r, order, axis=1)
    best_r[~np.isfinite(best_s)] = -1
    return best_r, best_s


def pairs_above(vectors: Vectors, threshold: float, *, candidates: np.ndarray | None = None,
                progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of distinct rows with cosine similarity >= ``threshold``, exactly.

    The upper triangle of the similarity matrix is computed block against block (each block pair once);
    when the rows are not in memory, the inner blocks are re-read from the store for each outer block.

    Returns
    -------
    row_a, row_b : int64 arrays (row_a < row_b), sims : float32 array
        Sorted by decreasing similarity, then row_a, row_b.
    """
    from tqdm import tqdm

    n = vectors.n
    step = vectors.block_rows if not vectors.in_memory else min(vectors.block_rows, 4096)
    ra, rb, ss = [], [], []
    n_blocks = -(-n // step) if n else 0
    bar = tqdm(total=n_blocks * (n_blocks + 1) // 2, desc="all pairs", unit="block", disable=not progress,
               leave=False)
    for a_start, A in vectors.blocks(step):
        a_rows = np.arange(a_start, a_start + len(A))
        a_ok = None if candidates is None else candidates[a_rows]
        for b_start, B in vectors.blocks(step):
            if b_start < a_start:
                continue
            S = A @ B.T
            if b_start == a_start:
                S[np.tril_indices(len(A), 0, len(B))] = -np.inf  # each pair once, never a row with itself
            if candidates is not None:
                S[~a_ok] = -np.inf
                S[:, ~candidates[b_start:b_start + len(B)]] = -np.inf
            i, j = np.nonzero(S >= threshold)
            ra.append(a_start + i)
            rb.append(b_start + j)
            ss.append(S[i, j])
            bar.update()
    bar.close()
    if not ra:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    row_a, row_b, sims = (np.concatenate(ra).astype(np.int64), np.concatenate(rb).astype(np.int64),
                          np.concatenate(ss).astype(np.float32))
    order = np.lexsort((row_b, row_a, -sims))
    return row_a[order], row_b[order], sims[order]
