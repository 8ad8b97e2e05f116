"""Calibrated probabilities: model evidence combined with the prior, its weight fitted on held-out data.

A model's output is turned into a likelihood ratio per severity (its "evidence"): a softmax divided
by the class frequencies the model was trained on (nnU-Net: the severities of each level's regions in
the balanced cases; the DenseNet: the (1, 2, 4) loss weights times the prior). The prediction is
``prior x evidence ** tau``, normalised. ``tau`` is fitted on held-out cases by the competition's
(1, 2, 4)-weighted log loss: an untrained model gets tau near 0 (the prior), a good one near 1.
"""

from __future__ import annotations

import numpy as np

from lumbar_core import vocab

TAU_GRID = tuple(round(t, 2) for t in np.arange(0.0, 1.51, 0.1))


def combine_with_prior(prior: np.ndarray, evidence: np.ndarray, tau: float) -> np.ndarray:
    """The prior times evidence ** tau, normalised along the last axis (shapes (..., 3))."""
    q = np.asarray(prior, dtype=float) * np.power(np.clip(np.asarray(evidence, dtype=float), 1e-6, None), tau)
    return q / q.sum(axis=-1, keepdims=True)


def training_frequencies(classes, *, pseudo_count: float = 1.0) -> dict[tuple[str, str], np.ndarray]:
    """Per (family, level), the severity frequencies among the regions nnU-Net trained on.

    ``classes`` is balance's ``classes.parquet`` (family, level, severity, balanced = case copies
    holding that class); absent classes get ``pseudo_count`` so no frequency is 0.
    """
    out: dict[tuple[str, str], np.ndarray] = {}
    for (family, level), group in classes.groupby(["family", "level"]):
        counts = np.full(len(vocab.SEVERITY_COLUMNS), pseudo_count, dtype=float)
        for row in group.itertuples():
            counts[int(row.severity)] += float(row.balanced)
        out[(str(family), str(level))] = counts / counts.sum()
    return out


def weighted_loss(probs: np.ndarray, truth: np.ndarray) -> float:
    """(1, 2, 4)-weighted log loss of (n, 3) probabilities."""
    weights = np.asarray(vocab.SEVERITY_WEIGHTS)[truth]
    p = np.clip(probs[np.arange(len(truth)), truth], 1e-15, 1)
    return float(np.sum(weights * -np.log(p)) / np.sum(weights))


def fit_tau(
    priors: np.ndarray, evidence: np.ndarray, truth: np.ndarray, grid: tuple[float, ...] = TAU_GRID, pseudo_count: float = 20.0
) -> tuple[float, dict[str, float]]:
    """The weight of the evidence fitted on held-out (prior, evidence, truth), and the loss of every grid value.

    The tau of ``grid`` with the lowest weighted log loss (after the (1, 2, 4) reweighting a
    submission gets) is shrunk toward 0 by ``n / (n + pseudo_count)``: a handful of held-out cases
    cannot earn a model full trust. With no held-out case, tau is 0 (the prior).
    """
    truth = np.asarray(truth, dtype=int)
    if len(truth) == 0:
        return 0.0, {}
    w = np.asarray(vocab.SEVERITY_WEIGHTS)
    losses = {}
    for tau in grid:
        q = combine_with_prior(priors, evidence, tau) * w
        losses[f"{tau:.1f}"] = weighted_loss(q / q.sum(axis=1, keepdims=True), truth)
    best = float(min(losses, key=losses.get))
    return round(best * len(truth) / (len(truth) + pseudo_count), 3), losses
