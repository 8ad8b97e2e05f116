"""The sagittal crop classifier (a timm network): a few slices in, spinal and foraminal severities out.

The input channels are the neighbouring sagittal slices of a crop (:mod:`lumbar_core.sagittal_crops`);
the six outputs are two heads shared by every level: Normal/Mild, Moderate, Severe of spinal canal
stenosis, then of (left) neural foraminal narrowing (a right foramen is read mirrored).
"""

from __future__ import annotations

from lumbar_core.models.checkpoint import from_bytes, to_bytes

HEADS = {"spinal": 0, "foraminal": 1}  # head of each task: logits [3 h, 3 h + 3)


def head_of(condition: str) -> int:
    """The head reading one condition."""
    return HEADS["spinal"] if condition == "spinal_canal_stenosis" else HEADS["foraminal"]


def build_classifier(arch: str, slices: int, weights: str = ""):
    """A timm network with ``slices`` input channels and six outputs.

    ``weights`` is '' (random init) or a local file of the arch's pretrained weights (never
    downloaded); timm adapts the first convolution to the channels and leaves the classifier new.
    """
    import timm

    if weights:
        return timm.create_model(arch, pretrained=True, in_chans=slices, num_classes=6, pretrained_cfg_overlay={"file": weights})
    return timm.create_model(arch, pretrained=False, in_chans=slices, num_classes=6)


def save_classifier(model, config: dict) -> bytes:
    """``model.pt`` bytes: weights and config."""
    return to_bytes(model, config)


def load_classifier(data: bytes):
    """The classifier and its config, on the best device, in eval mode."""
    from lumbar_core.models.unet import device

    weights, config = from_bytes(data)
    model = build_classifier(config["arch"], int(config["slices"]))
    model.load_state_dict(weights)
    return model.to(device()).eval(), config


def predict_heads(model, crops, heads, batch_size: int = 64):
    """Softmax (n, 3) of each crop (n, slices, size, size) from its head (n,)."""
    import numpy as np
    import torch

    dev = next(model.parameters()).device
    crops = np.asarray(crops, dtype=np.float32)
    heads = np.asarray(heads, dtype=int)
    out = []
    with torch.no_grad():
        for first in range(0, len(crops), batch_size):
            logits = model(torch.from_numpy(crops[first : first + batch_size]).to(dev)).float().view(-1, 2, 3)
            pick = logits[torch.arange(len(logits)), torch.from_numpy(heads[first : first + batch_size]).to(dev)]
            out.append(torch.softmax(pick, 1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 3))
