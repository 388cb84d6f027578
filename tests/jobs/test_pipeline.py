"""`featx run`: a study pipeline end to end; the second run does nothing, a changed input re-runs what follows it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from featx.errors import OptionError
from featx.jobs.pipeline import MARKER, load_study

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"

BACKBONE = "efficientnet_lite0"


def _run(toml: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "featx", "run", str(toml), "-q"], capture_output=True, text=True,
                          cwd=cwd)


@pytest.mark.slow
def test_a_pipeline_runs_once_then_skips_every_step_then_reruns_what_a_new_image_changes(paintings, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(paintings, data)
    toml = tmp_path / "study.toml"
    toml.write_text(f'name = "small"\ndata = "data"\n\n[[extract]]\nbackbone = "{BACKBONE}"\nout = "cache/a.h5"\n\n'
                    '[fit]\nclf = ["softmax", "linearsvc"]\nclass_weight = "balanced"\n\n'
                    '[analyze]\ntransferability = true\npca = true\n')
    first = _run(toml, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "3 steps: 3 run, 0 already done" in first.stdout
    fit_dir, analyze_dir = tmp_path / "runs/small/fit", tmp_path / "runs/small/analyze"
    assert (fit_dir / "leaderboard.csv").is_file() and (analyze_dir / MARKER).is_file()
    assert (tmp_path / "cache/a.h5").is_file()
    stamps = {p: p.stat().st_mtime_ns for p in [*fit_dir.rglob("*"), *analyze_dir.rglob("*"), tmp_path / "cache/a.h5"]}

    second = _run(toml, tmp_path)
    assert second.returncode == 0, second.stderr
    assert "3 steps: 0 run, 3 already done" in second.stdout
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing extracted, refitted or re-analysed

    artist = sorted(d for d in data.iterdir() if d.is_dir())[0]
    shutil.copy(sorted(artist.iterdir())[0], artist / "copy-of-one.jpg")
    third = _run(toml, tmp_path)
    assert "3 steps: 3 run, 0 already done" in third.stdout, third.stdout
    assert "run  extract" in third.stdout and "run  fit" in third.stdout


def test_the_shipped_pipelines_parse_and_point_at_the_shared_paintings():
    files = sorted(PIPELINES.glob("*.toml"))
    assert {f.stem for f in files} >= {"monet_sisley", "impressionists", "styles", "backbone_comparison"}
    for f in files:
        study = load_study(f)
        assert study.data.is_dir(), (f, study.data)
        assert study.extracts and study.fit and study.analyze
    assert len(load_study(PIPELINES / "backbone_comparison.toml").extracts) >= 3


def test_pipeline_errors_name_the_file_and_the_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('data = "x"\n[[extract]]\nbackbone = "efficientnet_lite0"\nlayr = "fc2"\n')
    with pytest.raises(OptionError, match=r"bad.toml: \[extract\] has unknown key\(s\) layr"):
        load_study(bad)
    bad.write_text("data = [\n")
    with pytest.raises(OptionError, match="not valid TOML"):
        load_study(bad)
    r = subprocess.run([sys.executable, "-m", "featx", "run", str(tmp_path / "none.toml")], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "none.toml: no such pipeline file" in r.stderr
