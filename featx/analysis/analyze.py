"""``featx analyze``: transferability scores, projections, outliers and class overlap for stores.

Reads stores with :func:`featx.store.reader.load_features`, scores with :mod:`featx.analysis.transfer`,
draws the views of each store with :mod:`featx.analysis.views`, and writes
into ``runs/analyze-<name>/`` (or ``out``): scores.json, scores.csv, ranking.csv, taus.csv,
PNG plots, ``<store>-projections.npz``, optional ``<store>.html``, and summary.md. No torch.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import AnalysisError, OptionError
from ..files import write_json, write_text
from ..report import plots
from ..report import projection_plots as pp
from ..report.escape import md_code, md_text
from ..report.runs import new_run_dir, printable, write_csv
from ..store.reader import load_features, read_attrs
from . import project, transfer
from .budget import DEFAULT_SCORE_DIMS, ScoreLog, default_budget, fmt_bytes
from .views import RunFolder, select_rows, write_views

HIGHER_IS_BETTER = "every score: higher means more transferable (GBC and LEEP/NCE are <= 0)"
LOGITS_HINT = "re-extract with `featx extract ... --with-logits` to get them"


@dataclass
class AnalyzeOptions:
    """What to compute. With nothing selected, ``analyze`` computes scores and a PCA view."""

    transferability: bool = False
    pca: bool = False
    tsne: bool = False
    umap: bool = False
    three_d: bool = False
    thumbnails: bool = False
    html: bool = False
    outliers: bool = False
    overlap: bool = False
    split: str | None = None  # None: scores on the train split (when present), views on all rows
    seed: int = 0
    max_rows: int = 20000  # cap for t-SNE/UMAP rows, kNN queries, probe and separability rows
    k: int = 10  # neighbours for kNN accuracy, outliers and overlap
    runs_dir: Path = Path("runs")
    overwrite: bool = False  # reuse an existing output folder instead of a suffixed new one
    max_memory: int | None = None  # bytes per score; None: half the memory available once the store is loaded
    score_dims: int = DEFAULT_SCORE_DIMS  # PCA dims for a score whose estimate exceeds max_memory
    judge_by: str = "probe"  # accuracy the scores are correlated with: "probe" or "fit:<classifier>"

    def resolved(self) -> "AnalyzeOptions":
        o = AnalyzeOptions(**self.__dict__)
        if o.score_dims < 2:
            raise OptionError(f"--score-dims: {o.score_dims} is too small; use 2 or more principal components")
        if o.max_memory is not None and o.max_memory < 2**20:
            raise OptionError(f"--max-memory: {o.max_memory} bytes is below 1 MiB")
        if o.judge_by != "probe" and not (o.judge_by.startswith("fit:") and o.judge_by[4:].strip()):
            raise OptionError(f"--judge-by: {o.judge_by!r} is not 'probe' or 'fit:<classifier>' (e.g. fit:softmax)")
        views = o.pca or o.tsne or o.umap
        if not (o.transferability or views or o.outliers or o.overlap):
            o.transferability = True
            o.pca = True
        elif (o.three_d or o.thumbnails or o.html) and not views:
            o.pca = True
        return o

    @property
    def methods(self) -> list[str]:
        return [m for m in project.METHODS if getattr(self, m)]


@dataclass
class AnalyzeResult:
    out_dir: Path
    scores: dict = field(default_factory=dict)
    ranking: list[dict] = field(default_factory=list)
    taus: list[dict] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)  # store -> scores skipped (no logits)


def default_name(paths: Sequence[Path]) -> str:
    if len(paths) == 1:
        return printable(paths[0].stem)
    joined = printable("-vs-".join(p.stem for p in paths))
    if len(joined) <= 60:
        return joined
    return f"{len(paths)}stores-{hashlib.sha256(joined.encode()).hexdigest()[:8]}"


CV_SCORES = ("nce_cv", "task_overlap_u_cv")
"""Cross-fitted source scores (held-out folds), reported beside the in-sample ``nce`` / ``task_overlap_u``."""
SCORE_KEYS = transfer.ALL_SCORES + CV_SCORES
"""Every score in scores.json, scores.csv and the terminal table."""
RANKED_KEYS = ("leep", "nce_cv", "task_overlap", "task_overlap_u_cv", *transfer.FEATURE_SCORES)
"""Scores that rank stores and are correlated with accuracy: the cross-fitted NCE and U, not the
in-sample ones the spec warns are inflated by many source labels (those stay in scores.json)."""
IN_SAMPLE_NOTE = ("nce and task_overlap_u are in-sample estimates, kept for reference; rankings and correlations "
                  "use the cross-fitted nce_cv and task_overlap_u_cv")


def _feature_kwargs(key: str, seed: int, max_rows: int, k: int) -> dict:
    kwargs: dict = {}
    if key in ("gbc", "knn_acc", "probe_acc", "silhouette"):
        kwargs["seed"] = seed
    if key == "knn_acc":
        kwargs.update(max_queries=max_rows, k=k)
    return kwargs


class _Reduced:
    """The first ``k`` principal components of F, computed once, the first time a score needs them."""

    def __init__(self, F: np.ndarray, k: int, seed: int, log: ScoreLog, budget: int):
        self.F, self.k, self.seed, self.log, self.budget = F, min(k, *F.shape), seed, log, budget
        self.Z: np.ndarray | None = None
        self.tried = False

    def get(self) -> np.ndarray | None:
        if not self.tried:
            self.tried = True
            need = transfer.pca_peak_bytes(*self.F.shape, self.k)
            if need > self.budget:
                self.log.note(f"PCA to {self.k} dims not run: needs about {fmt_bytes(need)}, over the "
                              f"{fmt_bytes(self.budget)} budget (--max-memory)")
                return None
            out = self.log.guarded("pca", lambda: transfer.pca_reduce(self.F, self.k, seed=self.seed))
            if out is not None:
                self.Z, kept = out
                self.log.note(f"PCA to {self.k} dims (--score-dims) keeps {kept:.1%} of the variance")
        return self.Z


def compute_scores(F: np.ndarray, y: np.ndarray, logits: np.ndarray | None, *, seed: int = 0,
                   max_rows: int = 20000, max_memory: int | None = None,
                   score_dims: int = DEFAULT_SCORE_DIMS, k: int = 10) -> tuple[dict, list[str], dict]:
    """All scores for one feature matrix: (scores incl. extras, notes, seconds per score).

    Scores needing logits are None when ``logits`` is None. kNN accuracy queries and the linear
    probe use at most ``max_rows`` rows, silhouette 5000 (stated in the notes).

    Memory: each score's peak is estimated from (n, d, classes) before it runs
    (:func:`transfer.peak_bytes`); above ``max_memory`` bytes (default: :func:`default_budget`) a
    feature score runs on the first ``score_dims`` principal components instead, or is skipped
    when even that would not fit. Each score that fails is None with a note and an entry under
    ``errors``; ``score_dims`` in the result says on how many dims each feature score ran.
    """
    if len(np.unique(y)) < 2:
        raise AnalysisError("transferability needs at least 2 classes in the rows analysed")
    budget = default_budget() if max_memory is None else int(max_memory)
    n, d = F.shape
    c = len(np.unique(y))
    s: dict = {k: None for k in SCORE_KEYS}
    log = ScoreLog()
    estimates: dict[str, int] = {}
    if logits is not None:
        z = logits.shape[1]
        zhat = np.asarray(logits).argmax(axis=1)  # the argmax of softmax(logits)
        estimates["leep"] = transfer.peak_bytes("leep", n, d, c, z=z)
        if estimates["leep"] > budget:
            log.note(f"leep skipped: needs about {fmt_bytes(estimates['leep'])}, over the {fmt_bytes(budget)} "
                     "budget (--max-memory)")
        else:
            s["leep"] = log.guarded("leep", lambda: transfer.leep(transfer.softmax(logits), y))
        s["nce"] = log.guarded("nce", lambda: transfer.nce(zhat, y))
        s["nce_cv"] = log.guarded("nce_cv", lambda: transfer.nce(zhat, y, cv=5, seed=seed))
        ov = log.guarded("task_overlap", lambda: transfer.task_overlap(zhat, y, seed=seed))
        if ov is not None:
            s["task_overlap"], s["task_overlap_se"], s["task_overlap_baseline"] = float(ov), ov.se, ov.baseline
        s["task_overlap_u"] = log.guarded("task_overlap_u", lambda: transfer.task_overlap_u(zhat, y))
        s["task_overlap_u_cv"] = log.guarded("task_overlap_u_cv",
                                             lambda: transfer.task_overlap_u(zhat, y, method="cv", seed=seed))
        s["source_labels_used"] = int(len(np.unique(zhat)))
    reduced = _Reduced(F, score_dims, seed, log, budget)
    dims: dict[str, int | None] = {}
    for key, fn in list(transfer.FEATURE_SCORES.items()):
        X, Y, rows = F, y, n
        if key == "probe_acc" and n > max_rows:
            idx = project.subsample(y, max_rows, seed)
            X, Y, rows = F[idx], y[idx], len(idx)
            log.note(f"probe_acc on a stratified {rows:,} of {n:,} rows")
        need = estimates[key] = transfer.peak_bytes(key, rows, d, c, max_rows=max_rows)
        dims[key] = d
        if need > budget:
            pcs = reduced.k
            small = transfer.peak_bytes(key, rows, pcs, c, max_rows=max_rows)
            Z = reduced.get() if pcs < d and small <= budget else None
            if Z is None:
                dims[key] = None
                log.note(f"{key} skipped: needs about {fmt_bytes(need)} on {d:,} dims (and "
                         f"{fmt_bytes(small)} on {pcs:,} PCA dims), over the {fmt_bytes(budget)} budget (--max-memory)")
                continue
            X = Z[idx] if X is not F else Z
            dims[key] = pcs
            log.note(f"{key} on the first {pcs:,} principal components: about {fmt_bytes(need)} on all {d:,} dims "
                     f"is over the {fmt_bytes(budget)} budget (--max-memory)")
        kwargs = _feature_kwargs(key, seed, max_rows, k)
        s[key] = log.guarded(key, lambda fn=fn, X=X, Y=Y, kwargs=kwargs: fn(X, Y, **kwargs))
    if n <= d and any(dims.get(key) == d for key in ("hscore", "hscore_shrink", "fisher")):
        log.note(f"n <= d ({n:,} rows, {d:,} dims): hscore saturates at C-1 and hscore_shrink / fisher "
                 "whiten with few rows, so they barely separate backbones; compare them on PCA-reduced features")
    if n > max_rows:
        log.note(f"knn_acc from {max_rows:,} random query rows of {n:,}")
    if n > 5000:
        log.note(f"silhouette on 5,000 random rows of {n:,}")
    s["score_dims"] = dims
    s["memory"] = {"budget_mib": round(budget / 2**20), "estimate_mib": {k: round(v / 2**20, 1)
                                                                          for k, v in estimates.items()}}
    s["errors"] = log.errors
    return s, log.notes, log.seconds


def _json_default(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(type(v))


def _clean(v):
    """NaN/inf -> None so scores.json stays valid JSON."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


