"""The honest verdict of a fine-tuning run: the fine-tuned network (or ensemble) against the frozen linear
probe on the same test rows (pure functions of labels and probabilities; torch-free).

:func:`compare` gives the table (``metrics.json``'s ``verdict``): each model's accuracy and macro F1 with
standard errors, the paired difference (fine-tuned - probe) with its bootstrap standard error and 95%
percentile interval (:func:`featx.stats.paired_bootstrap`, replicates drawn from ``seed``), McNemar's
exact test of the accuracies (:func:`featx.stats.mcnemar_exact`), and the decision:

* ``hurt``: the interval of accuracy or of macro F1 lies below 0;
* ``helped``: an interval lies above 0 and none below;
* ``no clear difference`` otherwise.

Whatever the interval says, a fine-tuned score below the probe's by more than one standard error (the
smallest of the difference's and the two models' own) is named in the line (``worse_than_probe``).
:func:`verdict_line` is that one line, :func:`verdict_text` the plain table (``report.txt``, the
terminal), :func:`verdict_markdown` the table as ``verdict.md`` (every user string escaped).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...files import write_json, write_text
from ...report.escape import md_text, printable
from ...stats import PAIRED_METRICS, binomial_se, mcnemar_exact, paired_bootstrap

N_BOOT = 2000
LEVEL = 0.95
NAMES = {"accuracy": "accuracy", "macro_f1": "macro F1"}
DECISIONS = ("helped", "no clear difference", "hurt")


def compare(y, proba_finetuned, proba_probe, *, finetuned: str = "fine-tuned network",
            probe: str = "frozen linear probe", split: str = "test", n_boot: int = N_BOOT, seed: int = 0,
            level: float = LEVEL, note: str | None = None) -> dict:
    """The verdict table of the fine-tuned model's and the probe's probabilities on the same rows ``y``
    (class codes; the predictions are the argmax of each row)."""
    y = np.asarray(y, dtype=np.int64)
    pf, pp = np.asarray(proba_finetuned, float), np.asarray(proba_probe, float)
    if pf.shape != pp.shape or pf.ndim != 2 or len(pf) != len(y):
        raise ValueError(f"verdict: probabilities {pf.shape} and {pp.shape} for {len(y)} rows")
    n_classes = pf.shape[1]
    pred_f, pred_p = pf.argmax(1), pp.argmax(1)
    table: dict = {}
    for metric in PAIRED_METRICS:
        b = paired_bootstrap(y, pred_f, pred_p, metric=metric, n_classes=n_classes, n_boot=n_boot, seed=seed,
                             level=level)
        row = {"finetuned": b["a"], "probe": b["b"], "finetuned_se": b["a_se"], "probe_se": b["b_se"],
               "difference": b["difference"], "difference_se": b["difference_se"], "ci": b["ci"]}
        if metric == "accuracy":  # the usual standard error of an accuracy (as metrics.json's accuracy_se)
            row["finetuned_se"], row["probe_se"] = binomial_se(b["a"], len(y)), binomial_se(b["b"], len(y))
        table[metric] = row
    mc = mcnemar_exact(pred_f == y, pred_p == y)
    v = {"split": split, "n": len(y), "finetuned": finetuned, "probe": probe, "level": level,
         "n_boot": n_boot, "seed": seed, "metrics": table,
         "mcnemar": {"finetuned_only": mc["a_only"], "probe_only": mc["b_only"], "p_value": mc["p_value"]},
         "decision": decide(table), "worse_than_probe": worse_than_probe(table), "note": note}
    v["line"] = verdict_line(v)
    return v


def decide(table: dict) -> str:
    """``hurt`` / ``helped`` / ``no clear difference`` from the intervals of the differences."""
    cis = [table[m]["ci"] for m in PAIRED_METRICS if m in table]
    if any(hi < 0 for _, hi in cis):
        return "hurt"
    if any(lo > 0 for lo, _ in cis):
        return "helped"
    return "no clear difference"


def worse_than_probe(table: dict) -> list[str]:
    """The metrics on which the fine-tuned model is below the probe by more than one standard error (the
    smallest of the difference's and the two models' own standard errors)."""
    out = []
    for m in PAIRED_METRICS:
        r = table.get(m)
        if r is None:
            continue
        ses = [s for s in (r["difference_se"], r["finetuned_se"], r["probe_se"]) if np.isfinite(s)]
        if ses and r["difference"] < -min(ses):
            out.append(m)
    return out


def _signed(x: float) -> str:
    return f"{x:+.3f}"


def _part(v: dict, metric: str) -> str:
    r = v["metrics"][metric]
    lo, hi = r["ci"]
    pct = f"{100 * v['level']:.0f}%"
    text = (f"{NAMES[metric]} {r['finetuned']:.3f} vs {r['probe']:.3f} ({_signed(r['difference'])}, "
            f"{pct} CI {_signed(lo)} to {_signed(hi)}")
    if metric == "accuracy":
        text += f"; McNemar p={v['mcnemar']['p_value']:.3g}"
    return text + ")"


def verdict_line(v: dict) -> str:
    """One line: did fine-tuning help, with both metrics' differences and intervals."""
    d = v["decision"]
    who = printable(v["finetuned"])
    head = {"helped": f"fine-tuning helped: the {who} beats the {printable(v['probe'])}",
            "hurt": f"fine-tuning hurt: the {who} is worse than the {printable(v['probe'])}",
            "no clear difference": f"no clear difference between the {who} and the {printable(v['probe'])}"}[d]
    worse = [m for m in v["worse_than_probe"]]
    if worse and d != "hurt":
        head += (f", but the {who} is worse than the probe by more than one standard error in "
                 + " and ".join(NAMES[m] for m in worse))
    parts = "; ".join(_part(v, m) for m in PAIRED_METRICS)
    return f"verdict: {head}: {parts}, on {v['n']} {v['split']} images"


