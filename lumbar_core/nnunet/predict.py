"""nnU-Net inference on single 2D slices with the project's trained models."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
