"""Robust decoding and the eval transform."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from featx.config import DataCfg
from featx.data.images import ImageReadError, center_crop, load_rgb, preprocess, resize_short
from helpers import bad_inputs_folder


def test_hard_images_decode_or_fail_cleanly(tmp_path):
    expected = bad_inputs_folder(tmp_path)
    for rel in expected["ok"]:
        img = load_rgb(tmp_path / rel, min_size=256)
        assert img.mode == "RGB"
    for rel in expected["bad"]:
        with pytest.raises(ImageReadError):
            load_rgb(tmp_path / rel)


def test_exif_rotation_and_16bit_scaling(tmp_path):
    bad_inputs_folder(tmp_path)
    assert load_rgb(tmp_path / "b/rotated.jpg").size == (40, 80)  # stored 80x40, EXIF says rotate
    arr = np.asarray(load_rgb(tmp_path / "a/sixteen.png"))
    assert arr.min() == 0 and arr.max() == 255  # full 16-bit range maps to full 8-bit range, not clipped white
    alpha = np.asarray(load_rgb(tmp_path / "a/alpha.png")).astype(float)
    assert alpha.mean() > 150  # composited on white


def test_huge_jpeg_is_decoded_reduced(tmp_path):
    bad_inputs_folder(tmp_path)
    img = load_rgb(tmp_path / "b/huge.jpg", min_size=256)
    assert min(img.size) >= 512 and img.size[0] < 9000
    assert np.asarray(img)[..., 0].mean() > 150


def test_transform_matches_torchvision_exactly():
    from torchvision.models import ResNet50_Weights

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (300, 451, 3), dtype=np.uint8))
    cfg = DataCfg(input_size=224, resize_size=232, interpolation="bilinear")
    ours = preprocess(img, cfg).astype(np.float32) / 255
    ours = (ours - np.array(cfg.mean)) / np.array(cfg.std)
    theirs = ResNet50_Weights.IMAGENET1K_V2.transforms()(img).numpy().transpose(1, 2, 0)
    assert ours.shape == theirs.shape == (224, 224, 3)
    assert np.abs(ours - theirs).max() < 1e-5


def test_resize_and_crop_geometry():
    img = Image.new("RGB", (400, 200))
    assert resize_short(img, 100, "bicubic").size == (200, 100)
    assert center_crop(Image.new("RGB", (50, 30)), 40).size == (40, 40)
