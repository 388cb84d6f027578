"""The small-data recipe: the frozen probe and LP-FT, k-fold selection of the epoch count, weight averaging,
repeatability. Tiny random-weights networks (``timm:test_efficientnet``) on 40 real paintings.

LP-FT's head is the probe folded onto the raw pooled features, so the first evaluation gives the probe's
probabilities; the k-fold selection is the same whatever the test labels are, and its folds hold only
training rows; ``--average`` checkpoints hold the averaged weights and load, extract and predict with
them; a CPU run with mixup, EMA and k-fold selection repeats exactly.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import split_subset

from featx.data.discover import load_dataset
from featx.errors import OptionError
from featx.learn.classify import make_classifier
from featx.learn.finetune.augment import EVAL_VIEW, FLIP_VIEW
from featx.learn.finetune.config import FinetuneCfg
from featx.learn.finetune.probe import Probe, fit_probe
from featx.learn.finetune.select import candidates, merge_val, select_recipe
from featx.learn.finetune.train import Trainer, finetune, lp_ft

TINY = "timm:test_efficientnet"
QUIET = {"workers": 0, "progress": False}


@pytest.fixture(scope="module")
def paintings(tmp_path_factory, monet_dir) -> Path:
    """40 paintings: 12 train, 4 val, 4 test per artist."""
    return split_subset(monet_dir, tmp_path_factory.mktemp("paintings"), {"train": 12, "val": 4, "test": 4})


@pytest.fixture(autouse=True)
def tiny_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FEATX_CACHE", str(tmp_path_factory.getbasetemp() / "featx-cache"))  # timm:<name> configs


def tiny(**kw) -> FinetuneCfg:
    return FinetuneCfg(TINY, **{"weights": "none", "unfreeze": 2, "epochs": 2, "batch_size": 8, "views": 2, **kw})


@pytest.mark.parametrize("n_classes", [2, 4])
def test_probe_head_is_the_scaler_folded_into_the_softmax(n_classes):
    """as_head_init's Linear on raw features gives the fitted pipeline's probabilities (binary too)."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(n_classes), 15)
    X = rng.normal(size=(len(y), 12)) * rng.uniform(0.1, 30, 12) + rng.normal(size=12) * 5 + y[:, None]
    model = make_classifier("softmax").fit(X, y)
    probe = Probe([f"c{i}" for i in range(n_classes)], {"test": np.arange(len(y))}, {"test": X}, {"test": y}, model)
    w, b = probe.as_head_init()
    p = torch.softmax(torch.as_tensor(X, dtype=torch.float32) @ w.T + b, 1).numpy()
    np.testing.assert_allclose(p, probe.proba("test"), atol=1e-5)
    assert w.shape == (n_classes, 12)


def test_recipe_options_are_checked():
    for kw, needle in (({"llrd": 0.0}, "--llrd"), ({"mixup": -1.0}, "--mixup"), ({"average": "mean"}, "--average"),
                       ({"cv": 1}, "--cv 1"), ({"ema_decay": 1.0}, "--ema-decay")):
        with pytest.raises(OptionError, match=needle):
            FinetuneCfg("efficientnet_lite0", **kw)
    assert FinetuneCfg.from_dict({k: v for k, v in FinetuneCfg("x").to_dict().items() if k != "lp_ft"}).lp_ft is False
    names = [n for n, _ in candidates(FinetuneCfg("x"), search=True)]
    assert names[0] == "command" and len(names) == len(set(names)) >= 5


@pytest.mark.slow
@pytest.mark.parametrize("tta", [False, True])
def test_lp_ft_starts_from_the_probe(paintings, tta):
    trainer = Trainer(tiny(tta=tta), load_dataset(paintings), **QUIET)
    trainer.fill_trunk()
    probe = fit_probe(trainer)
    assert list(probe.rows["train"]) == list(trainer.rows["train"])  # fitted on the training rows only
    features = trainer.embed(trainer.rows["train"])
    if tta:  # the probe sees the mean of each image's and its mirror image's features, the head their mean logits
        features = (features + trainer.embed(trainer.rows["train"], FLIP_VIEW)) / 2
    np.testing.assert_allclose(probe.features["train"], features, atol=1e-6)
    _, _, before = trainer.predict("test")
    assert probe.load_into(trainer)
    for split in ("val", "test"):
        _, _, p = trainer.predict(split)
        np.testing.assert_allclose(p, probe.proba(split), atol=1e-4)
        assert (p.argmax(1) == probe.predict(split)).all()
    assert not np.allclose(before, probe.proba("test"), atol=1e-3)  # the random head was replaced


