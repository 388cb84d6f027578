"""The README's first command: pipelines/quickstart.sh runs extract -> fit -> analyze on real digits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_pipeline_runs_end_to_end(tmp_path):
    env = {**os.environ, "PER_CLASS": "12"}
    proc = subprocess.run(["bash", str(ROOT / "pipelines" / "quickstart.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "cache" / "digits--efficientnet_lite0.h5").exists()
    run = tmp_path / "runs" / "quickstart-digits" / "digits--efficientnet_lite0--softmax"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.1 * 3  # 10 classes: well above chance with real pretrained features
    scores = json.loads((tmp_path / "runs" / "quickstart-analyze" / "scores.json").read_text())
    assert all(v["leep"] is not None for v in scores.values())
    again = subprocess.run(["bash", str(ROOT / "pipelines" / "quickstart.sh")], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "cache hit" in again.stdout  # a re-run reuses the store and rewrites the same run folders
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["quickstart-analyze", "quickstart-digits"]


def test_quickstart_script_parses_and_its_first_step_writes_the_digits(tmp_path):
    """The quick tier's quick start: the script is valid bash, every featx command in it exists, and its
    first step (``featx sample-data``) writes real digits, ``--per-class`` of each of the ten."""
    script = ROOT / "pipelines" / "quickstart.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    commands = [line.split()[2] for line in script.read_text().splitlines() if line.startswith("run featx ")]
    assert commands == ["sample-data", "extract", "info", "fit", "analyze"]
    proc = subprocess.run([sys.executable, "-m", "featx", "sample-data", str(tmp_path / "digits"), "--per-class", "2"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    classes = sorted(p for p in (tmp_path / "digits").iterdir() if p.is_dir())
    assert len(classes) == 10 and all(len(list(c.iterdir())) == 2 for c in classes)
