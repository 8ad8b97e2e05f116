"""Run a compiled pipeline (train or inference) on this machine through kfp.local.

The pipeline is compiled to YAML and loaded back, so what runs is the file a cluster would get.
kfp.local ignores the Kubernetes settings. With the ``subprocess`` runner every task runs as a
subprocess of this Python (the images are ignored); with the ``docker`` runner every task runs in its
image (CPU stages in the cpu image, GPU stages in the gpu image, built by ``make images``), as the
image's non-root user, with a read-only root filesystem and a writable /tmp. Stages read and write the
store exactly as on a cluster (a path, file:// or s3://; only s3:// reaches into containers).
kfp.local's own output (about a thousand lines for the demo) goes to ``kfp-local.log`` in the pipeline
root; the console gets one line per finished task (see ``pipelines.console``).
"""

from __future__ import annotations

import builtins
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from kfp import components, local

from lumbar_core import settings, store
from lumbar_core.cpus import SHARED_ENV
from lumbar_core.errors import UserError
from lumbar_core.manifest import stage_uri
from pipelines.build import get_builder
from pipelines.compile import compile_pipeline
from pipelines.console import quiet_kfp_local
from pipelines.images import Images, default_images

RUNNERS = ("subprocess", "docker")
# What a task container gets from this process's environment: S3's endpoint and credentials (never in
# an image or the compiled spec) and the library's own settings.
PASSED_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "LUMBAR_S3_MAX_ATTEMPTS",
    "LUMBAR_WORKERS",
)


def local_pipeline_root(run_uri: str) -> str:
    """Where kfp.local keeps task outputs and logs: ``{run}/_kfp`` for a local run, else ``runs/_kfp-local``."""
    if run_uri.startswith("s3://"):
        return str(Path("runs/_kfp-local").resolve())
    return str(Path(run_uri.removeprefix("file://")).resolve() / "_kfp")


def docker_runner(uris: dict[str, str], pipeline_root: Path) -> local.DockerRunner:
    """kfp.local's DockerRunner for tasks that reach the store over S3.

    Only the pipeline root is mounted into a task, so every URI the tasks get must be s3://. An endpoint
    on this machine's loopback is reached through the host's network; any other through Docker's bridge.
    """
    for name, uri in uris.items():
        if uri and not uri.startswith("s3://"):
            raise UserError(
                f"--runner kfp-docker: {name} {uri!r} is not on S3; containers see only S3 "
                "(set AWS_ENDPOINT_URL to an S3 server the containers reach and pass s3:// URIs)"
            )
    env = {k: os.environ[k] for k in PASSED_ENV if os.environ.get(k)}
    env[SHARED_ENV] = "1"  # the containers share this machine's CPUs
    args: dict[str, Any] = {
        "environment": env,
        "read_only": True,
        "tmpfs": {"/tmp": "rw,exec,mode=1777"},
        "shm_size": "1g",
    }
    endpoint = settings.aws_endpoint_url()
    if endpoint and urlparse(endpoint).hostname in ("localhost", "127.0.0.1", "::1"):
        args["network_mode"] = "host"
    if os.getuid() != 0:
        args["user"] = f"{os.getuid()}:{os.getgid()}"  # what the tasks write in the pipeline root stays yours
    else:
        pipeline_root.chmod(0o1777)  # the image's user (10001) writes the task outputs
    return local.DockerRunner(**args)


def run_local(
    data_uri: str,
    run_uri: str,
    *,
    profile: str,
    overrides: dict[str, Any] | None = None,
    spider_uri: str | None = None,
    ingest_shards: int = 2,
    predict_shards: int = 2,
    pipeline_root: str | None = None,
    pipeline: str = "train",
    models_uri: str | None = None,
    split: str = "test",
    runner: str = "subprocess",
    images: Images | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Run the ``train`` (or ``inference``: ``models_uri`` and ``split``) pipeline locally; returns ``{run}/score/metrics.json``.

    ``runner`` is ``subprocess`` or ``docker`` (tasks in ``images``, by default this version's tags).
    ``log`` gets the path of the log file holding kfp.local's output (``{pipeline root}/kfp-local.log``),
    then one line per finished task, and on a failure the failed task's last lines (the exception propagates).
    """
    if runner not in RUNNERS:
        raise UserError(f"unknown kfp.local runner {runner!r}; known: {', '.join(RUNNERS)}")
    builder = get_builder(pipeline)
    arguments: dict[str, Any] = {
        "data_uri": data_uri,
        "run_uri": run_uri,
        "profile": profile,
        "overrides": {k: str(v) for k, v in (overrides or {}).items()},
        "ingest_shards": ingest_shards,
        "predict_shards": predict_shards,
    }
    if pipeline == "train":
        arguments["spider_uri"] = spider_uri or ""
    else:
        if not models_uri:
            raise UserError("the inference pipeline needs a model bundle (--models URI: a bundle, or a training run holding one)")
        arguments |= {"models_uri": models_uri, "split": split}
    with tempfile.TemporaryDirectory(prefix="lumbar-compile-") as tmp:
        # No retries here: a local failure is a bug to see at once, not a preempted node.
        func = builder(images or default_images(), profile=profile, retries=0)
        compiled = components.load_component_from_file(str(compile_pipeline(func, Path(tmp) / f"{pipeline}.yaml")))
    root = Path(pipeline_root or local_pipeline_root(run_uri)).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if runner == "docker":
        uris = {"--data": data_uri, "--run": run_uri, "--spider": spider_uri or "", "--models": models_uri or ""}
        task_runner: Any = docker_runner(uris, root)
    else:
        task_runner = local.SubprocessRunner(use_venv=False)
    local.init(task_runner, pipeline_root=str(root), raise_on_error=True)
    saved_print = builtins.print
    saved_shared = os.environ.get(SHARED_ENV)
    os.environ[SHARED_ENV] = "1"  # the tasks are subprocesses on this machine: parallel shards split its CPUs
    try:
        with quiet_kfp_local(root / "kfp-local.log", log):
            compiled(**arguments)
    finally:
        if saved_shared is None:
            os.environ.pop(SHARED_ENV, None)
        else:
            os.environ[SHARED_ENV] = saved_shared
        # kfp.local indents print() while a task runs by swapping builtins.print; its parallel loop
        # iterations restore each other's wrappers, which can leave one installed (quiet_kfp_local
        # restores it too; kept here for anything between init and the call).
        builtins.print = saved_print
    return store.read_json(store.join(stage_uri(run_uri, "score"), "metrics.json"))
