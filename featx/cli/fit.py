"""`featx fit` (classifiers on cached features, never loads a backbone) and `featx predict`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import app
from ._common import handles_errors, out, warn

FIT_EXAMPLES = """
Examples:

  featx fit cache/monet-sisley--efficientnet_lite0--1a2b3c4d5e.h5 --clf linearsvc

  featx fit FEATURES.h5 --clf softmax --class-weight balanced --search

  featx fit FEATURES.h5 --clf mlp --cv 5

  featx fit cache/*.h5 --clf all          (leaderboard: backbone x classifier)

  featx fit a.h5 b.h5 --concat
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
    class_weight: Annotated[str, typer.Option(help="none or balanced (softmax, linearsvc, mlp).")] = "none",
    search: Annotated[bool, typer.Option("--search", help="Grid-search C / alpha / hidden sizes / k with "
                                                          "stratified 5-fold CV on the training rows.")] = False,
    cv: Annotated[Optional[int], typer.Option(help="Fit on train+val and add a stratified K-fold estimate; "
                                                   "stores without a test split always use K-fold CV "
                                                   "(default 5).")] = None,
    concat: Annotated[bool, typer.Option("--concat", help="Join the stores by image id (each block "
                                                          "L2-normalised) and fit one model.")] = False,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Run folder (default runs/<timestamp>/).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Run name: runs/NAME/ instead of a timestamp.")] = None,
    n_jobs: Annotated[Optional[int], typer.Option(help="Parallel jobs for --search / knn (-1 = all cores).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed for CV folds and stochastic classifiers.")] = 0,
) -> None:
    """Fit classifiers on cached features and write metrics, report, figures and the model."""
    from .. import reports
    from ..store import load_features

    loaded = [load_features(p) for p in stores]
    reports.fit_stores(loaded, clf, concat=concat, out=out_dir, name=name, preprocess=preprocess,
                       class_weight=class_weight, search=search, cv=cv, n_jobs=n_jobs, seed=seed, echo=out)


@app.command()
@handles_errors
def predict(
    model: Annotated[Path, typer.Argument(help="model.joblib written by `featx fit` (or its run folder).",
                                          show_default=False)],
    images: Annotated[list[Path], typer.Argument(help="Image files to classify.", show_default=False)],
    top_k: Annotated[int, typer.Option(help="Classes shown per image.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per image: "
                                                         '{"path": ..., "top": [[class, probability], ...]}.')]
    = False,
    weights: Annotated[Optional[Path], typer.Option(help="Checkpoint file, for models fit on features of a "
                                                         "local checkpoint (file:<sha256> weights).")] = None,
) -> None:
    """Embed IMAGES with the model's backbone and print the top-k classes with probabilities."""
    from ..predict import format_prediction, predict_paths

    results, failures = predict_paths(model, images, top_k=top_k, weights=weights)
    for r in results:
        out(json.dumps(r) if as_json else format_prediction(r))
    for path, reason in failures:
        warn(f"{path}: skipped ({reason})")
    if not results:
        raise typer.Exit(1)
