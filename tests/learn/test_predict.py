"""featx.learn.predict and `featx predict`: embedding replaced by a lookup table, then the real backbone."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import _synth
from featx.learn import fit, predict
from featx.cli import app
from featx.errors import ClassifierError, WeightsError
from featx.store.reader import load_features

runner = CliRunner()


class FakeExtract:
    """Stands in for featx.engine.memory: features looked up by (backbone, file name)."""

    def __init__(self):
        self.table: dict[tuple[str, str], np.ndarray] = {}
        self.calls: list[tuple[str, list[str]]] = []
        self.error: Exception | None = None

    def add(self, fs):
        for i, f in zip(fs.ids, fs.features):
            self.table[(fs.fingerprint["backbone"], Path(str(i)).name)] = f

    def embed_paths(self, fingerprint, paths):
        if self.error:
            raise self.error
        self.calls.append((fingerprint["backbone"], [Path(p).name for p in paths]))
        rows, failed = [], []
        for p in paths:
            key = (fingerprint["backbone"], Path(p).name)
            if key in self.table:
                rows.append(self.table[key])
            else:
                failed.append((str(p), "cannot identify image file"))
        return np.array(rows, dtype=np.float32).reshape(len(rows), -1), failed


@pytest.fixture
def fake(monkeypatch):
    f = FakeExtract()
    mod = types.ModuleType("featx.engine.memory")
    mod.embed_paths = f.embed_paths
    monkeypatch.setitem(sys.modules, "featx.engine.memory", mod)
    return f


@pytest.fixture
def fitted(tmp_path, fake):
    fs = load_features(_synth.store(tmp_path / "s.h5", sep=3.0))
    fake.add(fs)
    run, _ = fit.fit_stores([fs], fit.FitOptions(clf="linearsvc", out=tmp_path / "run"))
    return fs, run


def test_top1_of_training_images_is_their_class_and_stable(fitted):
    fs, run = fitted
    train = np.flatnonzero(fs.split == "train")[::10]
    paths = [Path("/anywhere") / str(fs.ids[i]) for i in train]
    first, failures = predict.predict_paths(run / "model.skops", paths, top_k=3)
    second, _ = predict.predict_paths(run, paths, top_k=3)  # run folder accepted too
    assert failures == [] and first == second
    assert [r["top"][0][0] for r in first] == [fs.classes[fs.labels[i]] for i in train]
    for r in first:
        probs = [p for _, p in r["top"]]
        assert len(r["top"]) == 3 and probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1)


def test_cli_text_json_and_unreadable(fitted):
    fs, run = fitted
    good = f"/x/{fs.ids[0]}"
    r = runner.invoke(app, ["predict", str(run / "model.skops"), good, "/x/broken.jpg", "--top-k", "2"])
    assert r.exit_code == 0, r.output
    line = r.stdout.strip().splitlines()
    assert len(line) == 1 and line[0].startswith(f"{Path(good).name}: {fs.classes[fs.labels[0]]} ")
    assert line[0].endswith("%") and line[0].count("%") == 2
    assert "broken.jpg: skipped (cannot identify image file)" in r.stderr
    r = runner.invoke(app, ["predict", str(run / "model.skops"), good, "--json", "--top-k", "3"])
    obj = json.loads(r.stdout.strip())
    assert obj["path"] == good and [c for c, _ in obj["top"]][0] == fs.classes[fs.labels[0]]
    assert len(obj["top"]) == 3 and all(isinstance(p, float) for _, p in obj["top"])
    r = runner.invoke(app, ["predict", str(run / "model.skops"), "/x/broken.jpg"])
    assert r.exit_code == 1


def test_concat_model_embeds_with_each_fingerprint(tmp_path, fake):
    a = load_features(_synth.store(tmp_path / "a.h5", backbone="alpha", sep=3.0, seed=1))
    b = load_features(_synth.store(tmp_path / "b.h5", backbone="beta", dim=16, sep=3.0, seed=2))
    fake.add(a)
    fake.add(b)
    run, _ = fit.fit_stores([a, b], fit.FitOptions(clf="softmax", concat=True, out=tmp_path / "run"))
    meta = json.loads((run / "model.json").read_text())
    assert [fp["backbone"] for fp in meta["fingerprints"]] == ["alpha", "beta"] and meta["widths"] == [32, 16]
    paths = [Path(str(i)) for i in a.ids[:20]]
    res, _ = predict.predict_paths(run / "model.skops", paths, top_k=1)
    assert [c for c, _ in fake.calls] == ["alpha", "beta"]
    X = np.hstack([a.features[:20], b.features[:20]])
    model = predict.load_model(run).model
    assert [r["top"][0][0] for r in res] == [a.classes[k] for k in model.predict(X)]


def test_weights_error_is_one_line(fitted, fake):
    _, run = fitted
    fake.error = WeightsError("efficientnet_lite0: checkpoint /gone.pt not found; pass --weights FILE")
    r = runner.invoke(app, ["predict", str(run), "/x/a.jpg"])
    assert r.exit_code == WeightsError.exit_code
    assert r.stderr.strip() == "error: efficientnet_lite0: checkpoint /gone.pt not found; pass --weights FILE"


def test_bad_model_paths(tmp_path, fitted):
    with pytest.raises(ClassifierError, match="no such model"):
        predict.load_model(tmp_path / "nope.skops")
    _, run = fitted
    (run / "model.json").write_text("{}")
    with pytest.raises(ClassifierError, match="not a featx model sidecar"):
        predict.load_model(run)
    (run / "model.json").unlink()
    r = runner.invoke(app, ["predict", str(run), "/x/a.jpg"])
    assert r.exit_code == ClassifierError.exit_code and "missing sidecar" in r.stderr
    with pytest.raises(ClassifierError, match="top-k 0"):
        predict.predict_paths(run, [], top_k=0)


# ---------------------------------------------------------------- real backbone


@pytest.mark.slow
def test_real_predict_training_paintings(monet_lite0_store, tmp_path):
    fs = load_features(monet_lite0_store)
    run, ((m, _),) = fit.fit_stores([fs], fit.FitOptions(clf="softmax", out=tmp_path / "run"))
    assert m["accuracy"] > 0.75
    model = predict.load_model(run).model
    train = np.flatnonzero(fs.split == "train")
    confident = train[model.predict_proba(fs.features[train]).max(1) > 0.9][:4]
    assert len(confident) == 4
    paths = [fs.image_path(int(i)) for i in confident]
    first, failures = predict.predict_paths(run, paths, top_k=2)
    second, _ = predict.predict_paths(run, paths, top_k=2)
    assert failures == []
    assert [r["top"][0][0] for r in first] == [fs.classes[fs.labels[i]] for i in confident]
    for a, b in zip(first, second):
        assert [c for c, _ in a["top"]] == [c for c, _ in b["top"]]
        assert a["top"][0][1] == pytest.approx(b["top"][0][1], abs=1e-4)
