"""The compiled pipelines: golden files, byte stability and what the Kubernetes spec must hold.

Golden files are compiled with fixed images; after a deliberate change to components or pipelines,
regenerate them with ``LUMBAR_UPDATE_GOLDEN=1 .venv/bin/pytest tests/pipelines`` and review the diff.
"""

import os
import re
from pathlib import Path

import pytest
import yaml

from components.image import DEFAULT_IMAGE
from lumbar_core import graph
from lumbar_core.cli import main
from lumbar_core.stages import STAGES
from pipelines.compile import compile_all
from pipelines.images import Images, default_images

GOLDEN = Path(__file__).parent / "golden"
IMAGES = Images(cpu="registry.example/lumbar:golden-cpu", gpu="registry.example/lumbar:golden-gpu")
SECRET_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, list[dict]]:
    out = tmp_path_factory.mktemp("dist")
    paths = compile_all(out, IMAGES)
    return {p.stem: list(yaml.safe_load_all(p.read_text())) for p in paths} | {"_dir": out}


def _stage(executor: str) -> str:
    return re.sub(r"-\d+$", "", executor.removeprefix("exec-"))


def _executors(docs):
    spec, platform = docs
    return spec["deploymentSpec"]["executors"], platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


@pytest.mark.parametrize("name", ["train", "inference"])
def test_matches_the_golden_file(compiled, name):
    produced = (compiled["_dir"] / f"{name}.yaml").read_text()
    golden = GOLDEN / f"{name}.yaml"
    if os.environ.get("LUMBAR_UPDATE_GOLDEN"):
        golden.write_text(produced)
    assert golden.exists(), f"no golden file {golden}: run LUMBAR_UPDATE_GOLDEN=1 .venv/bin/pytest tests/pipelines"
    assert produced == golden.read_text(), f"{name}.yaml differs from {golden}; if intended, LUMBAR_UPDATE_GOLDEN=1 and review"


def test_compile_is_byte_stable(tmp_path, capsys):
    assert main(["compile", "--out", str(tmp_path / "a"), "--cpu-image", IMAGES.cpu, "--gpu-image", IMAGES.gpu]) == 0
    assert main(["compile", "--out", str(tmp_path / "b"), "--cpu-image", IMAGES.cpu, "--gpu-image", IMAGES.gpu]) == 0
    for name in ("train.yaml", "inference.yaml"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert "train.yaml" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["train", "inference"])
def test_gpu_settings_only_on_gpu_stages(compiled, name):
    containers, platform = _executors(compiled[name])
    seen_gpu = set()
    for executor, spec in containers.items():
        stage = _stage(executor)
        resources = spec["container"]["resources"]
        k8s = platform.get(executor, {})
        if stage in STAGES and STAGES[stage].node == "gpu":
            seen_gpu.add(stage)
            assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu" and resources["accelerator"]["resourceCount"] == "1"
            assert k8s["nodeSelector"]["nodeSelectorJson"]["componentInputParameter"].endswith("gpu_node_selector")
            assert k8s["tolerations"][0]["tolerationJson"]["componentInputParameter"].endswith("gpu_toleration")
            assert k8s["emptyDirMounts"] == [{"medium": "Memory", "mountPath": "/dev/shm", "sizeLimit": "16Gi", "volumeName": "dshm"}]
            assert spec["container"]["image"] == IMAGES.gpu
        else:
            assert "accelerator" not in resources, executor
            assert not {"nodeSelector", "tolerations", "emptyDirMounts"} & set(k8s), executor
            assert spec["container"]["image"] == IMAGES.cpu
        assert resources["resourceCpuRequest"] and resources["resourceMemoryRequest"], executor
    expected = {"predict"}
    if name == "train":
        expected |= {"vertebra-train", "vertebra-segment", "nnunet-train", "densenet-train", "crop-train", "level-train", "calibrate"}
    assert seen_gpu == expected


