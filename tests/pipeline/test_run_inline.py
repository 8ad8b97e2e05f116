"""The whole method end to end: `lumbar run --runner inline` with the tiny profile on a 64-study phantom.

The profile as it is (nothing shortened): about 10 minutes on 2 cores, phantom included. The same run
asserts that the trained models beat the training split's prior on the validation split by a margin
(bench/quality.py trains longer on more studies and prints the figures).
"""

import io
import shutil
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from lumbar_core import pipeline, store, vocab
from lumbar_core.calibration import combine_with_prior, fit_tau
from lumbar_core.cli import main
from lumbar_core.errors import StudyDataError
from lumbar_core.manifest import StageInput
from lumbar_core.nnunet.predict import level_distribution
from lumbar_core.score import TERMS
from lumbar_core.stages import get_stage, nnunet_train, predict, run_stage
from lumbar_core.submission import validate_submission

STUDIES, SEED = 64, 3
pytestmark = pytest.mark.timeout(1800)  # the first test's time includes the module's training run
STAGE_NAMES = [
    "ingest",
    "ingest-validation",
    "vertebra-train",
    "vertebra-segment",
    "disc-label",
    "balance",
    "nnunet-prepare",
    "nnunet-train",
    "densenet-train",
    "crop-train",
    "level-train",
    "calibrate",
    "bundle",
    "predict",
    "score",
]


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """This module's phantom (shadows conftest's 16-study one): enough studies for the models to learn."""
    from lumbar_core.synthetic import generate, get_profile

    root = tmp_path_factory.mktemp("phantom64") / "data"
    generate(root, studies=STUDIES, test_studies=2, profile=get_profile("tiny"), seed=SEED, workers=2)
    return root


@pytest.fixture(scope="module")
def trained(phantom, tmp_path_factory):
    run = str(tmp_path_factory.mktemp("pipeline") / "run")
    profile = pipeline.load_profile("tiny")
    logs = []
    metrics = pipeline.run_inline(str(phantom), run, profile, log=logs.append)
    return run, metrics, logs, profile


def test_every_stage_ran_and_committed(trained):
    run, _, logs, _ = trained
    assert [line.split("] ")[1] for line in logs if line.startswith("[run ]")] == STAGE_NAMES
    assert sum(line.startswith("[done]") for line in logs) == len(STAGE_NAMES)
    for name in STAGE_NAMES:
        assert StageInput.open(run, name).manifest.stage == name


def test_score_outputs_follow_the_contract(trained, phantom):
    run, metrics, _, _ = trained
    for name in ("submission.csv", "report.html", "metrics.json"):
        assert store.exists(store.join(run, "score", name))
    assert set(metrics) >= {"spinal", "foraminal", "subarticular", "any_severe_spinal", "score", "prior"}
    assert set(metrics["prior"]) == {"spinal", "foraminal", "subarticular", "any_severe_spinal", "score"}
    val_studies = StageInput.open(run, "ingest-validation").params["studies"]
    train_studies = StageInput.open(run, "ingest").params["studies"]
    assert not set(val_studies) & set(train_studies)
    submission = pd.read_csv(store.join(run, "score", "submission.csv"))
    validate_submission(submission, study_ids=val_studies)
    assert len(submission) == 25 * len(val_studies)
    report = store.read_text(store.join(run, "score", "report.html"))
    assert report.count("data:image/png;base64,") >= 4 + 3  # figures, and three studies' crops
    assert "Confusion matrices" in report and "Calibration" in report and "crop classifier alone" in report
    assert set(metrics["alone"]) == {"nnunet", "densenet", "crop"}
    for terms in metrics["alone"].values():
        assert set(terms) == {"spinal", "foraminal", "subarticular", "any_severe_spinal", "score"}
    assert metrics["alone"]["densenet"]["spinal"] == pytest.approx(metrics["prior"]["spinal"]), "a model reads only its own cells"


