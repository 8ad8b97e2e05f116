"""Where training crops are centred: the labelled spinal canal points, the found levels where none is labelled."""

import numpy as np
import pandas as pd
import pytest

from lumbar_core.localisation import centred_on_labels, labelled_canal, points_by_level


def _coords() -> pd.DataFrame:
    rows = [
        (1, "spinal_canal_stenosis", "l1_l2", 1.0, 2.0, 3.0),
        (1, "spinal_canal_stenosis", "l1_l2", 3.0, 2.0, 3.0),  # a repeat: the mean is kept
        (1, "spinal_canal_stenosis", "l2_l3", 0.0, 0.0, -30.0),
        (1, "left_neural_foraminal_narrowing", "l3_l4", 16.0, 0.0, -60.0),  # not a canal point
        (2, "spinal_canal_stenosis", "l5_s1", 5.0, 5.0, -140.0),  # a study vertebra-segment did not find
    ]
    return pd.DataFrame(rows, columns=["study_id", "condition", "level", "world_x", "world_y", "world_z"])


def _levels() -> pd.DataFrame:
    rows = [
        (1, "l1_l2", "model", 9.0, 9.0, 9.0),
        (1, "l2_l3", "model", 9.0, 9.0, 9.0),
        (1, "l3_l4", "model", 7.0, 7.0, -60.0),
        (1, "l4_l5", "missing", np.nan, np.nan, np.nan),
    ]
    return pd.DataFrame(rows, columns=["study_id", "level", "source", "canal_x", "canal_y", "canal_z"]).assign(n_series=2)


def test_labelled_levels_move_to_their_labelled_point_and_the_rest_stay():
    out = centred_on_labels(_levels(), _coords()).set_index(["study_id", "level"])
    assert out.loc[(1, "l1_l2"), ["canal_x", "canal_y", "canal_z"]].tolist() == [2.0, 2.0, 3.0]
    assert out.loc[(1, "l1_l2"), "source"] == "labels"
    assert out.loc[(1, "l2_l3"), "canal_z"] == -30.0
    assert out.loc[(1, "l3_l4"), "source"] == "model" and out.loc[(1, "l3_l4"), "canal_x"] == 7.0  # no canal label
    assert out.loc[(1, "l4_l5"), "source"] == "missing"
    assert out.loc[(2, "l5_s1"), "source"] == "labels"  # added: labelled where nothing was found
    assert len(out) == 5 and out.index.is_unique


def test_points_by_level_reads_one_study():
    points = labelled_canal(_coords())
    found = points_by_level(points, 1)
    assert sorted(found) == ["l1_l2", "l2_l3"]
    np.testing.assert_allclose(found["l1_l2"], [2.0, 2.0, 3.0])
    assert points_by_level(points, 3) == {}


def test_an_unknown_centre_is_refused_by_name(tmp_path):
    from lumbar_core.models.crop_training import training_levels

    with pytest.raises(ValueError, match="crop-train: centre_on must be one of labels, levels, got 'disc'"):
        training_levels(str(tmp_path), None, "disc", "crop-train")
