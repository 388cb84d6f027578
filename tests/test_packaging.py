"""What a plain clone sees: ``featx --version``, one version everywhere, and a suite that skips (with the
data's origin) rather than fails where ``../shared/data`` is absent. The dependency floors themselves are
run by ``.ci/floors`` (each dependency at its lowest promised version, in a throw-away venv)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

import featx

ROOT = Path(__file__).resolve().parents[1]


def test_version_is_one_value_everywhere():
    proc = subprocess.run([sys.executable, "-m", "featx", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"featx {featx.__version__}"
    assert version("featx") == featx.__version__
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dynamic"] == ["version"]


def test_floors_are_stated_for_every_dependency():
    proc = subprocess.run([sys.executable, str(ROOT / ".ci" / "floors.py")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    pins = dict(line.split("==") for line in proc.stdout.split())
    assert pins["scikit-learn"] and pins["torch"] and len(pins) >= 15


@pytest.mark.slow
def test_tests_needing_the_paintings_skip_with_where_they_come_from(tmp_path):
    env = {**os.environ, "FEATX_SHARED_DATA": str(tmp_path / "no-such-data")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                           "tests/engine/test_precision.py", "tests/extraction/test_sync.py"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert " failed" not in proc.stdout and " error" not in proc.stdout, proc.stdout[-3000:]
    assert "skipped" in proc.stdout and "WikiArt paintings" in proc.stdout and "FEATX_SHARED_DATA" in proc.stdout
