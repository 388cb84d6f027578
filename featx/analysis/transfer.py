"""Transferability (task similarity) scores as plain functions ``score(F, y, ...) -> float``.

The formulas, pitfalls and known answers follow ``docs/transferability.md``. Everything
is computed in float64 with NumPy / scikit-learn; no torch, no h5py. ``F`` is an
n x d feature matrix, ``y`` integer labels (any values; they are re-encoded to 0..C-1),
``theta`` an n x Z matrix of source-model probabilities (``softmax(logits)``).
"""

from __future__ import annotations

import numpy as np

from ..stats import binomial_se, encode_labels, majority_accuracy, n_folds

LOG_2PI = float(np.log(2 * np.pi))


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


def _spectrum(F: np.ndarray, T: np.ndarray, rtol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """Non-zero squared singular values ``sigma`` of F and ``X = U^T T`` (k x C).

    Works on the smaller Gram matrix (n x n when d > n, d x d otherwise), so it is cheap
    for 100k rows and for n << d. Eigenvalues below ``rtol * max`` count as zero (rank k).
    """
    n, d = F.shape
    if n <= d:
        w, u = np.linalg.eigh(F @ F.T)
        keep = w > rtol * max(w.max(), 0.0)
        return w[keep], u[:, keep].T @ T
    w, v = np.linalg.eigh(F.T @ F)
    keep = w > rtol * max(w.max(), 0.0)
    return w[keep], (v[:, keep].T @ (F.T @ T)) / np.sqrt(w[keep])[:, None]


# ----------------------------------------------------------------- source-model scores

def leep(theta: np.ndarray, y: np.ndarray) -> float:
    """LEEP (Nguyen, Hassner, Seeger, Archambeau, "LEEP: A New Measure to Evaluate
    Transferability of Learned Representations", ICML 2020).

    ``theta``: n x Z source probabilities. LEEP = mean_i log sum_z theta_iz P(y_i | z), <= 0.
    Source columns with zero mass (0/0) are skipped.
    """
    theta = np.asarray(theta, dtype=np.float64)
    y, c = encode_labels(y)
    joint = np.zeros((c, theta.shape[1]))
    np.add.at(joint, y, theta)  # n * P(y, z)
    mass = joint.sum(axis=0)
    keep = mass > 0
    cond = joint[:, keep] / mass[keep]  # P(y | z)
    eep = np.einsum("iz,iz->i", theta[:, keep], cond[y])
    return float(np.mean(np.log(eep)))


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
    from sklearn.metrics.cluster._expected_mutual_info_fast import expected_mutual_information

    return float(expected_mutual_information(table.astype(np.int64), int(table.sum())))


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
    F = np.asarray(F, dtype=np.float64)
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

    alpha, beta = np.ones(c), np.ones(c)
    for _ in range(max_iter):
        lam = alpha / beta
        gamma, m2, res = stats(lam)
        alpha, beta = gamma / m2, (n - gamma) / res
        if np.all(np.abs(alpha / beta - lam) / lam < tol):
            break
    _, m2, res = stats(alpha / beta)
    logdet = np.log(alpha + beta * sigma).sum(axis=0) + (d - sigma.shape[0]) * np.log(alpha)
    evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - logdet / 2
                - beta / 2 * res - alpha / 2 * m2 - n / 2 * LOG_2PI)
    return evidence, alpha, beta


def logme(F: np.ndarray, y: np.ndarray, *, max_iter: int = 100, tol: float = 1e-3) -> float:
    """LogME (You, Liu, Wang, Long, "LogME: Practical Assessment of Pre-trained Models for
    Transfer Learning", ICML 2021; fixed-point update from their arXiv 2110.10545).

    Mean over classes of the maximised log evidence of a Bayesian linear regression of
    1[y = c] on F, divided by n. The log-determinant runs over all d dimensions (the d - k
    null ones contribute log alpha), so it is right for d > n; the spectrum comes from the
    smaller Gram matrix.
    """
    evidence, _, _ = _logme_fixed_point(F, y, max_iter=max_iter, tol=tol)
    return float(evidence.mean() / np.asarray(F).shape[0])


