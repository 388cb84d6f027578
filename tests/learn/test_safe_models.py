"""A model file from a stranger never runs code: model.skops is built from trusted types only, a pickle
needs --trust, a checkpoint is read with torch.load(weights_only=True).

The round trips fit every classifier featx offers (and --concat, --search, pca:K, --class-weight) and
compare the loaded model.skops with the in-memory model, which proves the trusted list complete. The
refusals run the real CLI in a subprocess on files whose payload would create a marker file, and
check first (a control) that the payload does run when the file is loaded the unsafe way.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import joblib
import numpy as np
import pytest

import _synth
from featx.errors import ClassifierError, WeightsError
from featx.learn import classify, fit
from featx.learn.modelfile import TRUSTED_TYPES, read_model
from featx.learn.predict import load_model
from featx.store.reader import load_features
from helpers import one_error_line, rgb

# ---------------------------------------------------------------- round trips


@pytest.fixture
def captured(monkeypatch):
    """The in-memory fitted model of every fit, by its run folder."""
    models: dict[Path, object] = {}
    real = fit.write_run

    def write_run(run_dir, src, res, settings):
        models[Path(run_dir)] = res.model
        return real(run_dir, src, res, settings)

    monkeypatch.setattr(fit, "write_run", write_run)
    return models


def _same_as_in_memory(captured: dict, X: np.ndarray) -> set[str]:
    """Load each model.skops strictly, compare with its in-memory model; the types the files named."""
    import skops.io as sio

    named: set[str] = set()
    for run_dir, model in captured.items():
        assert (run_dir / "model.skops").is_file() and not (run_dir / "model.joblib").exists()
        named |= set(sio.get_untrusted_types(file=run_dir / "model.skops"))
        loaded = load_model(run_dir)
        assert loaded.path == run_dir / "model.skops" and type(loaded.model) is type(model)
        assert np.array_equal(loaded.model.predict_proba(X), model.predict_proba(X)), run_dir
        assert np.array_equal(loaded.model.predict(X), model.predict(X)), run_dir
    return named


@pytest.mark.slow
@pytest.mark.parametrize("dim, options", [
    (8, {}),  # 8 dims: kNN keeps a KD-tree
    (32, {"class_weight": "balanced"}),  # 32 dims: brute-force kNN
    (8, {"preprocess": "l2+pca:4"}),
    (8, {"search": True}),
], ids=["plain", "balanced", "pca", "search"])
def test_every_classifier_round_trips_through_model_skops(tmp_path, captured, dim, options):
    fs = load_features(_synth.store(tmp_path / "s.h5", dim=dim, sep=1.5))
    run, entries = fit.fit_stores([fs], fit.FitOptions(clf="all,majority", out=tmp_path / "run", **options))
    assert {m["classifier"] for m, _ in entries} == set(classify.CLASSIFIERS) and len(captured) == 5
    named = _same_as_in_memory(captured, fs.features)
    assert named <= TRUSTED_TYPES, sorted(named - TRUSTED_TYPES)


@pytest.mark.slow
def test_concat_models_round_trip(tmp_path, captured):
    a = load_features(_synth.store(tmp_path / "a.h5", backbone="alpha", dim=8, sep=1.5, seed=1))
    b = load_features(_synth.store(tmp_path / "b.h5", backbone="beta", dim=16, sep=1.5, seed=2))
    fit.fit_stores([a, b], fit.FitOptions(clf="all,majority", concat=True, out=tmp_path / "run"))
    named = _same_as_in_memory(captured, np.hstack([a.features, b.features]))
    assert "featx.learn.classify.BlockL2Normalizer" in named and named <= TRUSTED_TYPES


def test_the_trusted_list_is_explicit_and_names_featx_estimators():
    assert {f"{c.__module__}.{c.__qualname__}" for c in (classify.LinearSVCCalibrated, classify.BlockL2Normalizer)} \
        <= TRUSTED_TYPES
    assert all(t.startswith(("sklearn.", "featx.learn.classify.")) for t in TRUSTED_TYPES)


# ---------------------------------------------------------------- refusals, in real processes

TRIPWIRE = '''
from pathlib import Path


class Tripwire:
    """Creates the file named in its state when it is built from a file."""

    def __init__(self, marker):
        self.marker = marker

    def __setstate__(self, state):
        Path(state["marker"]).touch()
        self.__dict__.update(state)
'''


class Touch:
    """Pickles as ``os.system("touch <marker>")``: unpickling it runs the command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def featx(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "featx", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env=env)