def rank_stores(scores: dict[str, dict]) -> list[dict]:
    """Per store, per score: the value, and for :data:`RANKED_KEYS` its rank (1 = best; higher is
    better for every score)."""
    names = list(scores)
    ranks = {name: {} for name in names}
    for key in RANKED_KEYS:
        vals = [(scores[n].get(key), n) for n in names]
        ok = sorted((v, n) for v, n in vals if v is not None and math.isfinite(v))
        for r, (_, n) in enumerate(reversed(ok), start=1):
            ranks[n][key] = r
    return [{"store": n, **{f"{k}": scores[n].get(k) for k in SCORE_KEYS},
             **{f"{k}_rank": ranks[n].get(k) for k in RANKED_KEYS}} for n in names]


def find_fit_accuracy(store_path: Path, runs_dir: Path, classifier: str) -> tuple[float, int] | None:
    """Accuracy of the newest ``featx fit`` run of ``classifier`` on this store under ``runs_dir``
    (``metrics.json`` whose "store" and "classifier" match), and how many such runs there were.
    One named classifier, never the best of whatever runs exist. None when there is none."""
    if not runs_dir.is_dir():
        return None
    target = store_path.resolve()
    found = []
    for mfile in runs_dir.rglob("metrics.json"):
        try:
            m = json.loads(mfile.read_text())
            store, acc = m.get("store"), m.get("accuracy")
            if store is None or acc is None or m.get("classifier") != classifier:
                continue
            if Path(store).resolve() != target:
                continue
            found.append((mfile.stat().st_mtime_ns, str(mfile), float(acc)))
        except (OSError, ValueError, TypeError, AttributeError):
            continue
    return (max(found)[2], len(found)) if found else None


