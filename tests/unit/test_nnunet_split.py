"""nnU-Net's train/val split: the slices of one study stay on one side; it is the project's one split."""

from lumbar_core.nnunet.dataset import splits
from lumbar_core.splits import split_groups


def test_a_study_never_straddles_the_split():
    cases = [f"{study}_1_0_{k}_mid" for study in range(10) for k in (4, 5, 6)]
    groups = {c: c.split("_")[0] for c in cases}
    (split,) = splits(cases, 0.3, seed=0, groups=groups)
    train = {k.split("_")[0] for k in split["train"]}
    val = {k.split("_")[0] for k in split["val"]}
    assert train and val and not train & val
    assert len(val) == 3
    assert sorted(split["train"] + split["val"]) == sorted(cases), "each case once"
    assert sorted(val) == split_groups([str(s) for s in range(10)], 0.3, 0)[1]


def test_without_groups_each_case_is_its_own_group():
    cases = ["a", "b", "c", "d"]
    (split,) = splits(cases, 0.25, seed=1)
    assert len(split["val"]) == 1 and not set(split["val"]) & set(split["train"])
    (alone,) = splits(["a"], 0.25, seed=1)
    assert alone == {"train": ["a"], "val": ["a"]}
