"""The axial DenseNet (torchvision): a few axial slices in, subarticular stenosis severities out.

The input channels are the neighbouring axial slices of one side's crop (:mod:`lumbar_core.axial`; a
right crop is mirrored), the three outputs Normal/Mild, Moderate, Severe of that side: one head
reads both sides at every level.
"""

from __future__ import annotations

import re
from pathlib import Path

from lumbar_core.models.checkpoint import from_bytes, read_pretrained, to_bytes

ARCHS = ("densenet121", "densenet169", "densenet201")


#: torchvision's published DenseNet files name a dense layer's parts ``norm.1``, its modules ``norm1``.
_OLD_LAYER_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def build_densenet(arch: str = "densenet121", weights: str = "", slices: int = 1):
    """A torchvision DenseNet with a ``slices``-channel stem and a 3-way head.

    ``weights`` is '' (random init) or a local file of that DenseNet's pretrained weights (e.g.
    torchvision's ImageNet file from a cache; nothing is downloaded): the stem's RGB filters are summed
    to one channel and spread evenly over the slices, and the classifier is left new.
    """
    import torch
    import torchvision

    if arch not in ARCHS:
        raise ValueError(f"unknown DenseNet {arch!r}; valid: {', '.join(ARCHS)}")
    model = getattr(torchvision.models, arch)(weights=None, num_classes=3)
    old = model.features.conv0
    model.features.conv0 = torch.nn.Conv2d(slices, old.out_channels, kernel_size=7, stride=2, padding=3, bias=False)
    if weights:
        _load_pretrained(model, Path(weights), slices)
    return model


def _load_pretrained(model, path: Path, slices: int) -> None:
    state = read_pretrained(path, "DenseNet weights", stem="features.conv0.weight")
    stem = state.get("features.conv0.weight")
    if stem is not None and stem.shape[1] == 1:
        state["features.conv0.weight"] = stem.repeat(1, slices, 1, 1) / slices
    state = {_OLD_LAYER_KEY.sub(r"\1\2", k): v for k, v in state.items() if not k.startswith("classifier.")}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a tensor of another shape
        raise ValueError(f"{path}: not weights of this DenseNet ({str(e).splitlines()[-1].strip()})") from e
    missing = [k for k in missing if not k.startswith("classifier.")]
    if missing or unexpected:
        raise ValueError(f"{path}: not weights of this DenseNet (missing {missing[:3]}, unexpected {unexpected[:3]})")


def save_densenet(model, config: dict) -> bytes:
    """``model.pt`` bytes: weights and config."""
    return to_bytes(model, config)


def load_densenet(data: bytes):
    """The DenseNet and its config, on the best device, in eval mode."""
    from lumbar_core.models.unet import device

    weights, config = from_bytes(data)
    if "lateral_mm" not in config:
        raise ValueError("a DenseNet of an older densenet-train (one crop per level, six outputs): run densenet-train again")
    model = build_densenet(config["arch"], slices=int(config["slices"]))
    model.load_state_dict(weights)
    return model.to(device()).eval(), config


def predict_crops(model, crops, batch_size: int = 64):
    """Softmax (n, 3) of side crops (n, slices, size, size)."""
    import numpy as np
    import torch

    dev = next(model.parameters()).device
    crops = np.asarray(crops, dtype=np.float32)
    out = []
    with torch.no_grad():
        for first in range(0, len(crops), batch_size):
            logits = model(torch.from_numpy(crops[first : first + batch_size]).to(dev)).float()
            out.append(torch.softmax(logits, 1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 3))