def test_predictions_come_from_the_models(trained):
    run, _, _, _ = trained
    pred = pd.read_parquet(io.BytesIO(StageInput.open(run, "predict").read_bytes("predictions.parquet")))
    sources = pred.groupby(pred["condition"].map(vocab.CONDITION_GROUP))["source"].agg(lambda s: s.value_counts().to_dict())
    assert sources["spinal"].get("crop+nnunet", 0) >= 0.8 * sum(sources["spinal"].values())
    assert sources["foraminal"].get("crop+nnunet", 0) >= 0.8 * sum(sources["foraminal"].values())
    assert sources["subarticular"].get("densenet", 0) >= 0.8 * sum(sources["subarticular"].values())
    probs = pred[list(vocab.SEVERITY_COLUMNS)].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-6)
    readings = StageInput.open(run, "predict").read_table("readings.parquet")
    assert set(readings["model"]) == {"nnunet-spinal", "nnunet-foraminal", "densenet", "crop"}
    timing = StageInput.open(run, "predict").read_json("timing.json")["seconds_per_study"]
    assert set(timing) == {"decode", "levels", "nnunet", "densenet", "crop"}


def test_densenet_learning_rate_decays_to_zero(trained):
    run, _, _, profile = trained
    stage = StageInput.open(run, "densenet-train")
    lrs = [h["lr"] for h in stage.read_json("metrics.json")["history"]]
    assert len(lrs) == profile["stages"]["densenet-train"]["epochs"]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] < stage.params["lr"] and lrs[-1] < 1e-9, "cosine decay: the last epoch settles"


def test_nnunet_training_records_pseudo_dice_per_epoch(trained):
    run, _, _, profile = trained
    report = StageInput.open(run, "nnunet-train").read_json("training.json")
    for family in ("spinal", "foraminal"):
        history = report["families"][family]["pseudo_dice"]
        assert len(history) == int(profile["stages"]["nnunet-train"]["epochs"])
        assert all(len(epoch) == 15 for epoch in history)


def test_nnunet_draws_rare_classes_more_often_and_divides_that_out(trained):
    from lumbar_core.classes import label_names

    run = trained[0]
    report = StageInput.open(run, "nnunet-train").read_json("training.json")["families"]
    classes = StageInput.open(run, "balance").read_table("classes.parquet")
    value = label_names()
    for family, info in report.items():
        assert info["optimizer"] == "adamw"
        drawn = {value[name]: n for name, n in info["sampled_class_counts"].items()}
        cases = classes[(classes["family"] == family) & classes["class"].isin(list(drawn))].set_index("class")["balanced"]
        common, rare = int(cases.idxmax()), int(cases.idxmin())
        # the rarest class is drawn more often, relative to the commonest, than it occurs among the cases
        assert drawn[rare] / drawn[common] > cases[rare] / cases[common]
        for level, q in info["class_frequencies"].items():
            assert sum(q) == pytest.approx(1.0, abs=1e-4), level
        assert 0.0 <= info["floor"] <= 0.2


def test_nnunet_trains_upright_with_the_profile_plans(trained, tmp_path):
    import torch

    run, _, _, profile = trained
    prepare = profile["stages"]["nnunet-prepare"]
    datasets = StageInput.open(run, "nnunet-prepare").read_json("datasets.json")["families"]
    for info in datasets.values():
        assert info["batch_size"] == prepare["batch_size"]
        assert info["features_per_stage"][:2] == [prepare["base_features"], 2 * prepare["base_features"]]
    stage = StageInput.open(run, "nnunet-train")
    for info in stage.read_json("training.json")["families"].values():
        local = tmp_path / "checkpoint.pth"
        store.download(stage.uri(f"results/{info['output_folder']}/fold_0/checkpoint_final.pth"), local)
        checkpoint = torch.load(local, map_location="cpu", weights_only=False)
        assert checkpoint["inference_allowed_mirroring_axes"] is None, "no mirroring: the classes carry the level"


