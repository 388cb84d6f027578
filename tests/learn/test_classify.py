"""featx.learn.classify: pipelines, splits, search, class weights, concatenation; real-feature accuracy."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.pipeline import Pipeline

from _synth import blobs
from featx.learn import classify
from featx.errors import ClassifierError
from featx.store.reader import load_features

CLASSES = ["a", "b", "c"]
REAL = ["softmax", "linearsvc", "mlp", "knn"]


@pytest.fixture(scope="module")
def data():
    return blobs((60, 60, 60), dim=32, sep=2.0)


def test_block_normaliser_contract_with_widths():
    X = np.random.default_rng(0).normal(size=(10, 5))
    t = classify.BlockL2Normalizer(widths=(2, 3)).fit(X)
    Z = t.transform(X)
    assert np.allclose(np.linalg.norm(Z[:, :2], axis=1), 1) and np.allclose(np.linalg.norm(Z[:, 2:], axis=1), 1)
    assert t.n_features_in_ == 5
    with pytest.raises(ClassifierError, match="do not add up"):
        classify.BlockL2Normalizer(widths=(2, 2)).fit(X)


def test_resolve_names():
    assert classify.resolve_names("all") == REAL
    assert classify.resolve_names("knn, softmax,knn") == ["knn", "softmax"]
    with pytest.raises(ClassifierError, match="unknown classifier 'svm'.*softmax, linearsvc, mlp, knn"):
        classify.resolve_names("svm")


@pytest.mark.parametrize("name", list(classify.CLASSIFIERS))
def test_make_classifier_steps(name):
    pipe = classify.make_classifier(name)
    assert isinstance(pipe, Pipeline) and pipe.steps[-1][0] == "clf"
    expected = {"standardize": ["standardize"], "l2": ["l2"], "none": []}[classify.CLASSIFIERS[name].preprocess]
    assert [s for s, _ in pipe.steps[:-1]] == expected
    chained = classify.make_classifier(name, preprocess="l2+pca:8", block_widths=(4, 4))
    assert [s for s, _ in chained.steps[:-1]] == ["blocks", "l2", "pca"]
    assert chained.named_steps["pca"].n_components == 8


def test_a_registered_classifier_is_built_searched_and_weighted_from_its_record(data, monkeypatch):
    from sklearn.linear_model import LogisticRegression

    monkeypatch.setattr(classify, "CLASSIFIERS", dict(classify.CLASSIFIERS))  # the registry as it was, after

    @classify.register_classifier("strong", preprocess="l2", grid={"C": [0.5, 2.0]}, class_weight="param",
                                  baseline=True)
    def strong(*, class_weight=None, random_state=None, **_):
        return LogisticRegression(C=1.0, class_weight=class_weight, random_state=random_state)

    assert classify.resolve_names("all") == REAL and classify.resolve_names("strong,all") == ["strong", *REAL]
    pipe = classify.make_classifier("strong", class_weight="balanced")
    assert [s for s, _ in pipe.steps] == ["l2", "clf"] and pipe.named_steps["clf"].class_weight == "balanced"
    X, y, split, _ = data
    r = classify.fit_evaluate(X, y, split, CLASSES, "strong", search=True, class_weight="balanced")
    assert r.best_params["C"] in (0.5, 2.0) and r.accuracy >= 0.9 and not r.notes
    with pytest.raises(ValueError, match="already registered"):
        classify.register_classifier("strong")(strong)
    with pytest.raises(ValueError, match="class_weight='always'"):
        classify.register_classifier("other", class_weight="always")


def test_bad_preprocess_and_class_weight():
    with pytest.raises(ClassifierError, match="unknown preprocessing 'pca:x'"):
        classify.make_classifier("softmax", preprocess="pca:x")
    with pytest.raises(ClassifierError, match="unknown class weight"):
        classify.make_classifier("softmax", class_weight="inverse")


def test_plan_splits_modes():
    s = np.array(["train"] * 6 + ["val"] * 2 + ["test"] * 2, dtype=object)
    p = classify.plan_splits(s)
    assert p.mode == "test" and list(p.fit) == list(range(6)) and list(p.val) == [6, 7] and list(p.eval) == [8, 9]
    p = classify.plan_splits(s, cv=3)
    assert p.mode == "test" and list(p.fit) == list(range(8)) and p.folds == 3 and list(p.eval) == [8, 9]
    p = classify.plan_splits(s[:8])
    assert p.mode == "val" and list(p.eval) == [6, 7] and list(p.fit) == list(range(6))
    p = classify.plan_splits(np.array(["train"] * 10, dtype=object))
    assert p.mode == "cv" and p.folds == 5 and list(p.eval) == list(range(10))
    with pytest.raises(ClassifierError, match="at least 2 folds"):
        classify.plan_splits(s, cv=1)


def test_check_labels_errors():
    y = np.array([0, 0, 1, 1, 2, 2])
    with pytest.raises(ClassifierError, match="single class"):
        classify.check_labels(np.zeros(6, int), ["only"], np.arange(6))
    with pytest.raises(ClassifierError, match="class 'c' has no training rows"):
        classify.check_labels(y, CLASSES, np.arange(4))
    with pytest.raises(ClassifierError, match="class 'b' has only 1 training row"):
        classify.check_labels(y, CLASSES, np.array([0, 1, 2, 4, 5]))


@pytest.mark.parametrize("name", REAL)
def test_fit_evaluate_separable(data, name):
    X, y, split, _ = data
    r = classify.fit_evaluate(X, y, split, CLASSES, name)
    assert r.plan.mode == "test" and len(r.y_true) == int((split == "test").sum())
    assert r.accuracy >= 0.9
    assert r.proba.shape == (len(r.y_true), 3) and np.allclose(r.proba.sum(1), 1)
    assert r.val_accuracy is not None and r.fit_seconds > 0
    assert not set(np.flatnonzero(split == "test")) & set(r.plan.fit)


def test_test_labels_never_reach_the_fit(data):
    X, y, split, _ = data
    poisoned = y.copy()
    test = split == "test"
    poisoned[test] = (poisoned[test] + 1) % 3
    a = classify.fit_evaluate(X, y, split, CLASSES, "mlp")
    b = classify.fit_evaluate(X, poisoned, split, CLASSES, "mlp")
    assert np.array_equal(a.model.predict_proba(X), b.model.predict_proba(X))
    assert np.array_equal(a.y_pred, b.y_pred) and b.accuracy < a.accuracy


def test_no_split_uses_out_of_fold_cv(data):
    X, y, _, _ = data
    split = np.array(["train"] * len(y), dtype=object)
    r = classify.fit_evaluate(X, y, split, CLASSES, "softmax", cv=4)
    assert r.plan.mode == "cv" and len(r.cv_scores) == 4 and len(r.y_true) == len(y)
    assert abs(np.mean(r.cv_scores) - r.accuracy) < 0.05  # same predictions, pooled vs per-fold


def test_search_picks_from_grid(data):
    X, y, split, _ = data
    r = classify.fit_evaluate(X, y, split, CLASSES, "knn", search=True, n_jobs=2)
    assert r.best_params["n_neighbors"] in classify.CLASSIFIERS["knn"].grid["n_neighbors"]
    assert r.model.named_steps["clf"].n_neighbors == r.best_params["n_neighbors"]


def test_class_weight_changes_fit_on_imbalanced_data():
    X, y, split, _ = blobs((150, 20, 20), dim=16, sep=0.8, seed=1)
    for name in ("softmax", "linearsvc", "mlp"):
        plain = classify.fit_evaluate(X, y, split, CLASSES, name)
        bal = classify.fit_evaluate(X, y, split, CLASSES, name, class_weight="balanced")
        assert not np.allclose(plain.model.predict_proba(X), bal.model.predict_proba(X)), name
        # balancing moves predictions towards the minority classes
        assert (bal.model.predict(X) != 0).sum() > (plain.model.predict(X) != 0).sum(), name
    knn = classify.fit_evaluate(X, y, split, CLASSES, "knn", class_weight="balanced")
    assert knn.notes and "ignored" in knn.notes[0]


def test_pca_too_large_is_a_clear_error(data):
    X, y, split, _ = data
    with pytest.raises(ClassifierError, match="pca:64 needs at most"):
        classify.fit_evaluate(X, y, split, CLASSES, "softmax", preprocess="pca:64")


def test_flattened_vgg_width_defaults_fit():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 100)
    X = (np.maximum(rng.normal(size=(200, 25_088)), 0) * (rng.random(25_088) < 0.3)).astype(np.float32)
    X[:, :300] += y[:, None] * 0.5
    split = np.array((["train"] * 80 + ["val"] * 10 + ["test"] * 10) * 2, dtype=object)
    for name in ("softmax", "linearsvc"):
        r = classify.fit_evaluate(X, y, split, ["a", "b"], name)
        assert r.accuracy >= 0.9, (name, r.accuracy)
        # the defaults converge on 25k dims: the solver stopped before its iteration cap
        n_iter = np.max(r.model.named_steps["clf"].n_iter_)
        assert n_iter < r.model.named_steps["clf"].max_iter, (name, n_iter)


# ---------------------------------------------------------------- linearsvc: its own decision, calibrated


@pytest.mark.parametrize("n_classes", [2, 3])
def test_linearsvc_predicts_what_plain_linearsvc_predicts(n_classes):
    from sklearn.svm import LinearSVC

    X, y, _, _ = blobs((60,) * n_classes, dim=16, sep=0.7, seed=2)  # overlapping: the SVM makes mistakes
    clf = classify.LinearSVCCalibrated(C=0.01, random_state=0).fit(X, y)
    plain = LinearSVC(C=0.01, random_state=0).fit(X, y)
    assert np.array_equal(clf.predict(X), plain.predict(X)) and 0.5 < np.mean(clf.predict(X) == y) < 1
    assert np.allclose(clf.decision_function(X), plain.decision_function(X))
    proba = clf.predict_proba(X)
    assert proba.shape == (len(y), n_classes) and np.allclose(proba.sum(1), 1)
    # one temperature keeps the order of the classes: the most probable class is always the prediction
    assert np.array_equal(clf.classes_[proba.argmax(1)], clf.predict(X))
    assert 0 < clf.temperature_ < 1e4 and clf.n_iter_ == clf.svm_.n_iter_


def test_linearsvc_probabilities_are_calibrated_not_uniform():
    X, y, split, _ = blobs((80, 80, 80, 80), dim=32, sep=1.2, seed=3)
    r = classify.fit_evaluate(X, y, split, ["a", "b", "c", "d"], "linearsvc")
    confidence = r.proba.max(1)
    # far from uniform (0.25), and about as confident as it is right (out-of-fold temperature)
    assert confidence.mean() > 0.6 and abs(confidence.mean() - r.model.score(X[split != "train"], y[split != "train"])) < 0.15
    assert np.array_equal(r.y_pred, r.model.predict(X[r.eval_rows]))


def test_fit_temperature_recovers_the_temperature_of_the_labels():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(4000, 5)) * 2
    p = np.exp(scores / 0.5)
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(5, p=row) for row in p])
    assert classify.fit_temperature(scores, y) == pytest.approx(0.5, rel=0.1)
    # weights count: only the rows drawn at a hotter temperature matter when the others weigh nothing
    hot = np.exp(scores / 2.0)
    hot /= hot.sum(1, keepdims=True)
    y_hot = np.array([rng.choice(5, p=row) for row in hot])
    both = np.vstack([scores, scores])
    w = np.r_[np.zeros(len(y)), np.ones(len(y))]
    assert classify.fit_temperature(both, np.r_[y, y_hot], w) == pytest.approx(2.0, rel=0.15)


def test_linearsvc_one_row_class_is_refused():
    X, y, _, _ = blobs((10, 10, 1), dim=4)
    with pytest.raises(ValueError, match="at least 2 samples per class"):
        classify.LinearSVCCalibrated().fit(X, y)


@pytest.mark.slow  # skops' import walks scikit-learn
def test_linearsvc_of_an_earlier_featx_loads_and_predicts_as_it_did(tmp_path):
    """A model.skops fitted when linearsvc was sigmoid-calibrated (``calibrated_``) still loads and keeps its answers."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.svm import LinearSVC

    from featx.learn.modelfile import read_model, save_model

    X, y, _, _ = blobs((40, 40, 40), dim=8, sep=1.0, seed=4)
    old = classify.LinearSVCCalibrated.__new__(classify.LinearSVCCalibrated)
    old.__dict__.update(C=0.01, class_weight=None, max_iter=5000, cv=3, random_state=0, n_features_in_=8)
    old.calibrated_ = CalibratedClassifierCV(LinearSVC(C=0.01, random_state=0), method="sigmoid",
                                             cv=StratifiedKFold(3, shuffle=True, random_state=0), ensemble=False).fit(X, y)
    old.classes_, old.svm_ = old.calibrated_.classes_, old.calibrated_.calibrated_classifiers_[0].estimator
    loaded = read_model(save_model(old, tmp_path / "model.skops"))
    expected = old.calibrated_.predict_proba(X)
    assert np.allclose(loaded.predict_proba(X), expected)
    assert np.array_equal(loaded.predict(X), expected.argmax(1))


