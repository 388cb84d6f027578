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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import AnalysisError
from ..report import plots
from ..report.runs import new_run_dir, printable, write_csv
from ..store.reader import load_features, read_attrs
from . import project, transfer
from .views import RunFolder, select_rows, write_views

SCORE_KEYS = transfer.ALL_SCORES
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

    def resolved(self) -> "AnalyzeOptions":
        o = AnalyzeOptions(**self.__dict__)
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


def _timed(seconds: dict, key: str, fn: Callable, *args, **kwargs):
    t = time.perf_counter()
    value = fn(*args, **kwargs)
    seconds[key] = round(time.perf_counter() - t, 3)
    return value


def compute_scores(F: np.ndarray, y: np.ndarray, logits: np.ndarray | None, *, seed: int = 0,
                   max_rows: int = 20000) -> tuple[dict, list[str], dict]:
    """All scores for one feature matrix: (scores incl. extras, notes, seconds per score).

    Scores needing logits are None when ``logits`` is None. kNN accuracy queries and the linear
    probe use at most ``max_rows`` rows, silhouette 5000 (stated in the notes).
    """
    if len(np.unique(y)) < 2:
        raise AnalysisError("transferability needs at least 2 classes in the rows analysed")
    s: dict = {k: None for k in SCORE_KEYS}
    notes: list[str] = []
    sec: dict = {}
    if logits is not None:
        t = time.perf_counter()
        theta = transfer.softmax(logits)
        zhat = theta.argmax(axis=1)
        sec["softmax"] = round(time.perf_counter() - t, 3)
        s["leep"] = _timed(sec, "leep", transfer.leep, theta, y)
        s["nce"] = _timed(sec, "nce", transfer.nce, zhat, y)
        s["nce_cv"] = transfer.nce(zhat, y, cv=5, seed=seed)
        ov = _timed(sec, "task_overlap", transfer.task_overlap, zhat, y, seed=seed)
        s["task_overlap"], s["task_overlap_se"], s["task_overlap_baseline"] = float(ov), ov.se, ov.baseline
        s["task_overlap_u"] = _timed(sec, "task_overlap_u", transfer.task_overlap_u, zhat, y)
        s["task_overlap_u_cv"] = transfer.task_overlap_u(zhat, y, method="cv", seed=seed)
        s["source_labels_used"] = int(len(np.unique(zhat)))
    n = len(y)
    for key, fn in transfer.FEATURE_SCORES.items():
        kwargs: dict = {}
        if key in ("gbc", "knn_acc", "probe_acc", "silhouette"):
            kwargs["seed"] = seed
        if key == "knn_acc":
            kwargs["max_queries"] = max_rows
        if key == "probe_acc" and n > max_rows:
            idx = project.subsample(y, max_rows, seed)
            s[key] = _timed(sec, key, fn, F[idx], y[idx], **kwargs)
            notes.append(f"probe_acc on a stratified {len(idx):,} of {n:,} rows")
            continue
        s[key] = _timed(sec, key, fn, F, y, **kwargs)
    if n <= F.shape[1]:
        notes.append(f"n <= d ({n:,} rows, {F.shape[1]:,} dims): hscore saturates at C-1 and hscore_shrink / fisher "
                     "whiten with few rows, so they barely separate backbones; compare them on PCA-reduced features")
    if n > max_rows:
        notes.append(f"knn_acc from {max_rows:,} random query rows of {n:,}")
    if n > 5000:
        notes.append(f"silhouette on 5,000 random rows of {n:,}")
    return s, notes, sec


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
    """Per store, per score: the value and its rank (1 = best; higher is better for every score)."""
    names = list(scores)
    ranks = {name: {} for name in names}
    for key in SCORE_KEYS:
        vals = [(scores[n].get(key), n) for n in names]
        ok = sorted((v, n) for v, n in vals if v is not None and math.isfinite(v))
        for r, (_, n) in enumerate(reversed(ok), start=1):
            ranks[n][key] = r
    return [{"store": n, **{f"{k}": scores[n].get(k) for k in SCORE_KEYS},
             **{f"{k}_rank": ranks[n].get(k) for k in SCORE_KEYS}} for n in names]


def find_fit_accuracy(store_path: Path, runs_dir: Path) -> tuple[float, int] | None:
    """Best held-out accuracy among ``runs_dir/**/metrics.json`` whose "store" is this store,
    and how many runs matched (None when there are none)."""
    if not runs_dir.is_dir():
        return None
    target = store_path.resolve()
    best, count = None, 0
    for mfile in runs_dir.rglob("metrics.json"):
        try:
            m = json.loads(mfile.read_text())
            store, acc = m.get("store"), m.get("accuracy")
            if store is None or acc is None:
                continue
            if Path(store).resolve() != target:
                continue
        except (OSError, ValueError, TypeError, AttributeError):
            continue
        count += 1
        best = float(acc) if best is None else max(best, float(acc))
    return None if best is None else (best, count)


