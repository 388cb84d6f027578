"""``featx audit``: near-duplicates and leaks, likely label errors, outliers and the images a classifier is least
sure of, for one store, written as CSVs, contact sheets and ``summary.md`` into an ``audit/`` folder.

* leaks: :func:`featx.look.duplicates.find_duplicates` (pairs at or above a cosine threshold, grouped); a held-out
  row with a near-copy in an earlier split is a leak; the held-out accuracy of the chosen classifier is given
  with and without the leaked rows (``featx fit --exclude AUDIT/leaks.csv`` re-scores without them);
* label issues: confident learning (:mod:`featx.look.labels`) on out-of-fold probabilities of the classifier;
* outliers: :func:`featx.analysis.project.outliers` (as ``featx analyze --outliers``), and the rows whose two
  most probable classes are closest out of fold.

The classifier is a name of :mod:`featx.learn.classify`'s registry (default softmax) or a ``featx fit`` run's
(its classifier, preprocessing, class weights and searched parameters, read from its ``model.json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..analysis import project
from ..errors import ClassifierError, OptionError
from ..files import atomic_path, write_json, write_text
from ..learn import classify
from ..report import plots
from ..report.escape import md_code, md_table, md_text
from ..report.runs import new_run_dir, write_csv
from . import labels as cl
from .duplicates import check_threshold, find_duplicates

if TYPE_CHECKING:  # pragma: no cover
    from ..store.handle import Store

SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}
TABLES = ("leaks", "duplicates", "label_issues", "outliers", "least_sure")
"""The CSV tables an audit writes (``<name>.csv``), in the order of ``summary.md``."""


@dataclass(frozen=True)
class AuditOptions:
    """Every option of ``featx audit`` (the flags and :func:`featx.audit`'s keywords), checked as it is built.

    ``clf``: a classifier name (default softmax) or ``fit``: a ``featx fit`` run folder whose classifier is
    used (not both); ``folds``: stratified folds of the out-of-fold probabilities; ``rank_by``: the label-issue
    ranking (:data:`featx.look.labels.RANK_BY`); ``threshold``: the duplicate cosine threshold (None: the
    calibrated default); ``top``: rows listed in the least-sure table and drawn per contact sheet; ``k`` and
    ``per_class``: the outliers' neighbours and rows per class; ``out``/``overwrite``: the output folder
    (default ``audit/`` beside the store, ``audit-2/``... when taken).
    """

    clf: str | None = None
    fit: str | Path | None = None
    folds: int = 5
    rank_by: str = "self_confidence"
    threshold: float | None = None
    top: int = 30
    k: int = 10
    per_class: int = 5
    out: str | Path | None = None
    overwrite: bool = False
    seed: int = 0
    progress: bool = False

    def __post_init__(self):
        if self.clf is not None and self.fit is not None:
            raise OptionError("--clf and --fit both given: the audit uses one classifier; drop one of them")
        if self.clf is not None:
            names = classify.resolve_names(self.clf)
            if len(names) != 1:
                raise OptionError(f"--clf {self.clf}: the audit uses one classifier; name one of "
                                  f"{', '.join(classify.CLASSIFIERS)}")
        if self.folds < 2:
            raise OptionError(f"--folds {self.folds}: need at least 2 folds")
        cl.check_rank_by(self.rank_by)
        if self.threshold is not None:
            check_threshold(self.threshold)
        for name in ("top", "k", "per_class"):
            if getattr(self, name) < 1:
                raise OptionError(f"--{name.replace('_', '-')} {getattr(self, name)}: give a positive number")
        if self.fit is not None:
            read_fit_run(self.fit)


@dataclass(frozen=True)
class Model:
    """The classifier an audit fits: a registry name with its preprocessing, class weights and parameters."""

    name: str
    preprocess: str | None = None
    class_weight: str | None = None
    params: dict = field(default_factory=dict)
    run: Path | None = None
    fingerprint: dict | None = None

    @property
    def description(self) -> str:
        extra = [f"{k}={v}" for k, v in (("preprocess", self.preprocess), ("class_weight", self.class_weight))
                 if v] + [f"{k}={v}" for k, v in self.params.items()]
        return self.name + (f" ({', '.join(extra)})" if extra else "") + (f" from fit run {self.run}" if self.run else "")


def read_fit_run(run: str | Path) -> Model:
    """The classifier of a ``featx fit`` run folder (its ``model.json``), or a :class:`ClassifierError`."""
    run = Path(run)
    sidecar = run / "model.json"
    if not run.is_dir():
        raise ClassifierError(f"--fit {run}: no such run folder; pass a folder written by `featx fit`")
    if not sidecar.is_file():
        subs = sorted(p.parent.name for p in run.glob("*/model.json"))
        hint = (f"it holds several fits: pass one of its sub-folders ({', '.join(subs[:3])})" if subs
                else "pass a run folder written by `featx fit`")
        raise ClassifierError(f"--fit {run}: no model.json there; {hint}")
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        name, settings = meta["classifier"], meta.get("settings") or {}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ClassifierError(f"--fit {run}: model.json cannot be read ({type(exc).__name__}: {exc}); "
                              "re-run `featx fit`") from None
    if len(meta.get("widths") or [1]) > 1:
        raise ClassifierError(f"--fit {run}: a --concat run of several stores; audit a run fitted on one store")
    classify.get_classifier(name)
    return Model(name, settings.get("preprocess"), classify.check_class_weight(settings.get("class_weight")),
                 dict(meta.get("best_params") or {}), run, meta.get("fingerprint"))


@dataclass
class AuditResult:
    """What :func:`audit_store` wrote: the folder, its files, each table's rows and ``audit.json``'s content."""

    path: Path
    files: list[Path]
    tables: dict[str, list[dict]]
    summary: dict


def _caption(*parts: str) -> str:
    return "\n".join(p for p in parts if p)


def audit_store(store: "Store", options: AuditOptions | None = None, *,
                echo: Callable[[str], None] = lambda s: None) -> AuditResult:
    """Audit one store (see the module) and write the ``audit/`` folder; ``echo`` gets the summary lines."""
    o = options or AuditOptions()
    fs = store.to_feature_set(require_complete=True)
    model = read_fit_run(o.fit) if o.fit is not None else Model(classify.resolve_names(o.clf or "softmax")[0])
    if model.fingerprint is not None and model.fingerprint != fs.fingerprint:
        raise ClassifierError(f"--fit {model.run}: fitted on features of another store (backbone "
                              f"{model.fingerprint.get('backbone')}, not {fs.fingerprint.get('backbone')} of "
                              f"{fs.path}); audit the store it was fitted on, or fit this one")
    labelled = np.flatnonzero(fs.labels >= 0)
    X, y = fs.features[labelled], fs.labels[labelled]
    classify.check_labels(y, fs.classes, np.arange(len(y)))
    n_classes = len(fs.classes)

    d = find_duplicates(store, threshold=o.threshold, progress=o.progress)
    run = new_run_dir(o.out, "audit", Path(fs.path).parent, overwrite=o.overwrite, echo=echo)
    files: list[Path] = []

    def file(name: str) -> Path:
        files.append(run / name)
        return run / name

    def info(row: int) -> dict:
        lab = int(fs.labels[row])
        return {"id": str(fs.ids[row]), "path": str(fs.image_path(row)),
                "label": fs.classes[lab] if lab >= 0 else "", "split": str(fs.split[row])}

    # ---------------------------------------------------------------- duplicates and leaks
    group_of = {r: g for g, rows in enumerate(d.groups, 1) for r in rows}
    leaks: list[dict] = []
    for p in d.leaks + d.train_val:
        a, b = p.row_a, p.row_b
        if SPLIT_ORDER.get(str(fs.split[a]), -1) > SPLIT_ORDER.get(str(fs.split[b]), -1):
            a, b = b, a  # b: the held-out side (test, or val of a train/val pair)
        other = info(a)
        leaks.append({"kind": f"{fs.split[a]}/{fs.split[b]}", **info(b), "duplicate_id": other["id"],
                      "duplicate_path": other["path"], "duplicate_label": other["label"],
                      "duplicate_split": other["split"], "similarity": round(p.similarity, 4),
                      "group": group_of.get(b)})
    best = {}
    for p in d.pairs:
        for r in (p.row_a, p.row_b):
            best[r] = max(best.get(r, 0.0), p.similarity)
    duplicates = [{"group": g, "size": len(rows), **info(r), "max_similarity": round(best[r], 4)}
                  for g, rows in enumerate(d.groups, 1) for r in rows]

    accuracy = _held_out_accuracy(fs, labelled, model, d, o.seed, echo)

    # ---------------------------------------------------------------- label issues and least sure
    bar = None
    if o.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=o.folds, desc=f"out-of-fold {model.name}", unit="fold", mininterval=1.0)
    try:
        proba = cl.out_of_fold_proba(X, y, n_classes, model.name, folds=o.folds, preprocess=model.preprocess,
                                     class_weight=model.class_weight, seed=o.seed, params=model.params,
                                     progress=(lambda done, total: bar.update(1)) if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    issues = cl.find_label_issues(y, proba, rank_by=o.rank_by)
    label_issues = [{"rank": i, **info(int(labelled[r])), "suggested_label": fs.classes[int(issues.suggested[r])],
                     "p_suggested": round(float(proba[r, issues.suggested[r]]), 4),
                     "self_confidence": round(float(issues.self_confidence[r]), 4),
                     "normalized_margin": round(float(issues.margin[r]), 4)}
                    for i, r in enumerate(issues.flagged, 1)]
    pred = proba.argmax(axis=1)
    least_sure = []
    for i, r in enumerate(cl.least_sure(proba, o.top), 1):
        top2 = np.sort(proba[r])[::-1]
        least_sure.append({"rank": i, **info(int(labelled[r])), "predicted": fs.classes[int(pred[r])],
                           "p_predicted": round(float(top2[0]), 4), "p_label": round(float(proba[r, y[r]]), 4),
                           "gap": round(float(top2[0] - (top2[1] if len(top2) > 1 else 0.0)), 4)})
    outliers = [{"class": fs.classes[int(np.unique(y)[c])], **info(int(labelled[r])), "knn_distance": round(dist, 4)}
                for r, c, dist in project.outliers(X, y, k=o.k, per_class=o.per_class)]

    # ---------------------------------------------------------------- files
    tables = {"leaks": leaks, "duplicates": duplicates, "label_issues": label_issues, "outliers": outliers,
              "least_sure": least_sure}
    columns = {"leaks": ["kind", "id", "path", "label", "split", "duplicate_id", "duplicate_path", "duplicate_label",
                         "duplicate_split", "similarity", "group"],
               "duplicates": ["group", "size", "id", "path", "label", "split", "max_similarity"],
               "label_issues": ["rank", "id", "path", "label", "suggested_label", "split", "p_suggested",
                                "self_confidence", "normalized_margin"],
               "outliers": ["class", "id", "path", "label", "split", "knn_distance"],
               "least_sure": ["rank", "id", "path", "label", "predicted", "split", "p_predicted", "p_label", "gap"]}
    for name, rows in tables.items():
        if rows:
            write_csv(file(f"{name}.csv"), [{c: r.get(c) for c in columns[name]} for r in rows])
        else:
            _empty_csv(file(f"{name}.csv"), columns[name])
    n = o.top
    row_of = {str(i): r for r, i in enumerate(fs.ids)}

    def image(image_id: str):  # a file or a tar member (tar stores draw their paintings too)
        return fs.image_source(row_of[image_id])

    sheet_leaks = [x for rec in leaks[:n // 2] for x in (
        (image(rec["id"]), _caption(f"{rec['split']}: {plots.short_name(rec['id'], 28)}", rec["label"],
                                    f"cos {rec['similarity']:.3f}")),
        (image(rec["duplicate_id"]),
         _caption(f"{rec['duplicate_split']}: {plots.short_name(rec['duplicate_id'], 28)}", rec["duplicate_label"])))]
    plots.contact_sheet([p for p, _ in sheet_leaks], [c for _, c in sheet_leaks], file("leaks.png"),
                        title=f"{len(leaks)} leaks: a held-out row, then its near-copy in an earlier split "
                              f"(cosine >= {d.threshold:g})", cols=6)
    top_issues = label_issues[:n]
    plots.contact_sheet([image(r["id"]) for r in top_issues],
                        [_caption(plots.short_name(r["id"], 28), f"label: {r['label']}",
                                  f"suggested: {r['suggested_label']} ({100 * r['p_suggested']:.0f}%)")
                         for r in top_issues], file("label_issues.png"),
                        title=f"{len(label_issues)} likely label errors ({model.name}, out of fold), "
                              f"most suspicious first")
    plots.contact_sheet([image(r["id"]) for r in outliers],
                        [_caption(plots.short_name(r["id"], 28), f"{r['class']} (d={r['knn_distance']:.2f})")
                         for r in outliers],
                        file("outliers.png"),
                        title=f"Outliers per class (mean cosine distance to {o.k} nearest same-class rows)")
    plots.contact_sheet([image(r["id"]) for r in least_sure],
                        [_caption(plots.short_name(r["id"], 28), f"label: {r['label']}",
                                  f"pred: {r['predicted']} ({100 * r['p_predicted']:.0f}%)") for r in least_sure],
                        file("least_sure.png"), title=f"The {len(least_sure)} rows {model.name} is least sure of")
    with atomic_path(file("oof_proba.npz")) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, ids=fs.ids[labelled].astype(str), labels=y, classes=np.array(fs.classes, dtype=str),
                            proba=proba.astype(np.float32))
    summary = {
        "store": str(Path(fs.path).resolve()), "n_rows": len(fs), "n_labelled": len(labelled),
        "classes": list(fs.classes), "classifier": model.name, "preprocess": model.preprocess,
        "class_weight": model.class_weight, "params": model.params,
        "fit_run": str(model.run) if model.run else None, "folds": o.folds, "seed": o.seed,
        "duplicates": {"threshold": d.threshold, "n_pairs": len(d.pairs), "n_groups": len(d.groups),
                       "n_leaks": len(d.leaks), "n_train_val": len(d.train_val)},
        "held_out": accuracy,
        "label_issues": {"n": len(label_issues), "rank_by": o.rank_by,
                         "thresholds": {c: round(float(t), 4) for c, t in zip(fs.classes, issues.thresholds)},
                         "out_of_fold_accuracy": round(float(np.mean(pred == y)), 4)},
        "n_outliers": len(outliers), "n_least_sure": len(least_sure),
    }
    md = _summary_md(fs, model, d, summary, tables, run)
    write_text(file("summary.md"), md)
    write_json(file("audit.json"), {**summary, "files": [p.name for p in files]})
    for line in _echo_lines(summary, run):
        echo(line)
    return AuditResult(run, files, tables, summary)


def _empty_csv(path: Path, columns: list[str]) -> Path:
    """A CSV with the header only (nothing found: the file still says what it would hold)."""
    write_text(path, ",".join(columns) + "\n")
    return path


def _held_out_accuracy(fs, labelled: np.ndarray, model: Model, d, seed: int,
                       echo: Callable[[str], None]) -> dict | None:
    """The classifier's accuracy on the held-out split (as ``featx fit`` scores it), with and without the
    held-out rows that have a near-copy in an earlier split. None without a held-out split, or when the
    split cannot be fitted (said through ``echo``)."""
    split = fs.split[labelled]
    plan = classify.plan_splits(split)
    if plan.mode == "cv":
        return None
    try:
        res = classify.fit_evaluate(fs.features[labelled], fs.labels[labelled], split, fs.classes, model.name,
                                    preprocess=model.preprocess, class_weight=model.class_weight, random_state=seed,
                                    **{f"clf__{k}": v for k, v in model.params.items()})
    except ClassifierError as exc:
        echo(f"note: no held-out accuracy ({exc})")
        return None
    held = plan.mode  # "test" or "val"
    position = {int(r): i for i, r in enumerate(labelled)}
    leaked = {position[int(r)] for r in d.leaked_rows(held) if int(r) in position} & set(res.eval_rows.tolist())
    keep = np.array([r not in leaked for r in res.eval_rows])
    correct = res.y_true == res.y_pred
    return {"split": held, "n": int(len(correct)), "accuracy": round(float(correct.mean()), 4),
            "n_leaked": int(len(leaked)), "n_without": int(keep.sum()),
            "accuracy_without_leaks": round(float(correct[keep].mean()), 4) if keep.any() else None}


def _summary_md(fs, model: Model, d, s: dict, t: dict, run: Path) -> str:
    lines = [f"# Audit of {md_text(Path(fs.path).name)}", "",
             f"Store {md_code(s['store'])}: {s['n_rows']} rows ({s['n_labelled']} labelled), {len(fs.classes)} "
             f"classes. Classifier: {md_text(model.description)}, {s['folds']}-fold out-of-fold probabilities "
             f"(accuracy {s['label_issues']['out_of_fold_accuracy']:.3f}).", "",
             "## Near-duplicates and leaks", "",
             f"{len(d.pairs)} pairs at cosine similarity >= {d.threshold:g} in {len(d.groups)} groups "
             f"({md_code('duplicates.csv')}); {len(d.leaks)} pairs straddle test and train/val (leaks), "
             f"{len(d.train_val)} straddle train and val ({md_code('leaks.csv')}, {md_code('leaks.png')})."]
    h = s["held_out"]
    if h:
        lines += ["", f"{h['split'].capitalize()} accuracy of {md_text(model.name)} fitted on train: "
                      f"{h['accuracy']:.3f} on {h['n']} rows; without the {h['n_leaked']} leaked {h['split']} rows: "
                      + (f"{h['accuracy_without_leaks']:.3f} on {h['n_without']} rows." if h["n_without"] else "none left.")
                  ]
    if t["leaks"]:
        lines += ["", f"Re-score without them: {md_code(f'featx fit STORE --exclude {run}/leaks.csv')}.", ""]
        lines += md_table(["kind", "id", "label", "duplicate", "its label", "similarity"],
                          [(r["kind"], r["id"], r["label"], r["duplicate_id"], r["duplicate_label"],
                            f"{r['similarity']:.4f}") for r in t["leaks"][:30]])
    lines += ["", "## Label issues", "",
              f"{len(t['label_issues'])} rows are confidently predicted as another class than their label "
              f"(confident learning; ranked by {s['label_issues']['rank_by'].replace('_', ' ')}, "
              f"{md_code('label_issues.csv')}, {md_code('label_issues.png')})."]
    if t["label_issues"]:
        lines += [""] + md_table(["rank", "id", "label", "suggested", "p(suggested)", "self-confidence"],
                                 [(r["rank"], r["id"], r["label"], r["suggested_label"], f"{r['p_suggested']:.3f}",
                                   f"{r['self_confidence']:.3f}") for r in t["label_issues"][:30]])
    lines += ["", "## Outliers and least sure", "",
              f"Per class, the rows farthest from their class ({md_code('outliers.csv')}, {md_code('outliers.png')}), "
              f"and the {len(t['least_sure'])} rows whose two most probable classes are closest out of fold "
              f"({md_code('least_sure.csv')}, {md_code('least_sure.png')}): rankings, not findings."]
    lines += [f"- {md_text(r['class'])}: {md_text(r['id'])} (distance {r['knn_distance']:.3f})" for r in t["outliers"][:15]]
    return "\n".join(lines) + "\n"


def _echo_lines(s: dict, run: Path) -> list[str]:
    dup, h = s["duplicates"], s["held_out"]
    lines = [f"duplicates: {dup['n_pairs']} pairs (cosine >= {dup['threshold']:g}) in {dup['n_groups']} groups; "
             f"{dup['n_leaks']} leaks across test, {dup['n_train_val']} across train/val"]
    if h:
        without = f"{h['accuracy_without_leaks']:.3f}" if h["accuracy_without_leaks"] is not None else "-"
        lines.append(f"{h['split']} accuracy {h['accuracy']:.3f} (n={h['n']}); without the {h['n_leaked']} leaked "
                     f"rows {without} (n={h['n_without']})")
    lines.append(f"label issues: {s['label_issues']['n']} (out-of-fold {s['classifier']}, accuracy "
                 f"{s['label_issues']['out_of_fold_accuracy']:.3f})")
    lines.append(f"wrote {run} (see summary.md)")
    return lines
