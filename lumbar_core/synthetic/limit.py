"""The physical limit on a phantom: the score of a predictor that knows each target's latent degree.

A phantom's label is its reader's grade of a noisy copy of the latent score (:mod:`.grades`): the
latent ``z`` plus Gaussian noise of ``label_noise_sd``, rescaled to unit variance, cut at the real
prevalence, and clipped to one grade from the true one. Knowing ``z`` (from the degree in
``truth/studies/*.json``) and that noise model gives each label's exact distribution; no model that
sees only the images can beat that distribution on average. Its score on a set of studies is the
floor for any model's score there, and (prior - model) / (prior - limit) is the share of the
attainable gain a model has closed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from scipy.special import ndtri
from scipy.stats import norm

from lumbar_core import labels as labels_mod
from lumbar_core import vocab
from lumbar_core.prevalence import REAL_PREVALENCE
from lumbar_core.submission import make_submission


def u_of_degree(degree: float, p: tuple[float, float, float]) -> float:
    """The CDF value a degree was made from (the inverse of :func:`.grades.degree_from_u`)."""
    c0, c1 = p[0], p[0] + p[1]
    if degree < 1 / 3:
        return degree * 3 * c0
    if degree < 2 / 3:
        return c0 + (degree - 1 / 3) * 3 * p[1]
    return c1 + (degree - 2 / 3) * 3 * p[2]


def label_distribution(degree: float, prevalence: tuple[float, float, float], noise_sd: float) -> np.ndarray:
    """P(label = Normal/Mild, Moderate, Severe) of a target with this latent degree, under the reader-noise model."""
    eps = 1e-9
    z = float(ndtri(np.clip(u_of_degree(degree, prevalence), eps, 1 - eps)))
    grade = 0 if degree < 1 / 3 else 1 if degree < 2 / 3 else 2
    if noise_sd <= 0:
        out = np.zeros(3)
        out[grade] = 1.0
        return out
    s = np.sqrt(1 + noise_sd**2)
    mean, sd = z / s, noise_sd / s
    cuts = ndtri(np.clip([prevalence[0], prevalence[0] + prevalence[1]], eps, 1 - eps))
    below = norm.cdf((cuts - mean) / sd)
    read = np.array([below[0], below[1] - below[0], 1 - below[1]])
    if grade == 0:  # a reader is at most one grade off
        read = np.array([read[0], read[1] + read[2], 0.0])
    elif grade == 2:
        read = np.array([0.0, read[0] + read[1], read[2]])
    return read / read.sum()


def limit_submission(phantom: Path, studies: Iterable[int], noise_sd: float):
    """The limit predictor's submission ((1, 2, 4)-reweighted, as the pipeline's) for ``studies`` of a phantom."""
    row_ids, probs = [], []
    for study in sorted(set(int(s) for s in studies)):
        truth = json.loads((Path(phantom) / "truth" / "studies" / f"{study}.json").read_text())
        for target in truth["targets"]:
            condition, level = target["condition"], target["level"]
            row_ids.append(vocab.row_id(study, condition, level))
            probs.append(label_distribution(float(target["degree"]), REAL_PREVALENCE[(condition, level)], noise_sd))
    return make_submission(row_ids, np.array(probs), reweighted=True)


def noise_of(phantom: Path) -> float:
    """The reader noise a phantom was generated with (``truth/phantom.json``)."""
    summary = json.loads((Path(phantom) / "truth" / "phantom.json").read_text())
    return float(summary["profile"]["label_noise_sd"])


def scores_beside_limit(data: Path, run: str | None = None) -> dict[str, dict[str, float]]:
    """Score terms of ``limit``, ``prior`` and (given a training run) ``model`` on the same studies.

    With a run: its validation studies, its bundle's prior and its submission; without: every
    training study of the phantom and the prior of their labels (:func:`lumbar_core.prior.prior_table`).
    """
    import pandas as pd

    from lumbar_core.manifest import StageInput
    from lumbar_core.prior import prior_from_json, prior_submission, prior_table
    from lumbar_core.score import score

    data = Path(data)
    labels = labels_mod.from_wide(pd.read_csv(data / "train.csv"), source=str(data / "train.csv"))
    if run:
        from lumbar_core.ingested import IngestedData

        studies = sorted(int(s) for s in IngestedData.open(run, "ingest-validation").index["study_id"].unique())
        prior = prior_from_json(StageInput.open(run, "bundle").read_json("prior.json"))
    else:
        studies = sorted(labels["study_id"].unique())
        prior = prior_table(labels)
    labels = labels[labels["study_id"].isin(studies)]
    out = {
        "limit": score(labels, limit_submission(data, studies, noise_of(data))).terms(),
        "prior": score(labels, prior_submission(studies, prior, reweighted=True)).terms(),
    }
    if run:
        from lumbar_core import store

        out["model"] = score(labels, pd.read_csv(store.bytes_io(store.join(run, "score", "submission.csv")))).terms()
    return out


def gap_closed(model: float, prior: float, limit: float) -> float:
    """The share of the prior-to-limit gap a model's score closed."""
    return (prior - model) / (prior - limit) if prior != limit else float("nan")
