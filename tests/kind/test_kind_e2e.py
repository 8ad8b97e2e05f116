"""The tiny pipeline on a local kind cluster with KFP (the real deployment path).

Needs Docker (a reachable engine), kind and kubectl; skipped, with the reason, where any is absent.
It runs ``make kind-up`` (images built and loaded, KFP installed), uploads the tiny phantom to KFP's
SeaweedFS through a port-forward, submits the train pipeline with ``lumbar submit --wait`` and
checks the run's score in the store. Expect tens of minutes on a laptop.
"""

import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _missing() -> str:
    for tool in ("docker", "kind", "kubectl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "the Docker engine is not reachable"
    return ""


pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(_missing()), reason=_missing() or "ok")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def port_forward(service: str, remote: int):
    port = _free_port()
    proc = subprocess.Popen(["kubectl", "-n", "kubeflow", "port-forward", f"svc/{service}", f"{port}:{remote}"])
    try:
        for _ in range(60):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()


def _secret(key: str) -> str:
    import base64

    out = subprocess.run(
        ["kubectl", "-n", "kubeflow", "get", "secret", "mlpipeline-minio-artifact", "-o", f"jsonpath={{.data.{key}}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return base64.b64decode(out).decode()


def test_tiny_pipeline_on_kind(phantom, monkeypatch):
    from lumbar_core import store
    from lumbar_core.cli import main

    subprocess.run(["make", "kind-up"], cwd=ROOT, check=True)
    run = f"s3://mlpipeline/lumbar/runs/e2e-{int(time.time())}"
    with port_forward("seaweedfs", 9000) as s3, port_forward("ml-pipeline", 8888) as api:
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", _secret("accesskey"))
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", _secret("secretkey"))
        data = "s3://mlpipeline/lumbar/data/phantom"
        store.upload_prefix(phantom, data)
        short = '{"vertebra-train.epochs": "3", "nnunet-train.epochs": "2", "nnunet-train.iterations": "5", "densenet-train.epochs": "2"}'
        args = ["--arg", f"data_uri={data}", "--arg", f"run_uri={run}", "--arg", "profile=tiny", "--arg", f"overrides={short}"]
        assert main(["submit", "--host", api, *args, "--wait", "--timeout", "5400", "--poll", "15"]) == 0
        metrics = store.read_json(store.join(run, "score", "metrics.json"))
    assert {"score", "prior"} <= set(metrics)
