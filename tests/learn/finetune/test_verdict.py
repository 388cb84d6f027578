"""The honest verdict: the fine-tuned network against the frozen linear probe on the same test rows.

The table's interval and standard errors equal a direct bootstrap with the same seed, McNemar's p equals
scipy's binomial test on the discordant counts, a planted worse model is "hurt", a model worse by more
than one standard error is always said to be, user strings are escaped in verdict.md, and a real run
writes the verdict into metrics.json, report.txt and verdict.md.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import tiny_split_folder
from scipy.stats import binomtest
from sklearn.metrics import f1_score

from featx.learn.finetune.verdict import compare, verdict_markdown, verdict_text
from featx.report.metrics import compute_metrics


def one_hot(pred: np.ndarray, k: int) -> np.ndarray:
    return np.eye(k)[pred] * 0.7 + 0.3 / k


def planted(n: int, k: int, acc_ft: float, acc_probe: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)

    def model(acc):
        return np.where(rng.random(n) < acc, y, (y + 1 + rng.integers(0, k - 1, n)) % k)

    return y, one_hot(model(acc_ft), k), one_hot(model(acc_probe), k)


def test_the_interval_matches_a_direct_bootstrap_and_mcnemar_matches_scipy():
    y, pf, pp = planted(80, 3, 0.75, 0.85, seed=1)
    v = compare(y, pf, pp, n_boot=200, seed=5)
    f, p = pf.argmax(1), pp.argmax(1)

    def f1(t, q):
        return f1_score(t, q, labels=[0, 1, 2], average="macro", zero_division=0)

    rng = np.random.default_rng(5)
    acc_d, f1_d = [], []
    for _ in range(200):
        i = rng.integers(0, 80, 80)
        acc_d.append(np.mean(f[i] == y[i]) - np.mean(p[i] == y[i]))
        f1_d.append(f1(y[i], f[i]) - f1(y[i], p[i]))
    acc, mf1 = v["metrics"]["accuracy"], v["metrics"]["macro_f1"]
    assert acc["ci"] == pytest.approx(list(np.percentile(acc_d, [2.5, 97.5])))
    assert mf1["ci"] == pytest.approx(list(np.percentile(f1_d, [2.5, 97.5])))
    assert acc["difference_se"] == pytest.approx(np.std(acc_d, ddof=1))
    # the point estimates are metrics.json's (compute_metrics) and the usual binomial standard error
    for probs, side in ((pf, "finetuned"), (pp, "probe")):
        m = compute_metrics(y, probs.argmax(1), probs, ["a", "b", "c"])
        assert acc[side] == pytest.approx(m["accuracy"]) and acc[f"{side}_se"] == pytest.approx(m["accuracy_se"])
        assert mf1[side] == pytest.approx(m["macro_f1"])
    b, c = int(np.sum((f == y) & (p != y))), int(np.sum((f != y) & (p == y)))
    assert (v["mcnemar"]["finetuned_only"], v["mcnemar"]["probe_only"]) == (b, c) and b + c > 0
    assert v["mcnemar"]["p_value"] == pytest.approx(binomtest(b, b + c, 0.5).pvalue)


def test_a_planted_worse_model_hurt_a_better_one_helped_an_equal_one_no_clear_difference():
    y, worse, probe = planted(300, 4, 0.6, 0.9)
    v = compare(y, worse, probe)
    assert v["decision"] == "hurt" and v["line"].startswith("verdict: fine-tuning hurt")
    assert v["metrics"]["accuracy"]["ci"][1] < 0
    better = compare(y, probe, worse)
    assert better["decision"] == "helped" and "fine-tuning helped" in better["line"]
    same = compare(y, probe, probe)
    assert same["decision"] == "no clear difference" and same["worse_than_probe"] == []
    assert same["metrics"]["accuracy"]["ci"] == [0.0, 0.0]


def test_worse_by_more_than_one_standard_error_is_always_said():
    """Over many small planted pairs: whenever the fine-tuned score is below the probe's by more than the
    paired difference's standard error, the line says "hurt" or names the standard error."""
    said = 0
    for seed in range(40):
        y, pf, pp = planted(60, 2, 0.78, 0.85, seed=seed)
        v = compare(y, pf, pp, n_boot=300, seed=seed)
        for metric in ("accuracy", "macro_f1"):
            r = v["metrics"][metric]
            if r["difference"] < -r["difference_se"]:
                said += 1
                assert v["decision"] == "hurt" or "more than one standard error" in v["line"], v["line"]
                if v["decision"] != "hurt":
                    assert r["ci"][0] < 0 < r["ci"][1] or r["ci"][1] == 0  # the interval alone says nothing
    assert said >= 5  # the loop met such cases


