"""Every Python block of the README runs, and so does examples/monet_vs_sisley.ipynb (nbclient)."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cached(tmp_path_factory, monet_lite0_store, monet_dir):
    """A cache folder already holding the store the README and the notebook extract (a cache hit for them),
    and a working folder laid out like the repository: ``<tmp>/main`` beside ``<tmp>/shared``."""
    from featx.extraction.plan import plan_extraction

    base = tmp_path_factory.mktemp("docs")
    cache = base / "cache"
    cache.mkdir()
    (base / "shared" / "data").mkdir(parents=True)
    (base / "shared" / "data" / "monet-sisley").symlink_to(monet_dir)
    (base / "main" / "examples").mkdir(parents=True)
    os.environ["FEATX_CACHE"], previous = str(cache), os.environ.get("FEATX_CACHE")
    try:
        plan = plan_extraction("efficientnet_lite0", base / "shared" / "data" / "monet-sisley", with_logits=True)
        shutil.copy(monet_lite0_store, plan.out)
        yield base
    finally:
        if previous is None:
            del os.environ["FEATX_CACHE"]
        else:
            os.environ["FEATX_CACHE"] = previous


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, re.DOTALL | re.MULTILINE)


def test_every_python_block_of_the_readme_runs(cached, monkeypatch):
    import matplotlib
    import matplotlib.pyplot as plt

    blocks = python_blocks((ROOT / "README.md").read_text())
    assert len(blocks) >= 3 and any("featx.extract(" in b for b in blocks) and any("ImageEmbedder" in b for b in blocks)
    monkeypatch.chdir(cached / "main")
    backend = matplotlib.get_backend()
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)  # noqa: S102
    assert namespace["store"].extraction.cache_hit
    assert namespace["run"].metrics["accuracy"] > 0.7
    from matplotlib.figure import Figure

    assert isinstance(namespace["fig"], Figure) and (namespace["run"].path / "confusion_matrix.png").is_file()
    assert namespace["fig"]._repr_png_().startswith(b"\x89PNG")  # how Jupyter shows it without pyplot
    assert any("umap" in name for name in namespace["result"].figures)
    assert matplotlib.get_backend() == backend and plt.get_fignums() == []  # a notebook's backend is left alone


def test_the_example_notebook_runs(cached):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")

    nb = nbformat.read(ROOT / "examples" / "monet_vs_sisley.ipynb", as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(cached / "main" / "examples")}})
    env = {**os.environ, "FEATX_SHARED_DATA": str(cached / "shared" / "data"), "PYTHONPATH": str(ROOT)}
    client.execute(env=env)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2  # the confusion matrix and the UMAP
    text = "\n".join(str(o.get("data", {}).get("text/plain", "")) + o.get("text", "") for o in outputs)
    assert "<featx.Store" in text and "<featx.FitRun linearsvc" in text and "claude-monet" in text
    assert sys.executable
