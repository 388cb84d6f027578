"""Transferability scores: known answers from docs/transferability.md and agreement with
straightforward (slow) reference implementations written here."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from featx.analysis import transfer as T


def onehot(y, width):
    out = np.zeros((len(y), width))
    out[np.arange(len(y)), y] = 1.0
    return out


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# ------------------------------------------------------------------ slow references

def leep_ref(theta, y):
    n, Z = theta.shape
    C = y.max() + 1
    joint = np.zeros((C, Z))
    for i in range(n):
        for z in range(Z):
            joint[y[i], z] += theta[i, z] / n
    total = 0.0
    for i in range(n):
        s = 0.0
        for z in range(Z):
            pz = joint[:, z].sum()
            if pz > 0:
                s += theta[i, z] * joint[y[i], z] / pz
        total += np.log(s)
    return total / n


def nce_ref(z, y):
    n = len(y)
    out = 0.0
    for zz in set(z.tolist()):
        rows = z == zz
        for yy in set(y[rows].tolist()):
            pyz = np.sum(rows & (y == yy)) / n
            out += pyz * np.log(pyz / (rows.sum() / n))
    return out


def evidence_ref(F, t, alpha, beta):
    """Log evidence of t = F w + N(0, 1/beta), w ~ N(0, I/alpha), with A and slogdet."""
    n, d = F.shape
    A = alpha * np.eye(d) + beta * F.T @ F
    m = beta * np.linalg.solve(A, F.T @ t)
    return (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - beta / 2 * np.sum((F @ m - t) ** 2)
            - alpha / 2 * m @ m - np.linalg.slogdet(A)[1] / 2 - n / 2 * np.log(2 * np.pi))


def hscore_ref(F, y):
    G = np.stack([F[y == y[i]].mean(axis=0) for i in range(len(y))])
    return np.trace(np.linalg.pinv(np.cov(F, rowvar=False), rcond=1e-10) @ np.cov(G, rowvar=False))


def gbc_ref(Z, y, covariance):
    C, p = y.max() + 1, Z.shape[1]
    mus, covs = [], []
    for c in range(C):
        v = np.maximum(Z[y == c].var(axis=0), 1e-4)
        if covariance == "spherical":
            v = np.full(p, v.mean())
        mus.append(Z[y == c].mean(axis=0))
        covs.append(np.diag(v))
    total = 0.0
    for i in range(C):
        for j in range(C):
            if i != j:
                S = (covs[i] + covs[j]) / 2
                dmu = mus[i] - mus[j]
                db = dmu @ np.linalg.inv(S) @ dmu / 8 + 0.5 * np.log(
                    np.linalg.det(S) / np.sqrt(np.linalg.det(covs[i]) * np.linalg.det(covs[j])))
                total -= np.exp(-db)
    return total


def knn_ref(F, y, k):
    Fn = F / np.linalg.norm(F, axis=1, keepdims=True)
    hits = 0
    for i in range(len(y)):
        s = Fn @ Fn[i]
        s[i] = -np.inf
        nb = np.argsort(-s)[:k]
        counts = np.bincount(y[nb], minlength=y.max() + 1)
        best = np.flatnonzero(counts == counts.max())
        if len(best) > 1:  # tie: more total similarity wins
            best = [max(best, key=lambda c: s[nb][y[nb] == c].sum())]
        hits += best[0] == y[i]
    return hits / len(y)


# ------------------------------------------------------------------ LEEP / NCE / overlap

def test_leep_known_answers(rng):
    y = rng.integers(0, 5, 300)
    theta = onehot(y, 1000)
    assert T.leep(theta, y) == pytest.approx(0.0, abs=1e-12)
    assert T.leep(np.full((300, 1000), 1e-3), y) == pytest.approx(-T.entropy(y), abs=1e-12)
    assert T.leep(theta, rng.permutation(y)) < -1.0
    assert T.leep(theta, y) <= 0


def test_leep_matches_reference(rng):
    y = rng.integers(0, 3, 40)
    theta = T.softmax(rng.normal(size=(40, 7)) * 2)
    theta[:, 3] = 0.0  # a source column with zero mass is skipped, not 0/0
    theta /= theta.sum(axis=1, keepdims=True)
    assert T.leep(theta, y) == pytest.approx(leep_ref(theta, y), rel=1e-10)


def test_softmax_rows_sum_to_one():
    p = T.softmax(np.array([[1000.0, 0.0], [0.0, 0.0]]))
    assert np.allclose(p.sum(axis=1), 1) and p[0, 0] == 1.0 and p[1, 0] == 0.5


def test_nce_known_answers_and_reference(rng):
    y = rng.integers(0, 4, 200)
    assert T.nce(7 * y + 3, y) == pytest.approx(0.0, abs=1e-12)
    assert T.nce(np.zeros(200), y) == pytest.approx(-T.entropy(y), abs=1e-12)
    z = rng.integers(0, 20, 200)
    assert T.nce(z, y) == pytest.approx(nce_ref(z, y), rel=1e-10)
    assert T.nce(onehot(z, 1000), y) == pytest.approx(nce_ref(z, y), rel=1e-10)  # theta -> argmax


def test_nce_cross_fitted_not_fooled_by_many_source_labels(rng):
    y = rng.integers(0, 4, 200)
    z = rng.integers(0, 1000, 200)  # independent of y but mostly unique
    assert T.nce(z, y) > -0.5  # plug-in looks good
    assert T.nce(z, y, cv=5) < -0.9 * T.entropy(y)  # held-out sees no information
    assert T.nce(y, y, cv=5) > -0.05


def test_task_overlap_known_answers(rng):
    y = rng.integers(0, 5, 500)
    one = T.task_overlap(3 * y + 1, y)
    assert float(one) == 1.0 and one.se == 0.0
    rand = T.task_overlap(rng.integers(0, 1000, 500), y)
    assert abs(rand - 0.2) < 3 * rand.se + 0.02
    assert rand.baseline == pytest.approx(np.bincount(y).max() / 500)
    assert 0.0 < rand.se < 0.05


def test_task_overlap_u(rng):
    y = rng.integers(0, 5, 500)
    for method in ("ami", "cv", "plugin"):
        assert T.task_overlap_u(3 * y + 1, y, method=method) == pytest.approx(1.0, abs=0.02)
    z = rng.integers(0, 1000, 500)
    assert T.task_overlap_u(z, y, method="plugin") > 0.5  # inflated by many source labels
    assert abs(T.task_overlap_u(z, y)) < 0.15  # unbiased, but noisy with 1000 labels on 500 rows
    assert abs(T.task_overlap_u(rng.integers(0, 50, 2000), rng.integers(0, 5, 2000))) < 0.02
    assert T.task_overlap_u(z, y, method="cv") < 0.05
    # U = 1 + NCE / H(Y) for the plug-in
    assert T.task_overlap_u(z, y, method="plugin") == pytest.approx(1 + T.nce(z, y) / T.entropy(y))


def test_expected_mi_matches_permutations(rng):
    y = rng.integers(0, 3, 60)
    z = rng.integers(0, 8, 60)
    mis = [T.entropy(y) + T.nce(rng.permutation(z), y) for _ in range(3000)]
    assert T._expected_mi(T._contingency(y, z)) == pytest.approx(np.mean(mis), rel=0.03)


# ------------------------------------------------------------------------------ LogME

@pytest.mark.parametrize("shape", [(60, 8), (30, 45)])
def test_logme_fixed_point_is_the_maximum_evidence(rng, shape):
    F = rng.normal(size=shape)
    y = rng.integers(0, 3, shape[0])
    ev, alpha, beta = T._logme_fixed_point(F, y)
    for c in range(3):
        t = (y == c).astype(float)
        assert ev[c] == pytest.approx(evidence_ref(F, t, alpha[c], beta[c]), abs=1e-6)
        best = minimize(lambda p: -evidence_ref(F, t, np.exp(p[0]), np.exp(p[1])),
                        np.log([alpha[c], beta[c]]) + 0.5, method="Nelder-Mead",
                        options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000})
        assert ev[c] == pytest.approx(-best.fun, abs=1e-3)
    assert T.logme(F, y) == pytest.approx(ev.mean() / shape[0])


def test_logme_d_greater_than_n_known_answer():
    vals = []
    for seed in range(3):
        r = np.random.default_rng(seed)
        F, y = r.normal(size=(50, 120)), r.integers(0, 5, 50)
        vals.append(T.logme(F, y))
        ev, alpha, _ = T._logme_fixed_point(F, y)
        wrong = ((ev + (120 - 50) / 2 * np.log(alpha)) / 50).mean()  # the k-only log-det sum
        assert wrong > 3
    assert np.all(np.isfinite(vals))
    assert np.mean(vals) == pytest.approx(-0.61, abs=0.08)


def test_logme_linear_features_beat_noise(rng):
    y = rng.integers(0, 5, 200)
    good = T.logme(onehot(y, 5) + 0.1 * rng.normal(size=(200, 5)), y)
    noise = T.logme(rng.normal(size=(200, 5)), y)
    assert good > noise + 1.0
    wide = T.logme(rng.normal(size=(20, 300)), rng.integers(0, 2, 20))  # d > n noise: about -1.05
    assert -1.3 < wide < -0.8 and wide < good - 1.0, (wide, good)


def test_logme_of_wide_separable_features_beats_noise():
    """n < d with a clear class signal: the targets lie in F's span and the fixed point would drive beta to
    infinity (the evidence was nan); the floored alpha / beta keeps the evidence at its finite limit."""
    r = np.random.default_rng(1)
    y = r.integers(0, 2, 20)
    noise = r.normal(size=(20, 300))
    signal = noise + 3 * onehot(y, 2) @ r.normal(size=(2, 300))
    assert T.logme(signal, y) > T.logme(noise, y) + 0.5  # nan > x is False


@pytest.mark.filterwarnings("ignore:LogME stopped at max_iter")  # near-separable classes: evidence moves by 1e-9
def test_logme_scales_with_float32_large_values(rng):
    """Scaling F scales the evidence's alpha and nothing else: float32 features x 1e3 score as the float64
    originals, and class signal still beats noise."""
    y = rng.integers(0, 3, 100)
    noise = rng.normal(size=(100, 40))
    signal = noise + 2 * onehot(y, 3) @ rng.normal(size=(3, 40))
    scores = {}
    for name, F in (("noise", noise), ("signal", signal)):
        big = T.logme((F * 1e3).astype(np.float32), y)
        assert big == pytest.approx(T.logme(F, y), abs=1e-6), name
        scores[name] = big
    assert scores["signal"] > scores["noise"] + 1.0, scores


# ---------------------------------------------------------------------------- H-score

def test_hscore_known_answers(rng):
    y = np.arange(1000) % 10
    assert T.hscore(onehot(y, 10), y) == pytest.approx(9.0, abs=1e-6)
    noise = T.hscore(rng.normal(size=(1000, 20)), y)
    assert noise == pytest.approx(20 * 9 / 1000, rel=0.5)
    sep = T.hscore(rng.normal(size=(1000, 20)) + 3 * onehot(y, 20), y)
    assert sep > 10 * noise


def test_hscore_matches_reference(rng):
    F, y = rng.normal(size=(80, 12)), rng.integers(0, 4, 80)
    assert T.hscore(F, y) == pytest.approx(hscore_ref(F, y), rel=1e-8)
    F = rng.normal(size=(30, 50))  # n < d: through the n x n side
    y = rng.integers(0, 4, 30)
    assert T.hscore(F, y) == pytest.approx(hscore_ref(F, y), rel=1e-6)
    assert T.hscore(F, y) == pytest.approx(3.0, abs=1e-6)  # saturates at C - 1


def test_hscore_shrink(rng):
    from sklearn.covariance import LedoitWolf

    F, y = rng.normal(size=(50, 100)), np.arange(50) % 10
    assert T.hscore_shrink(F, y) < 1.0  # does not saturate at C - 1 = 9 when n <= d
    F, y = rng.normal(size=(200, 10)), rng.integers(0, 3, 200)
    Fc = F - F.mean(axis=0)
    lw = LedoitWolf().fit(Fc)
    G = np.stack([Fc[y == y[i]].mean(axis=0) for i in range(200)])
    ref = np.trace(np.linalg.inv(lw.covariance_) @ ((1 - lw.shrinkage_) * np.cov(G, rowvar=False)))
    assert T.hscore_shrink(F, y) == pytest.approx(ref, rel=1e-8)


# -------------------------------------------------------------------------------- GBC

@pytest.mark.parametrize("covariance", ["spherical", "diagonal"])
def test_gbc_matches_reference(rng, covariance):
    from sklearn.decomposition import PCA

    F, y = rng.normal(size=(120, 30)) + onehot(rng.integers(0, 4, 120), 30), rng.integers(0, 4, 120)
    Z = PCA(8, random_state=0).fit_transform(F)
    assert T.gbc(F, y, n_components=8, covariance=covariance) == pytest.approx(gbc_ref(Z, y, covariance), rel=1e-8)


def test_gbc_known_answers(rng):
    y = np.arange(600) % 6
    sep = T.gbc(50 * onehot(y, 80) + rng.normal(size=(600, 80)), y)
    same = T.gbc(rng.normal(size=(600, 80)), y)
    assert sep == pytest.approx(0.0, abs=1e-6)
    assert same < -0.8 * 30 and same >= -30


# -------------------------------------------------------------------------- baselines

def test_knn_acc_matches_reference(rng):
    y = rng.integers(0, 3, 90)
    F = rng.normal(size=(90, 6)) + onehot(y, 6)
    assert T.knn_acc(F, y, k=5) == pytest.approx(knn_ref(F, y, 5))
    F[1] = F[0]  # a duplicate row must not count as its own neighbour
    idx, _ = T.cosine_knn(F, 3)
    assert 1 in idx[0] and 0 not in idx[0] and 0 in idx[1]


def test_baselines_rank_separated_above_noise(rng):
    y = np.arange(300) % 3
    sep = rng.normal(size=(300, 20)) + 4 * onehot(y, 20)
    noise = rng.normal(size=(300, 20))
    for fn in (T.knn_acc, T.probe_acc, T.fisher, T.silhouette):
        assert fn(sep, y) > fn(noise, y) + 0.2, fn.__name__
    assert T.probe_acc(sep, y) > 0.95 and abs(T.probe_acc(noise, y) - 1 / 3) < 0.15


def test_fisher_matches_reference(rng):
    from sklearn.covariance import LedoitWolf

    F, y = rng.normal(size=(150, 5)), rng.integers(0, 3, 150)
    mu = F.mean(axis=0)
    means = np.stack([F[y == c].mean(axis=0) for c in range(3)])
    sw = LedoitWolf(assume_centered=True).fit(F - means[y]).covariance_
    sb = sum(np.mean(y == c) * np.outer(means[c] - mu, means[c] - mu) for c in range(3))
    assert T.fisher(F, y) == pytest.approx(np.trace(np.linalg.inv(sw) @ sb), rel=1e-8)


def test_labels_need_not_be_contiguous(rng):
    y = rng.integers(0, 3, 100)
    F = rng.normal(size=(100, 8))
    for score in T.scores(source=False):
        assert score.fn(F, y * 10 + 5) == pytest.approx(score.fn(F, y)), score.name


# ------------------------------------------- wide features: low-rank Ledoit-Wolf scores, memory

def hscore_shrink_dense(F, y):
    """Shrinkage H-score as featx computed it before the low-rank form: d x d Ledoit-Wolf + solve."""
    from sklearn.covariance import LedoitWolf

    F = np.asarray(F, dtype=np.float64)
    F = F - F.mean(axis=0)
    lw = LedoitWolf(assume_centered=True).fit(F)
    classes = np.unique(y)
    means = np.stack([F[y == c].mean(axis=0) for c in classes])
    counts = np.array([np.sum(y == c) for c in classes], dtype=float)
    factor = means * np.sqrt(counts / (len(y) - 1))[:, None]
    return (1 - lw.shrinkage_) * np.sum(np.linalg.solve(lw.covariance_, factor.T) * factor.T)


def fisher_dense(F, y):
    """Fisher ratio as featx computed it before the low-rank form: d x d Ledoit-Wolf S_W + solve."""
    from sklearn.covariance import LedoitWolf

    F = np.asarray(F, dtype=np.float64)
    classes = np.unique(y)
    means = np.stack([F[y == c].mean(axis=0) for c in classes])
    codes = np.searchsorted(classes, y)
    sw = LedoitWolf(assume_centered=True).fit(F - means[codes]).covariance_
    dev = (means - F.mean(axis=0)) * np.sqrt(np.bincount(codes) / len(y))[:, None]
    return np.sum(np.linalg.solve(sw, dev.T) * dev.T)


def regularized_h_score_ref(features, labels):
    """The tllib (Transfer-Learning-Library) ``regularized_h_score`` formula, written out here:
    centre, LedoitWolf(), tr(pinv(cov_a, rcond=1e-15) (1 - a) np.cov(g)), g_i = class mean of row i."""
    from sklearn.covariance import LedoitWolf

    f = features.astype("float64")
    f = f - f.mean(axis=0, keepdims=True)
    cov = LedoitWolf(assume_centered=False).fit(f)
    g = np.zeros_like(f)
    for c in np.unique(labels):
        g[labels == c] = f[labels == c].mean(axis=0)
    covg = np.cov(g, rowvar=False)
    return np.trace(np.linalg.pinv(cov.covariance_, rcond=1e-15) @ ((1 - cov.shrinkage_) * covg))


def _relu_classes(rng, n, d, c, sep=0.3):
    y = rng.integers(0, c, n)
    return np.maximum((rng.normal(size=(c, d)) * sep)[y] + rng.normal(size=(n, d)), 0).astype(np.float32), y


@pytest.mark.slow
@pytest.mark.parametrize("n,d,c", [(300, 1280, 5), (1500, 1280, 10), (60, 200, 3), (500, 40, 4), (30, 2, 2)])
def test_low_rank_ledoit_wolf_scores_equal_dense(rng, n, d, c):
    F, y = _relu_classes(rng, n, d, c)
    assert T.hscore_shrink(F, y) == pytest.approx(hscore_shrink_dense(F, y), rel=1e-8)
    assert T.fisher(F, y) == pytest.approx(fisher_dense(F, y), rel=1e-8)
    if d <= 300:  # the tllib formula builds d x d matrices and a pinv: small d only
        assert T.hscore_shrink(F, y) == pytest.approx(regularized_h_score_ref(F, y), rel=1e-8)


@pytest.mark.slow
def test_low_rank_equals_dense_on_a_real_1280d_store(monet_lite0_store):
    from featx.store.reader import load_features

    fs = load_features(monet_lite0_store)
    train = fs.split == "train"
    F, y = fs.features[train], fs.labels[train]  # 480 x 1280: n < d
    assert F.shape[1] == 1280 and F.shape[0] < 1280
    assert T.hscore_shrink(F, y) == pytest.approx(hscore_shrink_dense(F, y), rel=1e-8)
    assert T.fisher(F, y) == pytest.approx(fisher_dense(F, y), rel=1e-8)
    assert T.hscore_shrink(F[:200, :300], y[:200]) == pytest.approx(regularized_h_score_ref(F[:200, :300], y[:200]),
                                                                    rel=1e-8)


def test_wide_features_never_form_a_d_by_d_matrix(rng):
    import tracemalloc

    n, d = 40, 150_000  # a d x d float64 matrix would be 180 GB
    F, y = _relu_classes(rng, n, d, 2)
    tracemalloc.start()
    try:
        for fn in (T.hscore_shrink, T.fisher, T.logme, T.hscore):
            assert np.isfinite(fn(F, y)), fn.__name__
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * F.nbytes + T.BLOCK_BYTES * 3, peak  # blocks of F, never d x d (nor a float64 copy of F)


def test_peak_estimates_grow_with_the_shapes_and_bound_d_by_d_work():
    for key in T.score_keys(source=False):
        small, wide = T.peak_bytes(key, 480, 1280, 2), T.peak_bytes(key, 480, 25088, 2)
        assert 0 < small <= wide, key
    # the Gram scores depend on min(n, d)^2, not d^2: the VGG16 block5_pool case stays small
    assert T.peak_bytes("hscore_shrink", 480, 25088, 2) < 300 * 2**20
    assert T.peak_bytes("logme", 20000, 25088, 10) > 10 * 2**30  # 20k x 20k Gram + eigh
    assert T.peak_bytes("logme", 20000, 256, 10) < 128 * 2**20
    assert T.pca_peak_bytes(20000, 25088, 256) < 8 * 2**30


def test_pca_reduce_keeps_variance_and_dtype_input(rng):
    F, _ = _relu_classes(rng, 200, 500, 3)
    Z, kept = T.pca_reduce(F, 16)
    assert Z.shape == (200, 16) and Z.dtype == np.float64 and 0 < kept < 1
    Z2, _ = T.pca_reduce(F[:10], 16)
    assert Z2.shape == (10, 10)


# ------------------------------------------------ honest scores: warnings, refusals, public APIs

def test_logme_warns_when_it_stops_at_max_iter(rng):
    F, y = rng.normal(size=(100, 8)), rng.integers(0, 3, 100)
    with pytest.warns(T.ScoreWarning, match="max_iter=2"):
        T.logme(F, y, max_iter=2)
    y = np.arange(100) % 2
    good = np.c_[y + 0.1 * rng.normal(size=100), rng.normal(size=(100, 2))]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", T.ScoreWarning)
        T.logme(good, y)  # converges: no warning


def test_leep_refuses_what_is_not_probabilities(rng):
    y = rng.integers(0, 3, 50)
    logits = rng.normal(size=(50, 10)) * 3
    with pytest.raises(ValueError, match="probabilities"):
        T.leep(logits, y)
    with pytest.raises(ValueError, match="probabilities"):
        T.leep(T.softmax(logits) * 2, y)
    assert T.leep(T.softmax(logits), y) <= 0


def test_expected_mi_matches_scikit_learns_public_ami(rng):
    from sklearn.metrics import adjusted_mutual_info_score, mutual_info_score

    for n, c, k in ((60, 3, 8), (500, 5, 200), (2000, 2, 40)):
        y, z = rng.integers(0, c, n), rng.integers(0, k, n)
        z[: n // 3] = y[: n // 3]  # some information
        emi = T._expected_mi(T._contingency(y, z))
        mi, hy, hz = mutual_info_score(y, z), T.entropy(y), T.entropy(z)
        mine = (mi - emi) / (max(hy, hz) - emi)
        assert mine == pytest.approx(adjusted_mutual_info_score(y, z, average_method="max"), abs=1e-9)


def test_no_private_scikit_learn_module_is_imported():
    import ast
    from pathlib import Path

    import featx

    bad = []
    for path in Path(featx.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{path.name}: {m}" for m in names
                    if m.split(".")[0] == "sklearn" and any(p.startswith("_") for p in m.split("."))]
    assert not bad, bad
