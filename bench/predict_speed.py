"""Seconds per study for predict on realistic-profile images (384 px), on this machine's CPU, by step.

Trains quick models on a tiny phantom (their quality does not matter here; they resample inputs to
their own spacing), ingests a realistic phantom as a second set of studies and times predict.
The competition allowed about 45 s per study on one GPU.

    .venv/bin/python bench/predict_speed.py [--studies 3]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from lumbar_core import pipeline
from lumbar_core.manifest import StageInput
from lumbar_core.stages import ingest, predict
from lumbar_core.synthetic import generate, get_profile

QUICK = {
    "vertebra-train.epochs": "4",
    "nnunet-train.epochs": "2",
    "nnunet-train.iterations": "5",
    "nnunet-train.val_iterations": "2",
    "densenet-train.epochs": "2",
    "crop-train.epochs": "2",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tiny, real, run = Path(tmp) / "tiny", Path(tmp) / "realistic", str(Path(tmp) / "run")
        generate(tiny, studies=12, profile=get_profile("tiny"), seed=1)
        generate(real, studies=args.studies, profile=get_profile("realistic").with_overrides({"spider_cases": "0"}), seed=2)
        pipeline.run_inline(str(tiny), run, pipeline.apply_overrides(pipeline.load_profile("tiny"), dict(QUICK)), log=lambda _: None)
        ingest.run(data_uri=str(real), run_uri=run, params=ingest.IngestParams(name="ingest-realistic"))
        predict.run(run_uri=run, params=predict.PredictParams(ingest_stage="ingest-realistic"))
        timing = StageInput.open(run, "predict").read_json("timing.json")
    per_step = timing["seconds_per_study"]
    print(f"predict on {timing['studies']} realistic studies (384 px sagittal, 320 px axial), CPU:")
    for step in ("decode", "levels", "nnunet", "densenet", "crop"):
        print(f"  {step:<13}{per_step.get(step, 0.0):7.2f} s/study")
    print(f"  {'total':<13}{sum(per_step.values()):7.2f} s/study   (competition budget: about 45 s/study on one GPU)")


if __name__ == "__main__":
    main()
