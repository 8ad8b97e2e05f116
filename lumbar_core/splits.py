"""The one train/validation split: by a hash of each group's id, stable when groups are added.

The pipeline's studies, vertebra-train's SPIDER patients, the studies of nnU-Net's cases
(nnunet-prepare) and of the DenseNet's crops (densenet-train) are all split here, so a group's side
depends only on its id, the seed and the fraction.
"""

from __future__ import annotations

import zlib
from collections.abc import Hashable, Iterable
from typing import TypeVar

G = TypeVar("G", bound=Hashable)


def split_groups(groups: Iterable[G], fraction: float, seed: int) -> tuple[list[G], list[G]]:
    """(training, validation) groups, each sorted; ``fraction`` of them (at least one of two) validate."""
    unique = sorted(set(groups))
    ranked = sorted(unique, key=lambda g: zlib.crc32(f"{seed}:{g}".encode()))
    n_val = max(1, round(len(ranked) * fraction)) if len(ranked) > 1 else 0  # at least one of two or more
    val = set(ranked[:n_val])
    return [g for g in unique if g not in val], [g for g in unique if g in val]


def held_out_studies(studies: Iterable[G], fraction: float, seed: int) -> list[G]:
    """The training studies every model of a run leaves out, to measure and calibrate on.

    nnunet-prepare, densenet-train and level-train each hold out these studies of the training
    ingest's labelled ones (with their own ``val_fraction`` and ``seed``, equal by default), and
    calibrate fits every model's weight on the studies all of them left out.
    """
    return split_groups(studies, fraction, seed)[1]
