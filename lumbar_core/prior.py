"""The per condition x level prior: the baseline every model must beat and the fallback for gaps.

Estimated from training labels (add-``alpha`` smoothed, so no class gets probability 0) or, with
no labels at hand, the real dataset's prevalence (:mod:`lumbar_core.prevalence`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from lumbar_core import vocab
from lumbar_core.prevalence import REAL_PREVALENCE
from lumbar_core.submission import make_submission

PriorTable = dict[tuple[str, str], np.ndarray]


def prior_table(labels: pd.DataFrame | None, *, alpha: float = 0.5) -> PriorTable:
    """(condition, level) -> severity distribution (3,), from long labels or the real prevalence."""
    if labels is None or labels.empty:
        return {key: np.asarray(p, dtype=float) for key, p in REAL_PREVALENCE.items()}
    counts = labels.groupby(["condition", "level"])["severity"].value_counts().unstack(fill_value=0)
    counts = counts.reindex(columns=range(3), fill_value=0)
    table = {}
    for condition in vocab.CONDITIONS:
        for level in vocab.LEVELS:
            c = counts.loc[(condition, level)].to_numpy(dtype=float) if (condition, level) in counts.index else np.zeros(3)
            table[(condition, level)] = (c + alpha) / (c.sum() + 3 * alpha)
    return table


def prior_submission(study_ids: Iterable[int], table: PriorTable, *, reweighted: bool = True) -> pd.DataFrame:
    """A submission predicting the prior for every target of the given studies."""
    targets = [t for s in sorted(set(int(s) for s in study_ids)) for t in vocab.study_targets(s)]
    probs = np.stack([table[(t.condition, t.level)] for t in targets]) if targets else np.zeros((0, 3))
    return make_submission([t.row_id for t in targets], probs, reweighted=reweighted)


def prior_from_json(data: dict[str, list[float]]) -> PriorTable:
    """The table written as ``{"condition|level": [p0, p1, p2]}`` (balance's ``prior.json``)."""
    out = {}
    for key, probs in data.items():
        condition, level = key.split("|")
        out[(condition, level)] = np.asarray(probs, dtype=float)
    return out
