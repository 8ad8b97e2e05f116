"""Compile the pipelines to YAML (``lumbar compile``): byte-stable files, one per pipeline."""

from __future__ import annotations

import ast
import os
import re
import tempfile
from pathlib import Path

from kfp import compiler

from pipelines.build import BUILDERS, DEFAULT_PROFILE, DEFAULT_S3_SECRET, build_stage
from pipelines.images import Images


def compile_pipeline(func, path: str | Path) -> Path:
    """Compile one pipeline function to ``path`` (written whole: a temp file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".tmp-", suffix=".yaml", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        compiler.Compiler().compile(func, str(tmp_path))
        tmp_path.write_text(_canonical_header(tmp_path.read_text()))
        umask = os.umask(0)
        os.umask(umask)
        tmp_path.chmod(0o666 & ~umask)
        tmp_path.replace(path)
    finally:
        tmp_path.unlink(missing_ok=True)
    return path


_DEFAULT = re.compile(r"\[Default: (\{.*\})\]$")


def _sorted(value):
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def _canonical_header(text: str) -> str:
    """The compiler's header comment prints dict defaults in an order that varies between processes; sort them."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not line.startswith("#"):
            break
        match = _DEFAULT.search(line)
        if match:
            lines[i] = line[: match.start(1)] + repr(_sorted(ast.literal_eval(match.group(1)))) + "]"
    return "\n".join(lines)


def compile_all(
    out: str | Path, images: Images, *, s3_secret: str = DEFAULT_S3_SECRET, profile: str = DEFAULT_PROFILE, stage: str | None = None
) -> list[Path]:
    """``out/train.yaml`` and ``out/inference.yaml`` (or ``out/stage-{stage}.yaml`` for one stage)."""
    out = Path(out)
    if stage:
        return [compile_pipeline(build_stage(stage, images, s3_secret=s3_secret, profile=profile), out / f"stage-{stage}.yaml")]
    return [
        compile_pipeline(builder(images, s3_secret=s3_secret, profile=profile), out / f"{name}.yaml") for name, builder in BUILDERS.items()
    ]
