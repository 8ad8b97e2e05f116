"""Generalisation across a scanner shift: the SPIDER export from one scanner style, the RSNA-layout studies from another.

Generates a phantom whose SPIDER export (what the vertebra U-Net trains on) and RSNA-layout studies
(what everything else trains and is scored on) come from different scanner populations, runs the
tiny profile inline and prints the score against the prior per term and, for the validation
studies, how many labelled levels each source of levels put within 5 mm and at the right level.
Targets (issue "generalisation"): at least 90% of the validation levels within 5 mm and at the right
level, a score at least 15% better than the prior, no term worse than the prior's by more than 2%.

    .venv/bin/python bench/domain_shift.py [--studies 64] [--style philips-3t] [--spider-style siemens-1.5t]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from lumbar_core import pipeline
from lumbar_core.manifest import StageInput
from lumbar_core.score import TERMS
from lumbar_core.synthetic import generate, get_profile


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", type=int, default=64)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--style", default="philips-3t", help="scanner style of the RSNA-layout studies")
    parser.add_argument("--spider-style", default="siemens-1.5t", help="scanner style of the SPIDER export")
    parser.add_argument("--run", default="runs/domain-shift")
    args = parser.parse_args()
    root = Path(args.run) / f"{args.style}--{args.spider_style}"
    data, run = root / "data", str(root / "run")
    started = time.perf_counter()
    if not (data / "train.csv").exists():
        profile = get_profile("tiny").with_overrides({"style": args.style, "spider_style": args.spider_style})
        generate(data, studies=args.studies, test_studies=0, profile=profile, seed=args.seed)
    metrics = pipeline.run_inline(str(data), run, pipeline.load_profile("tiny"), log=lambda _: None)
    minutes = (time.perf_counter() - started) / 60
    prior = metrics["prior"]
    print(f"\nRSNA-layout studies {args.style}, SPIDER export {args.spider_style}: {args.studies} studies, seed {args.seed}")
    print(f"{minutes:.1f} minutes (phantom and pipeline)")
    print(f"{'term':<20}{'model':>9}{'prior':>9}{'change':>9}")
    for term in (*TERMS, "score"):
        print(f"{term:<20}{metrics[term]:>9.4f}{prior[term]:>9.4f}{100 * (metrics[term] / prior[term] - 1):>8.1f}%")
    print("levels on the validation studies (share of labelled spinal canal points):")
    for source, shares in metrics.get("localisation", {}).items():
        print(f"  {source:<10} within 5 mm {100 * shares['share_within_5mm']:.0f}%, right level {100 * shares['share_right_level']:.0f}%")
    held = StageInput.open(run, "calibrate").read_json("calibration.json")
    print(f"on the {len(held['studies'])} held-out training studies (calibrate):")
    for source, shares in held["localisation"].items():
        print(
            f"  {source:<10} within 5 mm {100 * shares['share_within_5mm']:.0f}%, right level {100 * shares['share_right_level']:.0f}%, "
            f"dropped {100 * shares['share_dropped']:.0f}%"
        )
    print("weights: " + ", ".join(f"{m} tau {c['tau']:.2f} ({c['readings']} readings)" for m, c in held["models"].items()))


if __name__ == "__main__":
    main()
