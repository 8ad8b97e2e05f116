"""The images for real: built here (cached by content hash), run as non-root, offline, read-only, and the
tiny training pipeline end to end through kfp.local's DockerRunner with the store on an S3 server.

Runs whenever a Docker engine answers (scripts/docker_up.sh starts one); skipped, with the reason, where none does.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from lumbar_core import store
from lumbar_core.manifest import StageInput
from lumbar_core.submission import validate_submission
from pipelines.images import default_images

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("images_build", ROOT / "images" / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

WHY_NOT = build.engine_reachable()
pytestmark = pytest.mark.skipif(bool(WHY_NOT), reason=f"no Docker engine: {WHY_NOT}")
IMAGES = default_images()


def docker(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def built() -> dict:
    """Both images, built (or found up to date) the way `make images` builds them."""
    base = build.resolve_base()
    version = IMAGES.cpu.rsplit(":", 1)[1].removesuffix("-cpu")
    return {
        kind: build.build(kind, getattr(IMAGES, kind), base=base, version=version, quiet=True) | {"base": base, "version": version}
        for kind in ("cpu", "gpu")
    }


def test_an_unchanged_tree_is_not_rebuilt(built):
    again = build.build("cpu", IMAGES.cpu, base=built["cpu"]["base"], version=built["cpu"]["version"], quiet=True)
    assert again["built"] is False
    assert build.label(IMAGES.cpu) and build.label(IMAGES.cpu) != build.label(IMAGES.gpu)


def test_the_content_hash_follows_sources_base_and_target(tmp_path):
    for name in build.SOURCES:
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    (tmp_path / "images").mkdir()
    shutil.copy(build.DOCKERFILE, tmp_path / "images" / "Dockerfile")
    first = build.content_hash("cpu", "sha256:a", "0.1.0", root=tmp_path)
    assert first == build.content_hash("cpu", "sha256:a", "0.1.0", root=tmp_path)
    assert first != build.content_hash("gpu", "sha256:a", "0.1.0", root=tmp_path)
    assert first != build.content_hash("cpu", "sha256:b", "0.1.0", root=tmp_path)
    (tmp_path / "lumbar_core" / "__pycache__").mkdir(exist_ok=True)
    (tmp_path / "lumbar_core" / "__pycache__" / "x.pyc").write_bytes(b"cache")
    assert first == build.content_hash("cpu", "sha256:a", "0.1.0", root=tmp_path), "caches are not sources"
    with (tmp_path / "lumbar_core" / "scoring.py").open("a") as f:
        f.write("\n# changed\n")
    assert first != build.content_hash("cpu", "sha256:a", "0.1.0", root=tmp_path)


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_runs_as_the_non_root_user_with_the_package(built, kind):
    out = docker("run", "--rm", getattr(IMAGES, kind), "sh", "-c", "id -u && lumbar --help >/dev/null && echo ok")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["10001", "ok"]


def test_no_build_time_index_certificate_or_wheelhouse_in_the_images(built):
    for image in (IMAGES.cpu, IMAGES.gpu):
        env = json.loads(docker("image", "inspect", "--format", "{{json .Config.Env}}", image).stdout)
        assert not [e for e in env if e.startswith(("PIP_INDEX", "PIP_EXTRA", "PIP_CERT", "PIP_TRUSTED", "PIP_FIND"))], env
        out = docker("run", "--rm", image, "sh", "-c", "ls /wheels /build 2>&1; pip config list; ls /etc/xdg/pip 2>&1")
        assert "No such file" in out.stdout and "index" not in out.stdout and "cert" not in out.stdout, out.stdout


def test_the_gpu_image_has_torch_with_cuda_and_no_cuda_base(built):
    probe = "import torch, json; print(json.dumps([torch.version.cuda, torch.backends.cudnn.version()]))"
    out = docker("run", "--rm", IMAGES.gpu, "python", "-c", probe)
    assert out.returncode == 0, out.stderr
    cuda, cudnn = json.loads(out.stdout)
    assert cuda and cudnn, "torch's wheels carry the CUDA runtime and cuDNN"
    env = json.loads(docker("image", "inspect", "--format", "{{json .Config.Env}}", IMAGES.gpu).stdout)
    assert "NVIDIA_VISIBLE_DEVICES=all" in env and "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in env


def test_stages_run_offline_on_a_read_only_root(built, phantom, tmp_path):
    """No network, a read-only root filesystem and a writable /tmp: ingest, then a GPU-node stage (one
    epoch of the U-Net, on the CPU here) in the gpu image. Nothing is fetched and nothing written outside."""
    run = tmp_path / "run"
    run.mkdir()
    run.chmod(0o777)  # the image's user writes here
    common = ["run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp:rw,exec,mode=1777"]
    mounts = ["-v", f"{phantom}:/data:ro", "-v", f"{run}:/run"]
    out = docker(*common, *mounts, IMAGES.cpu, "lumbar", "stage", "ingest", "--data", "/data", "--run", "/run/r", "--workers", "1")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert StageInput.open(str(run / "r"), "ingest").manifest.metrics["studies"] > 0
    train = ["lumbar", "stage", "vertebra-train", "--spider", "/data/spider", "--run", "/run/r", "--epochs", "1", "--crop", "64"]
    out = docker(*common, *mounts, IMAGES.gpu, *train)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    trained = StageInput.open(str(run / "r"), "vertebra-train")
    assert trained.manifest.metrics["epochs"] == 1 and any(name.endswith(".pt") for name in trained.manifest.files)


def _bridge_address() -> str:
    fmt = "{{range .IPAM.Config}}{{.Gateway}}{{end}}"
    found = docker("network", "inspect", "bridge", "--format", fmt).stdout.strip()
    if found:
        return found
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "docker0"], capture_output=True, text=True).stdout
    match = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", out)
    assert match, f"no address on docker0: {out!r}"
    return match.group(1)


@pytest.fixture(scope="module")
def bridge_s3():
    """moto's S3 server bound to the Docker bridge's address, so that task containers reach it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=_bridge_address(), port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    keys = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://{host}:{port}", AWS_ACCESS_KEY_ID="docker", AWS_SECRET_ACCESS_KEY="docker", AWS_DEFAULT_REGION="us-east-1"
    )
    try:
        yield os.environ["AWS_ENDPOINT_URL"]
    finally:
        server.stop()
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture(scope="module")
def docker_run(built, phantom, bridge_s3, tmp_path_factory):
    import boto3

    from lumbar_core.cli import main
    from tests.pipeline.test_run_kfp_local import SHORT

    boto3.client("s3", endpoint_url=bridge_s3).create_bucket(Bucket="docker")
    data = "s3://docker/data"
    store.upload_prefix(phantom, data)
    run = "s3://docker/runs/r1"
    root = tmp_path_factory.mktemp("kfp-docker-root")
    sets = [x for k, v in SHORT.items() for x in ("--set", f"{k}={v}")]
    start = time.perf_counter()
    code = main(["run", "--runner", "kfp-docker", "--data", data, "--run", run, "--profile", "tiny", "--pipeline-root", str(root), *sets])
    return code, run, root, time.perf_counter() - start