def judge_accuracy(fs, path: Path, opts: "AnalyzeOptions", budget: int, log: ScoreLog) -> dict:
    """The accuracy one store's scores are judged against, under the protocol ``opts.judge_by``:
    ``probe`` fits :func:`transfer.probe_split_acc` on the train split and scores the test split;
    ``fit:<clf>`` reads the newest ``featx fit`` run of that classifier on the store."""
    if opts.judge_by != "probe":
        clf = opts.judge_by[4:].strip()
        found = find_fit_accuracy(path, opts.runs_dir, clf)
        if found is None:
            log.note(f"no `featx fit --clf {clf}` run on this store under {opts.runs_dir}: not judged")
            return {"protocol": opts.judge_by, "value": None}
        return {"protocol": opts.judge_by, "value": found[0], "runs": found[1], "chosen": "newest run"}
    train, test = fs.split == "train", fs.split == "test"
    out = {"protocol": "probe", "value": None}
    if not test.any() or len(np.unique(fs.labels[train])) < 2:
        log.note("no test split (or fewer than 2 classes in train): the linear probe accuracy is not measured")
        return out
    need = transfer.peak_bytes("probe_acc", int(train.sum()), fs.features.shape[1], len(np.unique(fs.labels)))
    if need > budget:
        log.note(f"test-split probe accuracy not measured: needs about {fmt_bytes(need)}, over the "
                 f"{fmt_bytes(budget)} budget (--max-memory)")
        return out
    out["value"] = log.guarded("probe_test_acc", lambda: transfer.probe_split_acc(
        fs.features[train], fs.labels[train], fs.features[test], fs.labels[test]))
    out["n_test"] = int(test.sum())
    return out


