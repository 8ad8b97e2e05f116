"""Model files: weights plus the config needed to rebuild the network, as bytes for the store."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any


def to_bytes(model, config: dict[str, Any]) -> bytes:
    """``model.pt`` bytes of a network's weights and its config."""
    import torch

    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "config": config}, buffer)
    return buffer.getvalue()


def from_bytes(data: bytes) -> tuple[dict, dict[str, Any]]:
    """(state_dict on the CPU, config) from ``model.pt`` bytes."""
    import torch

    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    return state["model"], state["config"]


def read_pretrained(path: Path, what: str, stem: str) -> dict:
    """A local file of pretrained weights (never downloaded) as a state dict, for a one-channel network.

    A 3-channel ``stem`` convolution is summed over its input channels; ``what`` names the weights in errors.
    """
    import torch

    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found (weights are never downloaded)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    if stem in state and state[stem].shape[1] == 3:
        state[stem] = state[stem].sum(dim=1, keepdim=True)
    return state
