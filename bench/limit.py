"""The physical limit on a phantom's studies: the score of a predictor that knows each latent degree.

Scores, on the validation studies of a run (or on every training study of the phantom), the
predictor that knows each target's latent degree and the readers' noise model
(:mod:`lumbar_core.synthetic.limit`), beside the (1,2,4)-reweighted prior of those studies and,
given a run, the run's model; prints the share of the prior-to-limit gap the model closed.

    .venv/bin/python bench/limit.py --data PHANTOM [--run RUN]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from lumbar_core import labels as labels_mod
from lumbar_core.manifest import StageInput
from lumbar_core.prior import prior_from_json, prior_submission
from lumbar_core.score import TERMS, score
from lumbar_core.synthetic.limit import limit_submission, noise_of


def limits(data: Path, run: str | None) -> dict[str, dict[str, float]]:
    """Per predictor (``limit``, ``prior`` and, given a run, ``model``): its score terms on the same studies."""
    labels = labels_mod.from_wide(pd.read_csv(data / "train.csv"), source=str(data / "train.csv"))
    if run:
        studies = StageInput.open(run, "ingest-validation").params["studies"]
        prior = prior_from_json(StageInput.open(run, "bundle").read_json("prior.json"))
    else:
        studies = sorted(labels["study_id"].unique())
        prior = prior_from_json(_train_prior(labels))
    labels = labels[labels["study_id"].isin(studies)]
    out = {
        "limit": score(labels, limit_submission(data, studies, noise_of(data))).terms(),
        "prior": score(labels, prior_submission(studies, prior, reweighted=True)).terms(),
    }
    if run:
        submission = pd.read_csv(f"{run}/score/submission.csv")
        out["model"] = score(labels, submission).terms()
    return out


def _train_prior(labels: pd.DataFrame) -> dict[str, list[float]]:
    out = {}
    for (condition, level), rows in labels.groupby(["condition", "level"]):
        counts = rows["severity"].value_counts().reindex([0, 1, 2], fill_value=0).to_numpy() + 1.0
        out[f"{condition}|{level}"] = (counts / counts.sum()).tolist()
    return out


def gap_closed(model: float, prior: float, limit: float) -> float:
    """The share of the prior-to-limit gap a model's score closed."""
    return (prior - model) / (prior - limit) if prior != limit else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True, help="the phantom (with its truth/)")
    parser.add_argument("--run", help="a training run: its validation studies and its model")
    args = parser.parse_args()
    table = limits(Path(args.data), args.run)
    names = list(table)
    print(f"{'term':<20}" + "".join(f"{n:>9}" for n in names) + ("  gap closed" if "model" in table else ""))
    for term in (*TERMS, "score"):
        line = f"{term:<20}" + "".join(f"{table[n][term]:>9.4f}" for n in names)
        if "model" in table:
            line += f"{100 * gap_closed(table['model'][term], table['prior'][term], table['limit'][term]):>11.1f}%"
        print(line)


if __name__ == "__main__":
    main()
