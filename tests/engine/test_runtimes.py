"""Runtimes and precisions against the PyTorch fp32 reference, on real paintings, and the OpenVINO model cache.

Tolerances (stated in docs/runtimes.md, "Tolerances"):
* OpenVINO fp32 vs PyTorch fp32: |difference| <= 1e-3 x the largest |feature|, cosine >= 0.99999 per image.
* bf16 (OpenVINO or PyTorch autocast) vs PyTorch fp32: cosine >= 0.995 per image; ImageNet top-1 agrees
  on >= 90% of the images.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from featx.engine.cpu import native_bf16
from featx.engine.loader import iter_batches
from featx.engine.runtime import build_embedder, choose
from featx.errors import OptionError
from featx.extraction.options import ExtractOptions
from featx.extraction.plan import make_cfg
from featx.extraction.run import extract
from featx.store.reader import load_features
from helpers import copy_subset

pytest.importorskip("openvino")


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def images(monet_dir):
    paths = sorted((monet_dir / "test" / "claude-monet").iterdir())[:12] + sorted(
        (monet_dir / "test" / "alfred-sisley").iterdir())[:12]
    return paths


def _run(embed, paths, cfg):
    feats, logits = [], []
    for _, f, lg in embed.map(iter_batches(paths, cfg.data, batch_size=5, workers=2, prepare=embed.prepare)):
        feats.append(f)
        logits.append(lg)
    return np.concatenate(feats), None if logits[0] is None else np.concatenate(logits)


CASES = [  # (backbone, weights, layer, pool, tta, logits)
    ("efficientnet_lite0", "imagenet", None, None, "none", True),
    ("efficientnet_lite0", "imagenet", "features", "gem", "hflip", False),
    ("resnet18", "none", "layer4", "spp", "none", False),
]


@pytest.mark.slow
@pytest.mark.parametrize("backbone,weights,layer,pool,tta,logits", CASES)
def test_runtimes_match_torch_fp32(images, backbone, weights, layer, pool, tta, logits):
    cfg, _ = make_cfg(backbone, weights=weights, layer=layer, pool=pool, tta=tta, with_logits=logits)
    ref = build_embedder(cfg, weights, runtime="torch", device="cpu", precision="fp32")
    ref_f, ref_l = _run(ref, images, cfg)
    ov = build_embedder(cfg, weights, runtime="openvino", device="cpu", precision="fp32")
    assert (ov.runtime, ov.precision) == ("openvino", "fp32")
    f, lg = _run(ov, images, cfg)
    assert f.shape == ref_f.shape
    assert np.abs(f - ref_f).max() <= 1e-3 * np.abs(ref_f).max()
    assert _cos(f, ref_f).min() >= 0.99999
    if logits:
        assert np.abs(lg - ref_l).max() <= 1e-3 * np.abs(ref_l).max()
    bf16 = [("openvino", "bf16"), ("torch", "bf16")] if native_bf16() else [("torch", "bf16")]
    for runtime, precision in bf16:
        e = build_embedder(cfg, weights, runtime=runtime, device="cpu", precision=precision)
        assert (e.runtime, e.precision) == (runtime, precision)
        f, lg = _run(e, images, cfg)
        assert _cos(f, ref_f).min() >= 0.995, (runtime, precision)
        assert not np.array_equal(f, ref_f)  # it really ran in another precision
        if logits:
            assert (lg.argmax(1) == ref_l.argmax(1)).mean() >= 0.9


@pytest.mark.slow
def test_openvino_batches_are_exact_and_in_order(images):
    """A batch's features do not depend on its neighbours: a resumed run equals a whole one bit for bit."""
    cfg, _ = make_cfg("efficientnet_lite0")
    e = build_embedder(cfg, "imagenet", runtime="openvino", device="cpu")
    whole, _ = _run(e, images, cfg)
    one = np.concatenate([e(b.images)[0] for b in iter_batches(images, cfg.data, batch_size=1, workers=0)])
    assert np.array_equal(whole, one)


def test_auto_choices_follow_the_cpu(monkeypatch):
    cfg, _ = make_cfg("efficientnet_lite0")
    monkeypatch.setenv("FEATX_CPU_BF16", "1")
    c = choose(cfg, device="cpu")
    assert (c.runtime, c.precision) == ("openvino", "bf16") and "bf16" in c.note
    monkeypatch.setenv("FEATX_CPU_BF16", "0")
    c = choose(cfg, device="cpu")
    assert (c.runtime, c.precision) == ("openvino", "fp32") and "no native bf16" in c.note
    c = choose(cfg, device="cpu", precision="bf16")  # asked for, not native: PyTorch emulates it
    assert (c.runtime, c.precision) == ("torch", "bf16")
    assert choose(make_cfg("pixels")[0], device="cpu").runtime == "torch"
    with pytest.raises(OptionError, match="--runtime openvino runs on the CPU"):
        choose(cfg, runtime="openvino", device="cuda")
    with pytest.raises(OptionError, match="--runtime"):
        choose(cfg, runtime="tensorrt", device="cpu")


