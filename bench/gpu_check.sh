#!/usr/bin/env bash
# Check and time the GPU paths: the tiny pipeline on a CUDA machine (e.g. the device tool's H100),
# printing each stage's time and where it ran. Run from the repository root:
#   bash bench/gpu_check.sh            (uses .venv/bin/python, or PYTHON=... for another interpreter)
# It needs torch with CUDA and the project's requirements importable; nothing is downloaded.
set -euo pipefail
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-/tmp/lumbar-gpu-check}
export PYTHONPATH=${PYTHONPATH:-}:$(pwd)
"$PYTHON" - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device: this check is for a GPU machine"
print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__, "| bf16:", torch.cuda.is_bf16_supported())
PY
rm -rf "$OUT"
"$PYTHON" -m lumbar_core.cli synth --out "$OUT/data" --studies 24 --test-studies 0 --profile tiny --seed 0
"$PYTHON" -m lumbar_core.cli run --data "$OUT/data" --run "$OUT/run" --profile tiny --runner inline 2>&1 \
  | grep -E '^\[(run |done)\]|^(term|spinal|foraminal|subarticular|any_severe|score|report)' | tee "$OUT/timing.txt"
"$PYTHON" - "$OUT/run" <<'PY'
import json, sys
from lumbar_core.manifest import StageInput
run = sys.argv[1]
for stage in ("vertebra-train", "nnunet-train", "densenet-train"):
    print(stage, "device:", StageInput.open(run, stage).manifest.metrics.get("device"))
print("predict seconds/study:", json.dumps(StageInput.open(run, "predict").read_json("timing.json")["seconds_per_study"]))
PY
