"""``featx analyze``: transferability scores, projections, outliers and class overlap for stores.

Reads stores with :func:`featx.store.load_features`, computes with :mod:`featx.transfer` and
:mod:`featx.project`, draws with :mod:`featx.projection_plots` / :mod:`featx.plots`, and writes
into ``runs/analyze-<name>/`` (or ``out``): scores.json, scores.csv, ranking.csv, taus.csv,
PNG plots, ``<store>-projections.npz``, optional ``<store>.html``, and summary.md. No torch.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import project, transfer
from .errors import AnalysisError
from .store import FeatureSet, load_features

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
        return paths[0].stem
    joined = "-vs-".join(p.stem for p in paths)
    if len(joined) <= 60:
        return joined
    return f"{len(paths)}stores-{hashlib.sha256(joined.encode()).hexdigest()[:8]}"


def _rows(fs: FeatureSet, split: str | None, for_scores: bool) -> tuple[np.ndarray, str]:
    """Row mask and its description for a split choice."""
    n = len(fs)
    if split in (None, "auto"):
        if for_scores and np.any(fs.split == "train") and len(np.unique(fs.labels[fs.split == "train"])) > 1:
            return fs.split == "train", "train split"
        return np.ones(n, bool), "all rows"
    if split == "all":
        return np.ones(n, bool), "all rows"
    mask = fs.split == split
    if not mask.any():
        have = ", ".join(sorted(set(fs.split.tolist()))) or "none"
        raise AnalysisError(f"{fs.path}: no rows in split {split!r} (splits: {have}); use --split all")
    return mask, f"{split} split"


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


def _write_csv(path: Path, rows: list[dict]) -> Path:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
    return path


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v + 0.0:.{digits}f}".replace("-0.000", "0.000") if digits == 3 else f"{v:.{digits}f}"
    return str(v)


class _Run:
    """State of one analyze call: output folder, files written, notes."""

    def __init__(self, out_dir: Path, opts: AnalyzeOptions):
        self.out, self.opts = out_dir, opts
        self.result = AnalyzeResult(out_dir=out_dir)
        self.md: list[str] = []

    def file(self, name: str) -> Path:
        p = self.out / name
        self.result.files.append(p)
        return p

    def views(self, fs: FeatureSet, key: str) -> None:
        """Projections, thumbnails, HTML, outliers and overlap for one store."""
        from . import plots, projection_plots as pp

        o = self.opts
        mask, where = _rows(fs, o.split, for_scores=False)
        rows = np.flatnonzero(mask)
        F, y = fs.features[rows], fs.labels[rows]
        classes = fs.classes
        label = f"{key} ({where}, n={len(rows):,})"
        coords: dict[str, np.ndarray] = {}
        html_views = {}
        if o.methods:
            self.md.append(f"\n### Projections of {key}\n")
        for method in o.methods:
            dims = (2, 3) if o.three_d else (2,)
            for dim in dims:
                limit = None if method == "pca" else o.max_rows
                pr = project.project(F, y, method, dim, max_rows=limit, seed=o.seed)
                coords[f"{method}{dim}d"] = pr.coords.astype(np.float32)
                coords[f"{method}{dim}d_rows"] = rows[pr.index]
                tag = f"{method.upper() if method != 'tsne' else 't-SNE'} {dim}-D"
                note = "; ".join(s for s in (pr.note, f"seed {o.seed}") if s)
                names = ("PC1", "PC2", "PC3") if method == "pca" else ("1", "2", "3")
                pp.scatter(pr.coords, y[pr.index], classes, self.file(f"{key}-{method}-{dim}d.png"),
                           title=f"{tag}: {label}", note=note, axis_names=names, seed=o.seed)
                self.md.append(f"- {tag}: `{key}-{method}-{dim}d.png`" + (f" ({pr.note})" if pr.note else ""))
                if dim == 2 and o.thumbnails:
                    paths = [fs.image_path(int(r)) for r in rows[pr.index]]
                    pp.thumbnail_scatter(pr.coords, y[pr.index], classes, paths,
                                         self.file(f"{key}-{method}-thumbs.png"), title=f"{tag}: {label}",
                                         note=note, seed=o.seed)
                if dim == 2:
                    html_views[tag] = (pr.coords, rows[pr.index], note)
        if o.pca:
            ratios = project.explained_variance(F, 100, seed=o.seed)
            pp.variance_curve(ratios, self.file(f"{key}-pca-variance.png"),
                              title=f"PCA explained variance: {key}")
            sep = project.linear_separability(F, y, seed=o.seed, max_rows=o.max_rows)
            majority = float(np.bincount(project._encode(y)[0]).max() / len(y))
            if sep:
                pp.separability_curve(sep, self.file(f"{key}-separability.png"), chance=majority,
                                      title=f"Linear separability (LinearSVC, 5-fold) on first k PCs: {key}")
            cum = np.cumsum(ratios)
            k90 = int(np.searchsorted(cum, 0.9)) + 1 if cum[-1] >= 0.9 else None
            self.result.scores.setdefault(key, {})["pca"] = {
                "explained_variance_ratio": [round(float(r), 6) for r in ratios[:20]],
                "components_for_90pct": k90, "linear_separability": {str(k): v for k, v in sep.items()},
                "majority_baseline": majority}
            sep_txt = ", ".join(f"k={k}: {v:.3f}" for k, v in sep.items())
            self.md.append(f"- PCA: PC1+PC2 explain {cum[min(1, len(cum) - 1)]:.1%} of the variance; "
                           f"90% needs {k90 or '>100'} components. Linear SVM accuracy on the first k PCs: "
                           f"{sep_txt} (majority {majority:.3f}).")
        if coords:
            np.savez_compressed(self.file(f"{key}-projections.npz"), ids=fs.ids.astype(str),
                                labels=fs.labels, classes=np.array(classes), **coords)
        if o.html and html_views:
            pp.interactive_html(html_views, fs.ids, fs.labels, classes, self.file(f"{key}.html"),
                                title=f"featx analyze: {label}")
        if o.outliers:
            found = project.outliers(F, y, k=o.k, per_class=5)
            table = [{"row": int(rows[r]), "id": str(fs.ids[rows[r]]), "class": classes[c],
                      "knn_distance": round(d, 4)} for r, c, d in found]
            _write_csv(self.file(f"{key}-outliers.csv"), table)
            plots.contact_sheet([fs.image_path(t["row"]) for t in table],
                                [f"{t['class']}: {Path(t['id']).name} (d={t['knn_distance']:.2f})" for t in table],
                                self.file(f"{key}-outliers.png"),
                                title=f"Outliers per class (mean cosine distance to {o.k} nearest same-class): {key}")
            self.md.append(f"\n### Outliers of {key}\n\nPer class, the rows farthest from their class "
                           f"(`{key}-outliers.csv`, `{key}-outliers.png`):\n")
            for t in table[:15]:
                self.md.append(f"- {t['class']}: `{t['id']}` (distance {t['knn_distance']:.3f})")
        if o.overlap:
            m = project.neighbourhood_overlap(F, y, k=o.k, max_queries=o.max_rows, seed=o.seed)
            present = [classes[i] for i in np.unique(y)]
            plots.heatmap(m, present, present, self.file(f"{key}-overlap.png"), fmt=".2f", vmin=0, vmax=1,
                          title=f"kNN neighbourhood overlap (k={o.k}): row class -> neighbour class",
                          xlabel="neighbour class", ylabel="class")
            br = project.bridges(m, present)
            pairs = project.confused_pairs(m, present, top=10)
            info = {"classes": present, "matrix": np.round(m, 4).tolist(), "bridges": br,
                    "closest_pairs": [{"a": a, "b": b, "overlap": round(v, 4)} for a, b, v in pairs]}
            self.file(f"{key}-overlap.json").write_text(json.dumps(info, indent=2) + "\n")
            self.result.scores.setdefault(key, {})["overlap"] = {"bridges": br, "closest_pairs": info["closest_pairs"]}
            self.md.append(f"\n### Class neighbourhood overlap of {key} (k={o.k})\n")
            self.md.append("Class purity (share of same-class neighbours): " + ", ".join(
                f"{c} {m[i, i]:.2f}" for i, c in enumerate(present)) + ".")
            for a, b, v in pairs[:5]:
                self.md.append(f"- {a} and {b} share neighbourhoods: {v:.3f}")
            for d in br[:10]:
                (a, c), (sa, sc) = d["between"], d["shares"]
                self.md.append(f"- **{d['class']}** bridges {a} and {c}: {sa:.0%} / {sc:.0%} of its neighbours are "
                               f"{a} / {c}, while {a} and {c} overlap {d['direct']:.0%}")
            if not br:
                self.md.append("- no class bridges two classes that are otherwise apart")


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
    out_dir = Path(out) if out else opts.runs_dir / f"analyze-{name or default_name(paths)}"
    out_dir.mkdir(parents=True, exist_ok=True)
    run = _Run(out_dir, opts)
    res = run.result
    stems = [p.stem for p in paths]
    keys = stems if len(set(stems)) == len(stems) else [f"{p.parent.name}-{p.stem}" for p in paths]
    if len(set(keys)) != len(keys):
        keys = [f"{i}-{k}" for i, k in enumerate(keys)]
    accuracy: dict[str, float] = {}
    for path, key in zip(paths, keys):
        log(f"{key}: loading {path}")
        fs = load_features(path)
        if len(fs) == 0:
            raise AnalysisError(f"{path}: the store has no rows")
        fp = fs.fingerprint or {}
        entry = res.scores.setdefault(key, {})
        entry.update({"path": str(path), "backbone": fp.get("backbone"), "weights": fp.get("weights"),
                      "layer": fp.get("layer"), "pool": fp.get("pool"), "dim": int(fs.features.shape[1])})
        if opts.transferability:
            mask, where = _rows(fs, opts.split, for_scores=True)
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
            run.views(fs, key)
    _write_outputs(run, keys, accuracy)
    return res


def _write_outputs(run: _Run, keys: list[str], accuracy: dict[str, float]) -> None:
    from . import plots

    res, opts = run.result, run.opts
    head = [f"# featx analyze: {', '.join(keys)}\n"]
    if opts.transferability:
        res.ranking = rank_stores({k: res.scores[k] for k in keys})
        _write_csv(run.file("scores.csv"), [
            {"store": k, **{c: res.scores[k].get(c) for c in ("backbone", "weights", "layer", "pool", "dim", "n",
                                                               "rows")},
             **{s: res.scores[k].get(s) for s in SCORE_KEYS},
             **{s: res.scores[k].get(s) for s in ("task_overlap_se", "task_overlap_baseline", "nce_cv",
                                                  "task_overlap_u_cv")}} for k in keys])
        _write_csv(run.file("ranking.csv"), res.ranking)
        if len(accuracy) >= 3:
            res.taus = score_taus({k: res.scores[k] for k in keys}, accuracy)
            _write_csv(run.file("taus.csv"), res.taus)
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
