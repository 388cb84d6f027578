"""Projections and neighbourhood views of a feature matrix: PCA, t-SNE, UMAP, outliers, class overlap.

Everything takes ``F, y`` arrays (no torch, no h5py, no store). Large inputs are handled by
PCA first and by seeded stratified sub-sampling; callers state the sub-sampling on plots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_array, check_is_fitted

from ..errors import AnalysisError
from ..stats import encode_labels, n_folds
from .transfer import cosine_knn

METHODS = ("pca", "tsne", "umap")


def subsample(y: np.ndarray, max_rows: int | None, seed: int = 0, min_per_class: int = 10) -> np.ndarray:
    """Sorted row indices: all rows when ``n <= max_rows``, else a seeded random subset of about
    ``max_rows`` rows, proportional per class but keeping ``min(n_c, min_per_class)`` of each class."""
    y = np.asarray(y)
    n = len(y)
    if max_rows is None or n <= max_rows:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        m = min(len(rows), max(min_per_class, int(round(max_rows * len(rows) / n))))
        keep.append(rng.choice(rows, m, replace=False))
    return np.sort(np.concatenate(keep))


class Projector(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Low-dimensional embedding for plots: ``method`` is "pca", "tsne" (van der Maaten and Hinton,
    JMLR 2008; scikit-learn) or "umap" (McInnes, Healy, Melville, arXiv 1802.03426; umap-learn,
    imported when used).

    t-SNE and UMAP first reduce to ``pca_first`` PCA components (None: no PCA). Seeded by
    ``random_state``. After ``fit``: ``embedding_`` (n x n_components), ``pca_`` (or None).
    ``transform`` exists for PCA and UMAP only (t-SNE embeds the rows it was fitted on).
    """

    def __init__(self, method: str = "pca", n_components: int = 2, pca_first: int | None = 50,
                 perplexity: float = 30.0, n_neighbors: int = 15, random_state: int = 0):
        self.method = method
        self.n_components = n_components
        self.pca_first = pca_first
        self.perplexity = perplexity
        self.n_neighbors = n_neighbors
        self.random_state = random_state

    def _pca(self, X: np.ndarray, k: int):
        from sklearn.decomposition import PCA

        k = min(k, X.shape[0], X.shape[1])
        solver = "randomized" if min(X.shape) > 500 and k < 0.5 * min(X.shape) else "auto"
        return PCA(k, svd_solver=solver, random_state=self.random_state).fit(X)

    def fit(self, X, y=None):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, not {self.method!r}")
        X = check_array(X, dtype=[np.float64, np.float32])
        self.n_features_in_ = X.shape[1]
        if self.method == "pca":
            self.pca_ = self._pca(X, self.n_components)
            self.embedding_ = self.pca_.transform(X)
            return self
        self.pca_ = None
        Xp = X
        if self.pca_first and X.shape[1] > self.pca_first:
            self.pca_ = self._pca(X, self.pca_first)
            Xp = self.pca_.transform(X)
        if self.method == "tsne":
            from sklearn.manifold import TSNE

            perplexity = min(self.perplexity, max(1.0, (len(X) - 1) / 3))
            self.model_ = TSNE(self.n_components, perplexity=perplexity, init="pca", learning_rate="auto",
                               random_state=self.random_state)
            self.embedding_ = self.model_.fit_transform(Xp)
        else:
            try:
                import umap
            except ImportError:
                raise AnalysisError("UMAP needs the umap-learn package: pip install umap-learn "
                                    "(or use --tsne / --pca)") from None
            self.model_ = umap.UMAP(n_components=self.n_components, n_neighbors=min(self.n_neighbors, len(X) - 1),
                                    random_state=self.random_state, n_jobs=1)
            self.embedding_ = self.model_.fit_transform(Xp)
        return self

    def _has_transform(self) -> bool:
        return self.method != "tsne"

    @available_if(_has_transform)
    def transform(self, X):
        check_is_fitted(self, "embedding_")
        X = check_array(X, dtype=[np.float64, np.float32])
        if self.method == "pca":
            return self.pca_.transform(X)
        return self.model_.transform(self.pca_.transform(X) if self.pca_ is not None else X)

    def fit_transform(self, X, y=None, **fit_params):
        return self.fit(X, y).embedding_


@dataclass
class Projection:
    """Coordinates of the rows ``index`` of the input, and how they were made."""

    method: str
    coords: np.ndarray
    index: np.ndarray
    n_total: int
    note: str