@pytest.mark.parametrize("name", ["train", "inference"])
def test_secrets_are_references_only(compiled, name):
    containers, platform = _executors(compiled[name])
    for executor in containers:
        refs = platform[executor]["secretAsEnv"]
        assert {r["secretName"] for r in refs} == {"lumbar-s3"}
        assert {k["envVar"] for r in refs for k in r["keyToEnv"]} == SECRET_ENV
        assert not any(e["name"] in SECRET_ENV for e in containers[executor]["container"].get("env", []))
    text = (compiled["_dir"] / f"{name}.yaml").read_text()
    assert not re.search(r"(?i)(secret_access_key|password)\s*[:=]\s*['\"]?\w{6,}", text)


@pytest.mark.parametrize("name", ["train", "inference"])
def test_every_task_retries_with_backoff_and_caches(compiled, name):
    spec = compiled[name][0]
    tasks = [t for c in [spec["root"], *spec["components"].values()] for t in c.get("dag", {}).get("tasks", {}).values()]
    leaf = [t for t in tasks if not t["componentRef"]["name"].startswith("comp-for-loop")]
    assert len(leaf) >= (15 if name == "train" else 7)
    for task in leaf:
        assert task["retryPolicy"]["maxRetryCount"] == 2 and task["retryPolicy"]["backoffDuration"] == "60s", task["taskInfo"]
        assert task["cachingOptions"]["enableCache"] is True


@pytest.mark.parametrize("name", ["train", "inference"])
def test_each_task_waits_for_the_stages_it_reads(compiled, name):
    """The compiled wiring is the registry's: a task depends on exactly the tasks writing what it declares it reads."""
    tasks = graph.PIPELINES[name]
    dag = compiled[name][0]["root"]["dag"]["tasks"]
    display = {key: task["taskInfo"]["name"] for key, task in dag.items()}
    by_label = {label: key for key, label in display.items()}

    def committing(task: graph.Task) -> str:  # the KFP task that commits a graph task's stage
        return by_label[f"{task.label}: merge" if task.spec.merge else task.label]

    for task in tasks:
        waiting = by_label[f"{task.label}: shards"] if task.spec.merge else committing(task)
        got = {display[d] for d in dag[waiting].get("dependentTasks", [])} - {"split studies"}
        expected = {display[committing(next(t for t in tasks if t.name == up))] for up in graph.upstream(task, tasks)}
        assert got == expected, task.label
    nnunet = next(t for t in tasks if t.stage == "nnunet-train") if name == "train" else None
    if nnunet is not None:  # reads disc-label and balance besides nnunet-prepare: all three key its cache
        assert set(graph.upstream(nnunet, tasks)) == {"disc-label", "balance", "nnunet-prepare"}


def test_ingest_and_predict_fan_out(compiled):
    spec = compiled["train"][0]
    loops = {name: c for name, c in spec["components"].items() if name.startswith("comp-for-loop")}
    inner = sorted(_stage(t["componentRef"]["name"].removeprefix("comp-")) for c in loops.values() for t in c["dag"]["tasks"].values())
    assert inner == ["ingest", "ingest", "predict"]


def test_no_image_is_latest_and_defaults_are_pinned(compiled):
    for docs in (compiled["train"], compiled["inference"]):
        for spec in docs[0]["deploymentSpec"]["executors"].values():
            image = spec["container"]["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")
    with pytest.raises(ValueError, match="explicit tag"):
        Images(cpu="lumbar:latest", gpu="lumbar:1-gpu")
    with pytest.raises(ValueError, match="explicit tag"):
        Images(cpu="lumbar", gpu="lumbar:1-gpu")
    assert default_images().cpu == DEFAULT_IMAGE


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_compiles_to_a_one_task_pipeline(tmp_path, stage):
    (path,) = compile_all(tmp_path, IMAGES, stage=stage)
    spec, platform = yaml.safe_load_all(path.read_text())
    assert list(spec["root"]["dag"]["tasks"]) == [stage]
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert "run_uri" in params and "after" not in params
    if "name" in params:  # sharded stages and their merges: the stage they write / combine
        assert params["name"]["defaultValue"] == STAGES[stage].params().name
    gpu = STAGES[stage].node == "gpu"
    assert ("gpu_node_selector" in params) == gpu
    executor = next(iter(platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values()))
    assert ("nodeSelector" in executor) == gpu
