"""``featx fit`` end to end: stores -> feature sources -> fitted classifiers -> run folders.

A run folder (``runs/<timestamp>/`` by default) holds, per fitted classifier::

    metrics.json          accuracy +- binomial SE, F1s, top-k, per-class P/R/F1, timings, store fingerprint
    report.txt            sklearn's classification_report on the held-out rows
    confusion_matrix.png  row-normalised, with class names
    misclassified.png     wrongly classified held-out images, true and predicted labels
    predictions.csv       each held-out image's id, split, label, prediction and class probabilities
    model.skops           the fitted Pipeline (skops: loads without running code, see learn/modelfile.py)
    model.json            sidecar: classes, fingerprint(s), sklearn version (read by ``predict``)

Several stores or classifiers give one sub-folder each plus ``leaderboard.csv`` and
``leaderboard.md``. Takes :class:`featx.store.reader.FeatureSet` objects; never imports torch.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from .. import __version__
from ..backbones.weights_ref import WeightsRef
from ..errors import ClassifierError, OptionError
from ..files import write_json, write_text
from ..report import plots
from ..report.leaderboard import format_table, leaderboard_rows, write_leaderboard
from ..report.metrics import compute_metrics, row_normalise
from ..report.predictions import write_predictions
from ..report.runs import new_run_dir
from ..stats import majority_accuracy
from . import classify
from .modelfile import MODEL_FILE, save_model
from .parallel import joblib_backend
from .predict import MODEL_FORMAT

if TYPE_CHECKING:  # pragma: no cover
    from ..data.tars import TarMember
    from ..store.reader import FeatureSet

# ---------------------------------------------------------------- sources


@dataclass
class Source:
    """One feature matrix to fit: a store, or several stores concatenated by id."""

    label: str
    X: np.ndarray
    y: np.ndarray
    split: np.ndarray
    classes: list[str]
    stores: list["FeatureSet"]
    image_source: Callable[[int], "Path | TarMember | None"]  # the image of a row, for misclassified.png
    widths: list[int]

    @property
    def fingerprints(self) -> list[dict]:
        return [fs.fingerprint for fs in self.stores]


def store_label(fp: dict) -> str:
    """Leaderboard row label from a fingerprint: backbone + weights (+ layer/pool when not default)."""
    short = WeightsRef.from_identity(str(fp.get("weights", "?"))).short
    return f"{fp.get('backbone', '?')} [{short}]"


def source_from_store(fs: "FeatureSet") -> Source:
    return Source(store_label(fs.fingerprint), fs.features, fs.labels, fs.split, list(fs.classes), [fs],
                  fs.image_source, [fs.features.shape[1]])


def source_from_concat(stores: Sequence["FeatureSet"]) -> Source:
    """Stores of the same images joined by id; the model L2-normalises each block."""
    first = stores[0]
    for fs in stores[1:]:
        if list(fs.classes) != list(first.classes):
            raise ClassifierError(f"{fs.path} has classes {fs.classes}, {first.path} has {first.classes}; "
                                  "--concat needs stores of the same labelled data")
    orders = classify.align_blocks([fs.ids for fs in stores], [fs.labels for fs in stores],
                                   [fs.split for fs in stores], [str(fs.path) for fs in stores])
    X = classify.concat_features([fs.features for fs in stores], orders)
    return Source(" + ".join(store_label(fs.fingerprint) for fs in stores), X, first.labels, first.split,
                  list(first.classes), list(stores), first.image_source, [fs.features.shape[1] for fs in stores])


def check_same_dataset(stores: Sequence["FeatureSet"]) -> None:
    """Refuse a leaderboard over stores of different images, labels or splits."""
    first = stores[0]
    for fs in stores[1:]:
        why = None
        if str(fs.attrs.get("data_root")) != str(first.attrs.get("data_root")):
            why = f"data {fs.attrs.get('data_root')} vs {first.attrs.get('data_root')}"
        elif list(fs.classes) != list(first.classes):
            why = f"classes {fs.classes} vs {first.classes}"
        elif set(map(str, fs.ids)) != set(map(str, first.ids)):
            why = f"{len(fs.ids)} vs {len(first.ids)} images, not the same ids"
        else:
            split = dict(zip(map(str, first.ids), first.split))
            if any(split[str(i)] != s for i, s in zip(fs.ids, fs.split)):
                why = "the same images are split differently"
        if why:
            raise ClassifierError(f"{fs.path} and {first.path} are not features of the same dataset ({why}); "
                                  "fit them in separate calls")


# ---------------------------------------------------------------- --exclude


def read_exclude(path: str | Path) -> list[str]:
    """The ids listed in an ``--exclude`` CSV (its ``id`` column: ``featx audit``'s ``leaks.csv``,
    ``label_issues.csv``, ... or any CSV with one); an :class:`OptionError` names the file otherwise."""
    import csv

    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or []
            if "id" not in columns:
                have = ", ".join(columns[:8]) or "none: the file is empty"
                raise OptionError(f"--exclude {path}: no 'id' column (columns: {have}); pass a CSV with an id "
                                  "column, such as featx audit's leaks.csv")
            return [row["id"] for row in reader if row.get("id")]
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise OptionError(f"--exclude {path}: no such file; pass a CSV with an id column (featx audit writes "
                          "leaks.csv)") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise OptionError(f"--exclude {path}: not a readable CSV ({exc}); pass a CSV with an id column") from None


def exclude_rows(stores: Sequence["FeatureSet"], files: Sequence[Path]) -> tuple[list["FeatureSet"], dict | None]:
    """The stores without the rows whose ids the ``files`` list, and what metrics.json records of it.

    A CSV cell written as text with a leading ``'`` (:func:`featx.report.escape.csv_cell`) matches the id
    without it.
    """
    from dataclasses import replace

    if not files:
        return list(stores), None
    known = {str(i) for fs in stores for i in fs.ids}
    drop: set[str] = set()
    listed = []
    for f in files:
        ids = {i[1:] if i not in known and i.startswith("'") and i[1:] in known else i for i in read_exclude(f)}
        listed.append({"path": str(Path(f).resolve()), "n_ids": len(ids), "n_in_store": len(ids & known)})
        drop |= ids
    out = []
    for fs in stores:
        keep = np.array([str(i) not in drop for i in fs.ids], dtype=bool)
        out.append(replace(fs, features=fs.features[keep], labels=fs.labels[keep], ids=fs.ids[keep],
                           split=fs.split[keep], logits=None if fs.logits is None else fs.logits[keep]))
    removed = len(stores[0]) - len(out[0])
    return out, {"n_rows": removed, "n_ids": len(drop), "files": listed}


# ---------------------------------------------------------------- run folders

def _store_info(fs: "FeatureSet") -> dict:
    return {"path": str(Path(fs.path).resolve()), "fingerprint": fs.fingerprint, "n_rows": len(fs),
            "dim": int(fs.features.shape[1]), "n_failed": len(fs.failed), "data_root": str(fs.data_root)}


def build_metrics(src: Source, res: classify.FitResult, settings: dict) -> dict:
    """metrics.json content for one fitted classifier."""
    m = compute_metrics(res.y_true, res.y_pred, res.proba, src.classes)
    plan = res.plan
    infos = [_store_info(fs) for fs in src.stores]
    return {
        "classifier": res.name,
        "label": src.label,
        **settings,
        "best_params": res.best_params,
        "evaluation": {"mode": plan.mode, "n_eval": len(plan.eval), "n_fit": len(plan.fit),
                       "n_val": len(plan.val), "cv_folds": plan.folds},
        **m,
        "val_accuracy": res.val_accuracy,
        "cv_accuracy": ({"mean": float(np.mean(res.cv_scores)), "std": float(np.std(res.cv_scores)),
                         "folds": res.cv_scores} if res.cv_scores else None),
        "majority_accuracy": majority_accuracy(src.y[plan.fit], res.y_true),
        "fit_seconds": res.fit_seconds,
        "predict_seconds": res.predict_seconds,
        "store": infos[0]["path"],
        "fingerprint": infos[0]["fingerprint"],
        "stores": infos,
        "notes": res.notes,
    }


def model_sidecar(src: Source, res: classify.FitResult, settings: dict) -> dict:
    """model.json: what ``featx predict`` needs to embed new images and name classes."""
    import sklearn

    return {
        "format": MODEL_FORMAT,
        "classifier": res.name,
        "classes": list(src.classes),
        "fingerprint": src.fingerprints[0] if len(src.stores) == 1 else None,
        "fingerprints": src.fingerprints,
        "widths": list(src.widths),
        "stores": [str(Path(fs.path).resolve()) for fs in src.stores],
        "settings": settings,
        "best_params": res.best_params,
        "sklearn_version": sklearn.__version__,
        "featx_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_evaluation(run_dir: Path, metrics: dict, classes: Sequence[str], y_true: np.ndarray,
                     y_pred: np.ndarray, proba: np.ndarray, image_paths: Sequence, title: str, *,
                     write_metrics: bool = True) -> None:
    """report.txt, confusion_matrix.png, misclassified.png and, last, metrics.json of held-out predictions.

    ``metrics`` holds :func:`featx.report.metrics.compute_metrics` of them (plus the caller's fields);
    ``image_paths[i]`` is the image of row ``i`` (a file, a tar member or None, as
    :func:`~featx.report.plots.thumbnail` takes); ``title`` names the model (``label / classifier``).
    Every file is written atomically (:mod:`featx.files`); ``metrics.json`` marks a finished run (``analyze
    --judge-by fit:...`` and ``FitRun`` trust it), so it comes last, or from the caller
    (``write_metrics=False``) once its own files are written.
    """
    from sklearn.metrics import classification_report

    run_dir.mkdir(parents=True, exist_ok=True)
    labels = list(range(len(classes)))
    head = f"{title}: {metrics['evaluation']['mode']} accuracy {metrics['accuracy_text']} on {len(y_true)} images\n\n"
    if metrics.get("excluded"):
        ex = metrics["excluded"]
        head = head[:-1] + (f"{ex['n_rows']} rows excluded (ids listed in "
                            f"{', '.join(f['path'] for f in ex['files'])})\n\n")
    write_text(run_dir / "report.txt", head + classification_report(
        y_true, y_pred, labels=labels, target_names=list(classes), digits=3, zero_division=0))
    cm = np.asarray(metrics["confusion_matrix"])
    plots.heatmap(row_normalise(cm), classes, classes, run_dir / "confusion_matrix.png",
                  title=f"{title}\nrow-normalised, n={int(cm.sum())}",
                  fmt=".2f", xlabel="predicted", ylabel="true", vmin=0.0, vmax=1.0)
    wrong = np.flatnonzero(y_true != y_pred)
    plots.contact_sheet(
        [image_paths[i] for i in wrong],
        [f"true: {classes[y_true[i]]}\npred: {classes[y_pred[i]]} ({100 * proba[i, y_pred[i]]:.0f}%)" for i in wrong],
        run_dir / "misclassified.png", title=f"{len(wrong)} misclassified of {len(y_true)}")
    if write_metrics:
        write_json(run_dir / "metrics.json", metrics)


def write_run(run_dir: Path, src: Source, res: classify.FitResult, settings: dict) -> dict:
    """Write every file of one fitted classifier into ``run_dir``; returns the metrics."""
    metrics = build_metrics(src, res, settings)
    write_evaluation(run_dir, metrics, src.classes, res.y_true, res.y_pred, res.proba,
                     [src.image_source(int(r)) for r in res.eval_rows], f"{src.label} / {res.name}",
                     write_metrics=False)
    first = src.stores[0]
    rows = np.asarray(res.eval_rows, dtype=np.int64)
    write_predictions(run_dir, first.ids[rows], first.split[rows], src.classes, res.y_true, res.y_pred, res.proba)
    save_model(res.model, run_dir / MODEL_FILE)
    write_json(run_dir / "model.json", model_sidecar(src, res, settings))
    write_json(run_dir / "metrics.json", metrics)  # last: a run folder with metrics.json is a finished run
    return metrics


def summary_line(metrics: dict, run_dir: Path) -> str:
    """One terminal line per fitted classifier."""
    ev = metrics["evaluation"]
    extra = f", val {metrics['val_accuracy']:.3f}" if metrics.get("val_accuracy") is not None else ""
    return (f"{metrics['label']} / {metrics['classifier']}: {ev['mode']} acc {metrics['accuracy_text']} "
            f"(n={ev['n_eval']}{extra}), macro F1 {metrics['macro_f1']:.3f}, "
            f"top-{metrics['top_k']} {metrics['top_k_accuracy']:.3f}, fit {metrics['fit_seconds']:.1f}s -> {run_dir}")


# ---------------------------------------------------------------- the fit command


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:120]


@dataclass(frozen=True)
class FitOptions:
    """Every option of ``featx fit`` (the flags and :func:`featx.fit`'s keywords), checked once as it is built.

    ``clf``: names, a comma list or ``all``; ``out``/``name``/``runs_dir``/``overwrite``: the run folder
    (:func:`featx.report.runs.new_run_dir`); ``dask_scheduler``: run the parallel work (``search``) on that
    dask.distributed cluster. The rest is passed to :func:`featx.learn.classify.fit_evaluate`.
    """

    clf: str | Sequence[str] = "softmax"
    concat: bool = False
    out: str | Path | None = None
    name: str | None = None
    runs_dir: str | Path = "runs"
    preprocess: str | None = None
    class_weight: str | None = None
    search: bool = False
    cv: int | None = None
    n_jobs: int | None = None
    seed: int = 0
    overwrite: bool = False
    dask_scheduler: str | None = None
    exclude: str | Path | Sequence[str | Path] = ()
    explain: int = 0  # the api layer adds explain_mistakes.png of the N most confident mistakes (featx.look)

    # field -> its check, run once by __post_init__: the one-line ClassifierError that fit_evaluate gives for
    # the same bad value (a plain class attribute, not a field)
    _parameter_constraints = {
        "clf": classify.resolve_names,
        "preprocess": lambda spec: classify.preprocess_steps(spec or "none"),
        "class_weight": classify.check_class_weight,
        "cv": classify.check_folds,
    }

    def __post_init__(self):
        for field_name, check in self._parameter_constraints.items():
            check(getattr(self, field_name))
        files = [self.exclude] if isinstance(self.exclude, (str, Path)) else list(self.exclude or ())
        object.__setattr__(self, "exclude", tuple(Path(f) for f in files))
        for f in self.exclude:
            read_exclude(f)
        if not isinstance(self.explain, int) or self.explain < 0:
            raise ClassifierError(f"--explain {self.explain}: give how many mistakes to map (0: none)")

    @property
    def classifiers(self) -> list[str]:
        """The classifier names ``clf`` stands for."""
        return classify.resolve_names(self.clf)

    @property
    def settings(self) -> dict:
        """What metrics.json and model.json record of the options."""
        return {"preprocess": self.preprocess, "class_weight": self.class_weight, "search": self.search,
                "cv": self.cv, "seed": self.seed}


def fit_stores(stores: Sequence["FeatureSet"], options: FitOptions | None = None, *,
               echo: Callable[[str], None] = lambda s: None) -> tuple[Path, list[tuple[dict, Path]]]:
    """Fit every classifier on every store (or on their concatenation) and write the run folder.

    Returns the run folder and ``(metrics, sub-folder)`` per fit. Several fits also
    write ``leaderboard.csv``/``.md``. ``echo`` receives one summary line per fit.
    """
    o = options or FitOptions()
    names = o.classifiers
    if not stores:
        raise ClassifierError("no feature store given")
    for fs in stores:
        if len(fs) == 0:
            raise ClassifierError(f"{fs.path}: the store has no rows; extract features into it first")
    stores, excluded = exclude_rows(stores, o.exclude)
    if excluded:
        echo(f"note: excluded {excluded['n_rows']} rows listed in " + ", ".join(
            f"{f['path']} ({f['n_in_store']} of its {f['n_ids']} ids in the store)" for f in excluded["files"]))
    if o.concat:
        if len(stores) < 2:
            raise ClassifierError("--concat needs at least two stores")
        sources = [source_from_concat(stores)]
    else:
        check_same_dataset(stores)
        sources = [source_from_store(fs) for fs in stores]
    for src in sources:  # refuse bad labels/splits before creating the run folder
        plan = classify.plan_splits(src.split, cv=o.cv)
        classify.check_labels(src.y, src.classes, plan.fit)
    run = new_run_dir(o.out, o.name, o.runs_dir, overwrite=o.overwrite, echo=echo)
    single = len(sources) * len(names) == 1
    entries = []
    for src, fs in zip(sources, stores):
        for clf in names:
            with joblib_backend(o.dask_scheduler):
                res = classify.fit_evaluate(src.X, src.y, src.split, src.classes, clf, preprocess=o.preprocess,
                                            class_weight=o.class_weight, search=o.search, cv=o.cv,
                                            n_jobs=-1 if o.dask_scheduler and o.n_jobs is None else o.n_jobs,
                                            random_state=o.seed, block_widths=src.widths if o.concat else None)
            sub = run if single else run / _slug(f"{'concat' if o.concat else Path(fs.path).stem}--{clf}")
            while any(sub == e[1] for e in entries):  # two stores with the same file name
                sub = sub.with_name(sub.name + "-2")
            used = {**o.settings, "preprocess": o.preprocess or classify.get_classifier(clf).preprocess}
            if excluded:
                used["excluded"] = excluded
            metrics = write_run(sub, src, res, used)
            for note in res.notes:
                echo(f"note: {note}")
            echo(summary_line(metrics, sub))
            entries.append((metrics, sub))
    if not single:
        rows = leaderboard_rows(entries)
        write_leaderboard(run, rows)
        echo("")
        echo(format_table(rows))
        chance = entries[0][0]["majority_accuracy"]
        echo(f"\nchance (majority class) accuracy: {chance:.3f}; leaderboard written to {run}/leaderboard.{{csv,md}}")
    return run, entries
