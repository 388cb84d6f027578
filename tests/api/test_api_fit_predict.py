"""featx.fit's FitRun / FitRuns and featx.predict on what they return."""

from __future__ import annotations

import warnings

import pytest
from helpers import assert_png
from matplotlib.figure import Figure

import featx
from featx.errors import ClassifierError, DataError


@pytest.fixture(scope="module")
def run(monet_lite0_store, tmp_path_factory):
    return featx.fit(featx.Store(monet_lite0_store), clf="softmax", out=tmp_path_factory.mktemp("runs") / "softmax")


@pytest.mark.slow
def test_a_fit_run_holds_metrics_model_report_and_figures(run):
    assert run.classifier == "softmax" and run.metrics["evaluation"]["mode"] == "test" and run.accuracy > 0.7
    assert "<featx.FitRun softmax" in repr(run) and "precision" in run.report
    assert run.classes == ["alfred-sisley", "claude-monet"]
    assert set(run.figures) == {"confusion_matrix.png", "misclassified.png"}
    assert all(isinstance(f, Figure) for f in run.figures.values())
    counts = run.confusion_matrix(normalize=False)
    assert isinstance(counts, Figure) and assert_png(run.path / "confusion_matrix_counts.png")
    texts = {t.get_text() for t in counts.axes[0].texts}
    cm = run.metrics["confusion_matrix"]
    assert {str(v) for row in cm for v in row} <= texts  # the counts are drawn, not proportions
    again = featx.FitRun(run.path)  # a run folder opened later
    assert again.metrics == run.metrics and again.figures == {}
    assert hasattr(run.model, "predict_proba") and run.model is run.model


@pytest.mark.slow
def test_several_classifiers_give_fit_runs_with_a_leaderboard(monet_lite0_store, tmp_path):
    runs = featx.fit(monet_lite0_store, clf="softmax,majority", out=tmp_path / "two")
    assert isinstance(runs, featx.FitRuns) and [r.classifier for r in runs] == ["softmax", "majority"]
    assert runs.path == tmp_path / "two" and all(r.path.parent == runs.path for r in runs)
    board = runs.leaderboard
    assert board[0]["classifier"] == "softmax" and len(runs.to_pandas()) == 2


@pytest.mark.slow
def test_predict_takes_the_run_its_model_or_the_file_and_reports_unreadable_images(run, monet_dir, tmp_path):
    images = sorted((monet_dir / "test" / "claude-monet").glob("*.jpg"))[:2]
    by_run = featx.predict(run, images, top_k=1)
    assert by_run == featx.predict(run.model, images, top_k=1) == featx.predict(run.path / "model.skops", images,
                                                                                 top_k=1)
    assert [p["path"] for p in by_run] == [str(i) for i in images]
    assert all(len(p["top"]) == 1 and p["top"][0][0] in run.classes and 0 < p["top"][0][1] <= 1 for p in by_run)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    with pytest.warns(UserWarning, match="broken.jpg"):
        got = featx.predict(run, [images[0], broken], top_k=2)
    assert len(got) == 1 and got.failures[0][0] == str(broken) and len(got[0]["top"]) == 2
    with pytest.raises(DataError, match="broken.jpg"):
        featx.predict(run, [broken], errors="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert featx.predict(run, [broken], errors="ignore") == []
    with pytest.raises(ClassifierError, match="was not loaded by featx"):
        featx.predict(object(), images)


def test_fit_run_on_a_small_store(tmp_path):
    """The quick tier's FitRun: three separable synthetic classes (no extraction)."""
    import _synth

    path = _synth.store(tmp_path / "s.h5", n_per_class=(30, 30, 30), sep=4.0)
    run = featx.fit(featx.Store(path), clf="softmax", out=tmp_path / "run")
    assert run.classifier == "softmax" and run.classes == ["a", "b", "c"] and run.accuracy >= 0.9
    assert run.metrics["evaluation"]["mode"] == "test" and "<featx.FitRun softmax" in repr(run)
    assert (run.path / "metrics.json").is_file() and (run.path / "model.skops").is_file()
    shuffled = _synth.store(tmp_path / "noise.h5", n_per_class=(30, 30, 30), sep=0.0)
    assert featx.fit(featx.Store(shuffled), clf="softmax", out=tmp_path / "noise").accuracy < run.accuracy - 0.3