def python(code: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=env)


@pytest.fixture(scope="module")
def pixels_run(tmp_path_factory) -> Path:
    """A real model.skops (pixels features of small generated images), its sidecar and a painting.jpg."""
    root = tmp_path_factory.mktemp("safe")
    for c, base in (("a", 0), ("b", 50)):
        (root / "data" / c).mkdir(parents=True)
        for i in range(6):
            rgb(base + i).save(root / "data" / c / f"{i}.jpg")
    rgb(3).save(root / "painting.jpg")
    r = featx("extract", "-b", "pixels", "-d", root / "data", "-o", root / "px.h5", "-q", cwd=root)
    assert r.returncode == 0, r.stderr
    r = featx("fit", root / "px.h5", "--clf", "softmax", "--out", root / "run", cwd=root)
    assert r.returncode == 0, r.stderr
    return root


def _planted(root: Path, name: str) -> Path:
    """A new folder ``root/name/`` holding the real model's sidecar, model.json."""
    folder = root / name
    folder.mkdir()
    shutil.copy(root / "run" / "model.json", folder / "model.json")
    return folder


@pytest.mark.slow
def test_tampered_checkpoint_is_refused_and_runs_nothing(pixels_run, tmp_path):
    import torch

    marker, control = tmp_path / "pwned-by-checkpoint", tmp_path / "control"
    evil = tmp_path / "ft" / "best.pt"
    evil.parent.mkdir()
    torch.save({"format": "featx-finetune", "state_dict": {}, "x": Touch(marker)}, evil)
    torch.save({"x": Touch(control)}, tmp_path / "control.pt")
    python(f"import torch; torch.load({str(tmp_path / 'control.pt')!r}, weights_only=False)", tmp_path)
    assert control.exists()  # the payload is live when loaded the unsafe way
    for target in (evil, evil.parent):  # the file, and its run folder
        line = one_error_line(featx("predict", target, pixels_run / "painting.jpg", cwd=tmp_path),
                              WeightsError.exit_code, str(evil), "refused", "weights_only=True")
        assert "system" in line  # names the global it refused
    assert not marker.exists()


@pytest.mark.slow
def test_untrusted_type_in_model_skops_is_refused_and_runs_nothing(pixels_run, tmp_path):
    import skops.io as sio

    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "tripwires.py").write_text(textwrap.dedent(TRIPWIRE))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "mods"), os.environ.get("PYTHONPATH", "")])}
    marker, control = tmp_path / "pwned-by-skops", tmp_path / "control"
    folder = _planted(pixels_run, f"skops-{tmp_path.name}")
    r = python(textwrap.dedent(f"""
        import skops.io as sio
        from tripwires import Tripwire
        model = sio.load({str(pixels_run / 'run' / 'model.skops')!r}, trusted={sorted(TRUSTED_TYPES)!r})
        for path, mark in (({str(folder / 'model.skops')!r}, {str(marker)!r}),
                           ({str(tmp_path / 'control.skops')!r}, {str(control)!r})):
            model.tripwire_ = Tripwire(mark)
            sio.dump(model, path)
        assert sio.get_untrusted_types(file=path) == ["tripwires.Tripwire"]
        sio.load(path, trusted=[*{sorted(TRUSTED_TYPES)!r}, "tripwires.Tripwire"])  # the control
    """), tmp_path, env)
    assert r.returncode == 0, r.stderr
    assert control.exists() and not marker.exists()  # built with that type trusted, the file runs its code
    one_error_line(featx("predict", folder / "model.skops", pixels_run / "painting.jpg", cwd=tmp_path, env=env),
                   ClassifierError.exit_code, str(folder / "model.skops"),
                   "the model holds types featx does not trust (tripwires.Tripwire)")
    for trust in (False, True):  # --trust is for pickles: it never widens the skops allow-list
        with pytest.raises(ClassifierError, match=r"does not trust \(tripwires.Tripwire\)"):
            read_model(folder / "model.skops", trust=trust)
    assert sio.get_untrusted_types(file=folder / "model.skops") == ["tripwires.Tripwire"]
    assert not marker.exists()