PROTOCOLS = {"probe": "linear probe (StandardScaler + LogisticRegression, C=1) fitted on the train split, "
                      "accuracy on the test split"}


def protocol_text(judge_by: str, *, markdown: bool = False) -> str:
    """The protocol in words; ``markdown``: as Markdown text (the classifier name escaped, the command as code)."""
    if judge_by in PROTOCOLS:
        return md_text(PROTOCOLS[judge_by]) if markdown else PROTOCOLS[judge_by]
    command = f"featx fit --clf {judge_by[4:]}"
    return f"test accuracy of the newest {md_code(command) if markdown else f'`{command}`'} run per store"


def score_taus(scores: dict[str, dict], accuracy: dict[str, float]) -> list[dict]:
    """Kendall's tau, weighted tau and Pearson's r (scipy) between each ranked score and the
    accuracy of one named protocol, over the stores that have both."""
    from scipy.stats import kendalltau, pearsonr, weightedtau

    names = [n for n in scores if accuracy.get(n) is not None]
    out = []
    for key in RANKED_KEYS:
        pairs = [(scores[n][key], accuracy[n]) for n in names if scores[n].get(key) is not None]
        if len(pairs) < 3:
            continue
        x, a = np.array(pairs, dtype=float).T
        constant = np.ptp(x) == 0 or np.ptp(a) == 0
        out.append({"score": key, "n_stores": len(pairs), "kendall_tau": _nan_none(kendalltau(x, a)[0]),
                    "weighted_tau": _nan_none(weightedtau(x, a)[0]),
                    "pearson_r": None if constant else _nan_none(pearsonr(x, a)[0])})
    return out


def _nan_none(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v + 0.0:.{digits}f}".replace("-0.000", "0.000") if digits == 3 else f"{v:.{digits}f}"
    return str(v)


