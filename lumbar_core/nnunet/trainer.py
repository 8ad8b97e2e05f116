"""The project's nnU-Net trainer: nnUNetTrainer with its length set from Params and an epoch hook.

Epochs and iterations come from the stage's Params (not a class per value); ``epoch_callback`` is
called after every epoch (after nnU-Net wrote ``checkpoint_latest.pth``), which the stage uses to
copy the checkpoint to the store so a preempted training resumes.
"""

from __future__ import annotations

from collections.abc import Callable

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class LumbarTrainer(nnUNetTrainer):
    """nnUNetTrainer with a configurable length and an end-of-epoch callback."""

    epoch_callback: Callable[[LumbarTrainer], None] | None = None

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
