"""`featx fit` end to end under CliRunner: run folders, leaderboards, user errors, no torch."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import _synth
from featx.cli import app
from featx.errors import ClassifierError, StoreError
from featx.store.writer import open_writer

runner = CliRunner()
TESTS = Path(__file__).resolve().parent


def fit(*args):
    return runner.invoke(app, ["fit", *map(str, args)])


def test_fit_one_store(tmp_path):
    s = _synth.store(tmp_path / "s.h5")
    r = fit(s, "--clf", "linearsvc", "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    assert "linearsvc: test acc 1.000 +- 0.000 (n=18" in r.stdout
    assert (tmp_path / "run" / "model.skops").exists() and (tmp_path / "run" / "confusion_matrix.png").exists()


@pytest.mark.slow
def test_fit_options_search_balanced_cv(tmp_path):
    s = _synth.store(tmp_path / "s.h5", n_per_class=(80, 20, 20), sep=1.0)
    r = fit(s, "--clf", "softmax", "--class-weight", "balanced", "--search", "--n-jobs", "2", "--out", tmp_path / "a")
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert m["class_weight"] == "balanced" and m["search"] is True and m["best_params"]["C"] in (0.01, 0.1, 1, 10)
    r = fit(s, "--clf", "mlp", "--cv", "5", "--out", tmp_path / "b")
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert m["evaluation"] == {"mode": "test", "n_eval": 12, "n_fit": 108, "n_val": 0, "cv_folds": 5}
    assert len(m["cv_accuracy"]["folds"]) == 5


def test_fit_without_split_uses_cv(tmp_path):
    X, y, split, ids = _synth.blobs()
    s = _synth.store(tmp_path / "s.h5", split=["train"] * len(y))
    r = fit(s, "--clf", "knn", "--name", "nosplit")
    # --name goes under ./runs: run inside tmp_path
    assert r.exit_code == 0, r.output
    m = json.loads(Path("runs/nosplit/metrics.json").read_text())
    assert m["evaluation"]["mode"] == "cv" and m["evaluation"]["n_eval"] == len(y)


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.mark.slow
def test_leaderboard_and_default_run_dir(tmp_path):
    a = _synth.store(tmp_path / "a.h5", backbone="resnet", weights="IMAGENET1K_V2", sep=3.0)
    b = _synth.store(tmp_path / "b.h5", backbone="pixels", weights="none", sep=0.2)
    r = fit(a, b, "--clf", "all")
    assert r.exit_code == 0, r.output
    (run,) = list((tmp_path / "runs").iterdir())
    rows = list(csv.DictReader(open(run / "leaderboard.csv")))
    assert len(rows) == 8 and rows[0]["backbone"] == "resnet" and rows[-1]["backbone"] == "pixels"
    assert {r["classifier"] for r in rows} == {"softmax", "linearsvc", "mlp", "knn"}
    assert len(list(run.glob("*/model.skops"))) == 8 and (run / "leaderboard.md").exists()
    assert "IMAGENET1K_V2" in r.stdout and "chance (majority class) accuracy" in r.stdout


def test_concat(tmp_path):
    a = _synth.store(tmp_path / "a.h5", backbone="one", seed=1)
    b = _synth.store(tmp_path / "b.h5", backbone="two", seed=2, dim=8)
    r = fit(a, b, "--concat", "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [s["dim"] for s in m["stores"]] == [32, 8] and m["label"].count("+") == 1
    X, y, split, ids = _synth.blobs()
    c = _synth.store(tmp_path / "c.h5", y=np.roll(y, 1))
    r = fit(a, c, "--concat", "--out", tmp_path / "bad")
    assert r.exit_code == ClassifierError.exit_code and "different labels" in r.stderr


def _one_line_error(r, code, *needles):
    assert r.exit_code == code, r.output
    err = r.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in r.output
    for n in needles:
        assert n in err, err


def test_user_errors(tmp_path):
    s = _synth.store(tmp_path / "s.h5")
    _one_line_error(fit(s, "--clf", "forest"), 2, "unknown classifier 'forest'", "softmax, linearsvc")
    _one_line_error(fit(s, "--preprocess", "zca"), 2, "unknown preprocessing 'zca'")
    X, y, split, ids = _synth.blobs()
    one = _synth.store(tmp_path / "one.h5", classes=("only",), y=np.zeros(len(y), int))
    _one_line_error(fit(one), 2, "single class ('only')")
    gap = _synth.store(tmp_path / "gap.h5", split=np.where(y == 2, "test", split))
    _one_line_error(fit(gap), 2, "class 'c' has no training rows")
    other = _synth.store(tmp_path / "other.h5", data_root="/other/data")
    _one_line_error(fit(s, other), 2, "not features of the same dataset")
    with open_writer(tmp_path / "half.h5", _synth.cfg()) as w:
        w.create(_synth.cfg(), 32, None, {"classes": ["a", "b", "c"], "data_root": "/d"})
        w.append(ids[:10], y[:10], split[:10], X[:10])
    _one_line_error(fit(tmp_path / "half.h5"), StoreError.exit_code, "interrupted")
    _one_line_error(fit(tmp_path / "missing.h5"), StoreError.exit_code, "no such feature store")
    assert not (tmp_path / "runs").exists()  # no empty run folders left behind


def test_help():
    for cmd in ("fit", "predict"):
        r = runner.invoke(app, [cmd, "--help"])
        assert r.exit_code == 0 and "--" in r.stdout
    assert "--concat" in runner.invoke(app, ["fit", "--help"]).stdout
    assert "--json" in runner.invoke(app, ["predict", "--help"]).stdout


@pytest.mark.slow
def test_fit_never_imports_torch(tmp_path):
    s = _synth.store(tmp_path / "s.h5")
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom featx.cli import app\n"
            f"r = CliRunner().invoke(app, ['fit', {str(s)!r}, '--clf', 'all', '--out', {str(tmp_path / 'r')!r}])\n"
            "assert r.exit_code == 0, r.output\n"
            "print(sorted(m for m in ('torch', 'torchvision', 'timm') if m in sys.modules))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "r" / "leaderboard.csv").exists()


# ---------------------------------------------------------------- real features


@pytest.mark.slow
def test_real_leaderboard_ranks_pretrained_first(monet_lite0_store, monet_random_store, tmp_path):
    r = fit(monet_random_store, monet_lite0_store, "--clf", "softmax,knn", "--out", tmp_path / "lb")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(open(tmp_path / "lb" / "leaderboard.csv")))
    assert len(rows) == 4
    assert [r["weights"] != "none" for r in rows] == [True, True, False, False], rows
    assert float(rows[1]["accuracy"]) > float(rows[2]["accuracy"])
