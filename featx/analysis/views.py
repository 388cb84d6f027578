"""The pictures and tables of one store: projections (2-D/3-D, thumbnails, HTML), the PCA summary,
outliers and class neighbourhood overlap, written into an analyze run folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import AnalysisError
from ..files import atomic_path, write_json
from ..report import plots
from ..report import projection_plots as pp
from ..report.escape import md_code, md_text
from ..report.html import interactive_html
from ..report.runs import write_csv
from ..stats import majority_accuracy
from . import project


@dataclass
class RunFolder:
    """The output folder of one analyze call: the files written and the summary's markdown lines."""

    path: Path
    files: list[Path] = field(default_factory=list)
    md: list[str] = field(default_factory=list)
    panels: dict[str, list] = field(default_factory=dict)  # method -> (label, 2-D coords, labels, classes) per store

    def file(self, name: str) -> Path:
        p = self.path / name
        self.files.append(p)
        return p


def select_rows(fs, split: str | None, for_scores: bool) -> tuple[np.ndarray, str]:
    """Row mask of a :class:`~featx.store.reader.FeatureSet` for a ``--split`` choice, and its description.

    ``None``/``"auto"``: the train split for scores (when it holds 2+ classes), all rows for views.
    """
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


def write_views(run: RunFolder, fs, key: str, o) -> dict:
    """Every view ``o`` (:class:`~featx.analysis.analyze.AnalyzeOptions`) asks for, for one store.

    Returns what goes into scores.json under the store (``pca``, ``overlap``).
    """
    mask, where = select_rows(fs, o.split, for_scores=False)
    rows = np.flatnonzero(mask)
    F, y = fs.features[rows], fs.labels[rows]
    label = f"{key} ({where}, n={len(rows):,})"
    entry: dict = {}
    if o.methods:
        _projections(run, fs, key, F, y, rows, label, o)
    if o.pca:
        entry["pca"] = _pca_summary(run, key, F, y, o)
    if o.outliers:
        _outliers(run, fs, key, F, y, rows, o)
    if o.overlap:
        entry["overlap"] = _overlap(run, fs, key, F, y, o)
    return entry


def _projections(run: RunFolder, fs, key: str, F, y, rows, label: str, o) -> None:
    """Scatter PNGs per method and dimension, thumbnails, the coordinates (.npz) and the HTML view."""
    coords: dict[str, np.ndarray] = {}
    html_views = {}
    run.md.append(f"\n### Projections of {md_text(key)}\n")
    for method in o.methods:
        for dim in (2, 3) if o.three_d else (2,):
            limit = None if method == "pca" else o.max_rows
            pr = project.project(F, y, method, dim, max_rows=limit, seed=o.seed)
            coords[f"{method}{dim}d"] = pr.coords.astype(np.float32)
            coords[f"{method}{dim}d_rows"] = rows[pr.index]
            tag = f"{method.upper() if method != 'tsne' else 't-SNE'} {dim}-D"
            note = "; ".join(s for s in (pr.note, f"seed {o.seed}") if s)
            names = ("PC1", "PC2", "PC3") if method == "pca" else ("1", "2", "3")
            pp.scatter(pr.coords, y[pr.index], fs.classes, run.file(f"{key}-{method}-{dim}d.png"),
                       title=f"{tag}: {label}", note=note, axis_names=names, seed=o.seed)
            run.md.append(f"- {tag}: {md_code(f'{key}-{method}-{dim}d.png')}" + (f" ({pr.note})" if pr.note else ""))
            if dim == 2 and o.thumbnails:
                paths = [fs.image_source(int(r)) for r in rows[pr.index]]
                pp.thumbnail_scatter(pr.coords, y[pr.index], fs.classes, paths,
                                     run.file(f"{key}-{method}-thumbs.png"), title=f"{tag}: {label}",
                                     note=note, seed=o.seed)
            if dim == 2:
                html_views[tag] = (pr.coords, rows[pr.index], note)
                run.panels.setdefault(method, []).append((label, pr.coords, y[pr.index], list(fs.classes)))
    with atomic_path(run.file(f"{key}-projections.npz")) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, ids=fs.ids.astype(str), labels=fs.labels, classes=np.array(fs.classes), **coords)
    if o.html:
        interactive_html(html_views, fs.ids, fs.labels, fs.classes, run.file(f"{key}.html"),
                         title=f"featx analyze: {label}", images=fs.image_source)


