"""Training frequencies of nnU-Net's classes: what turns its softmax into evidence."""

import numpy as np

from lumbar_core.calibration import combine_with_prior, level_frequencies


def test_level_frequencies_from_sampled_class_counts_with_pseudo_counts():
    q = level_frequencies({1: 8, 2: 5, 4: 3, 15: 2})
    np.testing.assert_allclose(q["l1_l2"], np.array([9, 6, 1]) / 16)
    np.testing.assert_allclose(q["l2_l3"], np.array([4, 1, 1]) / 6)
    np.testing.assert_allclose(q["l5_s1"], np.array([1, 1, 3]) / 5)
    np.testing.assert_allclose(q["l3_l4"], np.ones(3) / 3)
    assert list(q) == ["l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1"]


def test_a_softmax_equal_to_the_training_frequencies_carries_no_evidence():
    prior = np.array([0.7, 0.2, 0.1])
    trained_on = np.array([0.6, 0.3, 0.1])
    np.testing.assert_allclose(combine_with_prior(prior, trained_on / trained_on, 1.0), prior)
    shifted = combine_with_prior(prior, np.array([0.3, 0.5, 0.2]) / trained_on, 1.0)
    assert shifted[1] > prior[1] and shifted[0] < prior[0]