def _entries(models):
    return sorted(p.name for p in models.iterdir() if not p.name.startswith("."))


@pytest.mark.slow
def test_model_cache_follows_the_fingerprint(monet_dir, tmp_path, monkeypatch):
    """Converted once; a new fingerprint (pool, local weights' content) gets its own conversion; a broken
    entry is converted again; the cache never serves another network's graph."""
    import torch
    from torchvision.models import resnet18

    models = tmp_path / "models"
    monkeypatch.setenv("FEATX_MODELS", str(models))
    data = copy_subset(monet_dir, tmp_path / "data", per_class=4, split="train")
    kw = dict(runtime="openvino", precision="fp32", workers=0, progress=False)
    ck = tmp_path / "ft.pth"
    torch.manual_seed(1)
    torch.save(resnet18().state_dict(), ck)

    a = extract(ExtractOptions("resnet18", data, weights=str(ck), out=tmp_path / "a.h5", **kw))
    assert a.runtime == "openvino" and len(_entries(models)) == 1
    first = _entries(models)[0]
    stamp = (models / first / "model.bin").stat().st_mtime_ns
    # same network: no conversion
    extract(ExtractOptions("resnet18", data, weights=str(ck), out=tmp_path / "a2.h5", **kw))
    assert _entries(models) == [first] and (models / first / "model.bin").stat().st_mtime_ns == stamp
    extract(ExtractOptions("resnet18", data, weights=str(ck), pool="max", layer="layer4", out=tmp_path / "b.h5", **kw))
    assert len(_entries(models)) == 2

    torch.manual_seed(2)  # the checkpoint file changes: new weights, new conversion, new features
    torch.save(resnet18().state_dict(), ck)
    c = extract(ExtractOptions("resnet18", data, weights=str(ck), out=tmp_path / "c.h5", **kw))
    assert len(_entries(models)) == 3
    fa, fc = load_features(a.path), load_features(c.path)
    assert not np.allclose(fa.features, fc.features, atol=1e-3)
    ref = extract(ExtractOptions("resnet18", data, weights=str(ck), out=tmp_path / "ref.h5", runtime="torch",
                                 precision="fp32", workers=0, progress=False))
    np.testing.assert_allclose(fc.features, load_features(ref.path).features, atol=1e-3, rtol=1e-3)

    entry = max((models / e for e in _entries(models)), key=lambda d: (d / "export.json").stat().st_mtime_ns)
    # damage that entry: it is converted again, features unchanged
    meta = json.loads((entry / "export.json").read_text())
    (entry / "model.bin").write_bytes(b"\0" * 100)
    again = extract(ExtractOptions("resnet18", data, weights=str(ck), out=tmp_path / "c.h5", overwrite=True, **kw))
    assert np.array_equal(load_features(again.path).features, fc.features)
    assert (entry / "model.bin").stat().st_size > 100 and json.loads((entry / "export.json").read_text()) == meta


NO_TORCH = textwrap.dedent("""
    import sys
    from featx.extraction.options import ExtractOptions
    from featx.extraction.run import extract
    r = extract(ExtractOptions("efficientnet_lite0", sys.argv[1], out=sys.argv[2], overwrite=True, progress=False))
    print(r.runtime, r.precision, "torch" in sys.modules, round(r.timings["start"], 2))
""")


@pytest.mark.slow
def test_cached_model_runs_without_torch(monet_dir, tmp_path):
    data = copy_subset(monet_dir, tmp_path / "data", per_class=3, split="test")
    out = tmp_path / "s.h5"
    first = subprocess.run([sys.executable, "-c", NO_TORCH, str(data), str(out)], capture_output=True, text=True,
                           env=os.environ, check=True).stdout.split()
    assert first[0] == "openvino"
    second = subprocess.run([sys.executable, "-c", NO_TORCH, str(data), str(out)], capture_output=True,
                            text=True, env=os.environ, check=True).stdout.split()
    assert second[:3] == [first[0], first[1], "False"], second  # the converted network, and no torch