def hscore(F: np.ndarray, y: np.ndarray, *, rtol: float = 1e-10) -> float:
    """H-score (Bao, Li, Huang, Zhang, Li, Zhang, "An Information-Theoretic Approach to
    Transferability in Task Transfer Learning", ICIP 2019): tr(pinv(cov F) cov G), G_i the
    mean of F over class y_i.

    Computed exactly as sum_c ||U^T 1_c||^2 / n_c with U the left singular vectors of the
    centred F (rank cut at ``rtol`` relative on the squared singular values; the cut-off
    changes the answer, see the spec). In [0, min(d, C-1)]; saturates at C-1 when n <= d.
    """
    F = np.asarray(F, dtype=np.float64)
    y, c = encode_labels(y)
    T = _onehot(y, c) / np.sqrt(np.bincount(y, minlength=c))
    _, X = _spectrum(F - F.mean(axis=0), T, rtol=rtol)
    return float((X ** 2).sum())


def _class_means(F: np.ndarray, y: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.bincount(y, minlength=c).astype(np.float64)
    sums = np.zeros((c, F.shape[1]))
    np.add.at(sums, y, F)
    return sums / counts[:, None], counts


def hscore_shrink(F: np.ndarray, y: np.ndarray) -> float:
    """Shrinkage H-score (Ibrahim, Ponomareva, Mazumder, "Newer is not always better: Rethinking
    transferability metrics, their peculiarities, stability and performance", ECML-PKDD 2022,
    arXiv 2110.06893): tr(inv(Sigma_a) (1 - a) cov G) with the Ledoit-Wolf covariance
    Sigma_a of the centred F and its shrinkage a. Stays informative when n <= d.
    """
    from sklearn.covariance import LedoitWolf

    F = np.asarray(F, dtype=np.float64)
    F = F - F.mean(axis=0)
    y, c = encode_labels(y)
    lw = LedoitWolf(assume_centered=True).fit(F)
    means, counts = _class_means(F, y, c)
    cov_g_factor = means * np.sqrt(counts / (len(y) - 1))[:, None]  # cov G = factor^T factor
    solved = np.linalg.solve(lw.covariance_, cov_g_factor.T)
    return float((1 - lw.shrinkage_) * np.sum(solved * cov_g_factor.T))


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


def probe_acc(F: np.ndarray, y: np.ndarray, *, cv: int = 5, seed: int = 0, C: float = 1.0,
              max_iter: int = 1000) -> float:
    """Linear-probe balanced accuracy: StandardScaler + LogisticRegression under
    StratifiedKFold(5) (the linear evaluation protocol of Kornblith, Shlens, Le, "Do Better
    ImageNet Models Transfer Better?", CVPR 2019)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y, _ = encode_labels(y)
    folds = n_folds(y, cv)
    if folds < 2:
        return float("nan")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    scores = cross_val_score(model, np.asarray(F, dtype=np.float64), y, scoring="balanced_accuracy",
                             cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    return float(scores.mean())


def fisher(F: np.ndarray, y: np.ndarray) -> float:
    """Fisher criterion tr(inv(S_W) S_B) (Fisher, Annals of Eugenics 1936) with the within-class
    covariance S_W shrunk by Ledoit-Wolf (J. Multivariate Analysis 2004) and the between-class
    covariance S_B = sum_c pi_c (mu_c - mu)(mu_c - mu)^T."""
    from sklearn.covariance import LedoitWolf

    F = np.asarray(F, dtype=np.float64)
    y, c = encode_labels(y)
    means, counts = _class_means(F, y, c)
    sw = LedoitWolf(assume_centered=True).fit(F - means[y]).covariance_
    dev = (means - F.mean(axis=0)) * np.sqrt(counts / len(y))[:, None]  # S_B = dev^T dev
    return float(np.sum(np.linalg.solve(sw, dev.T) * dev.T))


def silhouette(F: np.ndarray, y: np.ndarray, *, sample_size: int = 5000, seed: int = 0) -> float:
    """Mean silhouette coefficient with cosine distance (Rousseeuw, J. Comput. Appl. Math. 1987)
    on at most ``sample_size`` random rows."""
    from sklearn.metrics import silhouette_score

    y, c = encode_labels(y)
    if c < 2:
        return float("nan")
    size = sample_size if len(y) > sample_size else None
    return float(silhouette_score(np.asarray(F, dtype=np.float32), y, metric="cosine", sample_size=size,
                                  random_state=seed))


FEATURE_SCORES = {"logme": logme, "hscore": hscore, "hscore_shrink": hscore_shrink, "gbc": gbc,
                  "knn_acc": knn_acc, "probe_acc": probe_acc, "fisher": fisher, "silhouette": silhouette}
"""Scores computed from (F, y)."""

SOURCE_SCORES = ("leep", "nce", "task_overlap", "task_overlap_u")
"""Scores that need the source model's logits."""

ALL_SCORES = SOURCE_SCORES + tuple(FEATURE_SCORES)
