"""The vertebra U-Net: segmentation-models-pytorch ``Unet`` with a ResNet encoder, one input channel."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np

from lumbar_core.models.checkpoint import from_bytes, read_pretrained, to_bytes

ENCODERS = ("resnet18", "resnet34", "resnet50")


def device():
    """CUDA when present, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(dev):
    """Mixed precision (bfloat16) on a GPU; nothing on the CPU."""
    import torch

    return torch.autocast(device_type="cuda", dtype=torch.bfloat16) if dev.type == "cuda" else nullcontext()


def build_unet(encoder: str, classes: int, encoder_weights: str = ""):
    """A U-Net; ``encoder_weights`` is '' (random init) or a local file of encoder weights (no download).

    A 3-channel first convolution in the file is summed over its input channels to fit one channel.
    """
    import segmentation_models_pytorch as smp

    if encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {encoder!r}; valid: {', '.join(ENCODERS)}")
    model = smp.Unet(encoder_name=encoder, encoder_weights=None, in_channels=1, classes=classes)
    if encoder_weights:
        path = Path(encoder_weights)
        state = {k: v for k, v in read_pretrained(path, "encoder weights", stem="conv1.weight").items() if not k.startswith("fc.")}
        # smp's encoders override load_state_dict and return nothing: find what is missing first
        missing = [k for k in model.encoder.state_dict() if k not in state]
        if missing:
            raise ValueError(f"{path}: encoder weights lack {', '.join(missing[:5])}")
        model.encoder.load_state_dict(state, strict=False)
    return model


def pad_to_multiple(batch: np.ndarray, multiple: int = 32) -> tuple[np.ndarray, tuple[int, int]]:
    """Zero-pad (n, H, W) on the bottom and right to multiples of ``multiple``; returns the original (H, W)."""
    h, w = batch.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return np.pad(batch, ((0, 0), (0, ph), (0, pw))), (h, w)


def forward(model, slices: np.ndarray, *, batch_size: int = 16):
    """Logits (batch, classes, H, W) of normalised slices (n, H, W), one batch at a time (a generator)."""
    import torch

    dev = next(model.parameters()).device
    padded, (h, w) = pad_to_multiple(slices.astype(np.float32))
    model.eval()
    with torch.no_grad(), autocast(dev):
        for start in range(0, len(padded), batch_size):
            x = torch.from_numpy(padded[start : start + batch_size, None]).to(dev)
            yield model(x).float()[..., :h, :w].cpu().numpy()


def predict(model, slices: np.ndarray, *, batch_size: int = 16) -> np.ndarray:
    """Class map (n, H, W) uint8 of normalised slices (n, H, W)."""
    return np.concatenate([logits.argmax(axis=1).astype(np.uint8) for logits in forward(model, slices, batch_size=batch_size)])


def save_model(model, config: dict) -> bytes:
    """``model.pt`` bytes: weights and the config needed to rebuild the network."""
    return to_bytes(model, config)


def load_model(data: bytes):
    """The U-Net and its config from ``model.pt`` bytes, on the best device, in eval mode."""
    weights, config = from_bytes(data)
    model = build_unet(config["encoder"], len(config["classes"]))
    model.load_state_dict(weights)
    return model.to(device()).eval(), config
