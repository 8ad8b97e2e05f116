"""nnU-Net's train/val split: the cases of the held-out studies validate; a study never straddles it."""

from lumbar_core.nnunet.dataset import splits
from lumbar_core.splits import held_out_studies


def test_a_study_never_straddles_the_split():
    cases = [f"{study}_1_0_{k}_mid" for study in range(10) for k in (4, 5, 6)]
    groups = {c: int(c.split("_")[0]) for c in cases}
    held_out = set(held_out_studies(range(10), 0.3, seed=0))
    (split,) = splits(cases, held_out, groups)
    train = {int(k.split("_")[0]) for k in split["train"]}
    val = {int(k.split("_")[0]) for k in split["val"]}
    assert val == held_out and len(val) == 3 and not train & val
    assert sorted(split["train"] + split["val"]) == sorted(cases), "each case once"


def test_without_held_out_cases_validation_is_the_training_set():
    (split,) = splits(["a", "b"], {"z"})
    assert split == {"train": ["a", "b"], "val": ["a", "b"]}
    (alone,) = splits(["a"], {"a"})
    assert alone == {"train": ["a"], "val": ["a"]}
