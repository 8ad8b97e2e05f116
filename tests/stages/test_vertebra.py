"""vertebra-train and vertebra-segment on the tiny phantom: better than an atlas, levels in place."""

import io

import numpy as np
import pandas as pd
import pytest

from lumbar_core import store, vocab
from lumbar_core.levels import combine_series
from lumbar_core.manifest import StageInput
from lumbar_core.sagittal import normalise, resample_slice
from lumbar_core.spider import CLASSES, list_cases, load_case
from lumbar_core.stages import vertebra_train
from lumbar_core.stages.vertebra_train import dice_per_class, split_patients


def _table(run, stage, name):
    return StageInput.open(run, stage).read_table(name)


def _atlas_dice(spider, params):
    """A trivial baseline: each pixel's most frequent training class, applied to the validation slices."""
    train, val = split_patients(list_cases(spider), params.val_fraction, params.seed)

    def slices(names):
        out = []
        for name in names:
            case = load_case(spider, name)
            out += [resample_slice(c, case.spacing[1:], params.spacing_mm, order=0) for c in case.classes]
        return out

    train_y, val_y = slices(train), slices(val)
    shape = (max(s.shape[0] for s in train_y + val_y), max(s.shape[1] for s in train_y + val_y))
    counts = np.zeros((len(CLASSES), *shape))
    for s in train_y:
        for c in range(len(CLASSES)):
            counts[c, : s.shape[0], : s.shape[1]] += s == c
    atlas = counts.argmax(axis=0)
    pred = np.concatenate([atlas[: s.shape[0], : s.shape[1]].ravel() for s in val_y])
    return dice_per_class(pred, np.concatenate([s.ravel() for s in val_y]), len(CLASSES))


def test_unet_beats_an_atlas_baseline(phantom, segmented):
    metrics = StageInput.open(segmented, "vertebra-train").manifest.metrics
    atlas = _atlas_dice(str(phantom / "spider"), vertebra_train.VertebraTrainParams())
    lumbar = ["L1", "L2", "L3", "L4", "L5"]
    unet = np.mean([metrics["val_dice"][v] for v in lumbar])
    baseline = np.nanmean([atlas[v] for v in lumbar])
    assert unet > baseline + 0.1, (unet, baseline)
    assert metrics["val_dice"]["canal"] > 0.6
    saved = StageInput.open(segmented, "vertebra-train").read_json("metrics.json")
    assert len(saved["history"]) == 6 and saved["val_dice"] == metrics["val_dice"]


def test_levels_land_within_tolerance(segmented):
    metrics = StageInput.open(segmented, "vertebra-segment").manifest.metrics
    assert metrics["share_right_level"] >= 0.9
    assert metrics["median_error_mm"] <= 7.0
    levels = _table(segmented, "vertebra-segment", "levels.parquet")
    assert set(levels["source"]) <= {"model", "labels"}
    assert (levels.groupby("study_id").size() == 5).all()
    # disc centres descend the spine in order
    for _, study in levels[levels["source"] == "model"].groupby("study_id"):
        z = study.set_index("level").loc[list(vocab.LEVELS), "disc_z"].to_numpy()
        assert np.all(np.diff(z) < 0)


def test_level_centres_in_every_stack(segmented):
    stack_levels = _table(segmented, "vertebra-segment", "stack_levels.parquet")
    from lumbar_core.ingested import IngestedData

    index = IngestedData.open(segmented).index
    assert set(zip(stack_levels["series_id"], stack_levels["stack"])) == set(zip(index["series_id"], index["stack"]))
    axial = stack_levels[
        (stack_levels["point"] == "canal") & stack_levels["series_id"].isin(index.loc[index["orientation"] == "axial", "series_id"])
    ]
    # each level's canal centre is within 5 mm of some axial slice of a stack
    best = axial.groupby(["study_id", "series_id", "level"])["distance_mm"].min()
    assert (best <= 5.0).mean() > 0.9


