"""`featx analyze`: transferability scores, projections, outliers and class overlap (no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app
from ._common import handles_errors, out, progress, warn
from .options import OverwriteRunOpt, RunsDirOpt, Split, value

ANALYZE_EXAMPLES = """
Examples:

  featx analyze STORE.h5 --transferability

  featx analyze cache/*.h5 --transferability      # rank stores by each score, one table

  featx analyze STORE.h5 --umap --tsne --pca --3d --thumbnails --html

  featx analyze STORE.h5 --outliers --overlap
"""


@app.command(epilog=ANALYZE_EXAMPLES)
@handles_errors
def analyze(
    stores: Annotated[list[Path], typer.Argument(help="Feature stores (.h5) written by `featx extract`.")],
    transferability: Annotated[bool, typer.Option("--transferability", "-t", help="LEEP, NCE, task overlap, "
                                                  "LogME, H-scores, GBC and baselines; ranks several stores.")] = False,
    pca: Annotated[bool, typer.Option("--pca", help="PCA view, explained-variance curve, linear separability "
                                      "on the first k PCs.")] = False,
    tsne: Annotated[bool, typer.Option("--tsne", help="t-SNE view (PCA to 50 dims first, sub-sampled to "
                                       "--max-rows).")] = False,
    umap: Annotated[bool, typer.Option("--umap", help="UMAP view (umap-learn; PCA to 50 dims first, "
                                       "sub-sampled to --max-rows).")] = False,
    three_d: Annotated[bool, typer.Option("--3d", help="Also draw 3-D views of each projection.")] = False,
    thumbnails: Annotated[bool, typer.Option("--thumbnails", help="Draw small images at their projected "
                                             "positions.")] = False,
    html: Annotated[bool, typer.Option("--html", help="Standalone interactive HTML (hover shows id and "
                                       "label).")] = False,
    outliers: Annotated[bool, typer.Option("--outliers", help="Per class, the images farthest from their class "
                                           "(contact sheet).")] = False,
    overlap: Annotated[bool, typer.Option("--overlap", help="Class x class kNN neighbourhood overlap heatmap and "
                                          "the classes that bridge others.")] = False,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default: "
                                                    "<runs-dir>/analyze-<name>).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Run name (default: from the store names).")] = None,
    split: Annotated[Optional[Split], typer.Option(help="Rows to use (default: scores on the train split when "
                                                   "present, views on all rows).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of sub-sampling, folds and projections.")] = 0,
    max_rows: Annotated[int, typer.Option(help="Row cap for t-SNE/UMAP, kNN queries, the linear probe and "
                                          "separability (stratified sub-sample).")] = 20000,
    k: Annotated[int, typer.Option("--k", help="Neighbours for kNN accuracy, outliers and overlap.")] = 10,
    max_memory: Annotated[Optional[str], typer.Option(
        "--max-memory", help="Memory budget per score, e.g. 4G or 512M (default: half the memory available once "
        "the store is loaded). A score estimated above it runs on --score-dims principal components, or is skipped; "
        "never a crash.")] = None,
    score_dims: Annotated[Optional[int], typer.Option("--score-dims", help="Principal components (default 256) "
                                                      "for a score whose full-dimension estimate exceeds "
                                                      "--max-memory; stated in scores.json (score_dims).")] = None,
    judge_by: Annotated[str, typer.Option("--judge-by", help="Accuracy the scores are correlated with (3+ "
                                          "stores): 'probe' (linear probe fitted on train, accuracy on the test "
                                          "split) or 'fit:<classifier>' (newest `featx fit` run of it under "
                                          "--runs-dir).")] = "probe",
    runs_dir: RunsDirOpt = Path("runs"),
    overwrite: OverwriteRunOpt = False,
) -> None:
    """Score how well features transfer to the labels and draw them (no torch needed).

    With no option, computes --transferability and --pca. Outputs: scores.json, scores.csv,
    ranking.csv, PNG plots, projections .npz, optional .html, summary.md.
    """
    from ..analysis.analyze import LOGITS_HINT
    from ..analysis.transfer import ranked_keys, score_keys
    from ..api import analyze as run

    res = run(stores, transferability=transferability, pca=pca, tsne=tsne, umap=umap, three_d=three_d,
              thumbnails=thumbnails, html=html, outliers=outliers, overlap=overlap, split=value(split), seed=seed,
              max_rows=max_rows, k=k, runs_dir=runs_dir, overwrite=overwrite, max_memory=max_memory,
              score_dims=score_dims, judge_by=judge_by, out=out_dir, name=name, log=progress)
    if res.ranking:
        width = max(14, *(len(r["store"]) for r in res.ranking))
        ranked = ranked_keys()
        labels = {key: key if key in ranked else f"{key} (in-sample)" for key in score_keys()}
        first = max(map(len, labels.values())) + 2
        out(f"{'score':<{first}}" + "".join(f"{r['store']:>{width + 2}}" for r in res.ranking))
        for key, label in labels.items():
            cells = []
            for r in res.ranking:
                v, rank = r.get(key), r.get(f"{key}_rank")
                txt = "-" if v is None else f"{v:.4f}" + (f" ({rank})" if len(res.ranking) > 1 and rank else "")
                cells.append(f"{txt:>{width + 2}}")
            out(f"{label:<{first}}" + "".join(cells))
    for t in res.taus:
        out(f"{t['score']} vs accuracy ({t['protocol']}): kendall tau {t['kendall_tau']}, weighted tau "
            f"{t['weighted_tau']}, pearson r {t['pearson_r']} ({t['n_stores']} stores)")
    for note in res.notes:
        if not (res.skipped and LOGITS_HINT in note):  # said once, below
            warn(note)
    if res.skipped:  # a partial table is a result, not a failure: stores with and without logits mix
        names = ", ".join(res.skipped)
        warn(f"{', '.join(next(iter(res.skipped.values())))} skipped for {names} (no logits in the store); "
             f"{LOGITS_HINT}")
    out(f"wrote {len(res.files)} files to {res.path} (see summary.md)")
