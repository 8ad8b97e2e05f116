"""Phantom labels: the real prevalence, correlation between levels and sides, empty cells, reader noise."""

import numpy as np
import pytest

from lumbar_core import vocab
from lumbar_core.prevalence import REAL_PREVALENCE
from lumbar_core.synthetic.grades import degree_from_u, grade_of_degree, sample_grades


@pytest.fixture(scope="module")
def many():
    rng = np.random.default_rng(11)
    return [sample_grades(rng, label_noise_sd=0.3, p_missing_cell=0.004) for _ in range(600)]


def test_labels_follow_the_real_prevalence(many):
    for (condition, level), p in REAL_PREVALENCE.items():
        labels = [g.label[(condition, level)] for g in many if g.label[(condition, level)] is not None]
        observed = np.bincount(labels, minlength=3) / len(labels)
        assert np.abs(observed - p).max() < 0.06, (condition, level, observed.round(3), p)


def test_neighbouring_levels_and_sides_are_correlated(many):
    def grades(condition, level):
        return np.array([g.grade[(condition, level)] for g in many], dtype=float)

    for a, b in zip(vocab.LEVELS, vocab.LEVELS[1:]):
        assert np.corrcoef(grades("left_subarticular_stenosis", a), grades("left_subarticular_stenosis", b))[0, 1] > 0.15
    for level in ("l3_l4", "l4_l5", "l5_s1"):
        left = grades("left_neural_foraminal_narrowing", level)
        right = grades("right_neural_foraminal_narrowing", level)
        assert np.corrcoef(left, right)[0, 1] > 0.3
    severe_spinal = np.mean([any(g.grade[("spinal_canal_stenosis", lv)] == 2 for lv in vocab.LEVELS) for g in many])
    assert 0.12 < severe_spinal < 0.35  # real: 18.5%


def test_some_cells_are_empty_mostly_upper_subarticular(many):
    empty = {k: sum(g.label[k] is None for g in many) for k in REAL_PREVALENCE}
    total = sum(empty.values())
    assert 0.003 < total / (25 * len(many)) < 0.03
    upper = sum(v for (c, lv), v in empty.items() if "subarticular" in c and lv in ("l1_l2", "l2_l3"))
    assert upper > total / 2


def test_reader_noise_is_one_grade_off_near_boundaries(many):
    off = [(g.grade[k], g.label[k], g.degree[k]) for g in many for k in g.grade if g.label[k] is not None and g.label[k] != g.grade[k]]
    share = len(off) / sum(1 for g in many for k in g.grade if g.label[k] is not None)
    assert 0.01 < share < 0.12
    assert all(abs(a - b) == 1 for a, b, _ in off)
    assert np.mean([min(abs(d - 1 / 3), abs(d - 2 / 3)) < 0.15 for _, _, d in off]) > 0.8


def test_degree_mapping_cuts_at_the_prevalence():
    p = (0.7, 0.2, 0.1)
    assert grade_of_degree(degree_from_u(0.69, p)) == 0
    assert grade_of_degree(degree_from_u(0.71, p)) == 1
    assert grade_of_degree(degree_from_u(0.91, p)) == 2
    us = np.linspace(0.001, 0.999, 200)
    assert np.all(np.diff([degree_from_u(u, p) for u in us]) > 0)


def test_phantom_files_carry_the_sampled_labels(phantom):
    import pandas as pd

    from .helpers import truth

    train = pd.read_csv(phantom / "train.csv")
    for row in train.itertuples(index=False):
        doc = truth(phantom, row.study_id)
        for t in doc["targets"]:
            cell = getattr(row, vocab.target_column(t["condition"], t["level"]))
            expected = None if t["label"] is None else vocab.SEVERITIES[t["label"]]
            assert (cell if isinstance(cell, str) else None) == expected