def _pca_summary(run: RunFolder, key: str, F, y, o) -> dict:
    """Explained-variance and linear-separability curves, and their numbers."""
    ratios = project.explained_variance(F, 100, seed=o.seed)
    pp.variance_curve(ratios, run.file(f"{key}-pca-variance.png"), title=f"PCA explained variance: {key}")
    sep = project.linear_separability(F, y, seed=o.seed, max_rows=o.max_rows)
    majority = majority_accuracy(y)
    if sep:
        pp.separability_curve(sep, run.file(f"{key}-separability.png"), chance=majority,
                              title=f"Linear separability (LinearSVC, 5-fold) on first k PCs: {key}")
    cum = np.cumsum(ratios)
    k90 = int(np.searchsorted(cum, 0.9)) + 1 if cum[-1] >= 0.9 else None
    sep_txt = ", ".join(f"k={k}: {v:.3f}" for k, v in sep.items())
    run.md.append(f"- PCA: PC1+PC2 explain {cum[min(1, len(cum) - 1)]:.1%} of the variance; "
                  f"90% needs {k90 or '>100'} components. Linear SVM accuracy on the first k PCs: "
                  f"{sep_txt} (majority {majority:.3f}).")
    return {"explained_variance_ratio": [round(float(r), 6) for r in ratios[:20]],
            "components_for_90pct": k90, "linear_separability": {str(k): v for k, v in sep.items()},
            "majority_baseline": majority}


def _outliers(run: RunFolder, fs, key: str, F, y, rows, o) -> None:
    """Per class, the rows farthest from their class: CSV, contact sheet, summary lines."""
    found = project.outliers(F, y, k=o.k, per_class=5)
    table = [{"row": int(rows[r]), "id": str(fs.ids[rows[r]]), "class": fs.classes[c],
              "knn_distance": round(d, 4)} for r, c, d in found]
    write_csv(run.file(f"{key}-outliers.csv"), table)
    plots.contact_sheet([fs.image_source(t["row"]) for t in table],
                        [f"{t['class']}: {Path(t['id']).name} (d={t['knn_distance']:.2f})" for t in table],
                        run.file(f"{key}-outliers.png"),
                        title=f"Outliers per class (mean cosine distance to {o.k} nearest same-class): {key}")
    run.md.append(f"\n### Outliers of {md_text(key)}\n\nPer class, the rows farthest from their class "
                  f"({md_code(f'{key}-outliers.csv')}, {md_code(f'{key}-outliers.png')}):\n")
    for t in table[:15]:
        run.md.append(f"- {md_text(t['class'])}: {md_code(t['id'])} (distance {t['knn_distance']:.3f})")


def _overlap(run: RunFolder, fs, key: str, F, y, o) -> dict:
    """Class x class kNN neighbourhood overlap: heatmap, JSON, bridging classes and closest pairs."""
    m = project.neighbourhood_overlap(F, y, k=o.k, max_queries=o.max_rows, seed=o.seed)
    present = [fs.classes[i] for i in np.unique(y)]
    plots.heatmap(m, present, present, run.file(f"{key}-overlap.png"), fmt=".2f", vmin=0, vmax=1,
                  title=f"kNN neighbourhood overlap (k={o.k}): row class -> neighbour class",
                  xlabel="neighbour class", ylabel="class")
    br = project.bridges(m, present)
    pairs = project.confused_pairs(m, present, top=10)
    info = {"classes": present, "matrix": np.round(m, 4).tolist(), "bridges": br,
            "closest_pairs": [{"a": a, "b": b, "overlap": round(v, 4)} for a, b, v in pairs]}
    write_json(run.file(f"{key}-overlap.json"), info)
    run.md.append(f"\n### Class neighbourhood overlap of {md_text(key)} (k={o.k})\n")
    run.md.append("Class purity (share of same-class neighbours): " + ", ".join(
        f"{md_text(c)} {m[i, i]:.2f}" for i, c in enumerate(present)) + ".")
    for a, b, v in pairs[:5]:
        run.md.append(f"- {md_text(a)} and {md_text(b)} share neighbourhoods: {v:.3f}")
    for d in br[:10]:
        (a, c), (sa, sc) = map(md_text, d["between"]), d["shares"]
        run.md.append(f"- **{md_text(d['class'])}** bridges {a} and {c}: {sa:.0%} / {sc:.0%} of its neighbours are "
                      f"{a} / {c}, while {a} and {c} overlap {d['direct']:.0%}")
    if not br:
        run.md.append("- no class bridges two classes that are otherwise apart")
    return {"bridges": br, "closest_pairs": info["closest_pairs"]}
