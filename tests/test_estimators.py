"""Every scikit-learn estimator featx defines passes scikit-learn's own estimator checks.

The estimators are found by walking the package, so a new one is checked without being listed here.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
from sklearn.base import BaseEstimator
from sklearn.utils.estimator_checks import parametrize_with_checks

import featx


def featx_estimators() -> list[type]:
    found = {}
    for info in pkgutil.walk_packages(featx.__path__, "featx."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseEstimator) and cls.__module__.startswith("featx.") and takes_tables(cls):
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return [found[k] for k in sorted(found)]


def takes_tables(cls: type) -> bool:
    """Estimators of numeric tables; ``ImageEmbedder`` takes images (tag ``two_d_array=False``), so the checks
    that feed it tables do not apply: tests/api/test_api_embedder.py runs the ones that do."""
    return cls().__sklearn_tags__().input_tags.two_d_array


ESTIMATORS = featx_estimators()


def test_the_walk_finds_featx_estimators():
    names = {cls.__name__ for cls in ESTIMATORS}
    assert {"LinearSVCCalibrated", "BlockL2Normalizer", "Projector"} <= names


@pytest.mark.slow
@parametrize_with_checks([cls() for cls in ESTIMATORS])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
