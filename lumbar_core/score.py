"""The competition score: mean of four sample-weighted log losses (lower is better).

1-3. the spinal, foraminal and subarticular rows, each row weighted 1, 2 or 4 by its TRUE class;
4. ``any_severe_spinal``: one binary sample per study, truth = any spinal level Severe,
   prediction = the largest raw ``severe`` probability over the study's spinal rows, weight = the
   largest row weight among them.

Rows without truth are dropped (also from the any-severe maximum). Probabilities are clipped to
[eps, 1 - eps] and rows renormalised before the three row losses, as the competition's metric did.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from lumbar_core import vocab
from lumbar_core.submission import SubmissionError, validate_submission

EPS = 1e-15
TERMS = ("spinal", "foraminal", "subarticular", "any_severe_spinal")


@dataclass(frozen=True)
class ScoreTable:
    """The four terms, their mean and how many samples each term had."""

    spinal: float
    foraminal: float
    subarticular: float
    any_severe_spinal: float
    score: float
    counts: dict[str, int]

    def terms(self) -> dict[str, float]:
        """The four terms and the score, as the ``--json`` contract prints them."""
        out = asdict(self)
        out.pop("counts")
        return out

    def format(self) -> str:
        """A plain-text table."""
        lines = [f"{'term':<20}{'loss':>9}{'samples':>10}"]
        for term in TERMS:
            lines.append(f"{term:<20}{getattr(self, term):>9.4f}{self.counts[term]:>10d}")
        lines.append(f"{'score':<20}{self.score:>9.4f}")
        return "\n".join(lines)


def weighted_log_loss(true_class: np.ndarray, probs: np.ndarray, *, eps: float = EPS) -> float:
    """Log loss of (n, k) probabilities, each sample weighted by its true class (1, 2, 4)."""
    if len(true_class) == 0:
        return float("nan")
    p = np.clip(np.asarray(probs, dtype=float), eps, 1 - eps)
    p = p / p.sum(axis=1, keepdims=True)
    weights = np.asarray(vocab.SEVERITY_WEIGHTS)[true_class]
    return float(np.sum(weights * -np.log(p[np.arange(len(true_class)), true_class])) / np.sum(weights))


def binary_log_loss(truth: np.ndarray, p: np.ndarray, weights: np.ndarray, *, eps: float = EPS) -> float:
    """Weighted binary log loss of probabilities ``p`` for 0/1 ``truth``."""
    if len(truth) == 0:
        return float("nan")
    p = np.clip(np.asarray(p, dtype=float), eps, 1 - eps)
    losses = -(truth * np.log(p) + (1 - truth) * np.log(1 - p))
    return float(np.sum(weights * losses) / np.sum(weights))


def score(labels: pd.DataFrame, submission: pd.DataFrame, *, eps: float = EPS, validate: bool = True) -> ScoreTable:
    """Score a submission against long labels (see :mod:`lumbar_core.labels`).

    Args:
        labels: long labels (``row_id``, ``group``, ``study_id``, ``severity``).
        submission: ``row_id, normal_mild, moderate, severe``.
        eps: clipping of probabilities.
        validate: check the submission's format first (25 rows per study and so on).

    Raises:
        SubmissionError: a format error, or labelled rows the submission does not predict.
    """
    if validate:
        validate_submission(submission)
    sub = submission.set_index(submission["row_id"].astype(str))
    missing = labels.loc[~labels["row_id"].isin(sub.index), "row_id"]
    if len(missing):
        shown = ", ".join(missing.tolist()[:10])
        raise SubmissionError(f"the submission does not predict {len(missing)} labelled rows: {shown}")
    probs_raw = sub.loc[labels["row_id"], list(vocab.SEVERITY_COLUMNS)].to_numpy(dtype=float)
    truth = labels["severity"].to_numpy(dtype=int)
    groups = labels["group"].to_numpy()
    terms: dict[str, float] = {}
    counts: dict[str, int] = {}
    for group in vocab.GROUPS:
        mask = groups == group
        terms[group] = weighted_log_loss(truth[mask], probs_raw[mask], eps=eps)
        counts[group] = int(mask.sum())
    spinal = labels[groups == "spinal"].assign(
        pred_severe=probs_raw[groups == "spinal", 2],
        is_severe=(truth[groups == "spinal"] == 2).astype(float),
        weight=np.asarray(vocab.SEVERITY_WEIGHTS)[truth[groups == "spinal"]],
    )
    per_study = spinal.groupby("study_id").agg(y=("is_severe", "max"), p=("pred_severe", "max"), w=("weight", "max"))
    terms["any_severe_spinal"] = binary_log_loss(per_study["y"].to_numpy(), per_study["p"].to_numpy(), per_study["w"].to_numpy(), eps=eps)
    counts["any_severe_spinal"] = len(per_study)
    values = [terms[t] for t in TERMS if not np.isnan(terms[t])]
    total = float(np.mean(values)) if values else float("nan")
    return ScoreTable(**terms, score=total, counts=counts)
