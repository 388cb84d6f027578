"""The files of an analyze run beside the views: scores.json, scores.csv, ranking.csv (and .png), taus.csv,
the side-by-side projections and summary.md with its Markdown tables."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..files import write_json, write_text
from ..report import plots
from ..report import projection_plots as pp
from ..report.escape import md_code, md_text
from ..report.runs import write_csv
from .judge import protocol_text, rank_stores, score_taus
from .transfer import estimate_keys, ranked_keys, score_keys, scores
from .views import RunFolder

HIGHER_IS_BETTER = "every score: higher means more transferable (GBC and LEEP/NCE are <= 0)"


def in_sample_note() -> str:
    """Which scores are in-sample (reported, not ranked) and which cross-fitted variants rank instead."""
    inflated = [s for s in scores() if s.cv and not s.ranked]
    return (f"{' and '.join(s.name for s in inflated)} are in-sample estimates, kept for reference; rankings and "
            f"correlations use the cross-fitted {' and '.join(s.cv[0] for s in inflated)}")


def side_by_side(run: RunFolder, seed: int) -> None:
    """With several stores, each projection method's 2-D views in one PNG (before / after fine-tuning)."""
    for method, panels in run.panels.items():
        if len(panels) > 1:
            name = f"side-by-side-{method}.png"
            pp.side_by_side(panels, run.file(name), title=f"{method.upper() if method != 'tsne' else 't-SNE'} 2-D "
                            f"of {len(panels)} stores (same colour per class)", seed=seed)
            run.md.append(f"\n- {len(panels)} stores side by side: `{name}`")


def write_outputs(run: RunFolder, res, opts, keys: list[str], accuracy: dict[str, float | None]) -> None:
    """The ranks, correlations, tables and notes of ``res`` (:class:`~featx.analysis.analyze.AnalyzeResult`,
    filled in here) for ``opts`` (:class:`~featx.analysis.analyze.AnalyzeOptions`) into the run folder,
    summary.md last."""
    head = [f"# featx analyze: {', '.join(map(md_text, keys))}\n"]
    if opts.transferability:
        res.ranking = rank_stores({k: res.scores[k] for k in keys})
        judged = bool(accuracy)
        write_csv(run.file("scores.csv"), [
            {"store": k, **{c: res.scores[k].get(c) for c in ("backbone", "weights", "layer", "pool", "dim", "n",
                                                               "rows")},
             **{s: res.scores[k].get(s) for s in score_keys() + estimate_keys()},
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
        features = score_keys(source=False)
        for key in ranked_keys():
            used = {res.scores[k].get("score_dims", {}).get(key) for k in keys} - {None}
            if key in features and len(used) > 1:
                res.notes.append(f"{key} was computed on different dims across stores ({', '.join(map(str, sorted(used)))}"
                                 "); its ranking compares unlike quantities")
        if len(keys) > 1:
            ranked = list(ranked_keys())
            ranks = np.array([[r.get(f"{s}_rank") or np.nan for s in ranked] for r in res.ranking], dtype=float)
            plots.heatmap(ranks, keys, ranked, run.file("ranking.png"), fmt=".0f", cmap="Greens_r",
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


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v + 0.0:.{digits}f}".replace("-0.000", "0.000") if digits == 3 else f"{v:.{digits}f}"
    return str(v)


def _cell(sc: dict, key: str) -> str:
    v = sc.get(key)
    if v is None:
        return "failed" if key in sc.get("errors", {}) else "-"
    if f"{key}_se" in estimate_keys():
        return f"{v:.1%} ± {sc[f'{key}_se']:.1%} (majority {sc[f'{key}_baseline']:.1%})"
    dims = sc.get("score_dims", {}).get(key)
    return _fmt(v) + (f" (PCA {dims})" if dims is not None and dims != sc.get("dim") else "")


def _scores_markdown(res, keys: list[str], opts) -> list[str]:
    md = ["## Transferability scores\n", f"{HIGHER_IS_BETTER}. Rank in brackets when several stores; "
          f"{in_sample_note()}.\n",
          "| score | " + " | ".join(map(md_text, keys)) + " |", "|---|" + "---|" * len(keys)]
    by_store = {r["store"]: r for r in res.ranking}
    ranked = ranked_keys()
    for s in score_keys():
        cells = []
        for k in keys:
            cell = _cell(res.scores[k], s)
            if len(keys) > 1 and by_store[k].get(f"{s}_rank"):
                cell += f" ({by_store[k][f'{s}_rank']})"
            cells.append(cell)
        label = s if s in ranked else f"{s} (in-sample)"
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
