"""Label prevalence of the real RSNA 2024 training set, by condition and level.

Fractions (Normal/Mild, Moderate, Severe), from the public training labels (the table in docs/phantom.md).
The phantom samples its grades from these; they are also the prior of last resort when a run has
no training labels of its own. Left and right sides share one row.
"""

from __future__ import annotations

from lumbar_core.vocab import CONDITIONS, LEVELS

_SPINAL = {
    "l1_l2": (0.955, 0.034, 0.011),
    "l2_l3": (0.896, 0.077, 0.027),
    "l3_l4": (0.822, 0.117, 0.062),
    "l4_l5": (0.751, 0.120, 0.129),
    "l5_s1": (0.964, 0.026, 0.010),
}
_FORAMINAL = {
    "l1_l2": (0.964, 0.032, 0.004),
    "l2_l3": (0.910, 0.086, 0.004),
    "l3_l4": (0.771, 0.209, 0.020),
    "l4_l5": (0.612, 0.318, 0.070),
    "l5_s1": (0.642, 0.258, 0.100),
}
_SUBARTICULAR = {
    "l1_l2": (0.930, 0.056, 0.014),
    "l2_l3": (0.828, 0.131, 0.041),
    "l3_l4": (0.671, 0.230, 0.099),
    "l4_l5": (0.450, 0.317, 0.233),
    "l5_s1": (0.714, 0.205, 0.081),
}
_BY_GROUP = {"spinal": _SPINAL, "foraminal": _FORAMINAL, "subarticular": _SUBARTICULAR}


def _normalised(p: tuple[float, float, float]) -> tuple[float, float, float]:
    total = sum(p)
    return (p[0] / total, p[1] / total, p[2] / total)


#: (condition, level) -> (P(Normal/Mild), P(Moderate), P(Severe)), each row summing to 1.
REAL_PREVALENCE: dict[tuple[str, str], tuple[float, float, float]] = {
    (condition, level): _normalised(
        _BY_GROUP["spinal" if "spinal" in condition else "foraminal" if "foraminal" in condition else "subarticular"][level]
    )
    for condition in CONDITIONS
    for level in LEVELS
}

#: Share of real training studies with at least one Severe spinal canal level.
ANY_SEVERE_SPINAL_RATE = 0.185
