import pytest

from lumbar_core import vocab


def test_twenty_five_targets_in_train_csv_order():
    cols = vocab.target_columns()
    assert len(cols) == 25 == len(set(cols))
    assert cols[0] == "spinal_canal_stenosis_l1_l2"
    assert cols[-1] == "right_subarticular_stenosis_l5_s1"


@pytest.mark.parametrize("condition", vocab.CONDITIONS)
@pytest.mark.parametrize("level", vocab.LEVELS)
def test_row_id_round_trip(condition, level):
    rid = vocab.row_id(4003253, condition, level)
    assert rid == f"4003253_{condition}_{level}"
    target = vocab.parse_row_id(rid)
    assert (target.study_id, target.condition, target.level) == (4003253, condition, level)
    assert target.group in rid


def test_title_case_mapping():
    assert vocab.condition_from_title("Left Neural Foraminal Narrowing") == "left_neural_foraminal_narrowing"
    assert vocab.level_from_title("L5/S1") == "l5_s1"
    assert vocab.severity_index("Severe") == 2
    for name, title in vocab.CONDITION_TITLES.items():
        assert vocab.condition_from_title(title) == name


@pytest.mark.parametrize("bad", ["abc_spinal_canal_stenosis_l1_l2", "1_spinal_canal_stenosis_l6_l7", "1_spine_l1_l2", "12"])
def test_bad_row_ids_are_named(bad):
    with pytest.raises(vocab.VocabularyError, match=bad):
        vocab.parse_row_id(bad)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(vocab.VocabularyError, match="L1/L2"):
        vocab.level_from_title("L6/L7")
    with pytest.raises(vocab.VocabularyError, match="Moderate"):
        vocab.severity_index("Mild")
