"""examples/monet_vs_sisley.ipynb runs top to bottom (nbclient). The code blocks of README.md and docs/*.md
run in tests/test_docs.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from docblocks import make_workspace

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cached(tmp_path_factory, monet_lite0_store, monet_dir):
    """``<tmp>/main`` beside ``<tmp>/shared/data``, its cache already holding the store the notebook extracts."""
    return make_workspace(tmp_path_factory.mktemp("notebook"), monet_lite0_store, monet_dir)


def test_the_notebook_is_committed_without_outputs():
    nb = json.loads((ROOT / "examples" / "monet_vs_sisley.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(not c.get("outputs") and c.get("execution_count") is None for c in code)


@pytest.mark.slow
def test_the_example_notebook_runs(cached):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")

    nb = nbformat.read(ROOT / "examples" / "monet_vs_sisley.ipynb", as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(cached / "examples")}})
    env = {**os.environ, "FEATX_SHARED_DATA": str(cached.parent / "shared" / "data"), "PYTHONPATH": str(ROOT),
           "FEATX_CACHE": str(cached / "cache")}
    client.execute(env=env)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2  # the confusion matrix and the UMAP
    text = "\n".join(str(o.get("data", {}).get("text/plain", "")) + o.get("text", "") for o in outputs)
    assert "<featx.Store" in text and "<featx.FitRun linearsvc" in text and "claude-monet" in text


def test_the_example_notebook_is_clean_and_calls_only_what_featx_exports():
    """The quick tier's check of the notebook (running it takes the 600-painting store): valid, saved
    without outputs, every code cell compiles, and each ``featx.<name>`` it calls is public API."""
    nbformat = pytest.importorskip("nbformat")
    import ast

    import featx

    nb = nbformat.read(ROOT / "examples" / "monet_vs_sisley.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert len(code) >= 5 and all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    used = set()
    for source in code:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "featx":
                used.add(node.attr)
    assert {"extract", "fit", "predict", "analyze"} <= used, used
    assert used <= set(featx.__all__), used - set(featx.__all__)
