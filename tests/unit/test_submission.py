import numpy as np
import pandas as pd
import pytest

from lumbar_core import vocab
from lumbar_core.prior import prior_submission, prior_table
from lumbar_core.submission import (
    SubmissionError,
    make_submission,
    read_submission,
    reweight,
    validate_submission,
    write_submission,
)


def _sub(study_ids=(1, 2)):
    targets = [t for s in study_ids for t in vocab.study_targets(s)]
    return make_submission([t.row_id for t in targets], np.full((len(targets), 3), 1 / 3))


def test_a_complete_submission_passes():
    validate_submission(_sub(), study_ids=[1, 2])


def test_missing_rows_are_named():
    sub = _sub().query("row_id != '2_left_subarticular_stenosis_l3_l4'")
    with pytest.raises(SubmissionError, match="2_left_subarticular_stenosis_l3_l4"):
        validate_submission(sub)


def test_missing_study_is_named():
    with pytest.raises(SubmissionError, match="studies with no rows: 3"):
        validate_submission(_sub(), study_ids=[1, 2, 3])


@pytest.mark.parametrize(("value", "message"), [(np.nan, "non-finite"), (np.inf, "non-finite"), (-0.1, "negative"), ("x", "non-numeric")])
def test_bad_values_name_the_row(value, message):
    sub = _sub().astype({"moderate": object})
    sub.loc[sub["row_id"] == "1_spinal_canal_stenosis_l4_l5", "moderate"] = value
    with pytest.raises(SubmissionError, match=f"{message}.*1_spinal_canal_stenosis_l4_l5"):
        validate_submission(sub)


def test_columns_and_duplicates_and_bad_ids():
    with pytest.raises(SubmissionError, match="missing: \\['severe'\\]"):
        validate_submission(_sub().drop(columns=["severe"]))
    with pytest.raises(SubmissionError, match="duplicate row_ids: 1_left_neural_foraminal_narrowing_l1_l2"):
        validate_submission(pd.concat([_sub(), _sub().head(1)]))
    bad = _sub()
    bad.loc[0, "row_id"] = "1_spinal_canal_stenosis_l9_l9"
    with pytest.raises(SubmissionError, match="l9_l9"):
        validate_submission(bad)


def test_reweighting_is_the_loss_optimum():
    p = np.array([[0.7, 0.2, 0.1]])
    q = reweight(p)
    np.testing.assert_allclose(q, [[0.7, 0.4, 0.4]] / np.float64(1.5))
    # expected weighted loss of q is no worse than of p or nearby distributions
    w = np.array([1.0, 2.0, 4.0])

    def expected(qq):
        return np.sum(p * w * -np.log(qq)) / np.sum(p * w)

    rng = np.random.default_rng(0)
    for _ in range(200):
        other = rng.dirichlet((5, 5, 5), size=1)
        assert expected(q) <= expected(other) + 1e-12


def test_write_and_read_back(tmp_path):
    sub = _sub()
    write_submission(sub, str(tmp_path / "sub.csv"))
    back = read_submission(str(tmp_path / "sub.csv"))
    assert back["row_id"].tolist() == sub["row_id"].tolist()
    np.testing.assert_allclose(back[["normal_mild", "moderate", "severe"]].sum(axis=1), 1, atol=1e-5)
    bad = sub.drop(index=3)
    with pytest.raises(SubmissionError):
        write_submission(bad, str(tmp_path / "bad.csv"))
    assert not (tmp_path / "bad.csv").exists()


def test_prior_from_labels_and_default():
    from lumbar_core import labels

    wide = pd.DataFrame([{"study_id": s, **{c: "Normal/Mild" for c in vocab.target_columns()}} for s in range(4)])
    wide.loc[0, "spinal_canal_stenosis_l4_l5"] = "Severe"
    table = prior_table(labels.from_wide(wide), alpha=0.5)
    np.testing.assert_allclose(table[("spinal_canal_stenosis", "l4_l5")], [3.5, 0.5, 1.5] / np.float64(5.5))
    assert all(p.min() > 0 for p in table.values())
    default = prior_table(None)
    assert default[("left_subarticular_stenosis", "l4_l5")][0] == pytest.approx(0.45, abs=1e-3)
    sub = prior_submission([9, 8], table)
    validate_submission(sub, study_ids=[8, 9])
