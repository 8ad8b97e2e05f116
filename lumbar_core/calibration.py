"""Calibrated probabilities: model evidence combined with the prior, its weight fitted on held-out data.

A model's output is turned into a likelihood ratio per severity (its "evidence"): a softmax divided
by the class frequencies the model was trained on (nnU-Net: the severities of each level's regions
as its class-balanced sampling drew them; the DenseNet: the (1, 2, 4) loss weights times the
prior). The prediction is ``prior x evidence ** tau``, normalised. Before the division the softmax
gets a ``floor``: a model that is sure and wrong (a Severe region read as Normal) would otherwise
leave the truth almost no probability, which the log loss punishes hardest. ``tau`` and ``floor``
are fitted on held-out cases by the competition's (1, 2, 4)-weighted log loss: an untrained model
gets tau near 0 (the prior), a good one near 1.
"""

from __future__ import annotations

import numpy as np

from lumbar_core import vocab
from lumbar_core.classes import level_classes

TAU_GRID = tuple(round(t, 2) for t in np.arange(0.0, 1.51, 0.1))
FLOOR_GRID = (0.0, 0.02, 0.05, 0.1, 0.2)


def evidence(dist: np.ndarray, denominator: np.ndarray | float, floor: float = 0.0) -> np.ndarray:
    """A model's severity distribution as evidence: ``(dist + floor) / denominator``."""
    return (np.asarray(dist, dtype=float) + floor) / denominator


def combine_with_prior(prior: np.ndarray, evidence: np.ndarray, tau: float) -> np.ndarray:
    """The prior times evidence ** tau, normalised along the last axis (shapes (..., 3))."""
    q = np.asarray(prior, dtype=float) * np.power(np.clip(np.asarray(evidence, dtype=float), 1e-6, None), tau)
    return q / q.sum(axis=-1, keepdims=True)


def level_frequencies(class_counts: dict[int, int], *, pseudo_count: float = 1.0) -> dict[str, np.ndarray]:
    """Per level, the severity frequencies of nnU-Net's classes as its training sampled them.

    ``class_counts`` maps class (:func:`lumbar_core.classes.class_of`) to how often training drew a case
    holding it; absent classes get ``pseudo_count`` so no frequency is 0.
    """
    out: dict[str, np.ndarray] = {}
    for level in vocab.LEVELS:
        counts = np.array([class_counts.get(c, 0) + pseudo_count for c in level_classes(level)], dtype=float)
        out[level] = counts / counts.sum()
    return out


def weighted_loss(probs: np.ndarray, truth: np.ndarray) -> float:
    """(1, 2, 4)-weighted log loss of (n, 3) probabilities."""
    weights = np.asarray(vocab.SEVERITY_WEIGHTS)[truth]
    p = np.clip(probs[np.arange(len(truth)), truth], 1e-15, 1)
    return float(np.sum(weights * -np.log(p)) / np.sum(weights))


def _sample_losses(probs: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Each held-out sample's weighted log loss, scaled so that their mean is :func:`weighted_loss`."""
    weights = np.asarray(vocab.SEVERITY_WEIGHTS)[truth]
    p = np.clip(probs[np.arange(len(truth)), truth], 1e-15, 1)
    return weights * -np.log(p) / weights.mean()


def fit_tau(
    priors: np.ndarray,
    dists: np.ndarray,
    truth: np.ndarray,
    *,
    denominators: np.ndarray | float = 1.0,
    grid: tuple[float, ...] = TAU_GRID,
    floors: tuple[float, ...] = FLOOR_GRID,
    pseudo_count: float = 20.0,
) -> tuple[float, float, dict[str, float]]:
    """The weight and floor of a model's evidence fitted on held-out data: (tau, floor, loss per tau).

    ``dists`` are the model's severity distributions and ``denominators`` what turns them into
    evidence (see :func:`evidence`). Every (tau, floor) of the grids is scored by the weighted log
    loss after the (1, 2, 4) reweighting a submission gets. Of the taus at the best floor, the
    smallest whose loss is within one standard error of the best one's is taken (the difference
    counted sample by sample: a gain the held-out data cannot tell from noise earns no weight), and
    shrunk toward 0 by ``n / (n + pseudo_count)`` (a handful of held-out cases cannot earn a model
    full trust). The losses returned are those of each tau at the chosen floor. With no held-out
    case: (0, 0, {}).
    """
    truth = np.asarray(truth, dtype=int)
    if len(truth) == 0:
        return 0.0, 0.0, {}
    w = np.asarray(vocab.SEVERITY_WEIGHTS)
    samples: dict[float, dict[float, np.ndarray]] = {}
    for floor in floors:
        ev = evidence(dists, denominators, floor)
        samples[floor] = {}
        for tau in grid:
            q = combine_with_prior(priors, ev, tau) * w
            samples[floor][tau] = _sample_losses(q / q.sum(axis=1, keepdims=True), truth)
    floor = min(samples, key=lambda f: min(x.mean() for x in samples[f].values()))
    per_tau = samples[floor]
    best = min(per_tau, key=lambda t: per_tau[t].mean())
    chosen = best
    for tau in sorted(t for t in per_tau if t < best):
        difference = per_tau[tau] - per_tau[best]
        if difference.mean() <= difference.std(ddof=1) / np.sqrt(len(truth)) if len(truth) > 1 else True:
            chosen = tau
            break
    losses = {f"{tau:.1f}": float(x.mean()) for tau, x in per_tau.items()}
    return round(float(chosen) * len(truth) / (len(truth) + pseudo_count), 3), float(floor), losses