def test_the_tiny_pipeline_runs_in_the_images(docker_run):
    code, run, root, seconds = docker_run
    assert code == 0
    log = (Path(root) / "kfp-local.log").read_text()
    assert f"Found image '{IMAGES.cpu}'" in log and f"Found image '{IMAGES.gpu}'" in log, "cpu tasks in cpu, gpu tasks in gpu"
    assert "Pulling image" not in log
    metrics = store.read_json(store.join(run, "score", "metrics.json"))
    assert {"spinal", "foraminal", "subarticular", "any_severe_spinal", "score", "prior"} <= set(metrics)
    import pandas as pd

    submission = pd.read_csv(store.bytes_io(store.join(run, "score", "submission.csv")))
    validate_submission(submission)
    assert len(submission) == 25 * metrics["studies"]
    assert StageInput.open(run, "bundle").manifest.stage == "bundle"
    print(f"kfp-docker tiny pipeline: {seconds:.0f} s")


def test_credentials_reach_tasks_only_as_environment(docker_run):
    from lumbar_core.cli import main

    _, _, root, _ = docker_run
    assert main(["compile", "--out", str(Path(root) / "dist")]) == 0
    for spec in (Path(root) / "dist").glob("*.yaml"):
        text = spec.read_text()
        assert os.environ["AWS_ENDPOINT_URL"] not in text and "docker" not in re.findall(r"AWS_\w+\W+(\w+)", text)
    inspected = docker("image", "inspect", "--format", "{{json .Config.Env}}", IMAGES.cpu).stdout
    assert "AWS_" not in inspected
