"""Image figures: sizes, build time (unchanged tree, a code change, optionally a cold cache) and the
start overhead of a task in a container against a subprocess.

    python bench/images.py [--runs 5] [--cold]

Needs a Docker engine and the images' inputs (`make images` once). `--cold` rebuilds with --no-cache
(several minutes).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("images_build", ROOT / "images" / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)
sys.path.insert(0, str(ROOT))
from pipelines.images import default_images  # noqa: E402

TASK_START = "import lumbar_core.task, torch"  # what every task imports before its stage runs


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--cold", action="store_true", help="also time a build with --no-cache")
    args = p.parse_args()
    why = build.engine_reachable()
    if why:
        print(f"images bench: {why}", file=sys.stderr)
        return 2
    images = default_images()
    version = images.cpu.rsplit(":", 1)[1].removesuffix("-cpu")
    base = build.resolve_base()
    print(f"base {base}")
    for kind in ("cpu", "gpu"):
        done = build.build(kind, getattr(images, kind), base=base, version=version, quiet=True)
        size = build.image_size(getattr(images, kind)) / 1e9
        print(f"{kind}: {'built' if done['built'] else 'up to date'} in {done['seconds']:.0f} s; {size:.2f} GB")
    # A code change: one source file differs, so the package stage and the runtime's last layers rebuild.
    probe = ROOT / "lumbar_core" / "errors.py"
    original = probe.read_bytes()
    try:
        probe.write_bytes(original + b"\n# bench/images.py: a code change\n")
        changed = [build.build(k, getattr(images, k), base=base, version=version, quiet=True)["seconds"] for k in ("cpu", "gpu")]
    finally:
        probe.write_bytes(original)
    restored = [build.build(k, getattr(images, k), base=base, version=version, quiet=True)["seconds"] for k in ("cpu", "gpu")]
    again = [build.build(k, getattr(images, k), base=base, version=version, quiet=True)["built"] for k in ("cpu", "gpu")]
    print(f"after a code change: cpu {changed[0]:.0f} s + gpu {changed[1]:.0f} s (back: {sum(restored):.0f} s)")
    print(f"unchanged tree rebuilt: {any(again)}")
    if args.cold:
        start = time.perf_counter()
        subprocess.run(
            [
                "docker",
                "build",
                "-q",
                "--no-cache",
                "-f",
                str(build.DOCKERFILE),
                "--target",
                "cpu",
                "--build-arg",
                f"BASE={base}",
                "-t",
                "lumbar-bench-cold:cpu",
                str(ROOT),
            ],
            check=True,
            capture_output=True,
        )
        print(f"cold cache (cpu, --no-cache): {time.perf_counter() - start:.0f} s")
        subprocess.run(["docker", "image", "rm", "lumbar-bench-cold:cpu"], capture_output=True)
    in_docker = [
        timed(["docker", "run", "--rm", "--read-only", "--tmpfs", "/tmp", images.cpu, "python", "-c", TASK_START]) for _ in range(args.runs)
    ]
    local = [timed([sys.executable, "-c", TASK_START]) for _ in range(args.runs)]
    d, s = statistics.median(in_docker), statistics.median(local)
    print(f"task start ({TASK_START!r}), median of {args.runs}: container {d:.2f} s, subprocess {s:.2f} s, overhead {d - s:+.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
