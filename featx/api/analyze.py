"""``featx.analyze``: transferability scores, projections and neighbourhoods of stores, as an :class:`Analysis`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..report import plots
from ._common import StoreLike, figures_by_name, store_list, store_path


@dataclass
class Analysis:
    """What :func:`analyze` computed and wrote.

    Attributes
    ----------
    path : Path
        The output folder (scores.json, scores.csv, ranking.csv, PNGs, projections .npz, summary.md).
    scores : dict
        Per store (keyed by its name): every score, with notes, errors and seconds.
    ranking : list of dict
        Per store, each score's value and rank (1 = most transferable); several stores only.
    taus : list of dict
        Kendall's tau, weighted tau and Pearson's r of each score against measured accuracy (3+ stores).
    files : list of Path
        Every file written.
    figures : dict
        ``{file name: matplotlib Figure}`` of every PNG written.
    notes : list of str
        What the analysis wants you to know (sub-sampling, PCA fallbacks, skipped scores).
    skipped : dict
        Per store, the scores skipped because the store holds no logits.
    """

    path: Path
    scores: dict
    ranking: list = field(default_factory=list)
    taus: list = field(default_factory=list)
    files: list = field(default_factory=list)
    figures: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    skipped: dict = field(default_factory=dict)

    def __getitem__(self, store: str) -> dict:
        """The scores of one store (its name, as in :attr:`scores`)."""
        return self.scores[store]

    def __repr__(self) -> str:
        return f"<featx.Analysis of {', '.join(self.scores)}: {len(self.files)} files in {self.path}>"

    def to_pandas(self):
        """scores.csv as a pandas DataFrame, one row per store (empty without ``transferability``)."""
        import pandas as pd

        csv = self.path / "scores.csv"
        return pd.read_csv(csv) if csv.exists() else pd.DataFrame()


def analyze(stores: StoreLike | Sequence[StoreLike], *, transferability: bool = False, pca: bool = False,
            tsne: bool = False, umap: bool = False, three_d: bool = False, thumbnails: bool = False,
            html: bool = False, outliers: bool = False, overlap: bool = False, split: str | None = None,
            seed: int = 0, max_rows: int = 20000, k: int = 10, runs_dir: str | Path = "runs", overwrite: bool = False,
            max_memory: int | str | None = None, score_dims: int | None = None, judge_by: str = "probe",
            out: str | Path | None = None, name: str | None = None,
            log: Callable[[str], None] | None = None) -> Analysis:
    """Score how well features transfer to the labels and draw them (``featx analyze``; no torch).

    With nothing selected, computes ``transferability`` and ``pca``.

    Parameters
    ----------
    stores : Store, path, or a list of them
        Feature stores; several are ranked per score (a :class:`Store` is read as its file is now).
    transferability : bool, default False
        LEEP, NCE, task overlap (with logits), LogME, H-scores, GBC, kNN and probe accuracy, Fisher, silhouette.
    pca, tsne, umap : bool, default False
        Projection views (class-coloured scatter PNGs and the coordinates as .npz).
    three_d, thumbnails, html : bool, default False
        3-D views, images drawn at their projected positions, a standalone interactive HTML page.
    outliers, overlap : bool, default False
        Per class, the images farthest from their class; the class x class kNN overlap heatmap.
    split : {None, "all", "train", "val", "test"}, optional
        Rows to use; default: scores on the train split when present, views on all rows.
    seed : int, default 0
        Seed of sub-sampling, folds and projections.
    max_rows : int, default 20000
        Row cap for t-SNE/UMAP, kNN queries, the linear probe and separability.
    k : int, default 10
        Neighbours for kNN accuracy, outliers and overlap.
    runs_dir : str or Path, default "runs"
        Where the output folder goes, and where ``judge_by="fit:<clf>"`` looks for fits.
    overwrite : bool, default False
        Reuse an existing output folder.
    max_memory : int or str, optional
        Memory budget per score in bytes or as ``"4G"``; default half the memory available.
    score_dims : int, optional
        Principal components (default 256) for a score over the budget.
    judge_by : str, default "probe"
        Accuracy the scores are correlated with (3+ stores): ``probe`` or ``fit:<classifier>``.
    out : str or Path, optional
        Output folder; default ``<runs_dir>/analyze-<name>``.
    name : str, optional
        Run name; default from the store names.
    log : callable, optional
        Receives progress lines (``print`` shows them).

    Returns
    -------
    Analysis
        Scores, ranking, correlations, files and Figures.

    Examples
    --------
    >>> result = featx.analyze([store_a, store_b], transferability=True, umap=True)  # doctest: +SKIP
    >>> result.scores, result.figures  # doctest: +SKIP
    """
    from ..analysis.analyze import AnalyzeOptions
    from ..analysis.analyze import analyze as run

    opts = AnalyzeOptions(transferability=transferability, pca=pca, tsne=tsne, umap=umap, three_d=three_d,
                          thumbnails=thumbnails, html=html, outliers=outliers, overlap=overlap, split=split,
                          seed=seed, max_rows=max_rows, k=k, runs_dir=Path(runs_dir), overwrite=overwrite,
                          max_memory=max_memory, score_dims=score_dims, judge_by=judge_by)
    paths = [store_path(s) for s in store_list(stores)]
    with plots.collect_figures() as found:
        res = run(paths, opts, out=out, name=name, log=log or (lambda line: None))
    return Analysis(res.out_dir, res.scores, res.ranking, res.taus, list(res.files), figures_by_name(found),
                    res.notes, res.skipped)