@pytest.mark.slow
def test_pickle_model_needs_trust_and_runs_nothing_without_it(pixels_run, tmp_path):
    marker, control = tmp_path / "pwned-by-pickle", tmp_path / "control"
    (tmp_path / "control.pkl").write_bytes(pickle.dumps(Touch(control)))
    python(f"import joblib; joblib.load({str(tmp_path / 'control.pkl')!r})", tmp_path)
    assert control.exists()  # joblib.load runs it
    folder = _planted(pixels_run, f"pickle-{tmp_path.name}")
    joblib.dump(Touch(marker), folder / "model.joblib")
    (folder / "disguised").mkdir()
    shutil.copy(folder / "model.joblib", folder / "disguised" / "model.skops")  # a pickle under the safe name
    shutil.copy(folder / "model.json", folder / "disguised" / "model.json")
    img = pixels_run / "painting.jpg"
    for target in (folder / "model.joblib", folder):  # the file, and a run folder holding only it
        line = one_error_line(featx("predict", target, img, cwd=tmp_path), ClassifierError.exit_code,
                              str(folder / "model.joblib"), "a pickle", "can run code", "--trust",
                              "a file you made yourself", "model.skops")
    assert "re-fit" in line
    one_error_line(featx("predict", folder / "disguised" / "model.skops", img, cwd=tmp_path),
                   ClassifierError.exit_code, "not a skops file", "--trust")
    with pytest.raises(ClassifierError, match="can run code"):
        read_model(folder / "model.joblib")
    assert not marker.exists()


@pytest.mark.slow
def test_own_pickle_model_predicts_with_trust(pixels_run, tmp_path):
    run = pixels_run / "run"
    folder = _planted(pixels_run, f"legacy-{tmp_path.name}")
    joblib.dump(load_model(run).model, folder / "model.joblib")
    img = pixels_run / "painting.jpg"
    one_error_line(featx("predict", folder, img, cwd=tmp_path), ClassifierError.exit_code, "--trust")
    safe = featx("predict", run / "model.skops", img, "--json", cwd=tmp_path)
    trusted = featx("predict", folder / "model.joblib", img, "--json", "--trust", cwd=tmp_path)
    assert safe.returncode == trusted.returncode == 0, (safe.stderr, trusted.stderr)
    assert json.loads(trusted.stdout) == json.loads(safe.stdout)
    assert json.loads(safe.stdout)["path"] == str(img)

    import featx as api

    with pytest.raises(ClassifierError, match="--trust"):
        api.predict(folder, [img])
    assert api.predict(folder, [img], trust=True) == api.predict(run, [img])


def test_torchvision_weights_in_the_hub_cache_are_read_weights_only(tmp_path, monkeypatch):
    """torch.hub unpickles fully by default: a file planted under the weights' name must not run."""
    import torch
    import torch.hub
    from torchvision.models import get_weight

    from featx.backbones.build import build_random, create_model
    from featx.backbones.registry import get_cfg

    cfg = get_cfg("resnet18")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    cached = tmp_path / "hub" / "checkpoints" / Path(get_weight(cfg.weights).url).name
    cached.parent.mkdir(parents=True)
    marker = tmp_path / "pwned-by-hub"
    torch.save({"x": Touch(marker)}, cached)
    with pytest.raises(WeightsError, match=r"resnet18-.*\.pth is not a plain state dict .* refused"):
        create_model(cfg, "imagenet")
    assert not marker.exists()
    reference = build_random(cfg.source, cfg.arch)
    torch.save(reference.state_dict(), cached)  # a real state dict loads as before
    model = create_model(cfg, "imagenet")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))
