"""Transferability (task similarity) scores as plain functions ``score(F, y, ...) -> float``.

The formulas, pitfalls and known answers follow ``docs/transferability.md``. Everything
is computed in float64 with NumPy / scikit-learn; no torch, no h5py. ``F`` is an
n x d feature matrix, ``y`` integer labels (any values; they are re-encoded to 0..C-1),
``theta`` an n x Z matrix of source-model probabilities (``softmax(logits)``).

Each score registers itself with :func:`~featx.analysis.registry.register_score`: what it needs, its
peak-memory model (bytes on top of the n x d features already loaded, from the shapes alone; deliberately
generous), the options it takes, whether it ranks stores and its cross-fitted variant. A new score is its
function and its decorator here.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.special import gammaln

from ..stats import binomial_se, encode_labels, majority_accuracy, n_folds

# the registry's public face (like timm.models): whoever reads it from here has the scores below registered
from .registry import estimate_keys, peak_bytes, ranked_keys, register_score, score_keys, scores  # noqa: F401

LOG_2PI = float(np.log(2 * np.pi))
BLOCK_BYTES = 64 * 2**20
"""Largest float64 block of F that the Gram-matrix builders hold at once (F itself is never copied whole)."""
RANK_RTOL = 1e-12
LAMBDA_FLOOR = 1e-10
"""LogME's alpha / beta never goes below this times the largest squared singular value of F."""
"""Squared singular values below this fraction of the largest count as zero in the Ledoit-Wolf scores."""
SILHOUETTE_ROWS = 5000
"""Rows the silhouette is computed on (a random sample when there are more)."""


class ScoreWarning(UserWarning):
    """A score was computed but its value deserves a caveat (e.g. LogME stopped at ``max_iter``)."""


class Estimate(float):
    """A float score that also carries ``se`` (standard error) and ``baseline``."""

    se: float
    baseline: float

    def __new__(cls, value: float, se: float = float("nan"), baseline: float = float("nan")):
        obj = super().__new__(cls, value)
        obj.se, obj.baseline = float(se), float(baseline)
        return obj


# ----------------------------------------------------------------------------- helpers

def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax at temperature 1 (stores hold raw logits), float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def _seeded(seed: int, **_) -> dict:
    """The analyze options a score that only takes ``seed`` takes."""
    return {"seed": seed}


def _small_peak(n: int, d: int, c: int) -> int:
    """The per-class and per-row arrays every feature score holds beside its main work."""
    return 8 * (4 * n * c + 4 * d * c + 64 * c * c)


def _gram_peak(n: int, d: int, c: int, **_) -> int:
    """Peak of the Gram-matrix scores: the m x m Gram matrix (m = min(n, d)), its eigenvectors and LAPACK's
    ``syevd`` workspace (about 2 m^2), plus one float64 block of F."""
    m = min(n, d)
    return 32 * m * m + min(2 * BLOCK_BYTES, 16 * n * d) + _small_peak(n, d, c)


def _onehot(y: np.ndarray, c: int) -> np.ndarray:
    t = np.zeros((y.size, c))
    t[np.arange(y.size), y] = 1.0
    return t


def entropy(y: np.ndarray) -> float:
    """H(Y) in nats from label counts."""
    y, _ = encode_labels(y)
    p = np.bincount(y) / y.size
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _as_zhat(theta_or_zhat: np.ndarray) -> np.ndarray:
    a = np.asarray(theta_or_zhat)
    return a.argmax(axis=1) if a.ndim == 2 else a.ravel()


