"""The compiled training pipeline end to end through kfp.local, with data and run on a real S3 server.

`lumbar run --runner kfp-local` (the default) on the tiny phantom uploaded to moto's S3 server,
shortened for CI; every task runs as a subprocess that reaches the store through the environment.
"""

import contextlib
import io
import json
from pathlib import Path

import pytest

from lumbar_core import store
from lumbar_core.cli import main
from lumbar_core.cpus import cpu_budget
from lumbar_core.manifest import StageInput
from lumbar_core.submission import validate_submission
from tests.pipeline.test_run_inline import STAGE_NAMES

SHORT = {
    "vertebra-train.epochs": "3",
    "nnunet-train.epochs": "2",
    "nnunet-train.iterations": "5",
    "nnunet-train.val_iterations": "1",
    "densenet-train.epochs": "2",
    "crop-train.epochs": "2",
    "ingest.workers": "1",
}


@pytest.fixture(scope="module")
def kfp_run(phantom, s3_server, tmp_path_factory):
    import boto3

    bucket = "kfp-local"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=bucket)
    data = f"s3://{bucket}/data"
    store.upload_prefix(phantom, data)
    run = f"s3://{bucket}/runs/r1"
    root = tmp_path_factory.mktemp("kfp-root")
    sets = [x for k, v in SHORT.items() for x in ("--set", f"{k}={v}")]
    console = io.StringIO()
    with contextlib.redirect_stdout(console):
        code = main(["run", "--data", data, "--run", run, "--profile", "tiny", "--pipeline-root", str(root), *sets])
    return code, run, root, console.getvalue()


def test_the_pipeline_succeeds_and_every_stage_is_committed_on_s3(kfp_run):
    code, run, _, _ = kfp_run
    assert code == 0
    for stage in [*STAGE_NAMES, "ingest-shard-0", "ingest-shard-1", "predict-shard-0", "predict-shard-1"]:
        assert StageInput.open(run, stage).manifest.stage == stage
    merged = StageInput.open(run, "predict")
    assert [s["shard_index"] for s in merged.params["shards"]] == [0, 1]
    # the two predict shards ran at once on this machine: each took half its CPUs for torch
    assert merged.read_json("timing.json")["threads"] == [max(1, cpu_budget() // 2)] * 2
    assert merged.manifest.metrics["studies"] == StageInput.open(run, "ingest-validation").manifest.metrics["studies"]


def test_the_console_shows_one_line_per_task_and_the_score_table(kfp_run):
    _, _, root, console = kfp_run
    lines = console.splitlines()
    log = Path(root) / "kfp-local.log"
    assert lines[0] == f"kfp.local log: {log}"
    tasks = [line.split() for line in lines if line.endswith(" min")]
    assert tasks and all(parts[1] == "SUCCESS" for parts in tasks), lines
    # every stage and helper task ran once per task of the pipeline: 2 x (fan-out + 2 ingest shards + merge),
    # split, 10 training stages (crop-train, level-train and calibrate among them), bundle, fan-out + 2 predict shards + merge, score
    assert len(tasks) == 2 * 4 + 1 + 10 + 1 + 4 + 1, [p[0] for p in tasks]
    assert "any_severe_spinal" in console and "report:" in console
    assert len(lines) < len(tasks) + 15, "kfp.local's own output stays in the log"
    text = log.read_text()
    assert "Executing task" in text and "finished with status SUCCESS" in text and "executor" in text.lower()


def test_score_contract_and_submission(kfp_run):
    _, run, _, _ = kfp_run
    metrics = store.read_json(store.join(run, "score", "metrics.json"))
    assert {"spinal", "foraminal", "subarticular", "any_severe_spinal", "score", "prior"} <= set(metrics)
    import pandas as pd

    submission = pd.read_csv(store.bytes_io(store.join(run, "score", "submission.csv")))
    validate_submission(submission)
    assert len(submission) == 25 * metrics["studies"]


def test_kfp_ui_artifacts_are_written(kfp_run):
    _, run, root, _ = kfp_run
    reports = list(Path(root).rglob("report*"))
    assert any(p.is_file() and "<html" in p.read_text() for p in reports), reports
    executor_outputs = [json.loads(p.read_text()) for p in Path(root).rglob("executor_output.json")]
    logged = [a for out in executor_outputs for arts in out.get("artifacts", {}).values() for a in arts.get("artifacts", [])]
    assert any("score" in a.get("metadata", {}) for a in logged)
    bundles = [a for a in logged if "bundle_uri" in a.get("metadata", {})]
    assert [a["metadata"]["bundle_uri"] for a in bundles] == [f"{run}/bundle"], "the bundle is a Model artifact pointing at its URI"
    models = [p for p in Path(root).rglob("model") if p.is_file()]
    assert models and json.loads(models[0].read_text())["bundle_id"] == bundles[0]["metadata"]["bundle_id"]


def test_inference_pipeline_predicts_the_test_split_with_the_trained_models(kfp_run, phantom, tmp_path, capsys):
    _, run, _, _ = kfp_run
    data = run.replace("/runs/r1", "/data")
    out = run.replace("/runs/r1", "/runs/r1-test")
    bundle = f"{run}/bundle"
    args = ["run", "--pipeline", "inference", "--data", data, "--run", out, "--models", bundle, "--profile", "tiny"]
    assert main([*args, "--pipeline-root", str(tmp_path), "--predict-shards", "1"]) == 0
    assert "no labels for them" in capsys.readouterr().out
    import pandas as pd

    submission = pd.read_csv(store.bytes_io(store.join(out, "score", "submission.csv")))
    validate_submission(submission)
    test_studies = {int(p.name) for p in (Path(phantom) / "test_images").iterdir()}
    assert {int(r.split("_")[0]) for r in submission["row_id"]} == test_studies
    assert StageInput.open(out, "predict").params["models_uri"] == bundle
    assert StageInput.open(out, "predict").manifest.upstream[bundle] == StageInput.open(run, "bundle").manifest.attempt
