"""nnU-Net's train/val split: copies of a case and the slices of one study stay on one side."""

from lumbar_core.nnunet.dataset import splits


def test_a_study_never_straddles_the_split():
    cases = [f"{study}_1_0_{k}_mid" for study in range(10) for k in (4, 5, 6)]
    copies = {c: 1 + (i % 3) for i, c in enumerate(cases)}
    groups = {c: c.split("_")[0] for c in cases}
    (split,) = splits(cases, copies, 0.3, seed=0, groups=groups)
    train = {k.split("_")[0] for k in split["train"]}
    val = {k.split("_")[0] for k in split["val"]}
    assert train and val and not train & val
    assert len(val) == 3
    assert len(split["train"]) + len(split["val"]) == sum(copies.values())


def test_without_groups_each_case_is_its_own_group():
    cases = ["a", "b", "c", "d"]
    (split,) = splits(cases, dict.fromkeys(cases, 2), 0.25, seed=1)
    val = {k.rsplit("_c", 1)[0] for k in split["val"]}
    assert len(val) == 1 and all(f"{v}_c1" in split["val"] for v in val)
    assert not val & {k.rsplit("_c", 1)[0] for k in split["train"]}
