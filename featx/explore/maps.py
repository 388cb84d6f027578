"""The maps of a collection: 2-D coordinates of every row for the page's scatter.

``pca`` is computed when the app starts (or on the first request): the principal axes of the normalised
features (:func:`principal_axes`), every row projected on them. ``umap`` runs in a background thread, in a
process of its own, on the first 50 principal components (a minute or two for 100k rows; the page shows PCA
meanwhile). Both are kept beside the
store (``<store>.explore/maps/``), named by the store's view, so a changed store gets new maps. The 2-D
projections a ``featx analyze`` run saved (``<store>-projections.npz`` under the runs folder) are used as
they are when they are of the same rows.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from scipy.linalg import eigh

from ..files import atomic_path
from .collection import Collection, sidecar

METHODS = ("pca", "umap")
PCA_FIRST = 50  # UMAP runs on this many principal components
SAMPLE_ROWS = 16_384  # principal axes from at most this many rows (a seeded sample of a larger store)
SVD_ROWS = 4096  # up to this many rows (or features wider than this): the axes from an SVD of the rows


def principal_axes(collection: Collection, k: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and the ``k`` leading principal axes (dim x k) of the normalised rows.

    The axes come from every row up to :data:`SAMPLE_ROWS` rows, else from a seeded sample of that many
    (on 100k painting features the sample's two axes agree with all rows' to a cosine of 0.999; every row
    is then projected). Few rows or wide features: an SVD of at most :data:`SVD_ROWS` rows; otherwise the
    leading eigenvectors of the covariance.
    """
    vectors = collection.vectors()
    n, dim = vectors.n, vectors.dim
    limit = SAMPLE_ROWS if dim <= SVD_ROWS else SVD_ROWS
    rows = np.arange(n) if n <= limit else np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))
    X = vectors.take(rows)
    mean = X.mean(axis=0, dtype=np.float64).astype(np.float32)
    X -= mean
    if len(rows) <= SVD_ROWS or dim > SVD_ROWS:
        _, _, vt = np.linalg.svd(X, full_matrices=False)
        axes = vt[:k].T.astype(np.float64)
        if axes.shape[1] < k:  # fewer rows than axes asked for
            axes = np.hstack([axes, np.zeros((dim, k - axes.shape[1]))])
    else:
        k_top = min(k, dim)  # only the leading eigenpairs (LAPACK syevr): the full eigh took 0.2 to 3 s at 1280
        cov = (X.T @ X).astype(np.float64) / len(rows)
        vals, vecs = eigh(cov, subset_by_index=[dim - k_top, dim - 1])
        axes = vecs[:, np.argsort(vals)[::-1]]
    axes = axes * np.where(axes[np.abs(axes).argmax(axis=0), range(axes.shape[1])] < 0, -1.0, 1.0)  # a fixed sign
    return mean, axes.astype(np.float32)


