"""Classical classifiers on cached features, as scikit-learn Pipelines (numpy/sklearn only).

Everything here takes arrays: ``X`` (N x D float), ``y`` (int labels indexing
``classes``) and ``split`` (``"train"``/``"val"``/``"test"`` per row). It never
imports torch, h5py or the store.

Each classifier is one :class:`ClassifierSpec` in :data:`CLASSIFIERS`: the function that builds its
estimator, registered with :func:`register_classifier` (in the style of timm's ``register_model``)
together with its default preprocessing, ``--search`` grid and how it takes ``--class-weight``.
Adding a classifier is adding such a function here; ``--clf``, ``all``, ``--search`` and
:func:`make_classifier` read the registry. The defaults suit a few hundred to a few thousand images
embedded in 1,280-4,096 dims and still work on 25,088-d flattened VGG16 maps (each factory's
docstring says why).

``pca:K`` (whitened PCA to K dims) can be prepended or used instead, e.g.
``--preprocess pca:256`` for flattened maps with few images; steps chain with ``+``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from scipy import special
from scipy.optimize import minimize_scalar
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.decomposition import PCA
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Normalizer, StandardScaler
from sklearn.svm import LinearSVC
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ..errors import ClassifierError
from ..stats import n_folds

# ---------------------------------------------------------------- the registry


@dataclass(frozen=True)
class ClassifierSpec:
    """Everything featx knows about one classifier name.

    ``factory(class_weight=..., random_state=..., n_jobs=...)`` builds the unfitted estimator (it takes
    the keywords it uses and ignores the rest with ``**_``). ``preprocess`` is the default
    ``--preprocess``; ``grid`` the ``--search`` grid over the estimator's parameters; ``class_weight``
    how ``--class-weight balanced`` reaches it: ``"param"`` (the factory's ``class_weight``),
    ``"sample_weight"`` (passed to ``fit``) or None (ignored, with a note); a ``baseline`` is not part of ``all``.
    """

    name: str
    factory: Callable[..., BaseEstimator]
    preprocess: str = "standardize"
    grid: Mapping[str, Sequence] = field(default_factory=dict)
    class_weight: str | None = None
    baseline: bool = False

    @property
    def param_grid(self) -> dict[str, list]:
        """:attr:`grid` keyed by pipeline parameter names (``clf__C``), as ``GridSearchCV`` takes it."""
        return {f"clf__{k}": list(v) for k, v in self.grid.items()}

    def estimator(self, *, class_weight: str | None = None, random_state: int | None = 0,
                  n_jobs: int | None = None) -> BaseEstimator:
        """The unfitted estimator; ``class_weight`` reaches it only when it is a parameter of it."""
        return self.factory(class_weight=class_weight if self.class_weight == "param" else None,
                            random_state=random_state, n_jobs=n_jobs)


CLASSIFIERS: dict[str, ClassifierSpec] = {}
"""The registry: name -> :class:`ClassifierSpec`, in registration order (the order ``all`` fits them in)."""


def register_classifier(name: str, *, preprocess: str = "standardize", grid: Mapping[str, Sequence] | None = None,
                        class_weight: str | None = None, baseline: bool = False):
    """Decorator: register an estimator factory as classifier ``name`` (the fields of :class:`ClassifierSpec`)."""
    if class_weight not in (None, "param", "sample_weight"):
        raise ValueError(f"class_weight={class_weight!r}: use 'param', 'sample_weight' or None")

    def register(factory: Callable[..., BaseEstimator]) -> Callable[..., Any]:
        if name in CLASSIFIERS:
            raise ValueError(f"classifier {name!r} is already registered")
        CLASSIFIERS[name] = ClassifierSpec(name, factory, preprocess, dict(grid or {}), class_weight, baseline)
        return factory

    return register


def get_classifier(name: str) -> ClassifierSpec:
    """The registered classifier ``name``, or a :class:`ClassifierError` listing the names."""
    try:
        return CLASSIFIERS[name]
    except KeyError:
        raise ClassifierError(f"unknown classifier {name!r}; choose from {', '.join(CLASSIFIERS)} or all") from None


def resolve_names(spec: str | Sequence[str]) -> list[str]:
    """``"all"`` (every classifier but the baselines), ``"softmax,knn"`` or a list of names -> checked names."""
    parts = [spec] if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for part in parts:
        for name in (p.strip().lower() for p in part.split(",")):
            if name == "all":
                names += [n for n, c in CLASSIFIERS.items() if not c.baseline]
            elif name:
                names.append(get_classifier(name).name)
    if not names:
        raise ClassifierError(f"no classifier given; choose from {', '.join(CLASSIFIERS)} or all")
    return list(dict.fromkeys(names))


def check_class_weight(class_weight: str | None) -> str | None:
    """``None``/``"none"`` -> None, ``"balanced"`` stays; anything else is a :class:`ClassifierError`."""
    if class_weight not in (None, "none", "balanced"):
        raise ClassifierError(f"unknown class weight {class_weight!r}; use none or balanced")
    return None if class_weight == "none" else class_weight


# ---------------------------------------------------------------- featx's estimators


class LinearSVCCalibrated(ClassifierMixin, BaseEstimator):
    """LinearSVC that predicts with its own decision and gives temperature-calibrated probabilities.

    ``predict`` is the class of the highest one-vs-rest decision score (the sign for two classes), as
    plain ``LinearSVC`` predicts; ``decision_function`` gives those scores. ``predict_proba`` is
    ``softmax(scores / temperature_)``: one temperature, fitted by minimising the log loss of
    stratified ``cv``-fold out-of-fold scores (fewer folds when a class has fewer rows). One positive
    scale keeps the order of the classes, so the most probable class is always the predicted one.
    The final SVM is fitted on every row and kept as ``svm_``. ``class_weight`` weights both the SVM
    fits and the log loss.
    """

    def __init__(self, C=0.001, class_weight=None, max_iter=5000, cv=3, random_state=None):
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.cv = cv
        self.random_state = random_state

    def fit(self, X, y):
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"LinearSVCCalibrated needs at least 2 classes; the data hold one class ({self.classes_[0]})")
        weights = compute_sample_weight(self.class_weight, y) if self.class_weight is not None else None
        folds = n_folds(y, self.cv)
        if folds < 2:
            raise ValueError("calibration needs at least 2 samples per class; a class has 1 sample")
        oof = np.zeros((len(y), len(self.classes_)))
        cv = StratifiedKFold(folds, shuffle=True, random_state=self.random_state)
        for tr, te in cv.split(X, y):
            # each training fold holds every class: at most as many folds as the rarest class has rows
            svm = self._svm().fit(X[tr], y[tr], sample_weight=None if weights is None else weights[tr])
            oof[te] = two_columns(svm.decision_function(X[te]))
        self.temperature_ = fit_temperature(oof, y_idx, weights)
        self.svm_ = self._svm().fit(X, y, sample_weight=weights)
        self.n_iter_ = self.svm_.n_iter_
        return self

    def _svm(self) -> LinearSVC:
        return LinearSVC(C=self.C, dual="auto", max_iter=self.max_iter, random_state=self.random_state)

    def _legacy(self) -> bool:
        """A model fitted by an earlier featx (``calibrated_``: sigmoid one-vs-rest calibration), kept as it was."""
        return not hasattr(self, "temperature_") and hasattr(self, "calibrated_")

    def decision_function(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return self.svm_.decision_function(X)

    def predict_proba(self, X):
        check_is_fitted(self)
        if self._legacy():
            return self.calibrated_.predict_proba(validate_data(self, X, reset=False))
        return special.softmax(two_columns(self.decision_function(X)) / self.temperature_, axis=1)

    def predict(self, X):
        check_is_fitted(self)
        if self._legacy():
            return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
        return self.classes_[np.argmax(two_columns(self.decision_function(X)), axis=1)]


def two_columns(scores: np.ndarray) -> np.ndarray:
    """Decision scores as one column per class: a binary SVM's single score ``d`` becomes ``(-d/2, d/2)``."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.column_stack([-scores / 2, scores / 2]) if scores.ndim == 1 else scores


def fit_temperature(scores: np.ndarray, y_idx: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The temperature ``T`` in [1e-4, 1e4] minimising the (weighted) log loss of ``softmax(scores / T)``.

    The loss is convex in ``1/T``; a bounded scalar search over ``log T`` finds it in a few dozen steps.
    """
    rows = np.arange(len(y_idx))
    w = np.ones(len(y_idx)) if weights is None else np.asarray(weights, dtype=np.float64)

    def loss(log_t: float) -> float:
        return float(-np.sum(w * special.log_softmax(scores / np.exp(log_t), axis=1)[rows, y_idx]) / w.sum())

    res = minimize_scalar(loss, bounds=(np.log(1e-4), np.log(1e4)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))


class BlockL2Normalizer(TransformerMixin, BaseEstimator):
    """L2-normalise consecutive column blocks of the given widths (concatenated stores).

    Stateless: each store's features keep equal weight whatever their scale or width.
    ``widths=None`` is one block of every column (plain row-wise L2 normalisation).
    """

    def __init__(self, widths=None):
        self.widths = widths

    def _widths(self, n_features: int) -> tuple[int, ...]:
        return (n_features,) if self.widths is None else tuple(self.widths)

    def fit(self, X, y=None):
        X = validate_data(self, X)
        if sum(self._widths(X.shape[1])) != X.shape[1]:
            raise ClassifierError(f"block widths {list(self.widths)} do not add up to {X.shape[1]} features")
        return self

    def transform(self, X):
        check_is_fitted(self, "n_features_in_")
        X = validate_data(self, X, reset=False)
        return l2_blocks(X, self._widths(X.shape[1]))


def l2_blocks(X: np.ndarray, widths: Sequence[int]) -> np.ndarray:
    """Copy of ``X`` with each block of columns scaled to unit L2 norm per row."""
    out = np.array(X, dtype=np.float64 if X.dtype == np.float64 else np.float32, copy=True)
    start = 0
    for w in widths:
        block = out[:, start:start + w]
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        block /= np.where(norms > 0, norms, 1.0)
        start += w
    return out


def preprocess_steps(spec: str, *, random_state: int | None = 0) -> list[tuple[str, Any]]:
    """``standardize`` | ``l2`` | ``pca:K`` | ``none``, chained with ``+`` -> pipeline steps."""
    steps: list[tuple[str, Any]] = []
    for token in (t.strip().lower() for t in spec.split("+")):
        if token in ("", "none"):
            continue
        if token == "standardize":
            steps.append(("standardize", StandardScaler()))
        elif token == "l2":
            steps.append(("l2", Normalizer(norm="l2")))
        elif token.startswith("pca:") and token[4:].isdigit() and int(token[4:]) > 0:
            steps.append(("pca", PCA(n_components=int(token[4:]), whiten=True, random_state=random_state)))
        else:
            raise ClassifierError(f"unknown preprocessing {token!r}; use standardize, l2, pca:K or none "
                                  "(chain with +, e.g. l2+pca:256)")
    return steps


# ---------------------------------------------------------------- the classifiers


@register_classifier("softmax", grid={"C": [0.01, 0.1, 1.0, 10.0]}, class_weight="param")
def softmax(*, class_weight=None, random_state=None, **_):
    """Multinomial L-BFGS LogisticRegression, ``C=0.1``, ``max_iter=3000``.

    With N << D the classes are linearly separable, so weak regularisation only inflates the weights;
    ``C=0.1`` on standardized features is the middle of the usual linear-probe range and L-BFGS converges
    within a few hundred iterations even at 25k dims (3,000 leaves headroom, no warning spam).
    """

    return LogisticRegression(C=0.1, max_iter=3000, class_weight=class_weight, random_state=random_state)


@register_classifier("linearsvc", grid={"C": [0.0001, 0.001, 0.01, 0.1]}, class_weight="param")
def linearsvc(*, class_weight=None, random_state=None, **_):
    """LinearSVC(``C=0.001``, ``dual="auto"``) predicting with its own decision, with probabilities from one
    temperature fitted on 3-fold out-of-fold scores (:class:`LinearSVCCalibrated`).

    On standardized 1,280-d features of 500-2,000 images ``C=0.001`` scored as well as or better than 0.01-1
    in 5-fold CV (``benchmarks/results/fit.md``), and a small C makes the dual solver converge fast."""

    return LinearSVCCalibrated(C=0.001, class_weight=class_weight, random_state=random_state)


@register_classifier("mlp", grid={"alpha": [1e-4, 1e-3, 1e-2], "hidden_layer_sizes": [(256,), (512,), (256, 128)]},
                     class_weight="sample_weight")
def mlp(*, random_state=None, **_):
    """One hidden layer of 256 ReLU units, Adam, ``alpha=1e-3``, every training row used, stopping when the
    training loss stops falling (``max_iter=500`` is headroom: about 50-100 epochs are used).

    Early stopping on 10% of a few hundred rows stopped on a noisy score and cost 4 points against plain
    ``MLPClassifier`` on the digits and Monet-Sisley (``benchmarks/results/fit.md``)."""

    return MLPClassifier(hidden_layer_sizes=(256,), alpha=1e-3, max_iter=500, random_state=random_state)


@register_classifier("knn", preprocess="l2", grid={"n_neighbors": [1, 5, 10, 20], "weights": ["uniform", "distance"]})
def knn(*, n_jobs=None, **_):
    """10 distance-weighted neighbours of L2-normalized rows (cosine neighbours: standardizing would give
    each of thousands of mostly-noise dims the same weight)."""

    return KNeighborsClassifier(n_neighbors=10, weights="distance", n_jobs=n_jobs)


@register_classifier("majority", preprocess="none", baseline=True)
def majority(**_):
    """The class prior: a chance-level baseline (not part of ``all``)."""

    return DummyClassifier(strategy="prior")


# ---------------------------------------------------------------- pipelines


def make_classifier(name: str, *, preprocess: str | None = None, class_weight: str | None = None,
                    random_state: int | None = 0, n_jobs: int | None = None,
                    block_widths: Sequence[int] | None = None, **params) -> Pipeline:
    """Unfitted Pipeline ``[blocks] -> preprocessing -> clf`` for classifier ``name``.

    ``preprocess=None`` uses the classifier's default; ``block_widths`` prepends a
    :class:`BlockL2Normalizer` (concatenated stores); ``params`` are ``clf__*`` overrides.
    """
    class_weight = check_class_weight(class_weight)
    spec = get_classifier(name)
    clf = spec.estimator(class_weight=class_weight, random_state=random_state, n_jobs=n_jobs)
    steps = [("blocks", BlockL2Normalizer(tuple(block_widths)))] if block_widths else []
    steps += preprocess_steps(preprocess or spec.preprocess, random_state=random_state)
    pipe = Pipeline(steps + [("clf", clf)])
    if params:
        pipe.set_params(**params)
    return pipe


# ---------------------------------------------------------------- splits


@dataclass(frozen=True)
class SplitPlan:
    """Which rows fit the final model and which rows evaluate it.

    ``mode`` is ``"test"`` (held-out test rows, predicted once), ``"val"`` (no test
    rows: the val rows are the held-out set) or ``"cv"`` (no held-out rows:
    out-of-fold predictions over ``fit``). ``val`` holds model-selection rows
    (reported, never fitted on) and ``folds`` > 0 adds a stratified k-fold estimate on ``fit``.
    """

    mode: str
    fit: np.ndarray
    val: np.ndarray
    eval: np.ndarray
    folds: int


def check_folds(cv: int | None) -> int | None:
    """``--cv``: None (the stored split decides) or at least 2 folds."""
    if cv is not None and cv < 2:
        raise ClassifierError(f"--cv {cv}: need at least 2 folds")
    return cv


def plan_splits(split: Sequence[str], *, cv: int | None = None) -> SplitPlan:
    """Honour the stored split; ``cv=K`` fits on train+val and adds a K-fold estimate.

    Without test rows the val rows (if any) are the held-out set; without either,
    evaluation is stratified ``cv`` (default 5) fold cross-validation over every row.
    Test rows are never in ``fit``.
    """
    split = np.asarray(split, dtype=object)
    check_folds(cv)
    train, val, test = (np.flatnonzero(split == s) for s in ("train", "val", "test"))
    empty = np.array([], dtype=np.int64)
    if len(test):
        if cv:
            return SplitPlan("test", np.sort(np.concatenate([train, val])), empty, test, cv)
        return SplitPlan("test", train, val, test, 0)
    if len(val) and not cv:
        return SplitPlan("val", train, empty, val, 0)
    rows = np.sort(np.concatenate([train, val]))
    return SplitPlan("cv", rows, empty, rows, cv or 5)


def check_labels(y: np.ndarray, classes: Sequence[str], fit_rows: np.ndarray) -> None:
    """Refuse one-class data and classes with fewer than 2 training rows (naming the class).

    Two rows is the least that linearsvc's calibration and stratified folds accept.
    """
    present = np.unique(y)
    if len(classes) < 2 or len(present) < 2:
        only = classes[int(present[0])] if len(present) else "none"
        raise ClassifierError(f"the features hold a single class ({only!r}); a classifier needs at least two")
    counts = np.bincount(y[fit_rows], minlength=len(classes))
    missing = [classes[i] for i in np.flatnonzero(counts == 0)]
    if missing:
        raise ClassifierError(f"class {missing[0]!r} has no training rows" +
                              (f" (nor {', '.join(map(repr, missing[1:]))})" if len(missing) > 1 else "") +
                              "; re-extract with a split that puts every class in train")
    if counts.min() < 2:
        raise ClassifierError(f"class {classes[int(np.argmin(counts))]!r} has only 1 training row; "
                              "need at least 2 per class")


# ---------------------------------------------------------------- fitting


@dataclass
class FitResult:
    """A fitted pipeline plus its one held-out evaluation."""

    name: str
    model: Pipeline
    plan: SplitPlan
    eval_rows: np.ndarray  # row indices evaluated (test, val, or every fit row out-of-fold)
    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray  # (len(eval_rows), n_classes)
    fit_seconds: float
    predict_seconds: float
    val_accuracy: float | None = None
    cv_scores: list[float] = field(default_factory=list)
    best_params: dict | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.y_true == self.y_pred))


def _fit_one(est: Pipeline, X: np.ndarray, y: np.ndarray, *, spec: ClassifierSpec, class_weight: str | None,
             search: bool, scoring: str, n_jobs: int | None, random_state: int | None) -> tuple[Pipeline, dict | None]:
    fit_params = {}
    if class_weight == "balanced" and spec.class_weight == "sample_weight":
        fit_params["clf__sample_weight"] = compute_sample_weight("balanced", y)
    if not (search and spec.grid):
        return est.fit(X, y, **fit_params), None
    k = n_folds(y, 5)
    if k < 2:
        raise ClassifierError("--search needs at least 2 training rows per class")
    gs = GridSearchCV(est, spec.param_grid, cv=StratifiedKFold(k, shuffle=True, random_state=random_state),
                      scoring=scoring, n_jobs=n_jobs, refit=True, error_score="raise")
    gs.fit(X, y, **fit_params)
    return gs.best_estimator_, {k.removeprefix("clf__"): v for k, v in gs.best_params_.items()}


def _check_pca(est: Pipeline, n_features: int, n_rows: int) -> None:
    if "pca" in est.named_steps:
        k = est.named_steps["pca"].n_components
        if k > min(n_features, n_rows):
            raise ClassifierError(f"pca:{k} needs at most min(features={n_features}, training rows={n_rows}) "
                                  "components; choose a smaller K")


def fit_evaluate(X: np.ndarray, y: np.ndarray, split: Sequence[str], classes: Sequence[str], name: str, *,
                 preprocess: str | None = None, class_weight: str | None = None, search: bool = False,
                 cv: int | None = None, n_jobs: int | None = None, random_state: int | None = 0,
                 block_widths: Sequence[int] | None = None, **params) -> FitResult:
    """Fit classifier ``name`` on the plan's fit rows; predict the held-out rows once.

    ``search`` grid-searches the classifier's grid with stratified k-fold CV inside the
    fit rows (in parallel with ``n_jobs``). Test labels are read only after the
    test rows were predicted, and test rows never reach ``fit``.
    """
    X = np.asarray(X)
    y = np.asarray(y, dtype=np.int64)
    plan = plan_splits(split, cv=cv)
    check_labels(y, classes, plan.fit)
    proto = make_classifier(name, preprocess=preprocess, class_weight=class_weight, random_state=random_state,
                            n_jobs=n_jobs, block_widths=block_widths, **params)
    folds = plan.folds or 1
    _check_pca(proto, X.shape[1], int(len(plan.fit) * (folds - 1) / folds) if folds > 1 else len(plan.fit))
    notes = []
    spec = get_classifier(name)
    if class_weight == "balanced" and spec.class_weight is None:
        notes.append(f"{name} has no class weights; --class-weight balanced ignored")
    scoring = "balanced_accuracy" if class_weight == "balanced" else "accuracy"
    kw = dict(spec=spec, class_weight=class_weight, search=search, scoring=scoring, n_jobs=n_jobs,
              random_state=random_state)
    n_classes = len(classes)

    def proba_of(model, rows):
        p = model.predict_proba(X[rows])
        full = np.zeros((len(rows), n_classes))
        full[:, model.classes_] = p
        return full

    cv_scores: list[float] = []
    oof = np.zeros((len(plan.fit), n_classes)) if plan.mode == "cv" else None
    predict_seconds = 0.0
    if plan.folds:
        skf = StratifiedKFold(plan.folds, shuffle=True, random_state=random_state)
        for tr, te in skf.split(plan.fit, y[plan.fit]):
            m, _ = _fit_one(clone(proto), X[plan.fit[tr]], y[plan.fit[tr]], **kw)
            t0 = time.perf_counter()
            p = proba_of(m, plan.fit[te])
            predict_seconds += time.perf_counter() - t0
            cv_scores.append(float(np.mean(p.argmax(1) == y[plan.fit[te]])))
            if oof is not None:
                oof[te] = p

    t0 = time.perf_counter()
    model, best = _fit_one(clone(proto), X[plan.fit], y[plan.fit], **kw)
    fit_seconds = time.perf_counter() - t0
    val_acc = None
    if len(plan.val):
        val_acc = float(np.mean(model.predict(X[plan.val]) == y[plan.val]))
    if oof is not None:
        proba = oof
    else:
        t0 = time.perf_counter()
        proba = proba_of(model, plan.eval)  # the one look at the held-out rows
        predict_seconds = time.perf_counter() - t0
    y_pred = proba.argmax(axis=1)
    return FitResult(name=name, model=model, plan=plan, eval_rows=plan.eval, y_true=y[plan.eval], y_pred=y_pred,
                     proba=proba, fit_seconds=fit_seconds, predict_seconds=predict_seconds, val_accuracy=val_acc,
                     cv_scores=cv_scores, best_params=best, notes=notes)


# ---------------------------------------------------------------- concatenation


def align_blocks(ids: Sequence[np.ndarray], labels: Sequence[np.ndarray], splits: Sequence[np.ndarray],
                 names: Sequence[str]) -> list[np.ndarray]:
    """Row order of each store that lines its ids up with the first store's ids.

    Raises :class:`ClassifierError` when the stores hold different ids, or give an
    id different labels or splits (they are not the same images).
    """
    ref = {str(i): k for k, i in enumerate(ids[0])}
    orders = [np.arange(len(ids[0]))]
    for j in range(1, len(ids)):
        here = [str(i) for i in ids[j]]
        if set(here) != set(ref):
            extra = sorted(set(here) ^ set(ref))
            raise ClassifierError(f"{names[j]} and {names[0]} hold different images ({len(extra)} ids differ, "
                                  f"e.g. {extra[0]!r}); --concat needs stores of the same images")
        pos = {i: k for k, i in enumerate(here)}
        order = np.array([pos[str(i)] for i in ids[0]])
        for what, arr in (("labels", labels), ("splits", splits)):
            if np.any(np.asarray(arr[j])[order] != np.asarray(arr[0])):
                raise ClassifierError(f"{names[j]} and {names[0]} give the same images different {what}; "
                                      "--concat needs stores of the same labelled data")
        orders.append(order)
    return orders


def concat_features(features: Sequence[np.ndarray], orders: Sequence[np.ndarray]) -> np.ndarray:
    """Raw blocks side by side in aligned row order (the pipeline L2-normalises each)."""
    return np.hstack([np.asarray(f)[o] for f, o in zip(features, orders)]).astype(np.float32, copy=False)
