"""Build the project's images (``cpu`` and ``gpu`` targets of images/Dockerfile), skipping unchanged ones.

Each image carries a label with a content hash of what it is built from (the Dockerfile, the lock file,
the packaged sources, the base image's id and the target); an image whose label matches the tree is
not rebuilt. Standard library only, so it runs before any venv exists::

    python3 images/build.py --registry ghcr.io/lumbar-spine/lumbar --version 0.1.0 [--base IMAGE] [--force]

The base defaults to ``$LUMBAR_BASE_IMAGE``, else the locally made ``lumbar-base:bookworm`` where it
exists (scripts/base_image.sh), else the public slim Python image.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "images" / "Dockerfile"
PUBLIC_BASE = "python:3.11.11-slim-bookworm"
LOCAL_BASE = "lumbar-base:bookworm"
HASH_LABEL = "org.lumbar.build-hash"
TARGETS = ("cpu", "gpu")
# What the images are built from (the build context's allowlist, .dockerignore, says the same).
SOURCES = ("requirements.lock", "pyproject.toml", "README.md", "lumbar_core", "components", "pipelines")


def docker(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    """Run the docker CLI; a failure raises with its stderr."""
    result = subprocess.run(["docker", *args], capture_output=capture, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])} failed: {(result.stderr or '').strip()[-2000:]}")
    return result


def engine_reachable() -> str:
    """'' when a Docker engine answers, else why not (for a skip reason or an error)."""
    try:
        result = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=20)
    except FileNotFoundError:
        return "the docker CLI is not installed"
    except subprocess.TimeoutExpired:
        return "docker info did not answer within 20 s"
    if result.returncode != 0:
        return f"no Docker engine answers ({result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'docker info failed'})"
    return ""


def image_id(ref: str) -> str:
    """The image's id, or '' when it is not present locally."""
    result = docker("image", "inspect", "--format", "{{.Id}}", ref, check=False)
    return result.stdout.strip() if result.returncode == 0 else ""


def resolve_base(base: str | None = None) -> str:
    """The base image: the argument, ``$LUMBAR_BASE_IMAGE``, the local Debian base if present, or the public one."""
    if base:
        return base
    if os.environ.get("LUMBAR_BASE_IMAGE"):
        return os.environ["LUMBAR_BASE_IMAGE"]
    return LOCAL_BASE if image_id(LOCAL_BASE) else PUBLIC_BASE


def _files(root: Path) -> list[Path]:
    found = []
    for name in SOURCES:
        path = root / name
        if path.is_file():
            found.append(path)
        else:
            found += [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
    return sorted([root / "images" / "Dockerfile", *found])


def content_hash(target: str, base_id: str, version: str, root: Path = ROOT) -> str:
    """sha256 over the target, base image id, version and every source file (path and bytes)."""
    digest = hashlib.sha256(f"{target}\0{base_id}\0{version}\0".encode())
    for path in _files(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def label(ref: str, key: str = HASH_LABEL) -> str:
    """One label of a local image ('' when absent)."""
    result = docker("image", "inspect", "--format", f'{{{{index .Config.Labels "{key}"}}}}', ref, check=False)
    return result.stdout.strip() if result.returncode == 0 else ""


def build(target: str, tag: str, *, base: str, version: str, force: bool = False, quiet: bool = False) -> dict:
    """Build one target unless an image of the same content hash is there; returns what happened."""
    if target not in TARGETS:
        raise ValueError(f"unknown image target {target!r}; known: {', '.join(TARGETS)}")
    base_id = image_id(base)
    if not base_id:
        print(f"pulling base image {base}", file=sys.stderr)
        docker("pull", base, capture=False)
        base_id = image_id(base)
    wheelhouse = ROOT / "build" / "wheelhouse"
    wheelhouse.mkdir(parents=True, exist_ok=True)  # COPY needs it; empty means "install from the index"
    wheels = sorted(p.name for p in wheelhouse.glob("*.whl"))
    # The wheelhouse's names (not bytes) enter the hash: same files, same pins, same image.
    wanted = content_hash(target, base_id, version + "\0" + "\0".join(wheels))
    if not force and label(tag) == wanted:
        return {"tag": tag, "built": False, "seconds": 0.0}
    start = time.perf_counter()
    args = ["build", "-f", str(DOCKERFILE), "--target", target, "--build-arg", f"BASE={base}", "--build-arg", f"VERSION={version}"]
    for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST"):
        if os.environ.get(key) and not wheels:
            args += ["--build-arg", key]  # passed by name: the value stays out of the command line and the final image
    args += ["--label", f"{HASH_LABEL}={wanted}", "-t", tag, str(ROOT)]
    if quiet:
        args.insert(1, "--quiet")
    docker(*args, capture=quiet)
    return {"tag": tag, "built": True, "seconds": round(time.perf_counter() - start, 1)}


def image_size(ref: str) -> int:
    """The image's size in bytes."""
    return int(docker("image", "inspect", "--format", "{{.Size}}", ref).stdout.strip())


def main(argv: list[str] | None = None) -> int:
    """Build the cpu and gpu images: ``{registry}:{version}-cpu`` and ``-gpu``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--registry", default="ghcr.io/lumbar-spine/lumbar")
    p.add_argument("--version", required=True)
    p.add_argument("--base", default=None, help=f"base image (default: $LUMBAR_BASE_IMAGE, {LOCAL_BASE} if present, else {PUBLIC_BASE})")
    p.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    p.add_argument("--force", action="store_true", help="build even when the image's content hash matches")
    args = p.parse_args(argv)
    why = engine_reachable()
    if why:
        print(f"images: {why}; start one (scripts/docker_up.sh on a machine without systemd)", file=sys.stderr)
        return 2
    base = resolve_base(args.base)
    for target in args.targets:
        tag = f"{args.registry}:{args.version}-{target}"
        done = build(target, tag, base=base, version=args.version, force=args.force)
        what = f"built in {done['seconds']:.0f} s" if done["built"] else "up to date"
        print(f"{tag}: {what} (base {base}, {image_size(tag) / 1e9:.2f} GB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