def test_align_blocks_and_concat():
    ids = np.array(["x", "y", "z"], dtype=object)
    labels, splits = np.array([0, 1, 0]), np.array(["train", "test", "val"], dtype=object)
    perm = np.array([2, 0, 1])
    orders = classify.align_blocks([ids, ids[perm]], [labels, labels[perm]], [splits, splits[perm]], ["a", "b"])
    assert list(ids[perm][orders[1]]) == list(ids)
    F1 = np.arange(6, dtype=np.float32).reshape(3, 2)
    X = classify.concat_features([F1, F1[perm] * 10], orders)
    assert np.allclose(X[:, 2:], F1 * 10)
    with pytest.raises(ClassifierError, match="different images"):
        classify.align_blocks([ids, np.array(["x", "y", "w"], dtype=object)], [labels, labels],
                              [splits, splits], ["a", "b"])
    with pytest.raises(ClassifierError, match="different labels"):
        classify.align_blocks([ids, ids], [labels, 1 - labels], [splits, splits], ["a", "b"])


# ---------------------------------------------------------------- real features


@pytest.fixture(scope="module")
def monet(monet_lite0_store):
    return load_features(monet_lite0_store)


@pytest.mark.slow
@pytest.mark.parametrize("name", REAL)
def test_real_monet_every_classifier_beats_075(monet, name):
    r = classify.fit_evaluate(monet.features, monet.labels, monet.split, monet.classes, name)
    assert r.plan.mode == "test" and len(r.y_true) == 60
    assert r.accuracy > 0.75, (name, r.accuracy)