def project(F: np.ndarray, y: np.ndarray, method: str, n_components: int = 2, *, max_rows: int | None = None,
            seed: int = 0, pca_first: int | None = 50) -> Projection:
    """Fit a :class:`Projector` on a stratified sub-sample of at most ``max_rows`` rows (PCA has
    a transform, so it is fitted on the sample and applied to every row)."""
    n = len(F)
    index = subsample(y, max_rows, seed)
    proj = Projector(method, n_components, pca_first=pca_first, random_state=seed).fit(F[index])
    if method == "pca" and len(index) < n:
        index = np.arange(n)
        return Projection(method, proj.transform(F), index, n,
                          f"PCA fitted on {len(subsample(y, max_rows, seed)):,} of {n:,} rows, all rows shown")
    note = "" if len(index) == n else f"showing a stratified random {len(index):,} of {n:,} rows (seed {seed})"
    if method != "pca" and proj.pca_ is not None:
        note = "; ".join(s for s in (f"PCA to {proj.pca_.n_components_} dims first", note) if s)
    return Projection(method, proj.embedding_, index, n, note)


def explained_variance(F: np.ndarray, max_components: int = 100, seed: int = 0) -> np.ndarray:
    """Explained-variance ratio of the first ``max_components`` principal components."""
    return Projector("pca", max_components, random_state=seed)._pca(
        np.asarray(F, dtype=np.float64), max_components).explained_variance_ratio_


def linear_separability(F: np.ndarray, y: np.ndarray, ks=(2, 3, 5, 10, 20, 50, 100), *, cv: int = 5,
                        seed: int = 0, max_rows: int | None = 20000) -> dict[int, float]:
    """Cross-validated accuracy of a linear SVM (LinearSVC on standardised PCA components fitted
    inside each fold) on the first k principal components, for each k <= min(n, d)."""
    from sklearn.decomposition import PCA
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    index = subsample(y, max_rows, seed)
    X, yy = np.asarray(F[index], dtype=np.float64), encode_labels(y[index])[0]
    folds = n_folds(yy, cv)
    if folds < 2:
        return {}
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    limit = min(X.shape[1], int(len(X) * (folds - 1) / folds))
    out = {}
    for k in sorted({k for k in ks if k <= limit}):
        model = make_pipeline(PCA(k, random_state=seed), StandardScaler(), LinearSVC(random_state=seed))
        out[k] = float(cross_val_score(model, X, yy, cv=splitter).mean())
    return out


def outliers(F: np.ndarray, y: np.ndarray, *, k: int = 10, per_class: int = 5) -> list[tuple[int, int, float]]:
    """Per class, the ``per_class`` rows farthest from their own class: mean cosine distance to
    their ``k`` nearest same-class rows. Returns (row, class index, distance), farthest first per class."""
    y, c = encode_labels(y)
    found = []
    for cls in range(c):
        rows = np.flatnonzero(y == cls)
        if len(rows) < 2:
            continue
        _, sim = cosine_knn(F[rows], k)
        dist = 1.0 - sim.mean(axis=1)
        for j in np.argsort(-dist, kind="stable")[:per_class]:
            found.append((int(rows[j]), cls, float(dist[j])))
    return found


def neighbourhood_overlap(F: np.ndarray, y: np.ndarray, *, k: int = 10, max_queries: int | None = 20000,
                          seed: int = 0) -> np.ndarray:
    """C x C matrix: row a, column b is the share of the ``k`` cosine nearest neighbours of class-a
    rows (self excluded) that belong to class b. Rows sum to 1; the diagonal is class purity."""
    y, c = encode_labels(y)
    q = subsample(y, max_queries, seed)
    idx, _ = cosine_knn(F, k, queries=q)
    m = np.zeros((c, c))
    np.add.at(m, (np.repeat(y[q], idx.shape[1]), y[idx].ravel()), 1.0)
    return m / np.maximum(m.sum(axis=1, keepdims=True), 1)


def bridges(overlap: np.ndarray, classes: list[str], *, threshold: float = 0.05, ratio: float = 0.5) -> list[dict]:
    """Class b bridges classes a and c when at least ``threshold`` of b's neighbours are in a and in c
    while a and c barely meet: their symmetric overlap is below ``ratio`` times the smaller of the
    two shares. Strongest (largest smaller share) first."""
    sym = (overlap + overlap.T) / 2
    out = []
    for b in range(len(classes)):
        near = [j for j in np.argsort(-overlap[b], kind="stable") if j != b and overlap[b, j] >= threshold]
        for i, a in enumerate(near):
            for c in near[i + 1:]:
                weaker = min(overlap[b, a], overlap[b, c])
                if sym[a, c] < ratio * weaker:
                    out.append({"class": classes[b], "between": [classes[a], classes[c]],
                                "shares": [round(float(overlap[b, a]), 4), round(float(overlap[b, c]), 4)],
                                "direct": round(float(sym[a, c]), 4)})
    return sorted(out, key=lambda d: -min(d["shares"]))


def confused_pairs(overlap: np.ndarray, classes: list[str], top: int = 10) -> list[tuple[str, str, float]]:
    """Class pairs with the largest symmetric neighbourhood overlap (m_ab + m_ba) / 2."""
    sym = (overlap + overlap.T) / 2
    a, b = np.triu_indices(len(classes), 1)
    order = np.argsort(-sym[a, b], kind="stable")[:top]
    return [(classes[a[i]], classes[b[i]], float(sym[a[i], b[i]])) for i in order if sym[a[i], b[i]] > 0]
