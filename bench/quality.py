"""Quality on the phantom: the pipeline's validation score against the (1,2,4)-reweighted prior.

A phantom with a fixed seed, the tiny image profile with longer training (about 20-30 minutes on a
2-core CPU), the validation split of `lumbar run`; prints each term for the model, the prior and the
physical limit (:mod:`lumbar_core.synthetic.limit`), the relative improvement and the share of the
prior-to-limit gap closed, then each kind of model's score alone.

    .venv/bin/python bench/quality.py [--studies 240] [--run runs/quality] [--set stage.key=value ...]

``--set`` overrides the longer-training settings below (bench/gpu_check.sh uses it for a GPU budget).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from lumbar_core import pipeline
from lumbar_core.score import TERMS
from lumbar_core.synthetic import generate, get_profile
from lumbar_core.synthetic.limit import gap_closed, scores_beside_limit

# nnU-Net keeps the tiny profile's iterations: at the lengths a CPU affords (8 x 125 per family took
# about 20 of the 30 minutes) calibrate gives it weight 0, so its minutes go to the models that learn.
LONGER = {
    "vertebra-train.epochs": "12",
    "densenet-train.epochs": "25",
    "crop-train.epochs": "15",
    "level-train.epochs": "10",
    "run.validation_fraction": "0.25",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", type=int, default=240)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--run", default="runs/quality")
    parser.add_argument("--set", action="append", default=[], metavar="STAGE.KEY=VALUE", help="override a setting")
    args = parser.parse_args()
    overrides = dict(LONGER)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set {item!r}: expected STAGE.KEY=VALUE")
        overrides[key] = value
    data = Path(args.run) / "data"
    started = time.perf_counter()
    if not (data / "train.csv").exists():
        generate(data, studies=args.studies, profile=get_profile("tiny"), seed=args.seed, spider_cases=12)
    profile = pipeline.apply_overrides(pipeline.load_profile("tiny"), overrides)
    metrics = pipeline.run_inline(str(data), str(Path(args.run) / "run"), profile)
    minutes = (time.perf_counter() - started) / 60
    table = scores_beside_limit(data, str(Path(args.run) / "run"))
    print(f"\nquality on {metrics['studies']} validation studies ({args.studies} phantom studies, seed {args.seed}; {minutes:.1f} min)")
    print(f"{'term':<20}{'model':>9}{'prior':>9}{'limit':>9}{'change':>9}{'gap closed':>12}")
    for term in (*TERMS, "score"):
        model, prior, limit = (table[k][term] for k in ("model", "prior", "limit"))
        closed = 100 * gap_closed(model, prior, limit)
        print(f"{term:<20}{model:>9.4f}{prior:>9.4f}{limit:>9.4f}{100 * (model / prior - 1):>8.1f}%{closed:>11.1f}%")
    for kind, terms in metrics.get("alone", {}).items():
        print(f"{kind + ' alone':<20}{terms['score']:>9.4f}")


if __name__ == "__main__":
    main()
