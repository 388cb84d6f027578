"""`featx finetune` on 40 real Monet / Sisley paintings with real EfficientNet-Lite0 weights, on CPU.

Loss falls when overfitting one batch; only the unfrozen blocks change (frozen BatchNorm statistics
included); checkpoints load with ``weights_only=True`` and round-trip; re-extracted features differ
from the frozen ones and equal a manual forward of the fine-tuned network; the cached trunk gives the
full path's gradients; ``--resume`` ends where an uninterrupted run ends; bad ``--unfreeze`` values
are one line.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_png, split_subset

from featx.backbones.blocks import run_stages, split_blocks
from featx.backbones.build import create_model, load_finetuned
from featx.backbones.registry import get_cfg
from featx.data.images import read_for_model
from featx.learn.finetune.config import Augment, FinetuneCfg
from featx.learn.finetune.train import finetune
from featx.learn.finetune.trunk import Network, Normalise

LITE0 = get_cfg("efficientnet_lite0")
QUIET = {"workers": 0, "progress": False}


@pytest.fixture(scope="module")
def paintings(tmp_path_factory, monet_dir) -> Path:
    """40 paintings: 12 train, 4 val, 4 test per artist."""
    return split_subset(monet_dir, tmp_path_factory.mktemp("paintings"), {"train": 12, "val": 4, "test": 4})


def batch(root: Path, split: str = "train", n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` images of a split (eval preprocessing, uint8 NHWC) and their labels."""
    files = sorted((root / split).glob("*/*.jpg"))
    files = files[: n // 2] + files[-(n // 2):]
    x = torch.from_numpy(np.stack([read_for_model(f, LITE0.data) for f in files]))
    y = torch.tensor([0 if f.parent.name == "alfred-sisley" else 1 for f in files])
    return x, y


def network(cfg: FinetuneCfg) -> Network:
    torch.manual_seed(0)
    return Network(create_model(LITE0, cfg.weights), cfg, 2, "efficientnet_lite0")


@pytest.fixture(scope="module")
def full_run(paintings, tmp_path_factory):
    """Two epochs of --unfreeze 1 through the whole network (no cached trunk), with augmentation."""
    cfg = FinetuneCfg("efficientnet_lite0", unfreeze=1, epochs=2, batch_size=8, cache_trunk=False, lr=3e-3, cv=0,
                      backbone_lr=1.0)
    return finetune(paintings, cfg, out=tmp_path_factory.mktemp("runs") / "full", **QUIET), cfg


@pytest.mark.slow
def test_loss_falls_while_overfitting_one_batch(paintings):
    cfg = FinetuneCfg("efficientnet_lite0", unfreeze=1, dropout=0.0, label_smoothing=0.0)
    net = network(cfg)
    x, y = batch(paintings)
    a = net.trunk(Normalise(LITE0.data, torch.device("cpu"), False)(x))
    opt = torch.optim.AdamW(net.trainable_parameters(), lr=2e-3)
    net.train(True)
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(net.top(a), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.25 * losses[0], losses
    net.train(False)
    assert (net.top(a).argmax(1) == y).all()


@pytest.mark.slow
def test_only_unfrozen_parameters_change(full_run):
    res, _ = full_run
    before = create_model(LITE0, "imagenet").state_dict()
    after = torch.load(res.last, weights_only=True)["state_dict"]
    frozen = [k for k in before if k.startswith(("conv_stem", "bn1", *(f"blocks.{i}." for i in range(6))))]
    trained = [k for k in before if k.startswith(("blocks.6.", "conv_head", "bn2"))]
    assert len(frozen) > 200 and len(trained) > 10
    stats = [k for k in frozen if k.endswith(("running_mean", "running_var"))]
    assert len(stats) > 40  # the frozen BatchNorm layers saw two epochs of forward passes in train mode
    for k in frozen:
        assert torch.equal(before[k], after[k]), k
    changed = [k for k in trained if not torch.equal(before[k], after[k])]
    assert set(changed) >= {k for k in trained if k.endswith(".weight")}, changed
    # the default keeps the trained blocks' BatchNorm statistics (--freeze-bn): their weights learn, their statistics stay
    running = [k for k in trained if k.endswith(("running_mean", "running_var"))]
    assert running and not set(running) & set(changed), set(running) & set(changed)
    assert after["classifier.1.weight"].shape == (2, 1280)  # the new head: Dropout, Linear(1280, 2)


@pytest.mark.slow
def test_checkpoint_round_trips_and_run_folder(full_run):
    res, cfg = full_run
    ck = torch.load(res.best, weights_only=True)
    assert FinetuneCfg.from_dict(ck["config"]) == cfg
    assert ck["classes"] == ["alfred-sisley", "claude-monet"] and ck["backbone"]["name"] == "efficientnet_lite0"
    model, bcfg, _ = load_finetuned(res.best)
    for k, v in model.state_dict().items():
        assert torch.equal(v, ck["state_dict"][k]), k
    assert bcfg == LITE0
    with open(res.out / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(float(r["lr"]) > 0 and 0 <= float(r["val_macro_f1"]) <= 1 for r in rows)
    assert_png(res.out / "curves.png")
    assert_png(res.out / "confusion_matrix.png")
    metrics = json.loads((res.out / "metrics.json").read_text())
    assert metrics["evaluation"]["mode"] == "test" and metrics["n"] == 8
    for key in ("accuracy_text", "macro_f1", "per_class", "confusion_matrix", "top_k_accuracy", "fit_seconds"):
        assert key in metrics
    assert "accuracy" in (res.out / "report.txt").read_text()


@pytest.mark.slow
def test_reextracted_features_differ_and_equal_a_manual_forward(full_run, paintings, tmp_path):
    from featx.extraction.options import ExtractOptions
    from featx.extraction.run import extract
    from featx.learn.predict import predict_paths
    from featx.store.reader import load_features

    res, cfg = full_run
    tuned = load_features(extract(ExtractOptions("efficientnet_lite0", paintings / "test", weights=str(res.best),
                                                 with_logits=True, out=tmp_path / "tuned.h5", precision="fp32",
                                                 **QUIET)).path)
    frozen = load_features(extract(ExtractOptions("efficientnet_lite0", paintings / "test", out=tmp_path / "frozen.h5",
                                                  **QUIET)).path)
    assert tuned.fingerprint["weights"].startswith("file:best.pt:") and tuned.fingerprint != frozen.fingerprint
    assert np.abs(tuned.features - frozen.features).mean() > 1e-3
    model, _, _ = load_finetuned(res.best)
    blocks = split_blocks(model)
    x = Normalise(LITE0.data, torch.device("cpu"), False)(torch.from_numpy(
        np.stack([read_for_model(tuned.image_path(i), LITE0.data) for i in range(len(tuned))])))
    with torch.no_grad():
        emb = run_stages(blocks.stages(), x)
        logits = model(x)
        mirrored = model(x.flip(3))
    np.testing.assert_allclose(tuned.features, emb.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(tuned.logits, logits.numpy(), rtol=1e-4, atol=1e-4)  # the fine-tuned head's
    assert tuned.logits.shape == (8, 2)
    results, failures = predict_paths(res.best, [tuned.image_path(0)], top_k=2)
    p = torch.softmax((logits[0] + mirrored[0]) / 2, 0).numpy()  # the run's --tta (the default): predict flips too
    assert cfg.tta and not failures and dict(results[0]["top"]) == pytest.approx(dict(zip(tuned.classes, p.tolist())), abs=1e-5)


@pytest.mark.slow
def test_cached_trunk_gives_the_full_paths_gradients(paintings):
    cfg = FinetuneCfg("efficientnet_lite0", unfreeze=2, dropout=0.0, augment=Augment(enabled=False))
    net = network(cfg)
    x, y = batch(paintings)
    norm = Normalise(LITE0.data, torch.device("cpu"), False)
    cached = torch.cat([net.trunk(norm(x[i:i + 1])) for i in range(len(x))])  # computed once, image by image
    net.train(True)
    grads = []
    for forward in (lambda: net(norm(x)), lambda: net.top(cached)):
        torch.nn.functional.cross_entropy(forward(), y).backward()
        grads.append([p.grad.clone() for p in net.trainable_parameters()])
        for p in net.trainable_parameters():
            p.grad = None
    assert len(grads[0]) > 20
    for g_full, g_cached in zip(*grads):
        torch.testing.assert_close(g_cached, g_full, rtol=1e-3, atol=1e-5)


@pytest.mark.slow
def test_resume_continues_with_the_same_optimizer_state(paintings, tmp_path, monkeypatch):
    monkeypatch.setenv("FEATX_CACHE", str(tmp_path / "cache"))  # timm:<name> configs are resolved once, kept there
    cfg = FinetuneCfg("timm:test_efficientnet", weights="none", unfreeze=2, epochs=2, batch_size=8, views=2, warmup=0,
                      cv=0)  # the val split decides (test_recipe.py covers --cv)
    whole = finetune(paintings, cfg, out=tmp_path / "whole", share_trunk=True, **QUIET)

    def stop(epoch):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(paintings, cfg, out=tmp_path / "cut", share_trunk=True, on_epoch=stop, **QUIET)
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["epoch"] == 1
    resumed = finetune(paintings, cfg, out=tmp_path / "cut", resume=True, share_trunk=True, **QUIET)
    a, b = (torch.load(r.last, weights_only=True) for r in (whole, resumed))
    assert a["epoch"] == b["epoch"] == 2 and a["step"] == b["step"] == 6
    for k, v in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][k], v, rtol=1e-5, atol=1e-6)
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        for k in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(sb[k], sa[k], rtol=1e-5, atol=1e-7)
    assert [r["val_loss"] for r in a["history"]] == pytest.approx([r["val_loss"] for r in b["history"]], abs=1e-5)
    with pytest.raises(Exception, match="--resume: .* lr=0.001"):
        finetune(paintings, dataclasses.replace(cfg, lr=0.01),
                 out=tmp_path / "cut", resume=True, **QUIET)


def featx(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "featx", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.mark.parametrize("value, needle", [
    pytest.param("99", "--unfreeze 99: efficientnet_lite0 has 7 blocks", marks=pytest.mark.slow),  # builds the net
    ("-1", "--unfreeze -1: must be 0")])
def test_bad_unfreeze_is_one_line(paintings, tmp_path, value, needle):
    r = featx("finetune", "-b", "efficientnet_lite0", "-d", paintings, "--unfreeze", value, "-o", tmp_path / "run",
              cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_from_scratch_cli_and_predict(paintings, tmp_path, monkeypatch):
    """--weights none --unfreeze all (the seeds' baseline CNN) through the CLI, then predict with its head."""
    monkeypatch.setenv("FEATX_CACHE", str(tmp_path / "cache"))
    r = featx("finetune", "-b", "timm:test_efficientnet", "-d", paintings, "--weights", "none", "--unfreeze", "all",
              "--epochs", "2", "--batch-size", "8", "--workers", "0", "-q", "--runs-dir", tmp_path / "runs", "--cv", "0",
              cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("ft-paintings") and run.name.endswith("-timm-test_efficientnet-random-uall")
    assert {"best.pt", "last.pt", "history.csv", "curves.png", "metrics.json", "report.txt", "confusion_matrix.png",
            "misclassified.png"} <= {p.name for p in run.iterdir()}
    assert "full forward/backward" in r.stderr and "epoch 2/2" in r.stderr
    img = min((paintings / "test").glob("*/*.jpg"))
    p = featx("predict", run / "best.pt", img, "--top-k", "2", "--json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    top = json.loads(p.stdout)["top"]
    assert {c for c, _ in top} == {"alfred-sisley", "claude-monet"} and sum(v for _, v in top) == pytest.approx(1)


@pytest.mark.slow
def test_checkpoints_are_checked_against_the_backbone_and_never_give_random_logits(full_run, tmp_path):
    from torchvision.models import resnet18

    from featx.backbones.weights import load_checkpoint
    from featx.errors import WeightsError

    res, _ = full_run
    with pytest.raises(WeightsError, match="a fine-tuning checkpoint of efficientnet_lite0 .* --backbone efficientnet_lite1"):
        create_model(get_cfg("efficientnet_lite1"), str(res.best))
    torch.save(resnet18(num_classes=7).state_dict(), tmp_path / "other-head.pth")
    load_checkpoint(resnet18(), tmp_path / "other-head.pth")  # features only: the head is not used
    with pytest.raises(WeightsError, match="--with-logits: .* random head"):
        load_checkpoint(resnet18(), tmp_path / "other-head.pth", logits=True)
