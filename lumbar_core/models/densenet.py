"""The axial DenseNet (torchvision): one input channel, six outputs (left and right x 3 severities)."""

from __future__ import annotations

import re
from pathlib import Path

from lumbar_core.models.checkpoint import from_bytes, read_pretrained, to_bytes

ARCHS = ("densenet121", "densenet169", "densenet201")


#: torchvision's published DenseNet files name a dense layer's parts ``norm.1``, its modules ``norm1``.
_OLD_LAYER_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def build_densenet(arch: str = "densenet121", weights: str = ""):
    """A torchvision DenseNet with a one-channel stem and a 6-way head.

    ``weights`` is '' (random init) or a local file of that DenseNet's pretrained weights (e.g.
    torchvision's ImageNet file from a cache; nothing is downloaded): the stem's RGB filters are summed
    to one channel and the classifier is left new.
    """
    import torch
    import torchvision

    if arch not in ARCHS:
        raise ValueError(f"unknown DenseNet {arch!r}; valid: {', '.join(ARCHS)}")
    model = getattr(torchvision.models, arch)(weights=None, num_classes=6)
    old = model.features.conv0
    model.features.conv0 = torch.nn.Conv2d(1, old.out_channels, kernel_size=7, stride=2, padding=3, bias=False)
    if weights:
        _load_pretrained(model, Path(weights))
    return model


def _load_pretrained(model, path: Path) -> None:
    state = read_pretrained(path, "DenseNet weights", stem="features.conv0.weight")
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
    model = build_densenet(config["arch"])
    model.load_state_dict(weights)
    return model.to(device()).eval(), config


def predict_sides(model, crops) -> tuple:
    """Softmax (n, 3) for the left and the right side of crops (n, size, size)."""
    import numpy as np
    import torch

    dev = next(model.parameters()).device
    with torch.no_grad():
        logits = model(torch.from_numpy(np.asarray(crops, dtype=np.float32)[:, None]).to(dev)).float()
    return torch.softmax(logits[:, :3], 1).cpu().numpy(), torch.softmax(logits[:, 3:], 1).cpu().numpy()
