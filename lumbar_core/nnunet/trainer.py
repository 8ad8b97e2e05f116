"""The project's nnU-Net trainer: upright augmentation, a length from Params and an epoch hook.

Our classes carry the disc level (L1/L2 at the top of a canonical sagittal slice, L5/S1 at the
bottom), so the augmentation must keep the image upright: nnU-Net's 2D default rotates by up to
180 degrees and mirrors both axes, which turns an L1/L2 region into one that looks like L5/S1.
Like nnU-Net's own answer for left/right labels (its no-mirroring trainer), this trainer mirrors
nothing and rotates by at most ``max_rotation_deg``; scaling, elastic, intensity and noise
augmentation stay as nnU-Net has them.

Epochs and iterations come from the stage's Params (not a class per value); ``epoch_callback`` is
called after every epoch (after nnU-Net wrote ``checkpoint_latest.pth``), which the stage uses to
copy the checkpoint to the store so a preempted training resumes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class LumbarTrainer(nnUNetTrainer):
    """nnUNetTrainer with upright augmentation, a configurable length and an end-of-epoch callback."""

    epoch_callback: Callable[[LumbarTrainer], None] | None = None
    max_rotation_deg: float = 15.0

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        """Rotation of at most ``max_rotation_deg``, no mirroring (in training and at inference)."""
        patch_size = self.configuration_manager.patch_size
        angle = np.radians(self.max_rotation_deg)
        rotation = (-angle, angle)
        initial_patch_size = get_patch_size(patch_size, rotation, rotation, rotation, (0.85, 1.25))
        self.inference_allowed_mirroring_axes = None
        return rotation, False, initial_patch_size, None

    def configure_length(self, *, epochs: int, iterations: int, val_iterations: int) -> None:
        """Set the training length; checkpoints are then written every epoch."""
        self.num_epochs = epochs
        self.num_iterations_per_epoch = iterations
        self.num_val_iterations_per_epoch = val_iterations
        self.save_every = 1

    def on_epoch_end(self) -> None:
        """nnU-Net's end of epoch, then the callback."""
        super().on_epoch_end()
        if self.epoch_callback is not None:
            self.epoch_callback(self)

    def pseudo_dice_history(self) -> list[list[float]]:
        """Per epoch, the pseudo Dice of each foreground class (nan where a class was not in validation)."""
        return [list(map(float, epoch)) for epoch in self.logger.get_value("dice_per_class_or_region", step=None)]