def _contingency(y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """C x Z' count table of target label vs source label (only source labels that occur)."""
    y, c = encode_labels(y)
    z, k = encode_labels(z)
    table = np.zeros((c, k))
    np.add.at(table, (y, z), 1.0)
    return table


def _folds(y: np.ndarray, cv: int, seed: int):
    """Stratified folds when every class has ``cv`` rows, plain shuffled folds otherwise."""
    from sklearn.model_selection import KFold, StratifiedKFold

    splitter = (StratifiedKFold if n_folds(y, cv) == cv else KFold)(cv, shuffle=True, random_state=seed)
    return splitter.split(np.zeros(len(y)), y)


def _gram(F: np.ndarray, offsets: np.ndarray | None = None, codes: np.ndarray | None = None, *,
          right: np.ndarray | None = None, left: np.ndarray | None = None
          ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """The Gram matrix of X = F - offsets[codes] in float64 on its smaller side, block by block.

    n <= d: K = X X^T (n x n) over blocks of columns, and X @ ``right`` (n x k) when given.
    n > d:  K = X^T X (d x d) over blocks of rows, and X^T @ ``left`` (d x k) when given.
    Also returns the squared row norms of X. At most :data:`BLOCK_BYTES` of X exist at once, so a
    float32 F is never copied whole to float64 and no d x d matrix is formed when n < d.
    """
    n, d = F.shape
    off = None if offsets is None else np.asarray(offsets, dtype=np.float64)
    codes = np.zeros(n, dtype=np.int64) if codes is None else np.asarray(codes)
    rows2 = np.zeros(n)
    if n <= d:
        K, prod = np.zeros((n, n)), None if right is None else np.zeros((n, right.shape[1]))
        step = max(1, BLOCK_BYTES // (8 * n))
        for j in range(0, d, step):
            X = np.asarray(F[:, j:j + step], dtype=np.float64)
            if off is not None:
                X = X - off[codes, j:j + step]
            K += X @ X.T
            rows2 += np.einsum("ij,ij->i", X, X)
            if prod is not None:
                prod += X @ right[j:j + step]
        return K, prod, rows2
    K, prod = np.zeros((d, d)), None if left is None else np.zeros((d, left.shape[1]))
    step = max(1, BLOCK_BYTES // (8 * d))
    for i in range(0, n, step):
        X = np.asarray(F[i:i + step], dtype=np.float64)
        if off is not None:
            X = X - off[codes[i:i + step]]
        K += X.T @ X
        rows2[i:i + step] = np.einsum("ij,ij->i", X, X)
        if prod is not None:
            prod += X.T @ left[i:i + step]
    return K, prod, rows2


def _spectrum(F: np.ndarray, T: np.ndarray, rtol: float = 1e-10, offsets: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Non-zero squared singular values ``sigma`` of X = F - offsets and ``X = U^T T`` (k x C).

    Works on the smaller Gram matrix (n x n when d > n, d x d otherwise; see :func:`_gram`), so it
    is cheap for 100k rows and for n << d. Eigenvalues below ``rtol * max`` count as zero (rank k).
    """
    n, d = F.shape
    if n <= d:
        K, _, _ = _gram(F, offsets)
        w, u = np.linalg.eigh(K)
        del K
        keep = w > rtol * max(w.max(), 0.0)
        return w[keep], u[:, keep].T @ T
    K, FtT, _ = _gram(F, offsets, left=T)
    w, v = np.linalg.eigh(K)
    del K
    keep = w > rtol * max(w.max(), 0.0)
    return w[keep], (v[:, keep].T @ FtT) / np.sqrt(w[keep])[:, None]


def _shrunk_quadratic(F: np.ndarray, offsets: np.ndarray, codes: np.ndarray, B: np.ndarray
                      ) -> tuple[float, float]:
    """Ledoit-Wolf shrinkage ``a`` of X = F - offsets[codes] and sum_k b_k^T inv(Sigma_a) b_k over the
    rows of ``B``, without a d x d matrix when n < d.

    Sigma_a = (1 - a) S + a mu I with S = X^T X / n (X taken as centred, like scikit-learn's
    ``LedoitWolf(assume_centered=True)``) and mu = tr(S) / d. ``a`` follows
    ``sklearn.covariance.ledoit_wolf_shrinkage`` term by term, its two sums read off the Gram matrix
    K: sum_ij (X2^T X2)_ij = sum_i ||x_i||^4 and sum_ij (X^T X)_ij^2 = ||K||_F^2. With the thin SVD
    X = U s V^T (from the eigenpairs of K), Sigma_a has eigenvalues (1 - a) s_i^2 / n + a mu on V and
    a mu on its complement, so b^T inv(Sigma_a) b = sum_i (V^T b)_i^2 / lam_i + (||b||^2 - ||V^T b||^2)
    / (a mu), with V^T b = U^T (X b) / s when n <= d. Memory O(min(n, d)^2 + n C), time O(n d min(n, d)).
    """
    n, d = F.shape
    B = np.asarray(B, dtype=np.float64)
    if n <= d:
        K, XB, rows2 = _gram(F, offsets, codes, right=B.T)
    else:
        K, _, rows2 = _gram(F, offsets, codes)
    trace = float(rows2.sum())
    mu = trace / (n * d)
    a = 0.0
    if d > 1:
        beta_ = float(np.sum(rows2 ** 2))
        delta_ = float(np.einsum("ij,ij->", K, K)) / n ** 2
        beta = (beta_ / n - delta_) / (d * n)
        delta = (delta_ - 2.0 * mu * trace / n + d * mu ** 2) / d
        beta = min(beta, delta)
        a = 0.0 if beta == 0 else beta / delta
    w, vecs = np.linalg.eigh(K)
    del K
    keep = w > RANK_RTOL * max(w.max(), 0.0)
    w = w[keep]
    coords = (vecs[:, keep].T @ XB) / np.sqrt(w)[:, None] if n <= d else vecs[:, keep].T @ B.T
    lam = (1 - a) * w / n + a * mu
    quad = float(np.sum(coords ** 2 / lam[:, None]))
    if a * mu > 0:
        quad += max(float(np.sum(B ** 2) - np.sum(coords ** 2)), 0.0) / (a * mu)
    return float(a), quad


# ----------------------------------------------------------------- source-model scores

@register_score("leep", needs="probs", peak=lambda n, d, c, z, **_: 24 * n * z + 8 * c * z)
def leep(theta: np.ndarray, y: np.ndarray) -> float:
    """LEEP (Nguyen, Hassner, Seeger, Archambeau, "LEEP: A New Measure to Evaluate
    Transferability of Learned Representations", ICML 2020).

    ``theta``: n x Z source probabilities. LEEP = mean_i log sum_z theta_iz P(y_i | z), <= 0.
    Source columns with zero mass (0/0) are skipped. ``theta`` must hold probabilities (rows of
    non-negative numbers summing to 1, e.g. :func:`softmax` of logits): raw logits raise ValueError.
    """
    theta = np.asarray(theta, dtype=np.float64)
    if theta.ndim != 2 or not np.all(np.isfinite(theta)) or theta.min() < 0 \
            or not np.allclose(theta.sum(axis=1), 1.0, rtol=0, atol=1e-4):
        raise ValueError("LEEP needs source-model probabilities (non-negative rows summing to 1): "
                         "pass softmax(logits), not raw logits")
    y, c = encode_labels(y)
    joint = np.zeros((c, theta.shape[1]))
    np.add.at(joint, y, theta)  # n * P(y, z)
    mass = joint.sum(axis=0)
    keep = mass > 0
    cond = joint[:, keep] / mass[keep]  # P(y | z)
    eep = np.einsum("iz,iz->i", theta[:, keep], cond[y])
    return float(np.mean(np.log(eep)))


@register_score("nce", needs="top1", ranked=False, cv=("nce_cv", lambda seed, **_: {"cv": 5, "seed": seed}))
def nce(theta_or_zhat: np.ndarray, y: np.ndarray, *, cv: int | None = None, seed: int = 0,
        smoothing: float = 1.0) -> float:
    """NCE (Tran, Nguyen, Hassner, "Transferability and Hardness of Supervised Classification
    Tasks", ICCV 2019): -H(Y | z_hat) from hard counts, in [-H(Y), 0].

    With ``cv=k`` the conditional P(y | z) is fitted on k-1 folds and the log-likelihood of
    the held-out rows is averaged (cross-fitted): many source labels seen once make the
    plug-in value look too good. The held-out P(y | z) is smoothed towards the training
    marginal, (n_yz + s P(y)) / (n_z + s), so unseen z fall back to P(y).
    """
    z = _as_zhat(theta_or_zhat)
    if cv is None:
        table = _contingency(y, z) / len(z)
        pz = table.sum(axis=0)
        nz = table > 0
        return float(np.sum(table[nz] * np.log((table / pz)[nz])))
    y, c = encode_labels(y)
    z, k = encode_labels(z)
    ll = np.empty(len(y))
    for tr, te in _folds(y, cv, seed):
        counts = np.zeros((c, k))
        np.add.at(counts, (y[tr], z[tr]), 1.0)
        prior = (np.bincount(y[tr], minlength=c) + 0.5) / (len(tr) + 0.5 * c)
        cond = (counts + smoothing * prior[:, None]) / (counts.sum(axis=0) + smoothing)
        ll[te] = np.log(cond[y[te], z[te]])
    return float(ll.mean())


@register_score("task_overlap", needs="top1", kwargs=_seeded, estimate=True)
def task_overlap(theta_or_zhat: np.ndarray, y: np.ndarray, *, cv: int = 5, seed: int = 0) -> Estimate:
    """Task overlap (featx's reading of seed 001's "around 64% of overlapping in tasks").

    Cross-validated accuracy of the lookup z_hat -> majority target label among training rows
    with that z_hat (unseen z_hat -> the training majority class). Returns an :class:`Estimate`
    with ``se`` = sqrt(acc (1 - acc) / n) and ``baseline`` = majority-class frequency.
    """
    z = _as_zhat(theta_or_zhat)
    y, c = encode_labels(y)
    z, k = encode_labels(z)
    pred = np.empty_like(y)
    for tr, te in _folds(y, cv, seed):
        counts = np.zeros((k, c))
        np.add.at(counts, (z[tr], y[tr]), 1.0)
        lookup = counts.argmax(axis=1)
        lookup[counts.sum(axis=1) == 0] = np.bincount(y[tr], minlength=c).argmax()
        pred[te] = lookup[z[te]]
    acc = float(np.mean(pred == y))
    return Estimate(acc, se=binomial_se(acc, len(y)), baseline=majority_accuracy(y))


def _expected_mi(table: np.ndarray) -> float:
    """Expected mutual information (nats) of a contingency table under random permutations of the
    labels with the margins fixed (Vinh, Epps, Bailey, JMLR 2010, eq. 24a), written with log-gamma:
    the hypergeometric sum over every cell's possible counts n_ij, vectorised per table row."""
    table = np.asarray(table, dtype=np.float64)
    a, b = table.sum(axis=1), table.sum(axis=0)
    a, b = a[a > 0], b[b > 0]
    N = float(a.sum())
    if a.size < 2 or b.size < 2:
        return 0.0
    lg = gammaln
    total = 0.0
    const_b = lg(b + 1) + lg(N - b + 1)
    for ai in a:
        lo = np.maximum(1.0, ai + b - N)
        hi = np.minimum(ai, b)
        counts = np.maximum(hi - lo + 1, 0).astype(np.int64)
        if not counts.any():
            continue
        j = np.repeat(np.arange(b.size), counts)
        start = np.concatenate(([0], np.cumsum(counts)[:-1]))
        nij = lo[j] + (np.arange(counts.sum()) - start[j])
        bj = b[j]
        log_p = (lg(ai + 1) + lg(N - ai + 1) + const_b[j] - lg(N + 1) - lg(nij + 1) - lg(ai - nij + 1)
                 - lg(bj - nij + 1) - lg(N - ai - bj + nij + 1))
        total += float(np.sum(nij / N * np.log(N * nij / (ai * bj)) * np.exp(log_p)))
    return total


@register_score("task_overlap_u", needs="top1", ranked=False,
                cv=("task_overlap_u_cv", lambda seed, **_: {"method": "cv", "seed": seed}))
def task_overlap_u(theta_or_zhat: np.ndarray, y: np.ndarray, *, method: str = "ami", cv: int = 5,
                   seed: int = 0) -> float:
    """Uncertainty coefficient U = I(Y; z_hat) / H(Y) = 1 + NCE / H(Y), in [0, 1] (Theil's U;
    with NCE from Tran et al., ICCV 2019): the share of the target-label entropy explained by
    the source model's top-1 label.

    The plug-in value is inflated by many source labels, so ``method`` chooses the estimate:
    ``"ami"`` (default) adjusts for chance like adjusted mutual information (Vinh, Epps, Bailey,
    JMLR 2010): (I - E[I]) / (H(Y) - E[I]) with E[I] under random permutations;
    ``"cv"`` uses the cross-fitted NCE, clipped to [0, 1]; ``"plugin"`` is the raw value.
    """
    z = _as_zhat(theta_or_zhat)
    h = entropy(y)
    if h == 0:
        return float("nan")
    if method == "cv":
        return float(np.clip(1 + nce(z, y, cv=cv, seed=seed) / h, 0.0, 1.0))
    mi = h + nce(z, y)
    if method == "plugin":
        return float(mi / h)
    if method != "ami":
        raise ValueError(f"method must be 'ami', 'cv' or 'plugin', not {method!r}")
    emi = _expected_mi(_contingency(y, z))
    return float((mi - emi) / (h - emi)) if h > emi else 0.0


# -------------------------------------------------------------------- feature scores

def _logme_fixed_point(F: np.ndarray, y: np.ndarray, *, max_iter: int = 100, tol: float = 1e-3):
    """Per-class evidence L_c (not divided by n) and the fitted alpha, beta (arrays over classes)."""
    n, d = F.shape
    y, c = encode_labels(y)
    T = _onehot(y, c)
    sigma, X = _spectrum(F, T)
    sigma = sigma[:, None]
    x2 = X ** 2
    r0 = np.maximum((T ** 2).sum(axis=0) - x2.sum(axis=0), 0.0)
    tiny = np.finfo(np.float64).tiny

    def stats(lam):
        den = (sigma + lam) ** 2
        gamma = (sigma / (sigma + lam)).sum(axis=0)
        m2 = np.maximum((sigma * x2 / den).sum(axis=0), tiny)
        res = np.maximum((lam ** 2 * x2 / den).sum(axis=0) + r0, tiny)
        return gamma, m2, res

    def evidence_at(alpha, beta):
        _, m2, res = stats(alpha / beta)
        logdet = np.log(alpha + beta * sigma).sum(axis=0) + (d - sigma.shape[0]) * np.log(alpha)
        return (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - logdet / 2
                - beta / 2 * res - alpha / 2 * m2 - n / 2 * LOG_2PI)

    # Targets that F's span fits exactly (n <= d with a class signal) drive beta to infinity and the evidence
    # to inf - inf; lambda = alpha / beta floored far below the spectrum keeps it at its finite limit.
    lam_min = LAMBDA_FLOOR * sigma.max() if sigma.size else 0.0
    alpha, beta = np.ones(c), np.ones(c)
    for _ in range(max_iter):
        lam = np.maximum(alpha / beta, lam_min)
        gamma, m2, res = stats(lam)
        prev = alpha, beta
        alpha, beta = gamma / m2, (n - gamma) / res
        if lam_min:
            beta = np.minimum(beta, alpha / lam_min)
        moving = np.abs(alpha / beta - lam) / lam >= tol
        if not moving.any():
            break
    evidence = evidence_at(alpha, beta)
    if max_iter > 0 and moving.any():
        change = np.max(np.abs(evidence - evidence_at(*prev))[moving] / np.abs(evidence[moving]))
        warnings.warn(f"LogME stopped at max_iter={max_iter} with alpha/beta still moving (tol {tol:g}) for "
                      f"{int(moving.sum())} of {c} classes; their evidence still changed by {change:.1e} "
                      "(relative) in the last step", ScoreWarning, stacklevel=3)
    return evidence, alpha, beta


@register_score("logme", needs="features", peak=_gram_peak)
def logme(F: np.ndarray, y: np.ndarray, *, max_iter: int = 100, tol: float = 1e-3) -> float:
    """LogME (You, Liu, Wang, Long, "LogME: Practical Assessment of Pre-trained Models for
    Transfer Learning", ICML 2021; fixed-point update from their arXiv 2110.10545).

    Mean over classes of the maximised log evidence of a Bayesian linear regression of
    1[y = c] on F, divided by n. The log-determinant runs over all d dimensions (the d - k
    null ones contribute log alpha), so it is right for d > n; the spectrum comes from the
    smaller Gram matrix. Warns (:class:`ScoreWarning`) when the fixed point stops at ``max_iter``.
    """
    evidence, _, _ = _logme_fixed_point(F, y, max_iter=max_iter, tol=tol)
    return float(evidence.mean() / np.asarray(F).shape[0])


@register_score("hscore", needs="features", peak=_gram_peak)
def hscore(F: np.ndarray, y: np.ndarray, *, rtol: float = 1e-10) -> float:
    """H-score (Bao, Li, Huang, Zhang, Li, Zhang, "An Information-Theoretic Approach to
    Transferability in Task Transfer Learning", ICIP 2019): tr(pinv(cov F) cov G), G_i the
    mean of F over class y_i.

    Computed exactly as sum_c ||U^T 1_c||^2 / n_c with U the left singular vectors of the
    centred F (rank cut at ``rtol`` relative on the squared singular values; the cut-off
    changes the answer, see the spec). In [0, min(d, C-1)]; saturates at C-1 when n <= d.
    """
    y, c = encode_labels(y)
    T = _onehot(y, c) / np.sqrt(np.bincount(y, minlength=c))
    _, X = _spectrum(F, T, rtol=rtol, offsets=_column_mean(F)[None, :])
    return float((X ** 2).sum())


def _column_mean(F: np.ndarray) -> np.ndarray:
    """Column means of F in float64 without a float64 copy of F."""
    return np.mean(F, axis=0, dtype=np.float64)


def _class_means(F: np.ndarray, y: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Class means (C x d, float64) and counts, over column blocks of F (no float64 copy of F)."""
    counts = np.bincount(y, minlength=c).astype(np.float64)
    onehot = _onehot(y, c).T
    n, d = F.shape
    step = max(1, BLOCK_BYTES // (8 * max(n, 1)))
    sums = np.empty((c, d))
    for j in range(0, d, step):
        sums[:, j:j + step] = onehot @ np.asarray(F[:, j:j + step], dtype=np.float64)
    return sums / counts[:, None], counts


@register_score("hscore_shrink", needs="features", peak=_gram_peak)
def hscore_shrink(F: np.ndarray, y: np.ndarray) -> float:
    """Shrinkage H-score (Ibrahim, Ponomareva, Mazumder, "Newer is not always better: Rethinking
    transferability metrics, their peculiarities, stability and performance", ECML-PKDD 2022,
    arXiv 2110.06893): tr(inv(Sigma_a) (1 - a) cov G) with the Ledoit-Wolf covariance
    Sigma_a of the centred F and its shrinkage a. Stays informative when n <= d.

    cov G = B^T B with B_c = (mu_c - mu) sqrt(n_c / (n - 1)), so the trace is a sum of quadratic
    forms computed from the n x n (n < d) or d x d Gram matrix: see :func:`_shrunk_quadratic`.
    Equal to the dense ``LedoitWolf`` + ``solve`` computation (tested to 1e-8 relative).
    """
    y, c = encode_labels(y)
    mean = _column_mean(F)
    means, counts = _class_means(F, y, c)
    factor = (means - mean) * np.sqrt(counts / (len(y) - 1))[:, None]
    a, quad = _shrunk_quadratic(F, mean[None, :], np.zeros(len(y), dtype=np.int64), factor)
    return float((1 - a) * quad)


def _gbc_peak(n: int, d: int, c: int, **_) -> int:
    """A float64 copy of F and its centred copy for PCA."""
    return 16 * n * d + 8 * 4 * (n + d) * 74 + _small_peak(n, d, c)


@register_score("gbc", needs="features", peak=_gbc_peak, kwargs=_seeded)
def gbc(F: np.ndarray, y: np.ndarray, *, n_components: int = 64, covariance: str = "spherical",
        seed: int = 0) -> float:
    """GBC (Pandy, Agostinelli, Uijlings, Ferrari, Mensink, "Transferability Estimation using
    Bhattacharyya Class Separability", CVPR 2022).

    PCA to ``n_components``, a Gaussian per class with diagonal or spherical covariance
    (variances floored at 1e-4), GBC = -sum_{i != j} exp(-D_B(i, j)) in [-C(C-1), 0].
    Spherical: Sigma_c = s_c I with s_c the mean per-dimension variance, and its log-det is
    taken over all p PCA dimensions, log det = p log s_c.
    """
    from sklearn.decomposition import PCA

    if covariance not in ("spherical", "diagonal"):
        raise ValueError(f"covariance must be 'spherical' or 'diagonal', not {covariance!r}")
    F = np.asarray(F, dtype=np.float64)
    y, c = encode_labels(y)
    p = min(n_components, F.shape[0], F.shape[1])
    Z = PCA(p, random_state=seed).fit_transform(F)
    mu, _ = _class_means(Z, y, c)
    var = np.stack([np.maximum(Z[y == k].var(axis=0), 1e-4) for k in range(c)])
    if covariance == "spherical":
        var = np.repeat(var.mean(axis=1, keepdims=True), p, axis=1)
    s = (var[:, None, :] + var[None, :, :]) / 2  # C x C x p
    diff2 = (mu[:, None, :] - mu[None, :, :]) ** 2
    logv = np.log(var).sum(axis=1)
    db = (diff2 / s).sum(axis=2) / 8 + 0.5 * (np.log(s).sum(axis=2) - (logv[:, None] + logv[None, :]) / 2)
    off = ~np.eye(c, dtype=bool)
    return float(-np.exp(-db[off]).sum()) + 0.0  # no -0.0


# ---------------------------------------------------------------------------- baselines

def cosine_knn(F: np.ndarray, k: int, *, queries: np.ndarray | None = None, chunk: int = 2048
               ) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine similarities of the ``k`` nearest rows of F for each query row
    (rows of F by index, default all), excluding the query row itself (leave-one-out)."""
    F = np.asarray(F, dtype=np.float32)
    norms = np.linalg.norm(F, axis=1, keepdims=True)
    Fn = F / np.maximum(norms, 1e-12)
    q = np.arange(len(F)) if queries is None else np.asarray(queries)
    k = min(k, len(F) - 1)
    idx = np.empty((len(q), k), dtype=np.int64)
    sim = np.empty((len(q), k), dtype=np.float32)
    for s in range(0, len(q), chunk):
        rows = q[s:s + chunk]
        S = Fn[rows] @ Fn.T
        S[np.arange(len(rows)), rows] = -np.inf
        part = np.argpartition(-S, k - 1, axis=1)[:, :k]
        ps = np.take_along_axis(S, part, axis=1)
        order = np.argsort(-ps, axis=1)
        idx[s:s + chunk] = np.take_along_axis(part, order, axis=1)
        sim[s:s + chunk] = np.take_along_axis(ps, order, axis=1)
    return idx, sim


def _knn_peak(n: int, d: int, c: int, **_) -> int:
    """A normalised float32 copy of F and 2,048-row similarity chunks."""
    return 8 * n * d + 2048 * n * 16 + _small_peak(n, d, c)


@register_score("knn_acc", needs="features", peak=_knn_peak,
                kwargs=lambda seed, max_rows, k: {"seed": seed, "max_queries": max_rows, "k": k},
                caveat=lambda n, max_rows: f"knn_acc from {max_rows:,} random query rows of {n:,}"
                if n > max_rows else None)
def knn_acc(F: np.ndarray, y: np.ndarray, *, k: int = 10, max_queries: int | None = None,
            seed: int = 0) -> float:
    """Leave-one-out k-nearest-neighbour accuracy with cosine similarity (majority vote,
    ties to the more similar neighbours; Cover and Hart, IEEE Trans. Inf. Theory 1967).

    ``max_queries`` scores a random subset of query rows (neighbours still searched in all rows).
    """
    y, c = encode_labels(y)
    q = np.arange(len(y))
    if max_queries is not None and len(y) > max_queries:
        q = np.sort(np.random.default_rng(seed).choice(len(y), max_queries, replace=False))
    idx, sim = cosine_knn(F, k, queries=q)
    votes = np.zeros((len(q), c))  # count + similarity sum / (2k + 2): the sum only breaks ties
    np.add.at(votes, (np.arange(len(q))[:, None], y[idx]), 1.0 + sim.astype(np.float64) / (2 * k + 2))
    return float(np.mean(votes.argmax(axis=1) == y[q]))


def _probe_model(C: float, max_iter: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))


def _probe_peak(n: int, d: int, c: int, *, max_rows: int = 20000, **_) -> int:
    """StandardScaler + LogisticRegression over folds: about four float64 copies of its rows."""
    rows = min(n, max_rows)
    return 32 * rows * d + 80 * d * c + _small_peak(n, d, c)


@register_score("probe_acc", needs="features", peak=_probe_peak, kwargs=_seeded, sample=True)
def probe_acc(F: np.ndarray, y: np.ndarray, *, cv: int = 5, seed: int = 0, C: float = 1.0,
              max_iter: int = 1000) -> float:
    """Linear-probe balanced accuracy: StandardScaler + LogisticRegression under
    StratifiedKFold(5) (the linear evaluation protocol of Kornblith, Shlens, Le, "Do Better
    ImageNet Models Transfer Better?", CVPR 2019)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    y, _ = encode_labels(y)
    folds = n_folds(y, cv)
    if folds < 2:
        return float("nan")
    per_fold = cross_val_score(_probe_model(C, max_iter), np.asarray(F, dtype=np.float64), y,
                               scoring="balanced_accuracy", cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    return float(per_fold.mean())


def probe_split_acc(F_fit: np.ndarray, y_fit: np.ndarray, F_eval: np.ndarray, y_eval: np.ndarray, *,
                    C: float = 1.0, max_iter: int = 1000) -> float:
    """Accuracy on (F_eval, y_eval) of the linear probe of :func:`probe_acc` (StandardScaler +
    LogisticRegression, C = 1) fitted once on (F_fit, y_fit): the held-out accuracy that ``featx
    analyze`` correlates the scores with (Kornblith et al., CVPR 2019)."""
    model = _probe_model(C, max_iter).fit(np.asarray(F_fit, dtype=np.float64), np.asarray(y_fit))
    return float(np.mean(model.predict(np.asarray(F_eval, dtype=np.float64)) == np.asarray(y_eval)))


@register_score("fisher", needs="features", peak=lambda n, d, c, **_: _gram_peak(n, d, c) + 8 * c * d)
def fisher(F: np.ndarray, y: np.ndarray) -> float:
    """Fisher criterion tr(inv(S_W) S_B) (Fisher, Annals of Eugenics 1936) with the within-class
    covariance S_W shrunk by Ledoit-Wolf (J. Multivariate Analysis 2004) and the between-class
    covariance S_B = sum_c pi_c (mu_c - mu)(mu_c - mu)^T.

    Computed from the Gram matrix of the within-class deviations (n x n when n < d), never a d x d
    S_W: see :func:`_shrunk_quadratic`. Equal to the dense computation (tested to 1e-8 relative).
    """
    y, c = encode_labels(y)
    means, counts = _class_means(F, y, c)
    dev = (means - _column_mean(F)) * np.sqrt(counts / len(y))[:, None]  # S_B = dev^T dev
    _, quad = _shrunk_quadratic(F, means, y, dev)
    return quad


def _silhouette_peak(n: int, d: int, c: int, **_) -> int:
    """A float32 copy of F, a sample of rows and scikit-learn's chunked distances."""
    rows = min(n, SILHOUETTE_ROWS)
    return 4 * n * d + 12 * rows * d + min(16 * rows * rows, 2**30) + _small_peak(n, d, c)


@register_score("silhouette", needs="features", peak=_silhouette_peak, kwargs=_seeded,
                caveat=lambda n, max_rows: f"silhouette on {SILHOUETTE_ROWS:,} random rows of {n:,}"
                if n > SILHOUETTE_ROWS else None)
def silhouette(F: np.ndarray, y: np.ndarray, *, sample_size: int = SILHOUETTE_ROWS, seed: int = 0) -> float:
    """Mean silhouette coefficient with cosine distance (Rousseeuw, J. Comput. Appl. Math. 1987)
    on at most ``sample_size`` random rows."""
    from sklearn.metrics import silhouette_score

    y, c = encode_labels(y)
    if c < 2:
        return float("nan")
    size = sample_size if len(y) > sample_size else None
    return float(silhouette_score(np.asarray(F, dtype=np.float32), y, metric="cosine", sample_size=size,
                                  random_state=seed))


# ---------------------------------------------------------------------------- reduction

def pca_peak_bytes(n: int, d: int, k: int) -> int:
    """Estimated peak memory of :func:`pca_reduce` to ``k`` dims: scikit-learn's centred copy of
    F (float32 in, float32 kept), the randomized range finder's n x (k + 10) and d x (k + 10)
    blocks, and the float64 result."""
    return 8 * n * d + 16 * (n + d) * (k + 10) + 8 * n * k


def pca_reduce(F: np.ndarray, k: int, *, seed: int = 0) -> tuple[np.ndarray, float]:
    """The first ``k`` principal components of F (randomized PCA, Halko, Martinsson, Tropp, SIAM
    Review 2011, via scikit-learn) as float64, and the share of variance they keep. F keeps its
    dtype (a float32 store is not copied to float64)."""
    from sklearn.decomposition import PCA

    k = int(min(k, F.shape[0], F.shape[1]))
    pca = PCA(k, svd_solver="randomized", random_state=seed)
    Z = pca.fit_transform(F)
    return np.asarray(Z, dtype=np.float64), float(np.sum(pca.explained_variance_ratio_))
