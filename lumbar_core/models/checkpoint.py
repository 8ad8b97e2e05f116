"""Model files: weights plus the config needed to rebuild the network, as bytes for the store."""

from __future__ import annotations

import io
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
