"""The block lists behind --unfreeze (their composition is the network), the head, the learning-rate
schedule, early stopping and the paintings' augmentation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from featx.backbones.blocks import make_head, run_stages, split_blocks
from featx.backbones.build import build_random
from featx.backbones.registry import get_cfg
from featx.data.images import load_rgb, resize_short
from featx.errors import BackboneError, OptionError
from featx.learn.finetune.augment import augment_image, view_rng
from featx.learn.finetune.config import (
    Augment,
    FinetuneCfg,
    parse_pair,
    parse_unfreeze,
    parse_widths,
)
from featx.learn.finetune.schedule import Schedule
from featx.learn.finetune.stopping import EarlyStopping


@pytest.mark.slow
@pytest.mark.parametrize("source, arch, n_blocks, head", [
    ("timm", "tf_efficientnet_lite0", 7, "classifier"),
    ("timm", "test_resnet", 4, "fc"),
    ("torchvision", "resnet18", 4, "fc"),
    ("torchvision", "vgg11", 7, "classifier.6"),
    ("torchvision", "efficientnet_b0", 7, "classifier.1"),
    ("torchvision", "convnext_tiny", 4, "classifier.2"),
])
def test_blocks_compose_to_the_network(source, arch, n_blocks, head):
    model = build_random(source, arch).eval()
    blocks = split_blocks(model, arch)
    assert len(blocks) == n_blocks and blocks.head_path == head
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        emb = run_stages(blocks.stages(), x)
        np.testing.assert_allclose(model.get_submodule(head)(emb).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-4)
    assert emb.shape == (2, blocks.dim)
    params = {id(p) for s in blocks.stages() for p in s.parameters()} | {
        id(p) for p in model.get_submodule(head).parameters()}
    assert params == {id(p) for p in model.parameters()}  # every parameter belongs to exactly the listed parts


def test_an_unknown_family_is_refused():
    with pytest.raises(BackboneError, match="fine-tuning knows the blocks of"):
        split_blocks(build_random("torchvision", "vit_b_16"), "vit_b_16")


def test_head_with_hidden_layers():
    head = make_head(1280, 5, (384, 128), dropout=0.3)
    kinds = [type(m).__name__ for m in head]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear"]
    assert head.eval()(torch.randn(4, 1280)).shape == (4, 5)
    assert [type(m).__name__ for m in make_head(1280, 2, dropout=0.2)] == ["Dropout", "Linear"]


def test_options_are_checked():
    assert parse_unfreeze("all") == "all" and parse_unfreeze("3") == 3
    assert parse_widths("384,128") == (384, 128) and parse_widths(None) == ()
    assert parse_pair("1.5", "--zoom") == pytest.approx((1 / 1.5, 1.5))
    for bad, match in (("-2", "--unfreeze -2"), ("x", "--unfreeze 'x'")):
        with pytest.raises(OptionError, match=match):
            parse_unfreeze(bad)
    with pytest.raises(OptionError, match="--optimizer 'adam'"):
        FinetuneCfg("efficientnet_lite0", optimizer="adam")
    with pytest.raises(OptionError, match="--zoom"):
        FinetuneCfg("efficientnet_lite0", augment=Augment(zoom=(1.5, 0.5)))
    cfg = FinetuneCfg("efficientnet_lite0", unfreeze="all", hidden=(64,), augment=Augment(vflip=True))
    assert FinetuneCfg.from_dict(cfg.to_dict()) == cfg


def test_schedule_warms_up_then_decays_or_halves_on_a_plateau():
    cos = Schedule("cosine", steps_per_epoch=10, epochs=5, warmup_epochs=1)
    s = [cos.scale(k) for k in range(50)]
    assert s[0] < s[5] < s[9] <= 1.0 and s[10] == pytest.approx(1.0, abs=0.01)
    assert all(a >= b for a, b in itertools.pairwise(s[10:])) and s[-1] < 0.05
    plat = Schedule("plateau", steps_per_epoch=10, epochs=10, warmup_epochs=0, patience=2)
    lowered = [plat.end_epoch(f, e) for e, f in enumerate([0.5, 0.6, 0.6, 0.6, 0.6, 0.7])]
    assert lowered == [False, False, False, False, True, False] and plat.scale(60) == 0.5
    again = Schedule("plateau", steps_per_epoch=10, epochs=10, warmup_epochs=0)
    again.load_state_dict(plat.state_dict())
    assert again.scale(60) == 0.5 and again.best == pytest.approx(0.7)


def test_early_stopping_keeps_the_first_best_epoch_and_stops_after_patience():
    stop = EarlyStopping(patience=2)
    assert stop.summary() == {"best_epoch": -1, "val_macro_f1": None} and not stop.should_stop
    improved = [stop.improved(f, e) for e, f in enumerate([0.5, 0.6, 0.6 + 1e-10, 0.55])]
    assert improved == [True, True, False, False] and stop.should_stop
    assert stop.summary() == {"best_epoch": 1, "val_macro_f1": 0.6}
    again = EarlyStopping(patience=2)
    again.resume({**stop.summary(), "bad_epochs": stop.bad})
    assert (again.best, again.best_epoch, again.bad, again.should_stop) == (0.6, 1, 2, True)
    assert not EarlyStopping(patience=0).should_stop  # 0: never stop early


def test_augmentation_is_repeatable_per_image_and_view(monet_dir):
    cfg = get_cfg("efficientnet_lite0").data
    path = min((monet_dir / "train" / "claude-monet").iterdir())
    img = load_rgb(path)
    aug = Augment(rotation=30, zoom=(0.5, 1.5), vflip=True)
    a = augment_image(img, cfg, aug, view_rng(0, "x.jpg", 0))
    assert a.shape == (cfg.input_size, cfg.input_size, 3) and a.dtype == np.uint8
    assert np.array_equal(a, augment_image(img, cfg, aug, view_rng(0, "x.jpg", 0)))
    others = [augment_image(img, cfg, aug, view_rng(s, i, v)) for s, i, v in ((1, "x.jpg", 0), (0, "y.jpg", 0),
                                                                                (0, "x.jpg", 1))]
    assert all(np.abs(o.astype(int) - a).mean() > 5 for o in others)
    still = Augment(rotation=0, zoom=(1.0, 1.0), hflip=False)
    plain = augment_image(img, cfg, still, view_rng(0, "x.jpg", 0)).astype(int)
    resized = np.asarray(resize_short(img, cfg.resize_size, cfg.interpolation), dtype=int)
    s = cfg.input_size
    gaps = [np.abs(resized[dy:dy + s, dx:dx + s] - plain).max() for dy in range(resized.shape[0] - s + 1)
            for dx in range(resized.shape[1] - s + 1)]
    assert min(gaps) <= 1  # no zoom, no rotation: a random crop of the eval-resized image
