"""bf16 features serve as well as fp32 ones: a linear probe on Monet vs Sisley gives the same accuracy within
one point, and the precision is part of the store's fingerprint (stores never mix).

The bounds hold wherever bf16 runs, natively (AVX-512 BF16 / AMX, OpenVINO) or emulated (PyTorch on an
AVX2-only CPU rounds differently). The one-point bound is checked on 5-fold cross-validated predictions
of all 600 paintings (same folds). The test split holds only 60 (one painting is 1.7 points), so there
the claim is McNemar's: the paintings one precision gets right and the other wrong do not lean to one
side beyond chance (|b - c| <= 1.96 sqrt(b + c), at least one painting either way). Checked emulated on
an AVX-512 machine with ``FEATX_CPU_BF16=0 ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2``.

Where bf16 is emulated (``featx.engine.cpu.native_bf16()`` is None, or ``FEATX_CPU_BF16=0``), PyTorch
took over 8 minutes for the 1,200 extractions of the full check, so that one skips (saying why) and
the small-sample test, 32 paintings, checks bf16 there; it runs on every machine.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from featx.engine.cpu import native_bf16
from featx.errors import StoreError
from featx.extraction.options import ExtractOptions
from featx.extraction.run import extract
from featx.store.reader import load_features
from helpers import copy_subset

EMULATED = ("bf16 is emulated by PyTorch on this CPU (no AVX-512 BF16 / AMX, or FEATX_CPU_BF16=0): the 1,200 "
            "extractions of this check took over 8 minutes there; "
            "test_bf16_store_on_a_small_sample checks bf16 on 32 paintings instead")


def _runtime() -> str:
    return "openvino" if native_bf16() else "torch"  # OpenVINO runs bf16 only where it is native


def _probe(fs) -> tuple[np.ndarray, float]:
    """(which test paintings it gets right, cross-validated accuracy over all paintings)."""
    tr, te = fs.split == "train", fs.split == "test"
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000))
    clf.fit(fs.features[tr], fs.labels[tr])
    right = clf.predict(fs.features[te]) == fs.labels[te]
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    cv = cross_val_predict(clf, fs.features, fs.labels, cv=folds)
    return right, float((cv == fs.labels).mean())


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_bf16_store_on_a_small_sample(monet_dir, tmp_path):
    """32 paintings, both precisions: bf16 features are the fp32 ones up to rounding (cosine >= 0.995 per
    image, as in the README), a probe fitted on fp32 features reads the bf16 ones the same way, and the
    precision keeps the stores apart. PyTorch autocast, so a few seconds even where bf16 is emulated."""
    data = copy_subset(monet_dir, tmp_path / "data", per_class=16, split="train")
    runtime = "torch"  # native or emulated alike; no OpenVINO conversion (~20 s): the slow test runs that path
    fs = {}
    for precision in ("fp32", "bf16"):
        res = extract(ExtractOptions("efficientnet_lite0", data, out=tmp_path / f"{precision}.h5", runtime=runtime,
                                     precision=precision, with_logits=True, workers=0, progress=False))
        fs[precision] = load_features(res.path)
        assert fs[precision].fingerprint["precision"] == precision and res.precision == precision
        assert res.n_rows == 32
    a, b = fs["fp32"], fs["bf16"]
    assert list(a.ids) == list(b.ids) and a.features.shape == b.features.shape == (32, 1280)
    assert not np.array_equal(a.features, b.features)  # it really ran in bf16
    cos = _cos(a.features, b.features)
    assert cos.min() >= 0.995, cos.min()
    assert (a.logits.argmax(1) == b.logits.argmax(1)).mean() >= 0.9  # ImageNet top-1 agrees
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000)).fit(a.features, a.labels)
    assert clf.score(a.features, a.labels) == 1.0  # 32 paintings in 1,280 dims: separable
    assert (clf.predict(b.features) == clf.predict(a.features)).mean() >= 0.9, runtime

    with pytest.raises(StoreError, match="precision"):  # a bf16 run never appends to the fp32 store
        extract(ExtractOptions("efficientnet_lite0", data, out=tmp_path / "fp32.h5", runtime=runtime, precision="bf16",
                               with_logits=True, progress=False))
    assert load_features(tmp_path / "fp32.h5").fingerprint["precision"] == "fp32"  # and leaves it as it was


@pytest.mark.slow
def test_linear_probe_same_accuracy_in_fp32_and_bf16(monet_dir, tmp_path):
    if not native_bf16():
        pytest.skip(EMULATED)
    runtime = _runtime()
    accs, stores = {}, {}
    for precision in ("fp32", "bf16"):
        res = extract(ExtractOptions("efficientnet_lite0", monet_dir, out=tmp_path / f"{precision}.h5", runtime=runtime,
                                     precision=precision, progress=False))
        fs = load_features(res.path)
        assert fs.fingerprint["precision"] == precision and res.precision == precision
        stores[precision], accs[precision] = fs, _probe(fs)
    (right32, cv32), (right16, cv16) = accs["fp32"], accs["bf16"]
    seen = {p: (int(r.sum()), round(cv, 3)) for p, (r, cv) in accs.items()}
    assert cv32 >= 0.8 and right32.sum() >= 48, seen  # a real probe, not chance
    assert abs(cv32 - cv16) <= 0.01 + 1e-9, seen
    b, c = int((right32 & ~right16).sum()), int((right16 & ~right32).sum())  # McNemar's discordant pairs
    assert abs(b - c) <= max(1.0, 1.96 * np.sqrt(b + c)), (seen, b, c)
    assert not np.array_equal(stores["fp32"].features, stores["bf16"].features)

    with pytest.raises(StoreError, match="precision"):  # a bf16 run never appends to the fp32 store
        extract(ExtractOptions("efficientnet_lite0", monet_dir, out=tmp_path / "fp32.h5", precision="bf16",
                               progress=False))
    hit = extract(ExtractOptions("efficientnet_lite0", monet_dir, out=tmp_path / "fp32.h5",
                                 progress=False))  # auto keeps fp32
    assert hit.cache_hit
