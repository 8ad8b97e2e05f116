"""The shared crop-training loop: batches that batch norm can train on, whatever the number of crops."""

import numpy as np
import pytest

from lumbar_core.models.crop_training import train_on_crops
from lumbar_core.models.densenet import build_densenet


def _train(n: int, batch_size: int) -> list[int]:
    """One epoch of a DenseNet on ``n`` random 3-slice 32-px crops (a 1 x 1 last feature map); the batch sizes seen."""
    import torch

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    crops = rng.normal(size=(n, 3, 32, 32)).astype(np.float32)
    targets = rng.integers(0, 3, size=n)
    sizes: list[int] = []

    def pick(logits, idx):
        sizes.append(len(idx))
        return logits

    history = train_on_crops(
        build_densenet("densenet121", slices=3),
        crops,
        targets,
        np.arange(n),
        window=lambda crop: crop,
        epochs=1,
        batch_size=batch_size,
        lr=1e-3,
        rng=rng,
        validate=lambda: 0.0,
        pick=pick,
        desc="test",
    )
    assert len(history) == 1 and np.isfinite(history[0]["loss"])
    return sizes


def test_no_batch_holds_a_single_crop():
    # 9 crops in batches of 4 were 4, 4, 1: a DenseNet's batch norm refused the last one.
    assert sorted(_train(9, 4)) == [3, 3, 3]


def test_one_training_crop_is_refused_by_name():
    with pytest.raises(ValueError, match="test: 1 training crop"):
        _train(1, 4)
