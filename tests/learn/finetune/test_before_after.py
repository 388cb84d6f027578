"""Before / after: `featx analyze` with several stores draws their projections side by side in one PNG,
the same class in the same colour in every panel."""

from __future__ import annotations

import _synth
import numpy as np
import pytest
from PIL import Image

from featx.analysis.analyze import AnalyzeOptions, analyze
from featx.report.projection_plots import class_colors


@pytest.mark.slow
def test_side_by_side_projection_of_two_stores(tmp_path):
    frozen = _synth.store(tmp_path / "frozen.h5", sep=1.0, seed=1)
    tuned = _synth.store(tmp_path / "tuned.h5", sep=6.0, seed=2, classes=("a", "b", "c"))
    res = analyze([frozen, tuned], AnalyzeOptions(pca=True, runs_dir=tmp_path / "runs"), out=tmp_path / "out")
    png = res.out_dir / "side-by-side-pca.png"
    assert png in res.files and "side-by-side-pca.png" in (res.out_dir / "summary.md").read_text()
    single = Image.open(res.out_dir / "frozen-pca-2d.png")
    both = np.asarray(Image.open(png).convert("RGB")).astype(int)
    assert both.shape[1] > 1.3 * single.size[0]  # two panels, side by side
    for rgba in class_colors(3):  # every class colour is drawn
        rgb = np.array(rgba[:3]) * 255
        assert (np.abs(both - rgb).sum(2) < 40).sum() > 50, rgba


def test_one_store_has_no_side_by_side(tmp_path):
    store = _synth.store(tmp_path / "one.h5")
    res = analyze([store], AnalyzeOptions(pca=True, runs_dir=tmp_path / "runs"), out=tmp_path / "out")
    assert not (res.out_dir / "side-by-side-pca.png").exists()
    own = res.out_dir / "one-pca-2d.png"  # what one store gets instead: its own projection, listed and linked
    assert own in res.files and own.is_file()
    summary = (res.out_dir / "summary.md").read_text()
    assert "one-pca-2d.png" in summary and "side-by-side" not in summary
    single = np.asarray(Image.open(own).convert("RGB")).astype(int)
    for rgba in class_colors(3):  # one panel with every class drawn
        assert (np.abs(single - np.array(rgba[:3]) * 255).sum(2) < 40).sum() > 50, rgba