@pytest.mark.slow
def test_real_monet_linearsvc_is_plain_linearsvc_with_probabilities(monet):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    r = classify.fit_evaluate(monet.features, monet.labels, monet.split, monet.classes, "linearsvc")
    train = monet.split == "train"
    C = r.model.named_steps["clf"].C
    plain = make_pipeline(StandardScaler(), LinearSVC(C=C, random_state=0)).fit(monet.features[train], monet.labels[train])
    assert np.array_equal(r.y_pred, plain.predict(monet.features[r.eval_rows]))
    # probabilities that mean something: confident where right, the predicted class on top
    right = r.y_pred == r.y_true
    assert r.proba.max(1)[right].mean() > r.proba.max(1)[~right].mean() and r.proba.max(1).mean() > 0.7


@pytest.mark.slow
def test_real_monet_poisoned_test_labels_leave_model_unchanged(monet):
    y = monet.labels.copy()
    test = monet.split == "test"
    y[test] = 1 - y[test]
    a = classify.fit_evaluate(monet.features, monet.labels, monet.split, monet.classes, "softmax")
    b = classify.fit_evaluate(monet.features, y, monet.split, monet.classes, "softmax")
    assert np.array_equal(a.model.named_steps["clf"].coef_, b.model.named_steps["clf"].coef_)
    assert np.array_equal(a.y_pred, b.y_pred)
    assert b.accuracy == pytest.approx(1 - a.accuracy)


@pytest.mark.slow
def test_real_styles_class_weight_changes_fit(styles_lite0_store):
    fs = load_features(styles_lite0_store)
    counts = np.bincount(fs.labels[fs.split == "train"])
    assert counts.max() > 2 * counts.min()  # the store really is imbalanced
    plain = classify.fit_evaluate(fs.features, fs.labels, fs.split, fs.classes, "softmax")
    bal = classify.fit_evaluate(fs.features, fs.labels, fs.split, fs.classes, "softmax", class_weight="balanced")
    assert not np.allclose(plain.model.named_steps["clf"].coef_, bal.model.named_steps["clf"].coef_)
    rare = int(np.argmin(counts))
    X = fs.features
    assert (bal.model.predict(X) == rare).sum() > (plain.model.predict(X) == rare).sum()
