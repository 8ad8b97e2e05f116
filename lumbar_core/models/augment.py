"""Intensity augmentation shared by the networks trained on MR slices."""

from __future__ import annotations

import numpy as np


def intensity(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A normalised slice with a random gamma, gain and noise (scanners differ in all three)."""
    gamma = rng.uniform(0.7, 1.5)
    out = np.clip(image, 0, None) ** gamma * rng.uniform(0.85, 1.15)
    return (out + rng.normal(0, rng.uniform(0, 0.05), out.shape)).astype(np.float32)
