"""Judging the scores of several stores: their ranks, the accuracy each store is judged against (one named
protocol) and the correlations of each ranked score with that accuracy."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..report.escape import md_code, md_text
from . import transfer
from .budget import ScoreLog, fmt_bytes
from .transfer import peak_bytes, ranked_keys, score_keys

PROTOCOLS = {"probe": "linear probe (StandardScaler + LogisticRegression, C=1) fitted on the train split, "
                      "accuracy on the test split"}


def rank_stores(scores: dict[str, dict]) -> list[dict]:
    """Per store, per score: the value, and for each ranked key (:func:`~featx.analysis.transfer.ranked_keys`)
    its rank (1 = best; higher is better for every score)."""
    names = list(scores)
    ranked = ranked_keys()
    ranks = {name: {} for name in names}
    for key in ranked:
        vals = [(scores[n].get(key), n) for n in names]
        ok = sorted((v, n) for v, n in vals if v is not None and math.isfinite(v))
        for r, (_, n) in enumerate(reversed(ok), start=1):
            ranks[n][key] = r
    return [{"store": n, **{f"{k}": scores[n].get(k) for k in score_keys()},
             **{f"{k}_rank": ranks[n].get(k) for k in ranked}} for n in names]


def find_fit_accuracy(store_path: Path, runs_dir: Path, classifier: str) -> tuple[float, int] | None:
    """Accuracy of the newest ``featx fit`` run of ``classifier`` on this store under ``runs_dir``
    (``metrics.json`` whose "store" and "classifier" match), and how many such runs there were.
    One named classifier, never the best of whatever runs exist. None when there is none."""
    if not runs_dir.is_dir():
        return None
    target = store_path.resolve()
    found = []
    for mfile in runs_dir.rglob("metrics.json"):
        try:
            m = json.loads(mfile.read_text())
            store, acc = m.get("store"), m.get("accuracy")
            if store is None or acc is None or m.get("classifier") != classifier:
                continue
            if Path(store).resolve() != target:
                continue
            found.append((mfile.stat().st_mtime_ns, str(mfile), float(acc)))
        except (OSError, ValueError, TypeError, AttributeError):
            continue
    return (max(found)[2], len(found)) if found else None


def judge_accuracy(fs, path: Path, judge_by: str, runs_dir: Path, budget: int, log: ScoreLog) -> dict:
    """The accuracy one store's scores are judged against, under the protocol ``judge_by``:
    ``probe`` fits :func:`transfer.probe_split_acc` on the train split and scores the test split;
    ``fit:<clf>`` reads the newest ``featx fit`` run of that classifier on the store under ``runs_dir``."""
    if judge_by != "probe":
        clf = judge_by[4:].strip()
        found = find_fit_accuracy(path, runs_dir, clf)
        if found is None:
            log.note(f"no `featx fit --clf {clf}` run on this store under {runs_dir}: not judged")
            return {"protocol": judge_by, "value": None}
        return {"protocol": judge_by, "value": found[0], "runs": found[1], "chosen": "newest run"}
    train, test = fs.split == "train", fs.split == "test"
    out = {"protocol": "probe", "value": None}
    if not test.any() or len(np.unique(fs.labels[train])) < 2:
        log.note("no test split (or fewer than 2 classes in train): the linear probe accuracy is not measured")
        return out
    need = peak_bytes("probe_acc", int(train.sum()), fs.features.shape[1], len(np.unique(fs.labels)))
    if need > budget:
        log.note(f"test-split probe accuracy not measured: needs about {fmt_bytes(need)}, over the "
                 f"{fmt_bytes(budget)} budget (--max-memory)")
        return out
    out["value"] = log.guarded("probe_test_acc", lambda: transfer.probe_split_acc(
        fs.features[train], fs.labels[train], fs.features[test], fs.labels[test]))
    out["n_test"] = int(test.sum())
    return out


def protocol_text(judge_by: str, *, markdown: bool = False) -> str:
    """The protocol in words; ``markdown``: as Markdown text (the classifier name escaped, the command as code)."""
    if judge_by in PROTOCOLS:
        return md_text(PROTOCOLS[judge_by]) if markdown else PROTOCOLS[judge_by]
    command = f"featx fit --clf {judge_by[4:]}"
    return f"test accuracy of the newest {md_code(command) if markdown else f'`{command}`'} run per store"


def score_taus(scores: dict[str, dict], accuracy: dict[str, float]) -> list[dict]:
    """Kendall's tau, weighted tau and Pearson's r (scipy) between each ranked score and the
    accuracy of one named protocol, over the stores that have both."""
    from scipy.stats import kendalltau, pearsonr, weightedtau

    names = [n for n in scores if accuracy.get(n) is not None]
    out = []
    for key in ranked_keys():
        pairs = [(scores[n][key], accuracy[n]) for n in names if scores[n].get(key) is not None]
        if len(pairs) < 3:
            continue
        x, a = np.array(pairs, dtype=float).T
        constant = np.ptp(x) == 0 or np.ptp(a) == 0
        out.append({"score": key, "n_stores": len(pairs), "kendall_tau": _nan_none(kendalltau(x, a)[0]),
                    "weighted_tau": _nan_none(weightedtau(x, a)[0]),
                    "pearson_r": None if constant else _nan_none(pearsonr(x, a)[0])})
    return out


def _nan_none(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None
