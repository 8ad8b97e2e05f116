"""The physical limit on a phantom's studies: the score of a predictor that knows each latent degree.

Scores, on the validation studies of a run (or on every training study of the phantom), the
predictor that knows each target's latent degree and the readers' noise model
(:mod:`lumbar_core.synthetic.limit`), beside the (1,2,4)-reweighted prior of those studies and,
given a run, the run's model; prints the share of the prior-to-limit gap the model closed.

The any_severe_spinal term is derived by the score from the per-level spinal probabilities, so the
per-target limit does not bound it: a model can do better there.

    .venv/bin/python bench/limit.py --data PHANTOM [--run RUN]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lumbar_core.score import TERMS
from lumbar_core.synthetic.limit import gap_closed, scores_beside_limit


def print_table(table: dict[str, dict[str, float]]) -> None:
    """One line per term: each predictor's score and, with a model, the share of the gap it closed."""
    names = list(table)
    print(f"{'term':<20}" + "".join(f"{n:>9}" for n in names) + ("  gap closed" if "model" in table else ""))
    for term in (*TERMS, "score"):
        line = f"{term:<20}" + "".join(f"{table[n][term]:>9.4f}" for n in names)
        if "model" in table:
            line += f"{100 * gap_closed(table['model'][term], table['prior'][term], table['limit'][term]):>11.1f}%"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True, help="the phantom (with its truth/)")
    parser.add_argument("--run", help="a training run: its validation studies and its model")
    args = parser.parse_args()
    print_table(scores_beside_limit(Path(args.data), args.run))


if __name__ == "__main__":
    main()