def test_the_trainer_keeps_images_upright():
    from types import SimpleNamespace

    from lumbar_core.nnunet.trainer import LumbarTrainer

    fake = SimpleNamespace(configuration_manager=SimpleNamespace(patch_size=[96, 96]), max_rotation_deg=15.0)
    rotation, dummy_2d, initial, mirror = LumbarTrainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size(fake)
    assert mirror is None and fake.inference_allowed_mirroring_axes is None and not dummy_2d
    assert rotation == pytest.approx((-np.radians(15), np.radians(15)))
    assert all(96 <= side < 140 for side in initial), "room for a 15 degree rotation, not a 180 degree one"


def test_nan_pseudo_dice_fails_loudly_without_allow_missing(trained):
    run, _, _, _ = trained
    report = StageInput.open(run, "nnunet-train").read_json("training.json")["families"]
    recorded_nan = {f: r["nan_classes"] for f, r in report.items()}
    last = {f: [k for k, v in r["pseudo_dice"][-1].items() if v is None] for f, r in report.items()}
    assert recorded_nan == last, "the nan classes are those of the last epoch"
    fake = {"spinal": SimpleNamespace(nan_classes=["l1_l2_severe", "l5_s1_moderate"]), "foraminal": SimpleNamespace(nan_classes=[])}
    with pytest.raises(nnunet_train.NanPseudoDiceError, match="spinal: l1_l2_severe, l5_s1_moderate"):
        nnunet_train.check_nan_classes(fake, allow_missing=False)
    with pytest.warns(UserWarning, match="l1_l2_severe"):
        assert nnunet_train.check_nan_classes(fake, allow_missing=True) == {"spinal": ["l1_l2_severe", "l5_s1_moderate"]}


@pytest.fixture
def run_copy(trained, tmp_path):
    """A copy of the module's run, for tests that rerun stages (the shared run stays as trained)."""
    run = str(tmp_path / "copy")
    shutil.copytree(trained[0], run)
    return run


def test_a_study_with_bad_data_is_reported_and_predicted_from_the_prior(run_copy, monkeypatch):
    real = predict.read_study
    broken = {}

    def flaky(data, study, *args):
        if not broken:
            broken["study"] = study
            raise StudyDataError(f"study {study}: corrupt volume")
        return real(data, study, *args)

    monkeypatch.setattr(predict, "read_study", flaky)
    run_stage(get_stage("predict"), run_uri=run_copy, params=predict.PredictParams(ingest_stage="ingest-validation"))
    stage = StageInput.open(run_copy, "predict")
    pred = pd.read_parquet(io.BytesIO(stage.read_bytes("predictions.parquet")))
    problems = pd.read_parquet(io.BytesIO(stage.read_bytes("problems.parquet")))
    assert (pred.loc[pred["study_id"] == broken["study"], "source"] == "prior").all()
    assert len(pred[pred["study_id"] == broken["study"]]) == 25
    assert problems["message"].str.contains("corrupt volume").any()
    assert (pred.loc[pred["study_id"] != broken["study"], "source"] != "prior").mean() > 0.8


def test_a_bug_in_predict_fails_the_stage_and_so_do_too_many_bad_studies(run_copy, monkeypatch):
    before = StageInput.open(run_copy, "predict").manifest.attempt
    params = predict.PredictParams(ingest_stage="ingest-validation")

    def bug(*args):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(predict, "read_study", bug)
    with pytest.raises(TypeError, match="unsupported operand"):
        run_stage(get_stage("predict"), run_uri=run_copy, params=params)

    def all_bad(data, study, *args):
        raise StudyDataError(f"study {study}: no sagittal series")

    monkeypatch.setattr(predict, "read_study", all_bad)
    with pytest.raises(predict.TooManyFailedStudiesError, match="16 of 16 studies failed"):
        run_stage(get_stage("predict"), run_uri=run_copy, params=params)
    assert StageInput.open(run_copy, "predict").manifest.attempt == before, "nothing committed"