def analyze(stores: Sequence[str | Path], options: AnalyzeOptions | None = None, *, out: str | Path | None = None,
            name: str | None = None, log: Callable[[str], None] = lambda s: None) -> AnalyzeResult:
    """Analyse one or more feature stores and write the outputs (see module docstring).

    Scores needing logits are None for stores without them; ``result.skipped`` says which.
    """
    opts = (options or AnalyzeOptions()).resolved()
    paths = [Path(p) for p in stores]
    if not paths:
        raise AnalysisError("no feature stores given")
    if len(set(p.resolve() for p in paths)) != len(paths):
        raise AnalysisError("the same store is given twice")
    for path in paths:  # every store readable before any work or output
        if read_attrs(path, require_complete=True)["n_rows"] == 0:
            raise AnalysisError(f"{path}: the store has no rows")
    run = RunFolder(new_run_dir(out, f"analyze-{name or default_name(paths)}", opts.runs_dir,
                                overwrite=opts.overwrite, echo=log))
    res = AnalyzeResult(out_dir=run.path, files=run.files)
    stems = [printable(p.stem) for p in paths]
    keys = stems if len(set(stems)) == len(stems) else [printable(f"{p.parent.name}-{p.stem}") for p in paths]
    if len(set(keys)) != len(keys):
        keys = [f"{i}-{k}" for i, k in enumerate(keys)]
    accuracy: dict[str, float | None] = {}
    judged = opts.transferability and len(paths) >= 3  # correlations need 3 or more stores
    for path, key in zip(paths, keys):
        log(f"{key}: loading {path}")
        fs = load_features(path)
        budget = default_budget() if opts.max_memory is None else opts.max_memory  # with the store loaded
        fp = fs.fingerprint or {}
        entry = res.scores.setdefault(key, {})
        entry.update({"path": str(path), "backbone": fp.get("backbone"), "weights": fp.get("weights"),
                      "layer": fp.get("layer"), "pool": fp.get("pool"), "dim": int(fs.features.shape[1])})
        if opts.transferability:
            mask, where = select_rows(fs, opts.split, for_scores=True)
            log(f"{key}: scoring {int(mask.sum()):,} rows ({where})")
            every = bool(mask.all())
            logits = None if fs.logits is None else (fs.logits if every else fs.logits[mask])
            scores, notes, sec = compute_scores(fs.features if every else fs.features[mask], fs.labels[mask], logits,
                                                seed=opts.seed, max_rows=opts.max_rows, max_memory=budget,
                                                score_dims=opts.score_dims, k=opts.k)
            if logits is None:
                res.skipped[key] = [*transfer.SOURCE_SCORES, *CV_SCORES]
                notes.append(f"no logits in the store: {', '.join(res.skipped[key])} skipped; {LOGITS_HINT}")
            entry.update({"rows": where, "n": int(mask.sum()), "n_classes": int(len(np.unique(fs.labels[mask]))),
                          **scores, "notes": notes, "seconds": sec})
            if judged:
                jlog = ScoreLog()
                entry["accuracy"] = judge_accuracy(fs, path, opts, budget, jlog)
                accuracy[key] = entry["accuracy"]["value"]
                entry["notes"] += jlog.notes
                entry["errors"].update(jlog.errors)
                entry["seconds"].update(jlog.seconds)
        if opts.methods or opts.outliers or opts.overlap:
            log(f"{key}: projections / neighbourhoods")
            entry.update(write_views(run, fs, key, opts))
        del fs
    _side_by_side(run, opts.seed)
    _write_outputs(run, res, opts, keys, accuracy)
    if opts.transferability and not any(res.scores[k].get(s) is not None for k in keys for s in SCORE_KEYS):
        raise AnalysisError(f"no transferability score could be computed (reasons in {run.path / 'scores.json'})")
    return res


def _side_by_side(run: RunFolder, seed: int) -> None:
    """With several stores, each projection method's 2-D views in one PNG (before / after fine-tuning)."""
    for method, panels in run.panels.items():
        if len(panels) > 1:
            name = f"side-by-side-{method}.png"
            pp.side_by_side(panels, run.file(name), title=f"{method.upper() if method != 'tsne' else 't-SNE'} 2-D "
                            f"of {len(panels)} stores (same colour per class)", seed=seed)
            run.md.append(f"\n- {len(panels)} stores side by side: `{name}`")