@pytest.mark.slow
def test_kfold_selection_never_sees_the_test_rows(paintings):
    ds = merge_val(load_dataset(paintings))
    test = np.flatnonzero(np.asarray(ds.split) == "test")
    train = np.flatnonzero(np.asarray(ds.split) == "train")
    assert len(train) == 32 and len(test) == 8
    main = Trainer(tiny(cv=2), ds, **QUIET)
    main.fill_trunk()

    def select(dataset):
        return select_recipe(dataset, train, [("command", tiny(cv=2))], 2,
                             lambda c, fold: Trainer(c, fold, trunk=main.trunk, **QUIET), lp_ft)

    a = select(ds)
    labels = ds.labels.copy()
    labels[test] = 1 - labels[test]  # other test labels (and test rows out of their trunk cache)
    b = select(dataclasses.replace(ds, labels=labels))
    assert set(a.seen_rows) == set(train) and not set(a.seen_rows) & set(test)
    assert a.table == b.table and a.epochs == b.epochs
    assert 0 <= a.epochs <= 2 and len(a.table[0]["macro_f1_by_epoch"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("average", ["swa", "ema"])
def test_averaged_checkpoints_load_extract_and_predict(paintings, tmp_path, average):
    from featx.extraction.options import ExtractOptions
    from featx.extraction.run import extract
    from featx.learn.predict import predict_paths
    from featx.store.reader import load_features

    # without LP-FT epoch 0 (a random head) is no candidate: the final run trains at least one epoch
    # one view (no --tta): the extracted logits are the run's test probabilities
    res = finetune(paintings, tiny(average=average, cv=2, epochs=3, lr=3e-3, lp_ft=False, tta=False), out=tmp_path / "run",
                   **QUIET)
    best, last = (torch.load(p, weights_only=True) for p in (res.best, res.last))
    assert res.selection is not None and best["selection"]["folds"] == 2 and best["epoch"] == res.selection.epochs
    # best.pt (the final epoch under --cv) holds the average, last.pt the raw weights; SWA averages the epochs of
    # the schedule's second half, so it has begun only when the CV chose more than half of the 3 epochs
    avg = last["average"]["avg"]
    assert bool(avg) == (average == "ema" or res.selection.epochs > 1)
    assert all(torch.equal(best["state_dict"][k], v) for k, v in avg.items())
    if average == "ema":
        assert any(not torch.equal(v, last["state_dict"][k]) for k, v in avg.items())
    tuned = load_features(extract(ExtractOptions(TINY, paintings / "test", weights=str(res.best), with_logits=True,
                                                 out=tmp_path / "tuned.h5", precision="fp32", **QUIET)).path)
    _, _, p = res.trainer.predict("test", averaged=False)  # the run's test report: best.pt loaded
    order = {res.trainer.ds.ids[int(j)].split("/", 1)[1]: i for i, j in enumerate(res.trainer.rows["test"])}
    rows = [order[i] for i in tuned.ids]
    np.testing.assert_allclose(torch.softmax(torch.as_tensor(tuned.logits), 1).numpy(), p[rows], atol=1e-4)
    results, failures = predict_paths(res.best, [tuned.image_path(0)], top_k=2)
    assert not failures and max(v for _, v in results[0]["top"]) == pytest.approx(p[rows[0]].max(), abs=1e-4)
    metrics = json.loads((res.out / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(float(np.mean(p.argmax(1) == res.trainer.ds.labels[res.trainer.rows["test"]])))


@pytest.mark.slow
def test_predict_of_a_tta_run_gives_the_runs_test_probabilities(paintings, tmp_path):
    from featx.learn.predict import predict_paths

    res = finetune(paintings, tiny(tta=True, cv=0, epochs=1), out=tmp_path / "run", **QUIET)
    t = res.trainer  # best.pt loaded
    _, _, p = t.predict("test", averaged=False)
    paths = [t.ds.path(int(j)) for j in t.rows["test"]]
    results, failures = predict_paths(res.best, paths, top_k=2)
    got = np.array([[dict(r["top"])[c] for c in t.classes] for r in results])
    assert not failures and [r["path"] for r in results] == [str(x) for x in paths]
    np.testing.assert_allclose(got, p, atol=1e-4)
    _, z = t._logits(t.rows["test"], EVAL_VIEW)  # one view alone gives other probabilities: the flip is in both
    assert not np.allclose(torch.softmax(torch.as_tensor(z), 1).numpy(), p, atol=1e-4)


@pytest.mark.slow
def test_a_cpu_run_repeats_exactly_under_seed(paintings, tmp_path):
    cfg = tiny(mixup=0.4, average="ema", llrd=0.5, tta=True, cv=2, lp_ft=False, freeze_bn=False)
    a, b = (finetune(paintings, cfg, out=tmp_path / name, **QUIET) for name in ("a", "b"))
    sa, sb = (torch.load(r.best, weights_only=True)["state_dict"] for r in (a, b))
    for k, v in sa.items():
        assert torch.equal(v, sb[k]), k
    assert a.selection.table == b.selection.table and a.metrics["accuracy"] == b.metrics["accuracy"]
    c = finetune(paintings, dataclasses.replace(cfg, seed=1), out=tmp_path / "c", **QUIET)
    sc = torch.load(c.best, weights_only=True)["state_dict"]
    assert any(not torch.equal(v, sc[k]) for k, v in sa.items() if v.is_floating_point())


def test_search_needs_cv(tmp_path):
    r = subprocess.run([sys.executable, "-m", "featx", "finetune", "-b", "efficientnet_lite0", "-d", str(tmp_path),
                        "--cv", "0", "--search"], check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "--search" in lines[0] and lines[0].startswith("error: "), r.stderr


@pytest.mark.slow
def test_zero_epochs_when_no_epoch_beats_the_probe(paintings, tmp_path):
    """With a learning rate too small to change anything, every epoch ties with epoch 0 (the LP-FT head, i.e. the
    probe) and the first of equal means wins: best.pt is the pretrained network with the probe as its head."""
    res = finetune(paintings, tiny(cv=2, lr=1e-12), out=tmp_path / "run", **QUIET)
    assert res.selection.epochs == 0 and res.history == [] and res.best.is_file()
    _, _, p = res.trainer.predict("test", averaged=False)
    np.testing.assert_allclose(p, res.probe.proba("test"), atol=1e-4)
    assert res.metrics["accuracy"] == pytest.approx(res.probe.accuracy("test"))


def test_the_commands_defaults_are_the_recipes():
    """`featx finetune` without tuning flags runs FinetuneCfg's defaults: one recipe, not two copies of it."""
    import inspect

    from featx.cli.finetune import finetune as command
    from featx.learn.finetune.config import Augment, parse_pair, parse_unfreeze

    params = inspect.signature(command).parameters
    cfg, aug = FinetuneCfg("x"), Augment()
    fixes = {"unfreeze": parse_unfreeze, "class_weight": lambda v: None if v == "none" else v,
             "zoom": lambda v: parse_pair(v, "--zoom")}
    checked = []
    for name, want in [*dataclasses.asdict(cfg).items(), *dataclasses.asdict(aug).items()]:
        if name in params and name not in ("backbone", "augment"):
            got = params[name].default
            got = fixes.get(name, lambda v: v)(getattr(got, "value", got))
            assert got == want, f"--{name.replace('_', '-')}: the command says {got!r}, FinetuneCfg {want!r}"
            checked.append(name)
    assert {"lr", "backbone_lr", "tta", "views", "epochs", "unfreeze", "cv", "rotation"} <= set(checked)