def _cells(v: dict, metric: str) -> list[str]:
    r = v["metrics"][metric]
    lo, hi = r["ci"]
    p = f"{v['mcnemar']['p_value']:.3g}" if metric == "accuracy" else ""
    return [NAMES[metric], f"{r['finetuned']:.3f} +- {r['finetuned_se']:.3f}",
            f"{r['probe']:.3f} +- {r['probe_se']:.3f}", f"{_signed(r['difference'])} +- {r['difference_se']:.3f}",
            f"{_signed(lo)} to {_signed(hi)}", p]


def _header(v: dict) -> list[str]:
    return ["", "fine-tuned", "frozen probe", "difference", f"{100 * v['level']:.0f}% CI", "McNemar p"]


def verdict_text(v: dict) -> str:
    """The table as plain text (``report.txt`` and the end of ``featx finetune``), ending with the line."""
    rows = [_header(v)] + [_cells(v, m) for m in PAIRED_METRICS]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    mc = v["mcnemar"]
    foot = (f"fine-tuned: {printable(v['finetuned'])}; frozen probe: {printable(v['probe'])}; {v['n']} "
            f"{v['split']} images; paired bootstrap of {v['n_boot']} replicates (seed {v['seed']}); McNemar: "
            f"{mc['finetuned_only']} right only fine-tuned, {mc['probe_only']} right only probe")
    note = [f"note: {printable(v['note'])}"] if v.get("note") else []
    return "\n".join(lines + [foot] + note + [v["line"]]) + "\n"


def verdict_markdown(v: dict, title: str | None = None) -> str:
    """``verdict.md``: a heading, the table and the line; labels escaped (:func:`featx.report.escape.md_text`)."""
    def row(cells: Sequence[str]) -> str:
        return "| " + " | ".join(md_text(c) for c in cells) + " |"

    out = [f"# Verdict{': ' + md_text(title) if title else ''}", "", row(_header(v)),
           "|" + "---|" * len(_header(v))]
    out += [row(_cells(v, m)) for m in PAIRED_METRICS]
    mc = v["mcnemar"]
    facts = (f"- {v['n']} {md_text(v['split'])} images; paired bootstrap of {v['n_boot']} replicates (seed "
             f"{v['seed']}); McNemar: {mc['finetuned_only']} right only fine-tuned, {mc['probe_only']} right only "
             "probe")
    out += ["", f"- fine-tuned: {md_text(v['finetuned'])}", f"- frozen probe: {md_text(v['probe'])}", facts]
    if v.get("note"):
        out.append(f"- note: {md_text(v['note'])}")
    out += ["", f"**{md_text(v['decision'])}**: {md_text(v['line'])}", ""]
    return "\n".join(out)


# ---------------------------------------------------------------- the run folder

VERDICT_FILE = "verdict.md"


def write_verdict(run: Path, metrics: dict, v: dict, *, title: str | None = None) -> dict:
    """Put ``v`` into the run folder: ``metrics.json``'s ``verdict`` key (rewritten atomically), the text table
    appended to ``report.txt``, and ``verdict.md``; returns ``metrics`` with the verdict."""
    metrics["verdict"] = v
    write_text(run / VERDICT_FILE, verdict_markdown(v, title))
    report = run / "report.txt"
    before = report.read_text(encoding="utf-8", errors="surrogateescape") if report.is_file() else ""
    write_text(report, before.rstrip("\n") + "\n\nFine-tuned against the frozen linear probe\n\n" + verdict_text(v))
    write_json(run / "metrics.json", metrics)
    return metrics


def run_verdict(trainer, probe, run: Path, metrics: dict, *, proba: np.ndarray | None = None,
                finetuned: str = "fine-tuned network") -> dict:
    """The verdict of a finished run: ``trainer``'s network as it is now (the best checkpoint, which
    ``test_report`` loaded) against ``probe`` (:func:`featx.learn.finetune.probe.fit_probe`, fitted before
    training) on the rows ``metrics`` were computed on (test, else validation). ``proba``: the fine-tuned
    probabilities of those rows when the report computed them otherwise (e.g. with test-time augmentation)."""
    split = metrics["evaluation"]["mode"]
    rows, y, p = trainer.predict(split, averaged=False)  # as test_report: best.pt's weights are loaded
    if proba is not None:
        p = np.asarray(proba)
    probe_rows = np.asarray(probe.rows[split])
    if not np.array_equal(np.asarray(rows), probe_rows):  # the same images, in the same order
        order = {int(r): i for i, r in enumerate(probe_rows)}
        keep = [i for i, r in enumerate(rows) if int(r) in order]
        rows, y, p = np.asarray(rows)[keep], np.asarray(y)[keep], p[keep]
        pp = probe.proba(split)[[order[int(r)] for r in rows]]
    else:
        pp = probe.proba(split)
    note = metrics["notes"][0] if metrics.get("notes") else None
    v = compare(y, p, pp, finetuned=finetuned, split=split, seed=trainer.cfg.seed, note=note)
    return write_verdict(run, metrics, v, title=metrics.get("label"))
