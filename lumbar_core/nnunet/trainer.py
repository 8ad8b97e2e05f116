"""The project's nnU-Net trainer: upright augmentation, AdamW, class-balanced sampling, a length from Params.

Our classes carry the disc level (L1/L2 at the top of a canonical sagittal slice, L5/S1 at the
bottom), so the augmentation must keep the image upright: nnU-Net's 2D default rotates by up to
180 degrees and mirrors both axes, which turns an L1/L2 region into one that looks like L5/S1.
Like nnU-Net's own answer for left/right labels (its no-mirroring trainer), this trainer mirrors
nothing and rotates by at most ``max_rotation_deg``; scaling, elastic, intensity and noise
augmentation stay as nnU-Net has them.

Our classes are also very unequal (a level's Normal/Mild region is in nearly every image, its
Severe one in a handful), and with nnU-Net's uniform case sampling most batches hold no rare class,
so the batch Dice drives them to zero. Each case is first drawn as often as its ``multiplicity``
(balance's oversampling, which nnunet-prepare passes on instead of copying files); with
``class_balance`` > 0 each of those draws is then weighted by ``count(c) ** -class_balance`` of its
rarest class c (1 = every class about equally often). ``sampled_class_counts`` records how often
each class is then seen, which the stage divides out of the softmax. ``optimizer`` "adamw" replaces
nnU-Net's SGD (momentum 0.99, made for 1000 epochs of 250 iterations), which on a budget of a few
thousand iterations barely leaves the start.

Epochs and iterations come from the stage's Params (not a class per value); ``epoch_callback`` is
called after every epoch (after nnU-Net wrote ``checkpoint_latest.pth``), which the stage uses to
copy the checkpoint to the store so a preempted training resumes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
import torch
from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

OPTIMIZERS = ("sgd", "adamw")


def balanced_repeats(classes: list[set[int]], power: float, resolution: int = 100) -> np.ndarray:
    """How many times each case enters the sampling list so that rare classes are drawn more often.

    A case's weight is ``count(c) ** -power`` of its rarest class c (a case without foreground
    takes the rarest weight of all); weights become integer repeats, the most frequent case once
    and none more than ``resolution`` times.
    """
    counts = Counter(c for present in classes for c in present)
    if not counts:
        return np.ones(len(classes), dtype=int)
    floor = min(counts.values())
    weights = np.array([min(counts[c] for c in present) if present else floor for present in classes], dtype=float) ** -power
    return np.clip(np.rint(weights / weights.min()), 1, resolution).astype(int)


class LumbarTrainer(nnUNetTrainer):
    """nnUNetTrainer with upright augmentation, AdamW or SGD, class-balanced sampling and a length from Params."""

    epoch_callback: Callable[[LumbarTrainer], None] | None = None
    max_rotation_deg: float = 15.0
    optimizer_name: str = "sgd"
    learning_rate: float | None = None
    class_balance: float = 0.0
    multiplicity: dict[str, int] | None = None
    sampled_class_counts: dict[int, int] | None = None

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

    def configure_training(
        self,
        *,
        optimizer: str = "sgd",
        learning_rate: float | None = None,
        class_balance: float = 0.0,
        multiplicity: dict[str, int] | None = None,
    ) -> None:
        """Set the optimizer, its initial learning rate and the case sampling.

        ``optimizer`` "sgd" (nnU-Net's) or "adamw"; ``learning_rate`` None takes 1e-2 for SGD (nnU-Net's)
        and 3e-4 for AdamW; ``class_balance`` 0 and no ``multiplicity`` (case id -> draws, default 1)
        keep nnU-Net's uniform sampling.
        """
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"nnU-Net optimizer {optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
        if class_balance < 0:
            raise ValueError(f"class_balance {class_balance}: expected 0 or more")
        self.optimizer_name = optimizer
        self.learning_rate = learning_rate
        self.class_balance = class_balance
        self.multiplicity = dict(multiplicity or {})

    def configure_optimizers(self):
        """nnU-Net's SGD, or AdamW; both with nnU-Net's polynomial decay over the epochs."""
        if self.optimizer_name == "sgd":
            if self.learning_rate is not None:
                self.initial_lr = self.learning_rate
            return super().configure_optimizers()
        self.initial_lr = self.learning_rate if self.learning_rate is not None else 3e-4
        optimizer = torch.optim.AdamW(self.network.parameters(), self.initial_lr, weight_decay=self.weight_decay)
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)

    def get_tr_and_val_datasets(self):
        """nnU-Net's datasets; the training list repeats cases by multiplicity, then by the rarity of their classes."""
        train, val = super().get_tr_and_val_datasets()
        unique = list(train.identifiers)
        # foreground classes only: nnU-Net marks background outside the image's nonzero region -1
        classes_of = {k: {int(c) for c in np.unique(np.asarray(train.load_case(k)[1])) if c > 0} for k in unique}
        keys = [k for k in unique for _ in range(max(1, int((self.multiplicity or {}).get(k, 1))))]
        classes = [classes_of[k] for k in keys]
        repeats = balanced_repeats(classes, self.class_balance)
        drawn: Counter[int] = Counter()
        for present, n in zip(classes, repeats):
            drawn.update(dict.fromkeys(present, int(n)))
        self.sampled_class_counts = dict(sorted(drawn.items()))
        if len(keys) > len(unique) or np.any(repeats > 1):
            repeated = [k for k, n in zip(keys, repeats) for _ in range(n)]
            train = self.dataset_class(
                self.preprocessed_dataset_folder, repeated, folder_with_segs_from_previous_stage=self.folder_with_segs_from_previous_stage
            )
        return train, val

    def on_epoch_end(self) -> None:
        """nnU-Net's end of epoch, then the callback."""
        super().on_epoch_end()
        if self.epoch_callback is not None:
            self.epoch_callback(self)

    def pseudo_dice_history(self) -> list[list[float]]:
        """Per epoch, the pseudo Dice of each foreground class (nan where a class was not in validation)."""
        return [list(map(float, epoch)) for epoch in self.logger.get_value("dice_per_class_or_region", step=None)]
