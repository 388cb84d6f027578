"""Confident learning (featx.look.labels) by hand, on planted label noise, and against cleanlab itself."""

from __future__ import annotations

import numpy as np
import pytest

import _synth
from featx.errors import ClassifierError
from featx.look import labels as cl


def noisy_blobs(n_flip: int = 24, seed: int = 0):
    """Four overlapping Gaussian classes with ``n_flip`` labels moved to the next class."""
    X, y, _, _ = _synth.blobs((80, 80, 80, 80), dim=32, sep=1.5, seed=1)
    rng = np.random.default_rng(seed)
    flip = rng.choice(len(y), n_flip, replace=False)
    noisy = y.copy()
    noisy[flip] = (noisy[flip] + 1) % 4
    return X, y, noisy, flip


def test_the_confident_joint_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 1])
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9],  # row 2: labelled 0, confidently 1
                      [0.2, 0.8], [0.3, 0.7], [0.4, 0.6]])
    found = cl.find_label_issues(labels, proba)
    # thresholds: the mean self-confidence of each class
    np.testing.assert_allclose(found.thresholds, [(0.9 + 0.8 + 0.1) / 3, (0.8 + 0.7 + 0.6) / 3])
    assert found.flagged.tolist() == [2]
    assert found.suggested[2] == 1
    # row 5 (p1 = 0.6 < 0.7): confident of no class; it is not counted in the joint
    np.testing.assert_array_equal(found.joint, [[2, 1], [0, 2]])
    np.testing.assert_allclose(found.margin[2], (0.1 - 0.9 + 1) / 2)
    assert found.mask.tolist() == [False, False, True, False, False, False]


def test_clean_separable_classes_have_no_issues():
    X, y, _, _ = _synth.blobs((60, 60, 60), dim=32, sep=3.0)
    proba = cl.out_of_fold_proba(X, y, 3)
    assert proba.shape == (180, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert len(cl.find_label_issues(y, proba).flagged) == 0


def test_planted_flips_are_found_and_ranked_first():
    X, _, noisy, flip = noisy_blobs()
    proba = cl.out_of_fold_proba(X, noisy, 4, folds=5, seed=0)
    found = cl.find_label_issues(noisy, proba)
    hits = np.isin(found.flagged, flip)
    # overlapping classes: most flagged rows are planted flips, and most flips are flagged
    assert hits.mean() >= 0.7, (hits.sum(), len(found.flagged))
    assert hits.sum() >= len(flip) // 2
    # ranked by self-confidence, lowest first
    sc = found.self_confidence[found.flagged]
    assert np.all(np.diff(sc) >= 0)


def test_out_of_fold_needs_two_rows_per_class():
    X, y, _, _ = _synth.blobs((10, 1), dim=4)
    with pytest.raises(ClassifierError, match="single labelled row"):
        cl.out_of_fold_proba(X, y, 2)
    with pytest.raises(ClassifierError, match="--rank-by"):
        cl.find_label_issues(y, np.full((11, 2), 0.5), rank_by="entropy")


@pytest.mark.parametrize("rank_by", cl.RANK_BY)
def test_the_same_rows_in_the_same_order_as_cleanlab(rank_by):
    """featx implements cleanlab's ``filter_by="confident_learning"`` (thresholds, confident joint, the rows
    whose label is their most probable class dropped), so on the same probabilities the flagged rows must be
    the same set, and the ranking by the same score the same order: the assertion is equality, not overlap.
    Against cleanlab's default (``prune_by_noise_rate``, which prunes a number of rows estimated from the
    calibrated joint) the two lists differ by design; featx's is the smaller, more conservative list, and the
    test checks that it is almost entirely contained in cleanlab's default."""
    cleanlab_filter = pytest.importorskip("cleanlab.filter", reason="pip install cleanlab (the dev extra)")
    from cleanlab.rank import get_label_quality_scores

    X, _, noisy, _ = noisy_blobs()
    proba = cl.out_of_fold_proba(X, noisy, 4)
    ours = cl.find_label_issues(noisy, proba, rank_by=rank_by)
    theirs = cleanlab_filter.find_label_issues(noisy, proba, filter_by="confident_learning",
                                               return_indices_ranked_by=rank_by)
    assert len(ours.flagged) > 10
    assert ours.flagged.tolist() == list(theirs)
    np.testing.assert_allclose(ours.score, get_label_quality_scores(noisy, proba, method=rank_by), atol=1e-12)
    default = set(np.flatnonzero(cleanlab_filter.find_label_issues(noisy, proba)))
    assert len(set(ours.flagged) & default) >= 0.9 * len(ours.flagged)


def test_least_sure_rows_have_the_closest_top_two():
    proba = np.array([[0.5, 0.5], [0.9, 0.1], [0.6, 0.4], [0.99, 0.01]])
    assert cl.least_sure(proba, 2).tolist() == [0, 2]
