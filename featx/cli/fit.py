"""`featx fit`: classifiers on cached features (never loads a backbone)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app
from ._common import handles_errors, out
from .options import ClassWeight, OverwriteRunOpt, RunsDirOpt, value

FIT_EXAMPLES = """
Examples:

  featx fit cache/monet-sisley--efficientnet_lite0--1a2b3c4d5e.h5 --clf linearsvc

  featx fit FEATURES.h5 --clf softmax --class-weight balanced --search

  featx fit FEATURES.h5 --clf mlp --cv 5

  featx fit cache/*.h5 --clf all          (leaderboard: backbone x classifier)

  featx fit a.h5 b.h5 --concat

  featx fit FEATURES.h5 --exclude audit/leaks.csv   (re-score without the leaked rows)
"""

StoresArg = Annotated[list[Path], typer.Argument(help="Feature stores (.h5) written by `featx extract`.",
                                                 show_default=False)]


@app.command(epilog=FIT_EXAMPLES)
@handles_errors
def fit(
    stores: StoresArg,
    clf: Annotated[str, typer.Option("--clf", help="softmax, linearsvc, mlp, knn, majority, a comma list, or all "
                                                   "(all = every one but the majority baseline).")] = "softmax",
    preprocess: Annotated[Optional[str], typer.Option(
        help="standardize | l2 | pca:K | none, chained with + (e.g. l2+pca:256). "
             "Default: standardize (knn: l2).")] = None,
    class_weight: Annotated[ClassWeight, typer.Option(help="balanced: weight classes by inverse frequency "
                                                      "(softmax, linearsvc, mlp).")] = ClassWeight.none,
    search: Annotated[bool, typer.Option("--search", help="Grid-search C / alpha / hidden sizes / k with "
                                                          "stratified 5-fold CV on the training rows.")] = False,
    cv: Annotated[Optional[int], typer.Option(help="Fit on train+val and add a stratified K-fold estimate; "
                                                   "stores without a test split always use K-fold CV "
                                                   "(default 5).")] = None,
    concat: Annotated[bool, typer.Option("--concat", help="Join the stores by image id (each block "
                                                          "L2-normalised) and fit one model.")] = False,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Run folder (default <runs-dir>/<timestamp>/).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Run name: <runs-dir>/NAME/ instead of a timestamp.")] = None,
    runs_dir: RunsDirOpt = Path("runs"),
    overwrite: OverwriteRunOpt = False,
    n_jobs: Annotated[Optional[int], typer.Option(help="Parallel jobs for --search / knn (-1 = all cores).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed for CV folds and stochastic classifiers.")] = 0,
    exclude: Annotated[Optional[list[Path]], typer.Option(
        "--exclude", help="Leave out the rows whose ids a CSV lists (its id column: featx audit's leaks.csv, "
        "label_issues.csv, ...); repeat for several files. metrics.json says how many rows went.")] = None,
    dask_scheduler: Annotated[Optional[str], typer.Option(help="Run --search on this dask.distributed scheduler "
                                                          "(tcp://HOST:8786) through joblib's dask backend.")] = None,
    explain: Annotated[int, typer.Option(help="Add explain_mistakes.png: the N most confident held-out mistakes "
                                              "with Grad-CAM maps of the chosen class (softmax, linearsvc, mlp; "
                                              "loads the backbone).")] = 0,
) -> None:
    """Fit classifiers on cached features and write metrics, report, figures and the model."""
    from ..api.fit import fit_with_options
    from ..learn.fit import FitOptions

    options = FitOptions(clf=clf, concat=concat, out=out_dir, name=name, runs_dir=runs_dir, preprocess=preprocess,
                         class_weight=value(class_weight), search=search, cv=cv, n_jobs=n_jobs, seed=seed,
                         overwrite=overwrite, dask_scheduler=dask_scheduler, exclude=tuple(exclude or ()), explain=explain)
    fit_with_options(stores, options, echo=out)
