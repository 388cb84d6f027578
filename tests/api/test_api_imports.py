"""``import featx`` stays light; the API imports torch only when an image is embedded."""

from __future__ import annotations

import subprocess
import sys

import featx

CODE = """
import sys
heavy = lambda: sorted(m for m in ("torch", "torchvision", "timm", "h5py", "sklearn") if m in sys.modules)
import featx
print(heavy())
featx.fit, featx.analyze, featx.Store, featx.extract, featx.predict
print(heavy())
featx.ImageEmbedder("efficientnet_lite0", pool="max")
print(heavy())
"""


def test_import_featx_loads_no_torch_and_no_h5py_and_the_api_no_torch():
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    plain, api, embedder = done.stdout.splitlines()
    assert plain == "[]"
    assert "torch" not in api and "h5py" in api
    assert "torch" not in embedder and "sklearn" in embedder  # an unfitted ImageEmbedder builds nothing


def test_the_api_is_public_and_documented():
    for name in ("extract", "fit", "predict", "analyze", "ImageEmbedder", "Store", "FitRun", "Analysis"):
        assert name in featx.__all__
        doc = getattr(featx, name).__doc__ or ""
        assert len(doc) > 80, name
    for fn in (featx.extract, featx.fit, featx.predict, featx.analyze):
        assert "Parameters\n    ----------" in fn.__doc__ and "Returns\n    -------" in fn.__doc__, fn.__name__
