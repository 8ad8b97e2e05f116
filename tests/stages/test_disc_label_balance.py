"""disc-label and balance on the segmented phantom run."""

import io

import numpy as np
import pytest

from lumbar_core import vocab
from lumbar_core.classes import class_of, level_severity_of
from lumbar_core.ingested import IngestedData
from lumbar_core.manifest import StageInput
from lumbar_core.stages import balance


def _table(run, stage, name):
    return StageInput.open(run, stage).read_table(name)


def test_class_encoding_round_trips():
    seen = set()
    for level in vocab.LEVELS:
        for severity in range(3):
            cls = class_of(level, severity)
            assert level_severity_of(cls) == (level, severity)
            seen.add(cls)
    assert seen == set(range(1, 16))


def test_cases_carry_the_labelled_severity_at_the_labelled_point(segmented):
    stage = StageInput.open(segmented, "disc-label")
    cases = _table(segmented, "disc-label", "cases.parquet")
    regions = _table(segmented, "disc-label", "regions.parquet")
    labels = IngestedData.open(segmented).table("labels").set_index(["study_id", "condition", "level"])["severity"]
    assert set(cases["family"]) == {"spinal", "foraminal"}
    assert set(cases.loc[cases["family"] == "foraminal", "side"]) == {"left", "right"}
    for row in regions.itertuples():
        assert labels[(row.study_id, row.condition, row.level)] == row.severity
        assert row._7 == class_of(row.level, row.severity)
        assert row.pixels > 0
    for case in cases.head(10).itertuples():
        with np.load(io.BytesIO(stage.read_bytes(case.path))) as z:
            image, label = z["image"], z["label"]
        assert image.shape == label.shape and image.dtype == np.float32
        present = set(np.unique(label).tolist()) - {0}
        assert present == set(regions.loc[regions["case_id"] == case.case_id, "class"])


def test_every_labelled_point_with_a_severity_became_a_region(segmented):
    coords = IngestedData.open(segmented).table("coordinates")
    regions = _table(segmented, "disc-label", "regions.parquet")
    sagittal = coords[~coords["condition"].str.contains("subarticular")]
    covered = set(zip(regions["study_id"], regions["condition"], regions["level"]))
    assert np.mean([(r.study_id, r.condition, r.level) in covered for r in sagittal.itertuples()]) > 0.95


def test_balance_lists_every_missing_class_or_records_them(segmented):
    regions = _table(segmented, "disc-label", "regions.parquet")
    present = set(zip(regions["family"], regions["class"]))
    expected = [
        f"{family} {vocab.LEVEL_TITLES[lv]} {vocab.SEVERITIES[s]}"
        for family in ("spinal", "foraminal")
        for lv in vocab.LEVELS
        for s in range(3)
        if (family, class_of(lv, s)) not in present
    ]
    assert expected, "the tiny phantom lacks some rare classes"
    with pytest.raises(balance.MissingClassesError) as err:
        balance.run(run_uri=segmented, params=balance.BalanceParams())
    for name in expected:
        assert name in str(err.value)
    summary = StageInput.open(segmented, "balance").read_json("census.json")
    assert summary["missing_classes"] == expected


def test_balanced_list_gives_every_class_k_examples(segmented):
    classes = _table(segmented, "balance", "classes.parquet")
    balanced = _table(segmented, "balance", "balanced.parquet")
    regions = _table(segmented, "disc-label", "regions.parquet")
    k = StageInput.open(segmented, "balance").params["min_examples"]
    assert (classes["balanced"] >= np.minimum(k, classes["cases"] * balance.MAX_MULTIPLICITY)).all()
    mult = balanced.set_index("case_id")["multiplicity"]
    recount = (
        regions.drop_duplicates(["case_id", "class", "family"])
        .assign(m=lambda f: f["case_id"].map(mult))
        .groupby(["family", "class"])["m"]
        .sum()
    )
    assert (recount.to_numpy() == classes.set_index(["family", "class"])["balanced"].to_numpy()).all()
    assert (balanced["multiplicity"] >= 1).all() and balanced["multiplicity"].max() > 1
    census = _table(segmented, "balance", "census.parquet")
    assert len(census) == 75 and census["labels"].sum() == len(IngestedData.open(segmented).table("labels"))


def test_spinal_cases_span_the_slab_and_each_carries_every_labelled_level(segmented):
    cases = _table(segmented, "disc-label", "cases.parquet")
    regions = _table(segmented, "disc-label", "regions.parquet")
    coords = IngestedData.open(segmented).table("coordinates")
    spinal = cases[cases["family"] == "spinal"]
    point_slices = coords[coords["condition"] == "spinal_canal_stenosis"].groupby(["study_id", "series_id"])["slice"].apply(set)
    extra = spinal[[k not in point_slices[(s, r)] for s, r, k in zip(spinal["study_id"], spinal["series_id"], spinal["slice"])]]
    assert len(extra) > 0, "neighbouring slices of the canal became cases"
    levels_of = regions.groupby("case_id")["level"].apply(set)
    labelled = regions[regions["family"] == "spinal"].groupby("study_id")["level"].apply(set)
    for case in extra.itertuples():
        assert levels_of[case.case_id] == labelled[case.study_id], "a slab slice holds every labelled level of its study"
    foraminal = cases[cases["family"] == "foraminal"]
    foraminal_points = coords[coords["condition"].str.contains("foraminal")].groupby("study_id")["slice"].apply(set)
    assert all(k in foraminal_points[s] for s, k in zip(foraminal["study_id"], foraminal["slice"])), "no slab for foramina"
