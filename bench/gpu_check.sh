#!/usr/bin/env bash
# Check and time the GPU paths on a CUDA machine (e.g. the device tool's H100/H200): first the
# realistic profile end to end with every training stage cut to one epoch, and predict's seconds per
# study with those realistic-profile models (bench/predict_speed.py --models realistic); then the quality
# benchmark (tiny image profile, phantom seed 3) with a GPU training budget, where each training
# stage ran, each stage's seconds and predict's seconds per study. Run from the repository root:
#   bash bench/gpu_check.sh [--studies 60] [--set stage.key=value ...]
# PYTHON picks the interpreter (default .venv/bin/python); WORK the working folder; LOG the log file.
# Nothing is downloaded.
set -euo pipefail
PYTHON=${PYTHON:-.venv/bin/python}
WORK=${WORK:-/tmp/lumbar-gpu-check}
LOG=${LOG:-$WORK.log}
export PYTHONPATH=${PYTHONPATH:-}:$(pwd)
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
"$PYTHON" - <<'PY'
import os
import torch
assert torch.cuda.is_available(), "no CUDA device: this check is for a GPU machine"
print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__, "| bf16:", torch.cuda.is_bf16_supported(), "| cpus:", os.cpu_count())
PY
"$PYTHON" bench/predict_speed.py --models realistic --studies 3 2>&1 | tee "$LOG.speed"
# A GPU budget: nnU-Net (the slowest learner on the CPU) gets 2x the CPU benchmark's iterations.
"$PYTHON" bench/quality.py --run "$WORK/quality" \
  --set nnunet-train.epochs=20 --set nnunet-train.iterations=150 --set nnunet-train.val_iterations=10 \
  --set vertebra-train.epochs=20 "$@" 2>&1 | tee "$LOG"
"$PYTHON" - "$WORK/quality/run" <<'PY'
import json, sys
from lumbar_core.manifest import StageInput
run = sys.argv[1]
for stage in ("vertebra-train", "nnunet-train", "densenet-train", "crop-train"):
    print(stage, "device:", StageInput.open(run, stage).manifest.metrics.get("device"))
for family, info in StageInput.open(run, "nnunet-train").read_json("training.json")["families"].items():
    last = info["pseudo_dice"][-1] if info["pseudo_dice"] else {}
    print(f"nnU-Net {family}: tau {info['tau']} floor {info.get('floor')} on {info['tau_regions']} regions; last pseudo Dice", json.dumps(last))
print("predict seconds/study:", json.dumps(StageInput.open(run, "predict").read_json("timing.json")["seconds_per_study"]))
PY
