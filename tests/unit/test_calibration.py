"""Training frequencies of nnU-Net's classes: what turns its softmax into evidence."""

import numpy as np
import pytest

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


def _spinal_cells(seed: int = 0, studies: int = 40):
    """Held-out spinal rows of ``studies`` studies: a prior, a noisy model's distributions, labels, each row's study."""
    rng = np.random.default_rng(seed)
    prior = np.tile([0.75, 0.17, 0.08], (studies * 5, 1))
    truth = rng.choice(3, size=studies * 5, p=prior[0])
    dists = np.abs(np.eye(3)[truth] + rng.normal(0, 0.4, (studies * 5, 3))) + 0.05
    dists /= dists.sum(axis=1, keepdims=True)
    return prior, dists, truth, np.repeat(np.arange(studies) + 100, 5)


def test_spinal_fit_scores_the_rows_and_any_severe_as_the_competition_does():
    import pandas as pd

    from lumbar_core import vocab
    from lumbar_core.calibration import evidence, fit_tau
    from lumbar_core.score import score
    from lumbar_core.submission import make_submission

    prior, dists, truth, studies = _spinal_cells()
    _, floor, losses = fit_tau(prior, dists, truth, spinal_studies=studies)
    q = combine_with_prior(prior, evidence(dists, 1.0, floor), 1.0)
    levels = np.tile(vocab.LEVELS, len(np.unique(studies)))
    row_ids = [vocab.Target(int(s), "spinal_canal_stenosis", str(lv)).row_id for s, lv in zip(studies, levels)]
    labels = pd.DataFrame({"row_id": row_ids, "group": "spinal", "study_id": studies, "severity": truth})
    terms = score(labels, make_submission(row_ids, q, reweighted=True), validate=False)
    assert losses["1.0"] == pytest.approx(terms.spinal + terms.any_severe_spinal, rel=1e-6)
    rows_only = fit_tau(prior, dists, truth)[2]
    assert losses["1.0"] > rows_only["1.0"]  # any_severe adds its own term
