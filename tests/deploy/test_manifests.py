"""manifests/ validated offline: Kubernetes schemas (kubernetes-validate), kustomize builds, kind config."""

import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
RESOURCES = sorted((MANIFESTS / "lumbar").glob("*.yaml"))
K8S_VERSION = "1.33"


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("path", [p for p in RESOURCES if p.name != "kustomization.yaml"], ids=lambda p: p.name)
def test_resources_validate_against_the_kubernetes_schema(path):
    for doc in _docs(path):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_validation_would_catch_a_typo():
    bad = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "dta": {}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_every_kustomization_resource_exists_or_is_pinned():
    kfp_version = (MANIFESTS / "kfp" / "VERSION").read_text().strip()
    for path in MANIFESTS.rglob("kustomization.yaml"):
        for resource in yaml.safe_load(path.read_text())["resources"]:
            if resource.startswith("github.com/"):
                assert resource.endswith(f"?ref={kfp_version}"), f"{path}: {resource} is not pinned to {kfp_version}"
            else:
                assert (path.parent / resource).exists(), f"{path}: {resource} is missing"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_local_kustomization_builds():
    out = subprocess.run(["kubectl", "kustomize", str(MANIFESTS / "lumbar")], capture_output=True, text=True, check=True).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert {d["kind"] for d in docs} == {"ConfigMap", "ServiceAccount", "Role", "RoleBinding"}
    assert all(d["metadata"]["namespace"] == "kubeflow" for d in docs)
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_launcher_config_points_the_pipeline_root_at_s3():
    (config,) = _docs(MANIFESTS / "lumbar" / "kfp-launcher.yaml")
    assert config["metadata"]["name"] == "kfp-launcher"
    assert config["data"]["defaultPipelineRoot"].startswith("s3://")
    providers = yaml.safe_load(config["data"]["providers"])
    assert providers["s3"]["default"]["credentials"]["secretRef"]["secretName"] == "mlpipeline-minio-artifact"


def test_secret_template_holds_no_credentials_and_matches_the_pipelines():
    from pipelines.build import DEFAULT_S3_SECRET
    from pipelines.kube import S3_SECRET_KEYS, S3_SECRET_OPTIONAL_KEYS

    (secret,) = _docs(MANIFESTS / "lumbar" / "s3-secret.template.yaml")
    assert secret["metadata"]["name"] == DEFAULT_S3_SECRET
    assert set(secret["stringData"]) == set(S3_SECRET_KEYS) | set(S3_SECRET_OPTIONAL_KEYS)
    assert secret["stringData"]["AWS_SECRET_ACCESS_KEY"].startswith("REPLACE_")
    assert "s3-secret.template.yaml" not in yaml.safe_load((MANIFESTS / "lumbar" / "kustomization.yaml").read_text())["resources"]


def test_kind_cluster_has_one_labelled_and_tainted_gpu_worker():
    from pipelines.kube import DEFAULT_GPU_NODE_SELECTOR, DEFAULT_GPU_TOLERATION

    cluster = yaml.safe_load((MANIFESTS / "kind" / "cluster.yaml").read_text())
    assert cluster["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    gpu = [n for n in cluster["nodes"] if n.get("labels", {}).get("lumbar/node") == "gpu"]
    assert len(gpu) == 1
    assert DEFAULT_GPU_NODE_SELECTOR.items() <= gpu[0]["labels"].items()
    join = yaml.safe_load(gpu[0]["kubeadmConfigPatches"][0])
    taint = join["nodeRegistration"]["kubeletExtraArgs"]["register-with-taints"]
    assert taint.startswith(DEFAULT_GPU_TOLERATION["key"]) and taint.endswith(":" + DEFAULT_GPU_TOLERATION["effect"])
