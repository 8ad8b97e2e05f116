"""The axial DenseNet (torchvision): one input channel, six outputs (left and right x 3 severities)."""

from __future__ import annotations

from lumbar_core.models.checkpoint import from_bytes, to_bytes

ARCHS = ("densenet121", "densenet169", "densenet201")


def build_densenet(arch: str = "densenet121"):
    """A torchvision DenseNet with a one-channel stem and a 6-way head; no weights are downloaded."""
    import torch
    import torchvision

    if arch not in ARCHS:
        raise ValueError(f"unknown DenseNet {arch!r}; valid: {', '.join(ARCHS)}")
    model = getattr(torchvision.models, arch)(weights=None, num_classes=6)
    old = model.features.conv0
    model.features.conv0 = torch.nn.Conv2d(1, old.out_channels, kernel_size=7, stride=2, padding=3, bias=False)
    return model


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
