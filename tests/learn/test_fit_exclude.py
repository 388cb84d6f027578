"""`featx fit --exclude CSV` / `featx.fit(..., exclude=...)`: rows listed by id are left out and counted."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

import _synth
import featx
from featx.cli import app
from featx.errors import OptionError
from featx.learn.fit import FitOptions, read_exclude
from featx.store.reader import load_features


def write_ids(path, ids, extra=None):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "id"] + ([extra[0]] if extra else []))
        for i in ids:
            w.writerow([f"/x/{i}", i] + ([extra[1]] if extra else []))
    return path


def test_excluded_rows_are_left_out_of_fit_and_score(tmp_path):
    store = _synth.store(tmp_path / "s.h5")
    fs = load_features(store)
    test_ids = [str(i) for i, s in zip(fs.ids, fs.split) if s == "test"][:4]
    train_ids = [str(i) for i, s in zip(fs.ids, fs.split) if s == "train"][:5]
    a = write_ids(tmp_path / "a.csv", test_ids + ["not/in/the/store.jpg"])
    b = write_ids(tmp_path / "b.csv", train_ids + test_ids[:1])  # one id in both files: counted once
    run = featx.fit(store, exclude=[a, b], out=tmp_path / "run")
    ex = run.metrics["excluded"]
    assert ex["n_rows"] == 9 and ex["n_ids"] == 10
    assert [(f["n_ids"], f["n_in_store"]) for f in ex["files"]] == [(5, 4), (6, 6)]
    ev = run.metrics["evaluation"]
    assert ev["n_eval"] == 18 - 4 and ev["n_fit"] == 144 - 5
    assert "9 rows excluded" in run.report.splitlines()[1]
    assert json.loads((run.path / "model.json").read_text())["settings"]["excluded"] == ex


def test_the_cli_counts_the_same_and_a_formula_escaped_id_matches(tmp_path):
    ids = [f"=row{i}.jpg" for i in range(180)]  # ids a spreadsheet would run: CSVs write them as '=row...
    store = _synth.store(tmp_path / "s.h5", ids=ids)
    listed = write_ids(tmp_path / "ids.csv", ["'=row177.jpg", "'=row178.jpg"])  # rows 177, 178 are test rows
    r = CliRunner().invoke(app, ["fit", str(store), "--exclude", str(listed), "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert "note: excluded 2 rows" in r.stdout
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["excluded"]["n_rows"] == 2 and metrics["evaluation"]["n_eval"] == 16


def test_bad_exclude_files_are_refused_before_fitting(tmp_path):
    (tmp_path / "no-id.csv").write_text("path,label\nx.jpg,a\n")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(OptionError, match=r"--exclude .*no-id.csv: no 'id' column \(columns: path, label\)"):
        FitOptions(exclude=tmp_path / "no-id.csv")
    with pytest.raises(OptionError, match="no 'id' column"):
        read_exclude(tmp_path / "empty.csv")
    with pytest.raises(OptionError, match="no such file"):
        FitOptions(exclude=[tmp_path / "missing.csv"])
    assert FitOptions(exclude=str(write_ids(tmp_path / "ok.csv", ["a"]))).exclude == (tmp_path / "ok.csv",)
    store = _synth.store(tmp_path / "s.h5")
    with pytest.raises(OptionError):
        featx.fit(store, exclude=tmp_path / "no-id.csv", out=tmp_path / "run")
    assert not (tmp_path / "run").exists()