def test_predict_and_score_read_only_the_bundle_and_the_studies(trained):
    run = trained[0]
    assert set(StageInput.open(run, "predict").manifest.upstream) == {"bundle", "ingest-validation"}
    assert set(StageInput.open(run, "score").manifest.upstream) == {"bundle", "ingest-validation", "predict"}


def test_the_bundle_holds_every_model_and_its_metadata(trained):
    from lumbar_core import documents
    from lumbar_core.model_bundle import open_bundle

    run = trained[0]
    bundle, meta = open_bundle("", run)
    assert isinstance(meta, documents.BundleMetadata)
    assert {meta.unet.file, meta.localiser.file, meta.densenet.file, meta.crop.file, meta.prior} <= set(bundle.manifest.files)
    for family, model in meta.nnunet.items():
        assert f"{model.folder}/fold_0/checkpoint_final.pth" in bundle.manifest.files, family
        assert set(model.class_frequencies) == set(vocab.LEVELS)
    calibrated = StageInput.open(run, "calibrate").read_json("calibration.json")
    assert {k: v.to_dict() for k, v in meta.calibration.items()} == calibrated["models"]
    assert set(meta.calibration) == {"nnunet-spinal", "nnunet-foraminal", "densenet", "crop"}
    assert all(0.0 <= c.tau <= 1.5 and c.readings > 0 for c in meta.calibration.values())
    ingest = StageInput.open(run, "ingest").manifest
    assert meta.training_data.studies == ingest.metrics["studies"] and meta.training_data.ingest_attempt == ingest.attempt
    assert meta.libraries["torch"] and meta.libraries["nnunetv2"] and meta.code_version
    assert meta.sources["nnunet-train"] == StageInput.open(run, "nnunet-train").manifest.attempt
    assert set(meta.validation) >= {"vertebra-train", "level-train", "nnunet-train", "densenet-train", "crop-train", "calibrate"}


