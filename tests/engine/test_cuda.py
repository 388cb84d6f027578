"""The CUDA path of the engine (pinned memory, non_blocking copies, autocast): features on the GPU match
CPU fp32 features of the same images. Runs where torch sees a CUDA GPU; on a CPU-only machine (CI) these
tests are skipped, and the device machine runs them (see the closing notes of the layout issue)."""

from __future__ import annotations

import numpy as np
import pytest

from featx.extraction.options import ExtractOptions
from featx.extraction.run import extract
from featx.store.reader import load_features
from helpers import copy_subset

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("backbone", ["resnet50", "efficientnet_lite0"])
def test_cuda_features_match_cpu(monet_dir, tmp_path, backbone):
    data = copy_subset(monet_dir, tmp_path / "data", per_class=12, split="train")
    kw = dict(weights="none", with_logits=True, progress=False)
    cpu = load_features(extract(ExtractOptions(backbone, data, out=tmp_path / "cpu.h5", device="cpu", precision="fp32",
                                               workers=0, **kw)).path)
    for precision, floor in (("fp32", 0.9999), ("auto", 0.99)):  # auto = bf16 (or fp16) autocast on CUDA
        res = extract(ExtractOptions(backbone, data, out=tmp_path / f"gpu-{precision}.h5", device="cuda",
                                     precision=precision, **kw))
        gpu = load_features(res.path)
        assert list(gpu.ids) == list(cpu.ids) and gpu.labels.tolist() == cpu.labels.tolist()
        assert gpu.features.shape == cpu.features.shape and np.isfinite(gpu.features).all()
        cos = _cosines(gpu.features, cpu.features)
        assert cos.min() >= floor, (precision, cos.min())
        top1 = (gpu.logits.argmax(1) == cpu.logits.argmax(1)).mean()
        assert top1 >= (0.95 if precision == "fp32" else 0.8), (precision, top1)