def score_taus(scores: dict[str, dict], accuracy: dict[str, float]) -> list[dict]:
    """Kendall's tau and weighted tau (scipy) between each score and measured accuracy."""
    from scipy.stats import kendalltau, weightedtau

    names = [n for n in scores if n in accuracy]
    out = []
    for key in SCORE_KEYS:
        pairs = [(scores[n][key], accuracy[n]) for n in names if scores[n].get(key) is not None]
        if len(pairs) < 3:
            continue
        x, a = np.array(pairs, dtype=float).T
        out.append({"score": key, "n_stores": len(pairs), "kendall_tau": _nan_none(kendalltau(x, a)[0]),
                    "weighted_tau": _nan_none(weightedtau(x, a)[0])})
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
    accuracy: dict[str, float] = {}
    for path, key in zip(paths, keys):
        log(f"{key}: loading {path}")
        fs = load_features(path)
        fp = fs.fingerprint or {}
        entry = res.scores.setdefault(key, {})
        entry.update({"path": str(path), "backbone": fp.get("backbone"), "weights": fp.get("weights"),
                      "layer": fp.get("layer"), "pool": fp.get("pool"), "dim": int(fs.features.shape[1])})
        if opts.transferability:
            mask, where = select_rows(fs, opts.split, for_scores=True)
            log(f"{key}: scoring {int(mask.sum()):,} rows ({where})")
            logits = None if fs.logits is None else fs.logits[mask]
            scores, notes, sec = compute_scores(fs.features[mask], fs.labels[mask], logits, seed=opts.seed,
                                                max_rows=opts.max_rows)
            if logits is None:
                res.skipped[key] = list(transfer.SOURCE_SCORES)
                notes.append(f"no logits in the store: {', '.join(transfer.SOURCE_SCORES)} skipped; {LOGITS_HINT}")
            entry.update({"rows": where, "n": int(mask.sum()), "n_classes": int(len(np.unique(fs.labels[mask]))),
                          **scores, "notes": notes, "seconds": sec})
            fit = find_fit_accuracy(path, opts.runs_dir)
            if fit is not None:
                accuracy[key] = fit[0]
                entry["fit_accuracy"] = {"best": fit[0], "runs": fit[1]}
        if opts.methods or opts.outliers or opts.overlap:
            log(f"{key}: projections / neighbourhoods")
            entry.update(write_views(run, fs, key, opts))
    _write_outputs(run, res, opts, keys, accuracy)
    return res


def _write_outputs(run: RunFolder, res: AnalyzeResult, opts: AnalyzeOptions, keys: list[str],
                   accuracy: dict[str, float]) -> None:
    head = [f"# featx analyze: {', '.join(keys)}\n"]
    if opts.transferability:
        res.ranking = rank_stores({k: res.scores[k] for k in keys})
        write_csv(run.file("scores.csv"), [
            {"store": k, **{c: res.scores[k].get(c) for c in ("backbone", "weights", "layer", "pool", "dim", "n",
                                                               "rows")},
             **{s: res.scores[k].get(s) for s in SCORE_KEYS},
             **{s: res.scores[k].get(s) for s in ("task_overlap_se", "task_overlap_baseline", "nce_cv",
                                                  "task_overlap_u_cv")}} for k in keys])
        write_csv(run.file("ranking.csv"), res.ranking)
        if len(accuracy) >= 3:
            res.taus = score_taus({k: res.scores[k] for k in keys}, accuracy)
            write_csv(run.file("taus.csv"), res.taus)
        elif accuracy:
            res.notes.append(f"fit accuracy found for {len(accuracy)} store(s); Kendall's tau needs 3 or more")
        if len(keys) > 1:
            ranks = np.array([[r.get(f"{s}_rank") or np.nan for s in SCORE_KEYS] for r in res.ranking], dtype=float)
            plots.heatmap(ranks, keys, list(SCORE_KEYS), run.file("ranking.png"), fmt=".0f", cmap="Greens_r",
                          title="Rank of each store per score (1 = most transferable)")
        head += _scores_markdown(res, keys)
    for k in keys:
        for note in res.scores[k].get("notes", []):
            res.notes.append(f"{k}: {note}")
    run.file("scores.json").write_text(json.dumps(_clean(res.scores), indent=2, default=_json_default) + "\n")
    body = head + run.md
    if res.notes:
        body += ["\n## Notes\n"] + [f"- {n}" for n in res.notes]
    body += ["\n## Files\n"] + [f"- `{p.name}`" for p in res.files] + ["- `summary.md`"]
    run.file("summary.md").write_text("\n".join(body) + "\n")


def _scores_markdown(res: AnalyzeResult, keys: list[str]) -> list[str]:
    md = ["## Transferability scores\n", f"{HIGHER_IS_BETTER}. Rank in brackets when several stores.\n",
          "| score | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    by_store = {r["store"]: r for r in res.ranking}
    for s in SCORE_KEYS:
        cells = []
        for k in keys:
            v = res.scores[k].get(s)
            cell = _fmt(v)
            if s == "task_overlap" and v is not None:
                cell = f"{v:.1%} ± {res.scores[k]['task_overlap_se']:.1%} (majority {res.scores[k]['task_overlap_baseline']:.1%})"
            if len(keys) > 1 and by_store[k].get(f"{s}_rank"):
                cell += f" ({by_store[k][f'{s}_rank']})"
            cells.append(cell)
        md.append(f"| {s} | " + " | ".join(cells) + " |")
    for k in keys:
        sc = res.scores[k]
        if sc.get("task_overlap") is not None:
            md.append(f"\n{k}: the ImageNet top-1 label predicts the target class for {sc['task_overlap']:.1%} "
                      f"(± {sc['task_overlap_se']:.1%}) of held-out images (majority baseline "
                      f"{sc['task_overlap_baseline']:.1%}); it explains {sc['task_overlap_u']:.1%} of the target-label "
                      f"entropy (chance-adjusted; held-out {sc['task_overlap_u_cv']:.1%}).")
    if res.taus:
        md += ["\n### Scores against measured accuracy (best `featx fit` run per store)\n",
               "| score | stores | Kendall tau | weighted tau |", "|---|---|---|---|"]
        md += [f"| {t['score']} | {t['n_stores']} | {_fmt(t['kendall_tau'])} | {_fmt(t['weighted_tau'])} |"
               for t in res.taus]
    return md
