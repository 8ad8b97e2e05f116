"""LumbarTrainer's class-balanced case sampling and optimizer choice."""

import numpy as np
import pytest

from lumbar_core.nnunet.trainer import LumbarTrainer, balanced_repeats


def test_cases_of_rare_classes_are_repeated_until_classes_are_drawn_about_equally():
    # class 1 in every case, class 2 in 10 of 100, class 3 in 2 of 100
    classes = [{1} for _ in range(88)] + [{1, 2} for _ in range(10)] + [{1, 3} for _ in range(2)]
    repeats = balanced_repeats(classes, power=1.0)
    assert repeats[0] == 1 and repeats[88] == 10 and repeats[98] == 50
    drawn = {c: sum(n for present, n in zip(classes, repeats) if c in present) for c in (1, 2, 3)}
    assert drawn[2] == drawn[3] == 100, "each rare class as often as the others"


def test_balance_power_zero_half_and_the_cap():
    classes = [{1}] * 99 + [{1, 2}]
    assert np.all(balanced_repeats(classes, power=0.0) == 1)
    assert balanced_repeats(classes, power=0.5)[-1] == 10
    assert balanced_repeats([{1}] * 1000 + [{1, 2}], power=1.0, resolution=100)[-1] == 100
    assert np.all(balanced_repeats([set(), {1}], power=1.0) >= 1), "a case without foreground stays in the list"


def test_optimizer_settings_are_checked():
    trainer = LumbarTrainer.__new__(LumbarTrainer)
    trainer.configure_training(optimizer="adamw", learning_rate=1e-3, class_balance=0.5)
    assert (trainer.optimizer_name, trainer.learning_rate, trainer.class_balance) == ("adamw", 1e-3, 0.5)
    with pytest.raises(ValueError, match="optimizer 'adam'"):
        trainer.configure_training(optimizer="adam")
    with pytest.raises(ValueError, match="class_balance -1"):
        trainer.configure_training(class_balance=-1)