def test_rerun_skips_what_is_up_to_date_and_reruns_what_follows_a_rerun_stage(run_copy, phantom, capsys):
    args = ["run", "--data", str(phantom), "--run", run_copy, "--profile", "tiny", "--runner", "inline"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("[skip]") == len(STAGE_NAMES), out
    assert "any_severe_spinal" in out and "report:" in out
    assert main(["stage", "balance", "--run", run_copy, "--allow-missing", "true"]) == 0  # rerun by hand, same parameters
    capsys.readouterr()
    assert main([*args, "--dry-run"]) == 0
    would_run = [line.split()[1] for line in capsys.readouterr().out.splitlines() if line.startswith("run ")]
    # balance itself is up to date; what reads it, and what reads those, would rerun
    assert would_run == ["nnunet-prepare", "nnunet-train", "densenet-train", "calibrate", "bundle", "predict", "score"]
    assert main(["run", "--data", str(phantom), "--run", run_copy, "--profile", "huge"]) == 2
    assert "unknown profile 'huge'" in capsys.readouterr().err


def test_combine_with_prior_and_level_readout():
    prior = np.array([0.7, 0.2, 0.1])
    np.testing.assert_allclose(combine_with_prior(prior, np.array([0.2, 0.5, 0.3]), 0.0), prior)
    np.testing.assert_allclose(combine_with_prior(prior, np.ones(3), 1.0), prior)
    q = combine_with_prior(prior, np.array([0.1, 0.1, 0.8]), 1.0)
    assert q[2] > prior[2] and q.sum() == pytest.approx(1)
    probs = np.zeros((16, 5, 5))
    probs[0] = 1.0
    probs[:, 2, 2] = 0
    probs[1 + 3 * 2 + 2, 2, 2] = 1.0  # one pixel predicted as l3_l4 Severe
    np.testing.assert_allclose(level_distribution(probs, "l3_l4", (2, 2), 1.0), [0, 0, 1])
    probs[:, 0, 0] = 0
    probs[1 + 3 * 2 + 0, 0, 0] = 1.0  # l3_l4 Normal/Mild far from the point: outside the disk, not read
    np.testing.assert_allclose(level_distribution(probs, "l3_l4", (2, 2), 1.0), [0, 0, 1])
    np.testing.assert_allclose(level_distribution(probs, "l3_l4", (2, 2), 3.0), [0.5, 0, 0.5])
    # no pixel of l1_l2: severity read level-agnostically in the disk around the point
    np.testing.assert_allclose(level_distribution(probs, "l1_l2", (2, 2), 0.5), [0, 0, 1])


def test_fit_tau_finds_no_signal_and_real_signal():
    rng = np.random.default_rng(0)
    prior = np.tile([0.7, 0.2, 0.1], (400, 1))
    truth = np.array([rng.choice(3, p=[0.7, 0.2, 0.1]) for _ in range(400)])
    noise = rng.dirichlet((1, 1, 1), size=400)
    assert fit_tau(prior, noise, truth)[0] <= 0.2, "noise gets almost no weight"
    informative = np.full((400, 3), 0.2)
    informative[np.arange(400), truth] = 0.8
    assert fit_tau(prior, informative, truth)[0] >= 1.0 * 400 / 420, "good evidence gets (almost) full weight"
    assert fit_tau(prior[:5], informative[:5], truth[:5])[0] <= 1.5 * 5 / 25, "few held-out cases earn little trust"
    assert fit_tau(prior[:0], noise[:0], truth[:0]) == (0.0, 0.0, {})


def test_fit_tau_floors_a_model_that_is_sure_and_sometimes_wrong():
    rng = np.random.default_rng(1)
    prior = np.tile([0.7, 0.2, 0.1], (400, 1))
    truth = np.array([rng.choice(3, p=[0.7, 0.2, 0.1]) for _ in range(400)])
    sure = np.full((400, 3), 0.001)
    right = rng.random(400) < 0.85
    sure[np.arange(400), np.where(right, truth, (truth + 1) % 3)] = 0.998
    tau, floor, losses = fit_tau(prior, sure, truth)
    assert floor > 0, "a floor keeps the wrong 15% from near-zero probabilities"
    _, _, unfloored = fit_tau(prior, sure, truth, floors=(0.0,))
    assert min(losses.values()) < min(unfloored.values())
    assert 0 < tau <= 1.5


def test_the_tiny_profile_beats_the_prior(trained):
    _, metrics, _, _ = trained
    prior = metrics["prior"]
    table = {term: (round(metrics[term], 4), round(prior[term], 4)) for term in (*TERMS, "score")}
    # seen with the crop classifier: -35% to -42% overall on the demo's phantom (three runs), every term better
    assert metrics["score"] <= 0.8 * prior["score"], f"(model, prior) per term: {table}"
    for term in ("spinal", "foraminal", "subarticular"):
        assert metrics[term] <= 0.9 * prior[term], f"{term}: (model, prior) per term: {table}"


def test_fitted_weights_are_recorded_and_used(trained):
    run, _, _, _ = trained
    report = StageInput.open(run, "nnunet-train").read_json("training.json")["families"]
    for family in ("spinal", "foraminal"):
        assert 0.0 <= report[family]["tau"] <= 1.5 and report[family]["tau_regions"] > 0
    assert 0.0 <= StageInput.open(run, "densenet-train").manifest.metrics["tau"] <= 1.5


def test_nnunet_training_resumes_from_its_checkpoint(run_copy, monkeypatch):
    from lumbar_core.nnunet.trainer import LumbarTrainer

    run = run_copy
    params = nnunet_train.NnunetTrainParams(epochs=2, iterations=2, val_iterations=1, families=("spinal",), allow_missing=True)
    real_end = LumbarTrainer.on_epoch_end
    epochs_started = []

    def preempted_after_first_epoch(self):
        real_end(self)  # nnU-Net saves checkpoint_latest.pth, the callback copies it to the store
        if self.current_epoch >= 1 and not epochs_started:
            raise KeyboardInterrupt("node preempted")

    monkeypatch.setattr(LumbarTrainer, "on_epoch_end", preempted_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        nnunet_train.run(run_uri=run, params=params)
    assert store.exists(store.join(run, "nnunet-train", "_work", "spinal", "checkpoint_latest.pth"))
    monkeypatch.setattr(LumbarTrainer, "on_epoch_end", real_end)
    real_start = LumbarTrainer.on_epoch_start
    monkeypatch.setattr(LumbarTrainer, "on_epoch_start", lambda self: epochs_started.append(self.current_epoch) or real_start(self))
    nnunet_train.run(run_uri=run, params=params)
    assert epochs_started == [1], "the rerun trained only the epoch that was left"
    history = StageInput.open(run, "nnunet-train").read_json("training.json")["families"]["spinal"]["pseudo_dice"]
    assert len(history) == 2
    assert not store.exists(store.join(run, "nnunet-train", "_work", "spinal", "checkpoint_latest.pth"))


def test_a_submission_for_unlabelled_test_studies_with_a_copied_bundle(trained, phantom, tmp_path):
    bundle = str(tmp_path / "elsewhere" / "my-bundle")
    shutil.copytree(store.join(trained[0], "bundle"), bundle)  # a bundle copied to another place, under another name
    run = str(tmp_path / "test-run")
    args = ["run", "--pipeline", "inference", "--runner", "inline", "--data", str(phantom), "--run", run, "--models", bundle]
    assert main([*args, "--profile", "tiny"]) == 0
    assert set(StageInput.open(run, "predict").manifest.upstream) == {bundle, "ingest"}
    submission = pd.read_csv(store.join(run, "score", "submission.csv"))
    sample = pd.read_csv(phantom / "sample_submission.csv")
    assert sorted(submission["row_id"]) == sorted(sample["row_id"])
    metrics = store.read_json(store.join(run, "score", "metrics.json"))
    assert "score" not in metrics and metrics["labelled_rows"] == 0
    assert "No labels for these studies" in store.read_text(store.join(run, "score", "report.html"))


def test_the_localiser_learns_the_levels_from_the_training_labels(trained):
    run = trained[0]
    level = StageInput.open(run, "level-train").manifest.metrics
    assert level["held_out_studies"] >= 5 and level["train_stacks"] > 50
    assert level["share_within_5mm"] >= 0.8 and level["share_right_level"] >= 0.9, level
    held = StageInput.open(run, "calibrate").read_json("calibration.json")
    assert set(held["localisation"]) == {"localiser", "unet"}, "both sources measured on the held-out studies"
    assert held["studies"] and set(held["studies"]) <= set(StageInput.open(run, "ingest").params["studies"])
    report = store.read_text(store.join(run, "score", "report.html"))
    assert "Level checks per study" in report and "held-out studies (calibrate)" in report


def test_broken_levels_are_refused_by_level_qa_and_the_score_falls_back_to_the_prior(run_copy, monkeypatch):
    import lumbar_core.prediction as prediction
    from lumbar_core.stages import score

    rng = np.random.default_rng(0)

    def random_levels(models, volume, source, batch_size):  # a localiser (or U-Net) gone wrong: random points in view
        corners = volume.geometry.pixel_to_world(np.array([0, volume.geometry.cols]), np.array([0, volume.geometry.rows]), 0)
        low, high = corners.min(axis=0) - 20, corners.max(axis=0) + 20
        return {lv: rng.uniform(low, high) for lv in vocab.LEVELS}

    monkeypatch.setattr(prediction, "locate_levels", random_levels)
    run_stage(get_stage("predict"), run_uri=run_copy, params=predict.PredictParams(ingest_stage="ingest-validation"))
    run_stage(get_stage("score"), run_uri=run_copy, params=score.ScoreParams(ingest_stage="ingest-validation"))
    problems = StageInput.open(run_copy, "predict").read_table("problems.parquet")
    assert problems["kind"].str.startswith("level QA").any()
    metrics = store.read_json(store.join(run_copy, "score", "metrics.json"))
    assert metrics["score"] == pytest.approx(metrics["prior"]["score"], rel=0.01), "refused levels: every reading falls back to the prior"
