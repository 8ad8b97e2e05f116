"""Run a compiled pipeline (train or inference) on this machine through kfp.local's SubprocessRunner.

The pipeline is compiled to YAML and loaded back, so what runs is the file a cluster would get
(kfp.local ignores the Kubernetes settings and the images: every task runs as a subprocess of this
Python). Stages read and write the store exactly as on a cluster (a path, file:// or s3://).
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

from kfp import components, local

from lumbar_core import store
from lumbar_core.cpus import SHARED_ENV
from lumbar_core.errors import UserError
from lumbar_core.manifest import stage_uri
from pipelines.build import get_builder
from pipelines.compile import compile_pipeline
from pipelines.console import quiet_kfp_local
from pipelines.images import default_images


def local_pipeline_root(run_uri: str) -> str:
    """Where kfp.local keeps task outputs and logs: ``{run}/_kfp`` for a local run, else ``runs/_kfp-local``."""
    if run_uri.startswith("s3://"):
        return str(Path("runs/_kfp-local").resolve())
    return str(Path(run_uri.removeprefix("file://")).resolve() / "_kfp")


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
    log: Callable[[str], None] = print,
) -> dict:
    """Run the ``train`` (or ``inference``: ``models_uri`` and ``split``) pipeline locally; returns ``{run}/score/metrics.json``.

    ``log`` gets the path of the log file holding kfp.local's output (``{pipeline root}/kfp-local.log``),
    then one line per finished task, and on a failure the failed task's last lines (the exception propagates).
    """
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
        func = builder(default_images(), profile=profile, retries=0)
        compiled = components.load_component_from_file(str(compile_pipeline(func, Path(tmp) / f"{pipeline}.yaml")))
    root = Path(pipeline_root or local_pipeline_root(run_uri)).resolve()
    root.mkdir(parents=True, exist_ok=True)
    local.init(local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
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