def test_the_report_text_and_markdown_hold_the_table_and_escape_user_strings():
    y, pf, pp = planted(50, 2, 0.7, 0.9)
    v = compare(y, pf, pp, finetuned="net|<script>alert(1)</script>", note="no *test* split")
    text = verdict_text(v)
    assert text.splitlines()[0].split() == ["fine-tuned", "frozen", "probe", "difference", "95%", "CI", "McNemar",
                                            "p"]
    assert text.rstrip().endswith(v["line"]) and "macro F1" in text
    md = verdict_markdown(v, title="lite0 | [x](y)")
    assert "<script>" not in md and "net\\|\\<script\\>" in md and "lite0 \\| \\[x\\](y)" in md
    assert "no \\*test\\* split" in md
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert len(table) == 4 and all(line.count("|") == 7 for line in table)  # no cell split by a label


def test_mismatched_probabilities_are_refused():
    with pytest.raises(ValueError, match="probabilities"):
        compare([0, 1], np.eye(2), np.eye(3)[:2])


# ---------------------------------------------------------------- a real run


@pytest.mark.slow
def test_a_finetune_run_writes_its_verdict(tmp_path):
    from featx.learn.finetune.config import FinetuneCfg
    from featx.learn.finetune.train import finetune

    cfg = FinetuneCfg("resnet18", weights="none", unfreeze=1, epochs=1, batch_size=4, views=1, cv=0)
    res = finetune(tiny_split_folder(tmp_path / "data"), cfg, out=tmp_path / "run", workers=0, progress=False)
    saved = json.loads((res.out / "metrics.json").read_text())
    v = saved["verdict"]
    # recomputed from the run's own network and probe on the test rows: the same table
    _, y, p = res.trainer.predict("test", averaged=False)
    again = compare(y, p, res.probe.proba("test"), seed=cfg.seed)
    assert v["n"] == 6 and v["split"] == "test" and v["line"] == again["line"]
    assert v["metrics"]["accuracy"]["finetuned"] == pytest.approx(saved["accuracy"])
    assert v["metrics"]["accuracy"]["probe"] == pytest.approx(res.probe.accuracy("test"))
    assert v["line"] in (res.out / "report.txt").read_text() and v["line"] in (res.out / "verdict.md").read_text()
    assert (res.out / "report.txt").read_text().startswith("resnet18 [fine-tuned")


@pytest.mark.slow
def test_the_command_ends_with_the_verdict(tmp_path):
    data = tiny_split_folder(tmp_path / "data")
    r = subprocess.run([sys.executable, "-m", "featx", "finetune", "-b", "resnet18", "--weights", "none", "--unfreeze",
                        "0", "--epochs", "1", "--batch-size", "4", "--views", "1", "--cv", "0", "--workers", "0", "-q",
                        "--data", str(data), "--out", str(tmp_path / "run")], capture_output=True, text=True,
                       cwd=tmp_path, timeout=900, check=False)
    assert r.returncode == 0, r.stderr
    v = json.loads((tmp_path / "run" / "metrics.json").read_text())["verdict"]
    lines = r.stdout.strip().splitlines()
    assert lines[-1] == v["line"] and lines[-1].startswith("verdict: ")
    assert lines[-5].split()[:2] == ["fine-tuned", "frozen"] and lines[-6].startswith("checkpoint: ")
