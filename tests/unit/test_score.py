"""The score against hand-computed values (docs/data.md)."""

import math

import numpy as np
import pandas as pd
import pytest

from lumbar_core import labels, vocab
from lumbar_core.prevalence import REAL_PREVALENCE
from lumbar_core.score import score
from lumbar_core.submission import SubmissionError

LN2 = math.log(2)


def _sub(rows: dict[str, tuple[float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame([(r, *p) for r, p in rows.items()], columns=["row_id", "normal_mild", "moderate", "severe"])


def _full_sub(study_ids, default=(0.5, 0.25, 0.25), overrides=None):
    rows = {t.row_id: default for s in study_ids for t in vocab.study_targets(s)}
    rows.update(overrides or {})
    return _sub(rows)


def _wide(truth: dict[int, dict[str, str]]) -> pd.DataFrame:
    """train.csv with every cell Normal/Mild unless given; None leaves a cell empty."""
    rows = []
    for study, cells in truth.items():
        row = {"study_id": study, **{c: "Normal/Mild" for c in vocab.target_columns()}}
        row.update(cells)
        rows.append(row)
    return pd.DataFrame(rows)


def test_hand_computed_terms():
    # study 1: spinal truths N, Mod, Sev, N, N; study 2: all Normal/Mild.
    truth = _wide(
        {
            1: {
                "spinal_canal_stenosis_l2_l3": "Moderate",
                "spinal_canal_stenosis_l3_l4": "Severe",
                "left_neural_foraminal_narrowing_l4_l5": "Severe",
                "right_subarticular_stenosis_l5_s1": "Moderate",
            },
            2: {},
        }
    )
    # every row predicts (0.5, 0.25, 0.25), except study 2's spinal rows: (0.9, 0.05, 0.05)
    overrides = {vocab.row_id(2, "spinal_canal_stenosis", lv): (0.9, 0.05, 0.05) for lv in vocab.LEVELS}
    table = score(labels.from_wide(truth), _full_sub([1, 2], overrides=overrides))

    # spinal: study 1 has 3 Normal (w1, -ln .5), Moderate (w2, -ln .25), Severe (w4, -ln .25);
    # study 2 has 5 Normal (w1, -ln .9)
    spinal = (3 * LN2 + 2 * 2 * LN2 + 4 * 2 * LN2 + 5 * -math.log(0.9)) / (3 + 2 + 4 + 5)
    # foraminal: 20 rows, one Severe (w4, -ln .25), 19 Normal (w1, -ln .5)
    foraminal = (19 * LN2 + 4 * 2 * LN2) / (19 + 4)
    # subarticular: one Moderate (w2), 19 Normal
    subarticular = (19 * LN2 + 2 * 2 * LN2) / (19 + 2)
    # any severe: study 1 y=1, w=4, p=max severe=.25; study 2 y=0, w=1, p=.05
    any_severe = (4 * -math.log(0.25) + 1 * -math.log(1 - 0.05)) / (4 + 1)
    assert table.spinal == pytest.approx(spinal, rel=1e-9)
    assert table.foraminal == pytest.approx(foraminal, rel=1e-9)
    assert table.subarticular == pytest.approx(subarticular, rel=1e-9)
    assert table.any_severe_spinal == pytest.approx(any_severe, rel=1e-9)
    assert table.score == pytest.approx((spinal + foraminal + subarticular + any_severe) / 4, rel=1e-9)
    assert table.counts == {"spinal": 10, "foraminal": 20, "subarticular": 20, "any_severe_spinal": 2}


def test_any_severe_weight_is_the_largest_row_weight():
    # worst spinal grade Moderate: weight 2, truth 0, prediction = max raw severe over rows
    truth = _wide({7: {"spinal_canal_stenosis_l4_l5": "Moderate"}})
    overrides = {vocab.row_id(7, "spinal_canal_stenosis", "l1_l2"): (0.2, 0.2, 0.6)}
    table = score(labels.from_wide(truth), _full_sub([7], overrides=overrides))
    assert table.any_severe_spinal == pytest.approx(-math.log(1 - 0.6))
    # the weight only matters between studies: add an all-Normal study with p=.25
    truth2 = _wide({7: {"spinal_canal_stenosis_l4_l5": "Moderate"}, 8: {}})
    table2 = score(labels.from_wide(truth2), _full_sub([7, 8], overrides=overrides))
    assert table2.any_severe_spinal == pytest.approx((2 * -math.log(0.4) + 1 * -math.log(0.75)) / 3)


def test_rows_without_truth_are_dropped_even_from_the_any_severe_max():
    truth = _wide({3: {"spinal_canal_stenosis_l4_l5": None, "left_subarticular_stenosis_l1_l2": None}})
    overrides = {vocab.row_id(3, "spinal_canal_stenosis", "l4_l5"): (0.05, 0.05, 0.9)}
    table = score(labels.from_wide(truth), _full_sub([3], overrides=overrides))
    assert table.counts["spinal"] == 4
    assert table.counts["subarticular"] == 9
    # the unlabelled row's 0.9 is ignored: prediction is .25 from the labelled rows, truth 0
    assert table.any_severe_spinal == pytest.approx(-math.log(0.75))
    assert table.spinal == pytest.approx(LN2)


def test_all_normal_study_and_perfect_submission_score_about_zero():
    rng = np.random.default_rng(0)
    cells = {c: vocab.SEVERITIES[rng.integers(3)] for c in vocab.target_columns()}
    truth = labels.from_wide(_wide({10: cells, 11: {}}))
    onehot = {r: tuple(float(i == s) for i in range(3)) for r, s in zip(truth["row_id"], truth["severity"])}
    table = score(truth, _sub(onehot))
    assert table.score < 1e-6
    assert table.counts["any_severe_spinal"] == 2


def _sample_labels(n_studies: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for study in range(1, n_studies + 1):
        row = {"study_id": study}
        for (condition, level), p in REAL_PREVALENCE.items():
            row[vocab.target_column(condition, level)] = vocab.SEVERITIES[rng.choice(3, p=p)]
        rows.append(row)
    return pd.DataFrame(rows)


def test_uniform_scores_about_0_999_on_labels_with_the_real_prevalence():
    wide = _sample_labels(2000, seed=1)
    table = score(labels.from_wide(wide), _full_sub(wide["study_id"], default=(1 / 3, 1 / 3, 1 / 3)))
    for term in ("spinal", "foraminal", "subarticular"):
        assert getattr(table, term) == pytest.approx(math.log(3))
    # independent sampling makes any-severe somewhat likelier than the real 18.5%, so allow a band
    assert table.score == pytest.approx(0.999, abs=0.03)


def test_row_order_and_label_form_do_not_matter():
    wide = _sample_labels(30, seed=2)
    rng = np.random.default_rng(3)
    sub = _full_sub(wide["study_id"])
    sub[["normal_mild", "moderate", "severe"]] = rng.dirichlet((1, 1, 1), size=len(sub))
    base = score(labels.from_wide(wide), sub)
    shuffled = score(labels.from_wide(wide.sample(frac=1, random_state=4)), sub.sample(frac=1, random_state=5))
    long = labels.from_wide(wide)
    long_names = pd.DataFrame({"row_id": long["row_id"], "severity": np.array(vocab.SEVERITIES)[long["severity"]]})
    onehot = pd.DataFrame({"row_id": long["row_id"]})
    for i, col in enumerate(vocab.SEVERITY_COLUMNS):
        onehot[col] = (long["severity"] == i).astype(float)
    assert shuffled == base
    assert score(labels.read_labels(long_names), sub) == base
    assert score(labels.read_labels(onehot), sub) == base


def test_unnormalised_rows_are_normalised_and_clipped():
    truth = labels.from_wide(_wide({5: {}}))
    scaled = score(truth, _full_sub([5], default=(0.4, 0.2, 0.2)))
    plain = score(truth, _full_sub([5], default=(0.5, 0.25, 0.25)))
    assert scaled.spinal == pytest.approx(plain.spinal)
    zero = score(truth, _full_sub([5], default=(0.0, 0.5, 0.5)))
    assert np.isfinite(zero.score) and zero.spinal > 30


def test_a_labelled_row_without_prediction_is_named():
    truth = labels.from_wide(_wide({5: {}, 6: {}}))
    with pytest.raises(SubmissionError, match="does not predict 25 labelled rows: 6_"):
        score(truth, _full_sub([5]), validate=False)


def test_bad_label_values_name_study_and_column():
    wide = _wide({42: {"spinal_canal_stenosis_l3_l4": "Mild"}})
    with pytest.raises(labels.LabelError, match="42:spinal_canal_stenosis_l3_l4"):
        labels.from_wide(wide)
    with pytest.raises(labels.LabelError, match="right_subarticular_stenosis_l5_s1"):
        labels.from_wide(wide.drop(columns=["right_subarticular_stenosis_l5_s1"]))


def test_wide_long_round_trip():
    wide = _sample_labels(5, seed=6)
    wide.loc[2, "left_subarticular_stenosis_l1_l2"] = None
    back = labels.to_wide(labels.from_wide(wide))
    pd.testing.assert_frame_equal(back.fillna("").astype(str), wide.fillna("").astype(str).reset_index(drop=True))
