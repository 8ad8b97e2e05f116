"""Kubernetes settings of the tasks: resources, retries, caching, S3 secret, and the GPU ones.

GPU stages (``node: gpu`` in ``lumbar_core.stages.STAGES``) get the accelerator type and limit, the
node selector and toleration from pipeline parameters (one compiled file serves kind and production)
and a memory-backed ``/dev/shm`` (PyTorch's data loaders and nnU-Net's augmentation workers share
memory through it). CPU stages carry no GPU setting. Credentials only ever appear as a reference to a
Kubernetes Secret.
"""

from __future__ import annotations

from dataclasses import dataclass

from kfp import kubernetes
from kfp.dsl import PipelineTask

# Requests (cpu, memory) per task; GPU stages also get one nvidia.com/gpu.
RESOURCES: dict[str, tuple[str, str]] = {
    "train-inputs": ("1", "2G"),
    "fan-out": ("0.5", "512M"),
    "ingest": ("4", "8G"),
    "ingest-merge": ("1", "4G"),
    "vertebra-train": ("8", "32G"),
    "vertebra-segment": ("4", "16G"),
    "disc-label": ("2", "8G"),
    "balance": ("1", "4G"),
    "nnunet-prepare": ("8", "32G"),
    "nnunet-train": ("12", "48G"),
    "densenet-train": ("8", "32G"),
    "crop-train": ("8", "32G"),
    "level-train": ("8", "32G"),
    "calibrate": ("4", "16G"),
    "bundle": ("1", "4G"),
    "predict": ("4", "16G"),
    "predict-merge": ("1", "4G"),
    "score": ("2", "8G"),
}
GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
# Keys in sorted order: the compiler sorts defaults it has seen, and compiled files must be byte-stable.
DEFAULT_GPU_TOLERATION = {"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}
SHM_SIZE = "16Gi"
# The Secret's keys become these environment variables (boto3 and lumbar_core.settings read them).
S3_SECRET_KEYS = {
    "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
}
S3_SECRET_OPTIONAL_KEYS = {"AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION": "AWS_DEFAULT_REGION"}


@dataclass(frozen=True)
class Placement:
    """What a pipeline passes to its GPU tasks: node selector and toleration (pipeline parameters)."""

    node_selector: object
    toleration: object


def configure(
    task: PipelineTask, stage: str, node: str, *, display: str, s3_secret: str, gpu: Placement | None, retries: int = 2
) -> PipelineTask:
    """Set a task's name, resources, retries (with backoff), caching and secret env; GPU settings when ``node`` is gpu."""
    cpu, memory = RESOURCES[stage]
    task.set_display_name(display)
    task.set_cpu_request(cpu).set_memory_request(memory).set_memory_limit(memory)
    if retries:
        task.set_retry(num_retries=retries, backoff_duration="60s", backoff_factor=2.0, backoff_max_duration="1800s")
    task.set_caching_options(True)
    kubernetes.use_secret_as_env(task, secret_name=s3_secret, secret_key_to_env=S3_SECRET_KEYS)
    kubernetes.use_secret_as_env(task, secret_name=s3_secret, secret_key_to_env=S3_SECRET_OPTIONAL_KEYS, optional=True)
    if node == "gpu":
        if gpu is None:
            raise ValueError(f"{stage} is a GPU stage: the pipeline must pass its GPU placement")
        task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(1)
        kubernetes.add_node_selector_json(task, gpu.node_selector)
        kubernetes.add_toleration_json(task, gpu.toleration)
        kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=SHM_SIZE)
    return task
