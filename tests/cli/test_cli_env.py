"""`featx env`: every variable featx reads is listed with its value in this process, and nothing reads
the environment outside ``featx/env.py``."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from featx import env

FEATX = Path(__file__).resolve().parents[2] / "featx"


def _featx(*args: str, **extra: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k not in env.VARS} | extra
    proc = subprocess.run([sys.executable, "-m", "featx", *args], capture_output=True, text=True, env=environ,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_env_lists_each_variable_with_its_value_here(tmp_path):
    rows = json.loads(_featx("env", "--json", FEATX_CACHE=str(tmp_path), CUDA_VISIBLE_DEVICES=""))
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == set(env.VARS)
    assert by_name["FEATX_CACHE"]["value"] == str(tmp_path)
    assert by_name["CUDA_VISIBLE_DEVICES"]["value"] == ""  # set but empty is not unset
    assert by_name["FEATX_MODELS"]["value"] is None
    assert all(r["help"] and r["default"] for r in rows)
    text = _featx("env", FEATX_MAX_PIXELS="1000")
    assert "FEATX_MAX_PIXELS" in text and "'1000'" in text and "FEATX_DEBUG             unset" in text


def test_the_variables_take_effect(tmp_path):
    code = ("from featx.config import cache_dir; from featx.engine.openvino import models_dir; "
            "from featx.data import images; print(cache_dir(), models_dir(), images.MAX_PIXELS)")
    environ = {k: v for k, v in os.environ.items() if k not in env.VARS}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=environ | {"FEATX_CACHE": str(tmp_path / "c"), "FEATX_MAX_PIXELS": "77"})
    assert proc.stdout.split() == [str(tmp_path / "c"), str(tmp_path / "c" / "models"), "77"], proc.stderr


def test_torch_home_decides_where_featx_looks_for_weights(tmp_path):
    """`featx backbones` says resnet50's weights are offline exactly when $TORCH_HOME holds the file."""
    code = ("from featx.backbones.registry import get_cfg; from featx.backbones.weights import weights_offline; "
            "print(weights_offline(get_cfg('resnet50')))")
    environ = {k: v for k, v in os.environ.items() if k not in env.VARS} | {"TORCH_HOME": str(tmp_path)}

    def run() -> str:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              env=environ).stdout.strip()

    assert run() == "no (downloads on first use)"
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth").write_bytes(b"")
    assert run() == "yes (torch cache)"


def _reads_environment(tree: ast.AST) -> list[int]:
    return [n.lineno for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and n.attr in ("environ", "getenv", "environb")
            and isinstance(n.value, ast.Name) and n.value.id == "os"]


def test_only_env_module_reads_the_environment():
    readers = {p.relative_to(FEATX.parent).as_posix(): lines for p in sorted(FEATX.rglob("*.py"))
               if (lines := _reads_environment(ast.parse(p.read_text())))}
    assert set(readers) == {"featx/env.py"}, readers
    assert _reads_environment(ast.parse("import os\nx = os.environ.get('FEATX_X')\n")) == [2]  # the check sees one
