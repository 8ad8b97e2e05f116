"""nnU-Net inference on single 2D slices with the project's trained models."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lumbar_core import vocab
from lumbar_core.classes import SEVERITY_COUNT, level_classes
from lumbar_core.nnunet.dataset import DUMMY_SPACING


def load_predictor(model_dir: Path):
    """An ``nnUNetPredictor`` for ``model_dir`` (plans.json, dataset.json, fold_0/checkpoint_final.pth).

    The network is built by :class:`LumbarTrainer` itself (nnU-Net's own loader only finds trainers
    inside its package).
    """
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from lumbar_core.models.unet import device
    from lumbar_core.nnunet.trainer import LumbarTrainer

    dataset_json = load_json(str(model_dir / "dataset.json"))
    plans_manager = PlansManager(load_json(str(model_dir / "plans.json")))
    checkpoint = torch.load(model_dir / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    configuration = plans_manager.get_configuration(checkpoint["init_args"]["configuration"])
    network = LumbarTrainer.build_network_architecture(
        plans_manager,
        configuration,
        determine_num_input_channels(plans_manager, configuration, dataset_json),
        plans_manager.get_label_manager(dataset_json).num_segmentation_heads,
        enable_deep_supervision=False,
    )
    dev = device()
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False, device=dev, allow_tqdm=False)
    predictor.manual_initialization(
        network,
        plans_manager,
        configuration,
        [checkpoint["network_weights"]],
        dataset_json,
        checkpoint.get("trainer_name", "LumbarTrainer"),
        checkpoint.get("inference_allowed_mirroring_axes"),
    )
    return predictor


def predict_slice(predictor, image: np.ndarray, spacing: float) -> np.ndarray:
    """Class probabilities (classes, rows, cols) of one 2D slice."""
    data = np.asarray(image, dtype=np.float32)[None, None]  # (channel, z, y, x)
    _, probs = predictor.predict_single_npy_array(data, {"spacing": [DUMMY_SPACING, spacing, spacing]}, None, None, True)
    return np.asarray(probs)[:, 0]


def level_distribution(probs: np.ndarray, level: str, point_px: tuple[float, float], region_px: float) -> np.ndarray | None:
    """Severity distribution of one level from nnU-Net probabilities (classes, rows, cols).

    In the disk of ``region_px`` around the level point: over the pixels predicted as this level,
    the mean softmax of its three classes; if none is, the mean softmax of each severity summed over
    all levels (the severity is read even where the level is confused).
    """
    classes = level_classes(level)
    rows, cols = np.mgrid[0 : probs.shape[1], 0 : probs.shape[2]]
    disk = np.hypot(cols - point_px[0], rows - point_px[1]) <= region_px
    if not disk.any():
        return None
    predicted = probs.argmax(axis=0)
    mask = disk & (predicted >= classes.start) & (predicted < classes.stop)
    if mask.any():
        dist = probs[classes.start : classes.stop][:, mask].mean(axis=1)
    else:
        per_severity = probs[1:].reshape(len(vocab.LEVELS), SEVERITY_COUNT, *probs.shape[1:]).sum(axis=0)
        dist = per_severity[:, disk].mean(axis=1)
    total = dist.sum()
    return dist / total if total > 0 else None
