"""Submit a compiled pipeline to a KFP cluster (``lumbar submit``) and optionally follow the run."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kfp
import yaml
from urllib3.exceptions import MaxRetryError

from lumbar_core.errors import UserError
from pipelines.build import DEFAULT_PROFILE, DEFAULT_S3_SECRET, build_stage, get_builder
from pipelines.compile import compile_pipeline
from pipelines.images import Images


@dataclass(frozen=True)
class Submitted:
    """A submitted run: its id, the host's link to it, and its last known state."""

    run_id: str
    url: str
    state: str


def parse_arguments(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; a value that parses as JSON (numbers, objects, lists, true/false) is taken as such."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--arg takes key=value, got {pair!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def submit(
    host: str,
    *,
    images: Images,
    pipeline: str = "train",
    stage: str | None = None,
    arguments: dict[str, Any] | None = None,
    experiment: str = "lumbar",
    run_name: str | None = None,
    pipeline_root: str | None = None,
    enable_caching: bool = True,
    namespace: str | None = None,
    token: str | None = None,
    s3_secret: str = DEFAULT_S3_SECRET,
    profile: str = DEFAULT_PROFILE,
    wait: bool = False,
    timeout_s: int = 24 * 3600,
    poll_s: float = 10.0,
) -> Submitted:
    """Compile ``pipeline`` (or the one-task pipeline of ``stage``), create a run on ``host``; ``wait`` follows it."""
    if stage:
        func = build_stage(stage, images, s3_secret=s3_secret, profile=profile)
    else:
        func = get_builder(pipeline)(images, s3_secret=s3_secret, profile=profile)
    with tempfile.TemporaryDirectory(prefix="lumbar-submit-") as tmp:
        path = compile_pipeline(func, Path(tmp) / "pipeline.yaml")
        check_arguments(path, arguments or {})
        try:
            client = kfp.Client(host=host, namespace=namespace or "kubeflow", existing_token=token)
            result = client.create_run_from_pipeline_package(
                str(path),
                arguments=arguments or {},
                run_name=run_name or f"lumbar-{stage or pipeline}",
                experiment_name=experiment,
                namespace=namespace,
                pipeline_root=pipeline_root,
                enable_caching=enable_caching,
            )
        except MaxRetryError as exc:
            raise ConnectionError(f"cannot reach the KFP API at {host}: {exc.reason}") from None
    url = f"{host.rstrip('/')}/#/runs/details/{result.run_id}"
    if not wait:
        return Submitted(result.run_id, url, "SUBMITTED")
    run = client.wait_for_run_completion(result.run_id, timeout=timeout_s, sleep_duration=poll_s)
    return Submitted(result.run_id, url, str(run.state))


def check_arguments(path: Path, arguments: dict[str, Any]) -> None:
    """Refuse unknown arguments and missing required ones before anything reaches the cluster."""
    spec = next(yaml.safe_load_all(path.read_text()))
    inputs = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    unknown = sorted(set(arguments) - set(inputs))
    missing = sorted(k for k, v in inputs.items() if not v.get("isOptional") and k not in arguments)
    name = spec["pipelineInfo"]["name"]
    if unknown:
        raise UserError(f"{name}: unknown argument(s) {', '.join(unknown)}; valid: {', '.join(sorted(inputs))}")
    if missing:
        raise UserError(f"{name}: missing argument(s) {', '.join(missing)} (give them as --arg KEY=VALUE)")