def project_rows(collection: Collection, mean: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Every normalised row on ``axes`` (n x k, float32)."""
    out = np.empty((len(collection), axes.shape[1]), np.float32)
    for start, block in collection.vectors().blocks(8192):
        out[start:start + len(block)] = (block - mean) @ axes
    return out


def umap_points(points: np.ndarray, seed: int = 0) -> np.ndarray:
    """UMAP of ``points`` to 2-D (umap-learn, seeded)."""
    import umap  # umap-learn: a dependency of featx

    return umap.UMAP(n_components=2, n_neighbors=min(15, len(points) - 1), random_state=seed,
                     n_jobs=1).fit_transform(points).astype(np.float32)


def umap_apart(points: np.ndarray, seed: int = 0) -> np.ndarray:
    """:func:`umap_points` in a separate process, so its memory (about 0.5 GB at 100k rows) leaves with it."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(umap_points, points, seed).result()


def saved_projections(collection: Collection, runs_dir: Path | None) -> dict[str, np.ndarray]:
    """``featx analyze``'s 2-D projections of exactly this view's rows (method -> n x 2, NaN where a method
    projected a subsample), the newest run first."""
    found: dict[str, np.ndarray] = {}
    if runs_dir is None or not Path(runs_dir).is_dir():
        return found
    name = f"{collection.path.stem}-projections.npz"
    files = sorted(Path(runs_dir).rglob(name), key=lambda p: p.stat().st_mtime, reverse=True)
    for f in files[:20]:
        try:
            with np.load(f, allow_pickle=False) as z:
                if "ids" not in z or len(z["ids"]) != len(collection) or not np.array_equal(z["ids"], collection.ids):
                    continue
                for method in METHODS:
                    key = f"{method}2d"
                    if key in z and method not in found:
                        xy = np.full((len(collection), 2), np.nan, np.float32)
                        xy[z[f"{key}_rows"]] = z[key][:, :2]
                        found[method] = xy
        except (OSError, ValueError, KeyError):
            continue
    return found


class Maps:
    """The maps of one collection's current view, made once (PCA at once, UMAP in the background).

    Parameters
    ----------
    collection : Collection
    runs_dir : Path, optional
        Where ``featx analyze`` runs may have saved projections of the store.
    """

    def __init__(self, collection: Collection, runs_dir: Path | None = None):
        self.c = collection
        self.runs_dir = runs_dir
        self._lock = threading.Lock()
        self._coords: dict[str, np.ndarray] = {}
        self._running: dict[str, threading.Thread] = {}
        self.errors: dict[str, str] = {}
        self._saved: dict[str, np.ndarray] | None = None
        self.version = collection.version
        self.pca_mean: np.ndarray | None = None
        self.pca_axes: np.ndarray | None = None
        self.source: dict[str, str] = {}

    def _file(self, method: str) -> Path:
        return sidecar(self.c.path) / "maps" / f"{method}-{self.version}.npz"

    def _load_cached(self, method: str) -> np.ndarray | None:
        f = self._file(method)
        if not f.is_file():
            return None
        try:
            with np.load(f, allow_pickle=False) as z:
                if z["xy"].shape != (len(self.c), 2):
                    return None
                if "mean" in z:
                    self.pca_mean, self.pca_axes = z["mean"], z["axes"]
                return z["xy"]
        except (OSError, ValueError, KeyError):
            return None

    def _save(self, method: str, xy: np.ndarray, **extra) -> None:
        f = self._file(method)
        try:
            f.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(f) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, xy=xy, **extra)
        except OSError:
            pass  # a read-only cache folder: the map is made again next time

    def status(self) -> dict:
        """Per method: ``ready``, ``computing``, ``failed`` or ``not started``."""
        out = {}
        for m in METHODS:
            if m in self._coords:
                out[m] = "ready"
            elif m in self.errors:
                out[m] = "failed"
            elif m in self._running:
                out[m] = "computing"
            else:
                out[m] = "not started"
        return out

    def get(self, method: str) -> np.ndarray | None:
        """The map ``method`` (n x 2 float32), or None while it is being made (started on the first call)."""
        with self._lock:
            if method in self._coords:
                return self._coords[method]
            if self._saved is None:  # looked for once per view: the page polls while UMAP is made
                self._saved = saved_projections(self.c, self.runs_dir)
            saved = self._saved.get(method)
            if saved is not None:
                self._coords[method], self.source[method] = saved, "featx analyze"
                return saved
            cached = self._load_cached(method)
            if cached is not None:
                self._coords[method], self.source[method] = cached, "made earlier"
                return cached
            if method == "pca":
                return self._make("pca")
            if method not in self._running and method not in self.errors:
                t = threading.Thread(target=self._make, args=(method,), name=f"featx-map-{method}", daemon=True)
                self._running[method] = t
                t.start()
            return None

    def _make(self, method: str) -> np.ndarray | None:
        try:
            if method == "pca":
                mean, axes = principal_axes(self.c, 2)
                xy = project_rows(self.c, mean, axes)
                self._save(method, xy, mean=mean, axes=axes)
                self.pca_mean, self.pca_axes = mean, axes
            else:
                mean, axes = principal_axes(self.c, min(PCA_FIRST, self.c.vectors().dim))
                xy = umap_apart(project_rows(self.c, mean, axes)) if len(self.c) > 2 else \
                    np.zeros((len(self.c), 2), np.float32)
                self._save(method, xy)
            self._coords[method], self.source[method] = xy, "computed"
            return xy
        except Exception as exc:  # shown on the page; the PCA map still works
            if method == "pca":
                raise
            self.errors[method] = f"{type(exc).__name__}: {exc}"
            return None
        finally:
            self._running.pop(method, None)

    def place(self, vector: np.ndarray, method: str, neighbors: list[dict]) -> list[float] | None:
        """Where a new image's feature ``vector`` goes on the map: its exact PCA coordinates, or on other maps the
        mean position of its nearest stored neighbours (at most 5)."""
        xy = self._coords.get(method)
        if xy is None:
            return None
        if method == "pca" and self.pca_mean is not None and self.source.get("pca") != "featx analyze":
            v = vector / max(float(np.linalg.norm(vector)), 1e-12)
            return [float(t) for t in (v - self.pca_mean) @ self.pca_axes]
        pts = xy[[n["row"] for n in neighbors[:5]]]
        pts = pts[np.isfinite(pts).all(axis=1)]
        return [float(t) for t in pts.mean(axis=0)] if len(pts) else None
