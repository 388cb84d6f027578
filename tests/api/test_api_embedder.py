"""featx.ImageEmbedder: scikit-learn's estimator rules, Pipeline + GridSearchCV, and a store as its cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.utils import estimator_checks as ec

import featx
from featx.errors import DataError


def paintings(root: Path, split: str, per_class: int) -> tuple[list[Path], list[str]]:
    paths = [p for cls in ("alfred-sisley", "claude-monet")
             for p in sorted((root / split / cls).glob("*.jpg"))[:per_class]]
    return paths, [p.parent.name for p in paths]


# scikit-learn's own checks that apply to a transformer of images (the others feed it numeric tables)
CHECKS = ["check_parameters_default_constructible", "check_no_attributes_set_in_init", "check_get_params_invariance",
          "check_set_params", "check_estimator_cloneable", "check_estimator_repr", "check_estimator_tags_renamed",
          "check_valid_tag_types"]


@pytest.mark.parametrize("check", CHECKS)
def test_sklearn_checks_that_apply_to_images(check):
    getattr(ec, check)("ImageEmbedder", featx.ImageEmbedder())


@pytest.mark.slow
def test_clone_round_trips_every_parameter(monet_lite0_store):
    store = featx.Store(monet_lite0_store)
    emb = featx.ImageEmbedder("efficientnet_lite0", weights="none", layer="features", pool="gem", tta="hflip",
                              image_size=192, batch_size=4, store=store, progress=True)
    twin = clone(emb)
    assert twin is not emb and twin.get_params() .keys() == emb.get_params().keys()
    for name, value in emb.get_params().items():
        if name == "store":
            assert isinstance(twin.store, featx.Store) and twin.store.path == store.path
        else:
            assert twin.get_params()[name] == value, name
    assert not hasattr(twin, "fingerprint_")
    twin.set_params(pool="max")
    assert twin.pool == "max" and emb.pool == "gem"


@pytest.mark.slow
def test_pipeline_with_grid_search_over_pool_on_40_paintings(monet_dir):
    X, y = paintings(monet_dir, "train", 20)
    X_val, y_val = paintings(monet_dir, "val", 10)
    pipe = Pipeline([("embed", featx.ImageEmbedder("efficientnet_lite0", layer="features")),
                     ("clf", LogisticRegression(max_iter=2000))])
    search = GridSearchCV(pipe, {"embed__pool": ["avg", "max"]}, cv=StratifiedKFold(2, shuffle=True, random_state=0))
    search.fit(X, y)
    assert list(search.cv_results_["param_embed__pool"]) == ["avg", "max"]
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    emb = search.best_estimator_.named_steps["embed"]
    assert emb.fingerprint_["pool"] == search.best_params_["embed__pool"] and emb.n_features_out_ == 1280
    assert search.best_estimator_.named_steps["clf"].n_features_in_ == 1280
    assert search.score(X_val, y_val) >= 0.65  # ImageNet features tell the painters apart (chance 0.5)
    names = search.best_estimator_[:-1].get_feature_names_out()
    assert len(names) == 1280 and names[0] == f"efficientnet_lite0.features.{search.best_params_['embed__pool']}_0"


@pytest.mark.slow
def test_features_equal_the_store_s_and_the_store_serves_as_cache(monet_lite0_store):
    from PIL import Image

    store = featx.Store(monet_lite0_store)
    ids = list(store.ids[:3]) + list(store.ids[-3:])
    paths = [store.data_root / i for i in ids]
    plain = featx.ImageEmbedder("efficientnet_lite0").fit()
    computed = plain.transform(paths)
    assert computed.shape == (6, 1280) and computed.dtype == np.float32 and plain.n_cached_ == 0
    np.testing.assert_allclose(computed, store.features(ids=ids), rtol=1e-4, atol=1e-5)  # same net, same pixels
    with_images = plain.transform([Image.open(p) for p in paths[:2]] + [np.asarray(Image.open(paths[2]))])
    np.testing.assert_allclose(with_images, computed[:3], rtol=1e-5, atol=1e-6)
    cached = featx.ImageEmbedder("efficientnet_lite0", store=store).fit()
    np.testing.assert_array_equal(cached.transform(paths), store.features(ids=ids))
    assert cached.n_cached_ == 6
    other = featx.ImageEmbedder("efficientnet_lite0", pool="none", layer="pre_logits", tta="hflip",
                                store=store).fit()
    other.transform(paths[:1])
    assert other.n_cached_ == 0  # other settings: the store is not used


@pytest.mark.slow
def test_bad_inputs_name_the_problem(tmp_path):
    emb = featx.ImageEmbedder("efficientnet_lite0").fit()
    with pytest.raises(DataError, match="wrap a single image"):
        emb.transform("painting.jpg")
    with pytest.raises(DataError, match="is not an image"):
        emb.transform([[0.1, 0.2]])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="broken.jpg"):
        emb.transform([broken])
