"""Submissions in the Kaggle format: validation, normalisation, (1, 2, 4) reweighting, writing.

A submission has the columns ``row_id, normal_mild, moderate, severe`` and 25 rows per study
(``{study_id}_{condition}_{level}``); each row is a probability distribution over severities.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from lumbar_core import store, vocab
from lumbar_core.errors import UserError

COLUMNS = ["row_id", *vocab.SEVERITY_COLUMNS]


class SubmissionError(UserError):
    """A submission that breaks the format; the message names the offending row_ids."""


def _names(values: Iterable[object], limit: int = 10) -> str:
    values = list(values)
    shown = ", ".join(map(str, values[:limit]))
    return shown + (f" ... ({len(values)} in all)" if len(values) > limit else "")


def validate_submission(sub: pd.DataFrame, *, study_ids: Iterable[int] | None = None) -> None:
    """Check a submission's format; raise :class:`SubmissionError` naming the rows at fault.

    Checks: exactly the four columns; row ids of known conditions and levels; no duplicates;
    finite, non-negative probabilities with a positive sum; all 25 rows of every study present;
    if ``study_ids`` is given, every one of those studies present.
    """
    if list(sub.columns) != COLUMNS:
        missing = [c for c in COLUMNS if c not in sub.columns]
        extra = [c for c in sub.columns if c not in COLUMNS]
        if missing or extra:
            raise SubmissionError(f"columns must be {', '.join(COLUMNS)}; missing: {missing}, unexpected: {extra}")
    rids = sub["row_id"].astype(str)
    bad = []
    targets = []
    for rid in rids:
        try:
            targets.append(vocab.parse_row_id(rid))
        except vocab.VocabularyError:
            bad.append(rid)
    if bad:
        raise SubmissionError(f"row_ids not of the form {{study_id}}_{{condition}}_{{level}}: {_names(bad)}")
    dup = rids[rids.duplicated()]
    if len(dup):
        raise SubmissionError(f"duplicate row_ids: {_names(dup.unique())}")
    probs = sub[list(vocab.SEVERITY_COLUMNS)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    nonfinite = ~np.isfinite(probs).all(axis=1)
    if nonfinite.any():
        raise SubmissionError(f"non-numeric or non-finite probabilities in rows: {_names(rids[nonfinite])}")
    negative = (probs < 0).any(axis=1)
    if negative.any():
        raise SubmissionError(f"negative probabilities in rows: {_names(rids[negative])}")
    zero = probs.sum(axis=1) <= 0
    if zero.any():
        raise SubmissionError(f"rows whose probabilities sum to 0: {_names(rids[zero])}")
    studies = {t.study_id for t in targets}
    if study_ids is not None:
        absent = sorted(set(int(s) for s in study_ids) - studies)
        if absent:
            raise SubmissionError(f"studies with no rows: {_names(absent)}")
    present = set(rids)
    missing_rows = [t.row_id for s in sorted(studies) for t in vocab.study_targets(s) if t.row_id not in present]
    if missing_rows:
        raise SubmissionError(f"missing rows (every study needs all 25): {_names(missing_rows)}")


def normalise(probs: np.ndarray) -> np.ndarray:
    """Rows scaled to sum to 1. ``probs``: (n, 3), non-negative with positive row sums."""
    probs = np.asarray(probs, dtype=float)
    return probs / probs.sum(axis=1, keepdims=True)


def reweight(probs: np.ndarray, weights: Sequence[float] = vocab.SEVERITY_WEIGHTS) -> np.ndarray:
    """The loss-optimal submission for posterior ``probs`` under the (1, 2, 4)-weighted log loss.

    Under a log loss whose sample weight depends on the true class, the expected loss is smallest
    for q proportional to ``weights * P`` (docs/calibration.md), renormalised.
    """
    return normalise(np.asarray(probs, dtype=float) * np.asarray(weights, dtype=float)[None, :])


def make_submission(row_ids: Sequence[str], probs: np.ndarray, *, reweighted: bool = False) -> pd.DataFrame:
    """A submission table from row ids and (n, 3) probabilities, rows normalised and sorted."""
    probs = np.asarray(probs, dtype=float)
    if probs.shape != (len(row_ids), 3):
        raise SubmissionError(f"probabilities of shape {probs.shape} for {len(row_ids)} row_ids; need ({len(row_ids)}, 3)")
    probs = reweight(probs) if reweighted else normalise(probs)
    sub = pd.DataFrame(probs, columns=list(vocab.SEVERITY_COLUMNS))
    sub.insert(0, "row_id", [str(r) for r in row_ids])
    return sub.sort_values("row_id").reset_index(drop=True)


def write_submission(sub: pd.DataFrame, uri: str, *, study_ids: Iterable[int] | None = None) -> None:
    """Validate, then write a submission CSV to a store URI atomically."""
    validate_submission(sub, study_ids=study_ids)
    store.write_text(uri, sub.to_csv(index=False, float_format="%.6g"))


def read_submission(uri: str) -> pd.DataFrame:
    """Read a submission CSV from a store URI (not validated)."""
    return pd.read_csv(store.bytes_io(uri), dtype={"row_id": str})
