"""Training frequencies of nnU-Net's classes: what turns its softmax into evidence."""

import numpy as np
import pandas as pd

from lumbar_core.calibration import combine_with_prior, training_frequencies


def test_frequencies_per_family_and_level_with_pseudo_counts():
    classes = pd.DataFrame(
        [
            {"family": "spinal", "class": 1, "level": "l1_l2", "severity": 0, "cases": 8, "balanced": 8},
            {"family": "spinal", "class": 2, "level": "l1_l2", "severity": 1, "cases": 1, "balanced": 5},
            {"family": "foraminal", "class": 1, "level": "l1_l2", "severity": 0, "cases": 3, "balanced": 3},
        ]
    )
    q = training_frequencies(classes)
    np.testing.assert_allclose(q[("spinal", "l1_l2")], np.array([9, 6, 1]) / 16)
    np.testing.assert_allclose(q[("foraminal", "l1_l2")], np.array([4, 1, 1]) / 6)
    assert set(q) == {("spinal", "l1_l2"), ("foraminal", "l1_l2")}


def test_a_softmax_equal_to_the_training_frequencies_carries_no_evidence():
    prior = np.array([0.7, 0.2, 0.1])
    trained_on = np.array([0.6, 0.3, 0.1])
    np.testing.assert_allclose(combine_with_prior(prior, trained_on / trained_on, 1.0), prior)
    shifted = combine_with_prior(prior, np.array([0.3, 0.5, 0.2]) / trained_on, 1.0)
    assert shifted[1] > prior[1] and shifted[0] < prior[0]
