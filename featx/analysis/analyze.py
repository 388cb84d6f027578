"""``featx analyze``: transferability scores, projections, outliers and class overlap for stores.

Reads stores with :func:`featx.store.reader.load_features`, scores each with :mod:`featx.analysis.scoring`,
judges the scores against accuracy with :mod:`featx.analysis.judge`, draws the views of each store with
:mod:`featx.analysis.views` and writes the tables with :mod:`featx.analysis.reports`, into
``runs/analyze-<name>/`` (or ``out``): scores.json, scores.csv, ranking.csv, taus.csv,
PNG plots, ``<store>-projections.npz``, optional ``<store>.html``, and summary.md. No torch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import AnalysisError, OptionError
from ..report.runs import new_run_dir, printable
from ..store.reader import load_features, read_attrs
from . import project
from .budget import DEFAULT_SCORE_DIMS, ScoreLog, default_budget, parse_size
from .judge import judge_accuracy
from .reports import side_by_side, write_outputs
from .scoring import compute_scores
from .transfer import score_keys
from .views import RunFolder, select_rows, write_views

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
    max_memory: int | str | None = None  # bytes (or "4G") per score; None: half the memory available once loaded
    score_dims: int | None = DEFAULT_SCORE_DIMS  # PCA dims for a score whose estimate exceeds max_memory
    judge_by: str = "probe"  # accuracy the scores are correlated with: "probe" or "fit:<classifier>"

    def resolved(self) -> "AnalyzeOptions":
        """A checked copy (the one place the options are validated): sizes parsed, defaults filled in."""
        o = AnalyzeOptions(**self.__dict__)
        if isinstance(o.max_memory, str):
            o.max_memory = parse_size(o.max_memory, "--max-memory")
        if o.score_dims is None:
            o.score_dims = DEFAULT_SCORE_DIMS
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
                res.skipped[key] = list(score_keys(source=True))
                notes.append(f"no logits in the store: {', '.join(res.skipped[key])} skipped; {LOGITS_HINT}")
            entry.update({"rows": where, "n": int(mask.sum()), "n_classes": int(len(np.unique(fs.labels[mask]))),
                          **scores, "notes": notes, "seconds": sec})
            if judged:
                jlog = ScoreLog()
                entry["accuracy"] = judge_accuracy(fs, path, opts.judge_by, opts.runs_dir, budget, jlog)
                accuracy[key] = entry["accuracy"]["value"]
                entry["notes"] += jlog.notes
                entry["errors"].update(jlog.errors)
                entry["seconds"].update(jlog.seconds)
        if opts.methods or opts.outliers or opts.overlap:
            log(f"{key}: projections / neighbourhoods")
            entry.update(write_views(run, fs, key, opts))
        del fs
    side_by_side(run, opts.seed)
    write_outputs(run, res, opts, keys, accuracy)
    if opts.transferability and not any(res.scores[k].get(s) is not None for k in keys for s in score_keys()):
        raise AnalysisError(f"no transferability score could be computed (reasons in {run.path / 'scores.json'})")
    return res