def _write_outputs(run: RunFolder, res: AnalyzeResult, opts: AnalyzeOptions, keys: list[str],
                   accuracy: dict[str, float | None]) -> None:
    head = [f"# featx analyze: {', '.join(map(md_text, keys))}\n"]
    if opts.transferability:
        res.ranking = rank_stores({k: res.scores[k] for k in keys})
        judged = bool(accuracy)
        write_csv(run.file("scores.csv"), [
            {"store": k, **{c: res.scores[k].get(c) for c in ("backbone", "weights", "layer", "pool", "dim", "n",
                                                               "rows")},
             **{s: res.scores[k].get(s) for s in SCORE_KEYS},
             **{s: res.scores[k].get(s) for s in ("task_overlap_se", "task_overlap_baseline")},
             **({"accuracy": accuracy.get(k), "accuracy_protocol": opts.judge_by} if judged else {})}
            for k in keys])
        write_csv(run.file("ranking.csv"), res.ranking)
        measured = sum(v is not None for v in accuracy.values())
        if measured >= 3:
            res.taus = [{**t, "protocol": opts.judge_by}
                        for t in score_taus({k: res.scores[k] for k in keys}, accuracy)]
            write_csv(run.file("taus.csv"), res.taus)
        elif judged:
            res.notes.append(f"accuracy ({protocol_text(opts.judge_by)}) measured for {measured} store(s); "
                             "correlations need 3 or more")
        for key in RANKED_KEYS:
            used = {res.scores[k].get("score_dims", {}).get(key) for k in keys} - {None}
            if key in transfer.FEATURE_SCORES and len(used) > 1:
                res.notes.append(f"{key} was computed on different dims across stores ({', '.join(map(str, sorted(used)))}"
                                 "); its ranking compares unlike quantities")
        if len(keys) > 1:
            ranks = np.array([[r.get(f"{s}_rank") or np.nan for s in RANKED_KEYS] for r in res.ranking], dtype=float)
            plots.heatmap(ranks, keys, list(RANKED_KEYS), run.file("ranking.png"), fmt=".0f", cmap="Greens_r",
                          title="Rank of each store per score (1 = most transferable)")
        head += _scores_markdown(res, keys, opts)
    for k in keys:
        for note in res.scores[k].get("notes", []):
            res.notes.append(f"{k}: {note}")
    write_json(run.file("scores.json"), _clean(res.scores), default=_json_default)
    body = head + run.md
    if res.notes:
        body += ["\n## Notes\n"] + [f"- {md_text(n)}" for n in res.notes]
    body += ["\n## Files\n"] + [f"- {md_code(p.name)}" for p in res.files] + ["- `summary.md`"]
    write_text(run.file("summary.md"), "\n".join(body) + "\n")  # last: the folder's table of contents


def _cell(sc: dict, key: str) -> str:
    v = sc.get(key)
    if v is None:
        return "failed" if key in sc.get("errors", {}) else "-"
    if key == "task_overlap":
        return f"{v:.1%} ± {sc['task_overlap_se']:.1%} (majority {sc['task_overlap_baseline']:.1%})"
    dims = sc.get("score_dims", {}).get(key)
    return _fmt(v) + (f" (PCA {dims})" if dims is not None and dims != sc.get("dim") else "")


def _scores_markdown(res: AnalyzeResult, keys: list[str], opts: AnalyzeOptions) -> list[str]:
    md = ["## Transferability scores\n", f"{HIGHER_IS_BETTER}. Rank in brackets when several stores; "
          f"{IN_SAMPLE_NOTE}.\n",
          "| score | " + " | ".join(map(md_text, keys)) + " |", "|---|" + "---|" * len(keys)]
    by_store = {r["store"]: r for r in res.ranking}
    for s in SCORE_KEYS:
        cells = []
        for k in keys:
            cell = _cell(res.scores[k], s)
            if len(keys) > 1 and by_store[k].get(f"{s}_rank"):
                cell += f" ({by_store[k][f'{s}_rank']})"
            cells.append(cell)
        label = s if s in RANKED_KEYS else f"{s} (in-sample)"
        md.append(f"| {label} | " + " | ".join(cells) + " |")
    for k in keys:
        sc = res.scores[k]
        if all(sc.get(x) is not None for x in ("task_overlap", "task_overlap_u", "task_overlap_u_cv")):
            md.append(f"\n{md_text(k)}: the ImageNet top-1 label predicts the target class for "
                      f"{sc['task_overlap']:.1%} "
                      f"(± {sc['task_overlap_se']:.1%}) of held-out images (majority baseline "
                      f"{sc['task_overlap_baseline']:.1%}); it explains {sc['task_overlap_u_cv']:.1%} of the "
                      f"target-label entropy on held-out folds ({sc['task_overlap_u']:.1%} chance-adjusted in-sample).")
    if res.taus:
        md += [f"\n### Scores against measured accuracy: {protocol_text(opts.judge_by, markdown=True)}\n",
               "| score | stores | Kendall tau | weighted tau | Pearson r |", "|---|---|---|---|---|"]
        md += [f"| {t['score']} | {t['n_stores']} | {_fmt(t['kendall_tau'])} | {_fmt(t['weighted_tau'])} | "
               f"{_fmt(t['pearson_r'])} |" for t in res.taus]
    return md
