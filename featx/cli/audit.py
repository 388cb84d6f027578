"""`featx audit`: near-duplicates and leaks, likely label errors, outliers and least-sure images (no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app
from ._common import handles_errors, out
from .options import OverwriteRunOpt

AUDIT_EXAMPLES = """
Examples:

  featx audit cache/monet-sisley--efficientnet_lite0--1a2b3c4d5e.h5

  featx audit STORE.h5 --fit runs/20250101-120000 --out audit-svc

  featx fit STORE.h5 --exclude audit/leaks.csv      (re-score without the leaked test rows)
"""


@app.command(epilog=AUDIT_EXAMPLES)
@handles_errors
def audit(
    store: Annotated[Path, typer.Argument(help="Feature store (.h5) written by `featx extract`.", show_default=False)],
    fit: Annotated[Optional[Path], typer.Option("--fit", help="A `featx fit` run folder fitted on this store: "
                                                "use its classifier, preprocessing, class weights and searched "
                                                "parameters.")] = None,
    clf: Annotated[Optional[str], typer.Option("--clf", help="Classifier of the out-of-fold probabilities and the "
                                               "held-out accuracy (softmax, linearsvc, mlp, knn; default softmax), "
                                               "instead of --fit.")] = None,
    folds: Annotated[int, typer.Option(help="Stratified folds of the out-of-fold probabilities.")] = 5,
    rank_by: Annotated[str, typer.Option("--rank-by", help="Rank likely label errors by self_confidence "
                                         "(p of the given label) or normalized_margin.")] = "self_confidence",
    threshold: Annotated[Optional[float], typer.Option(help="Cosine similarity at or above which two rows are "
                                                       "near-duplicates (default: the calibrated 0.9).")] = None,
    top: Annotated[int, typer.Option(help="Rows in the least-sure table and images per contact sheet.")] = 30,
    k: Annotated[int, typer.Option("--k", help="Same-class neighbours of the outlier distance.")] = 10,
    per_class: Annotated[int, typer.Option(help="Outliers listed per class.")] = 5,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Audit folder (default: audit/ beside the "
                                                    "store; audit-2/, ... when that holds one).")] = None,
    overwrite: OverwriteRunOpt = False,
    seed: Annotated[int, typer.Option(help="Seed of the folds and the classifier.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Find near-duplicate and leaked images, likely label errors, outliers and the images the classifier is
    least sure of; write CSVs, contact sheets and summary.md."""
    from ..api.audit import audit_with_options
    from ..look.audit import AuditOptions

    options = AuditOptions(clf=clf, fit=fit, folds=folds, rank_by=rank_by, threshold=threshold, top=top, k=k,
                           per_class=per_class, out=out_dir, overwrite=overwrite, seed=seed, progress=not quiet)
    audit_with_options(store, options, echo=out)
