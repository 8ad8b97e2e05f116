"""`lumbar submit` against a local server speaking the KFP v2beta1 routes: request bodies, --wait, errors."""

import json

import pytest

from lumbar_core.cli import main
from tests.client.kfp_api_server import KfpApiServer

ARGS = ["--arg", "data_uri=s3://bucket/data", "--arg", "run_uri=s3://bucket/runs/r1"]


def _submit(server, *extra):
    return main(["submit", "--host", server.url, *ARGS, "--poll", "0.01", *extra])


def test_submit_train_sends_the_compiled_pipeline_and_arguments(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sentinel-secret-value")
    with KfpApiServer() as server:
        assert _submit(server, "--arg", 'overrides={"nnunet-train.epochs": 50}', "--arg", "predict_shards=4") == 0
        (run,) = server.posted("/runs")
        (experiment,) = server.posted("/experiments")
    assert experiment["display_name"] == "lumbar"
    assert run["experiment_id"] in server.experiments
    assert run["display_name"] == "lumbar-train"
    assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "lumbar-train"
    params = run["runtime_config"]["parameters"]
    assert params == {
        "data_uri": "s3://bucket/data",
        "run_uri": "s3://bucket/runs/r1",
        "overrides": {"nnunet-train.epochs": 50},
        "predict_shards": 4,
    }
    executors = run["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors["exec-nnunet-train"]["secretAsEnv"][0]["secretName"] == "lumbar-s3"
    assert "sentinel-secret-value" not in json.dumps(run)  # credentials of this process never travel
    tasks = run["pipeline_spec"]["pipeline_spec"]["root"]["dag"]["tasks"]
    assert all(t["cachingOptions"]["enableCache"] for t in tasks.values())  # caching is on unless --no-cache


def test_wait_follows_the_run_to_its_final_state(capsys):
    with KfpApiServer(states=["PENDING", "RUNNING", "RUNNING", "SUCCEEDED"]) as server:
        assert _submit(server, "--wait") == 0
        polls = [r for r in server.requests if r["method"] == "GET" and "/runs/" in r["path"]]
    assert len(polls) == 4
    assert "SUCCEEDED" in capsys.readouterr().out


def test_a_failed_run_exits_1():
    with KfpApiServer(states=["RUNNING", "FAILED"]) as server:
        assert _submit(server, "--wait") == 1


def test_an_existing_experiment_is_reused():
    with KfpApiServer() as server:
        assert _submit(server) == 0
        assert _submit(server, "--run-name", "second") == 0
        assert len(server.posted("/experiments")) == 1
        assert [r["display_name"] for r in server.posted("/runs")] == ["lumbar-train", "second"]


def test_no_cache_turns_caching_off_in_the_sent_spec():
    with KfpApiServer() as server:
        assert _submit(server, "--no-cache") == 0
        (run,) = server.posted("/runs")
    tasks = run["pipeline_spec"]["pipeline_spec"]["root"]["dag"]["tasks"]
    assert tasks and all(not t.get("cachingOptions", {}).get("enableCache", False) for t in tasks.values())


def test_one_stage_pipeline():
    with KfpApiServer() as server:
        assert main(["submit", "--host", server.url, "--stage", "nnunet-train", "--arg", "run_uri=s3://bucket/runs/r1"]) == 0
        (run,) = server.posted("/runs")
    spec = run["pipeline_spec"]["pipeline_spec"]
    assert spec["pipelineInfo"]["name"] == "lumbar-stage-nnunet-train"
    assert list(spec["root"]["dag"]["tasks"]) == ["nnunet-train"]
    assert "gpu_node_selector" in spec["root"]["inputDefinitions"]["parameters"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arg", "data_uri=s3://b/d"], "missing argument(s) run_uri"),
        ([*ARGS, "--arg", "epochs=3"], "unknown argument(s) epochs"),
    ],
)
def test_bad_arguments_are_refused_before_sending(args, message, capsys):
    with KfpApiServer() as server:
        assert main(["submit", "--host", server.url, *args]) == 2
        assert not server.posted("/runs")
    assert message in capsys.readouterr().err


def test_an_unreachable_host_is_a_clear_error(capsys):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert main(["submit", "--host", f"http://127.0.0.1:{port}", *ARGS]) == 2
    assert f"cannot reach the KFP API at http://127.0.0.1:{port}" in capsys.readouterr().err