def test_masks_are_in_each_stacks_own_grid(segmented):
    from lumbar_core.ingested import IngestedData

    data = IngestedData.open(segmented)
    segment = StageInput.open(segmented, "vertebra-segment")
    row = data.index[data.index["orientation"] == "sagittal"].iloc[0]
    with np.load(io.BytesIO(segment.read_bytes(f"masks/{row.study_id}/{row.series_id}_{row.stack}.npz"))) as z:
        mask = z["mask"]
    assert mask.shape == (row.n_slices, row.rows, row.cols)
    assert segment.read_bytes("overlay.png")[:4] == b"\x89PNG"


def test_too_few_levels_fall_back_to_labels_or_are_missing():
    one = {"l1_l2": {"disc": np.zeros(3), "canal": np.zeros(3)}}
    coords = pd.DataFrame(
        [
            {"condition": "spinal_canal_stenosis", "level": lv, "world_x": i, "world_y": 0.0, "world_z": -30.0 * i}
            for i, lv in enumerate(vocab.LEVELS)
        ]
    )
    labelled = combine_series(7, [one], coords, fallback=True)
    assert {r["source"] for r in labelled.rows} == {"labels"}
    assert labelled.problems[0]["kind"] == "fewer than five levels"
    unlabelled = combine_series(7, [one], coords.iloc[:0], fallback=True)
    assert [r["source"] for r in unlabelled.rows] == ["model", "missing", "missing", "missing", "missing"]


def test_training_resumes_from_its_checkpoint(phantom, tmp_path, monkeypatch):
    spider = tmp_path / "spider"
    for folder in ("images", "masks"):
        for name in ("1_t1.mha", "2_t1.mha", "3_t1.mha"):
            store.copy(str(phantom / "spider" / folder / name), str(spider / folder / name))
    params = vertebra_train.VertebraTrainParams(epochs=2, batch_size=8, crop=64)
    real = vertebra_train.evaluate
    calls = []

    def crash_in_epoch_two(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("node preempted")
        return real(*args)

    monkeypatch.setattr(vertebra_train, "evaluate", crash_in_epoch_two)
    run = str(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        vertebra_train.run(spider_uri=str(spider), run_uri=run, params=params)
    assert store.exists(store.join(run, "vertebra-train", "_work", "checkpoint.pt"))
    monkeypatch.setattr(vertebra_train, "evaluate", real)
    epochs_run = []
    original = vertebra_train.intensity
    monkeypatch.setattr(vertebra_train, "intensity", lambda image, rng: epochs_run.append(1) or original(image, rng))
    manifest = vertebra_train.run(spider_uri=str(spider), run_uri=run, params=params)
    history = StageInput.open(run, "vertebra-train").read_json("metrics.json")["history"]
    assert [h["epoch"] for h in history] == [1, 2] and manifest.metrics["epochs"] == 2
    train_names, _ = split_patients(list_cases(str(spider)), params.val_fraction, params.seed)
    one_epoch = sum(load_case(str(spider), n).image.shape[0] for n in train_names)
    assert len(epochs_run) == one_epoch, "only the second epoch was trained again"
    assert not store.exists(store.join(run, "vertebra-train", "_work", "checkpoint.pt"))


def test_bad_spider_folders(tmp_path, phantom):
    with pytest.raises(ValueError, match="no images/\\*.mha"):
        vertebra_train.run(spider_uri=str(tmp_path), run_uri=str(tmp_path / "run"), params=vertebra_train.VertebraTrainParams())
    store.copy(str(phantom / "spider" / "images" / "1_t1.mha"), str(tmp_path / "s" / "images" / "1_t1.mha"))
    with pytest.raises(ValueError, match="images without masks.*1_t1.mha"):
        list_cases(str(tmp_path / "s"))


def test_normalise_is_robust():
    image = np.full((8, 8), 100.0)
    image[0, 0] = 1e6
    out = normalise(image)
    assert out.dtype == np.float32 and out.max() <= 1.5
