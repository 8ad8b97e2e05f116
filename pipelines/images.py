"""Container images of the pipelines: pinned tags, passed at compile time, never ``latest``."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_REGISTRY = "ghcr.io/lumbar-spine/lumbar"


@dataclass(frozen=True)
class Images:
    """The image for CPU stages and the (CUDA) image for GPU stages."""

    cpu: str
    gpu: str

    def __post_init__(self):
        for kind, image in (("cpu", self.cpu), ("gpu", self.gpu)):
            check_pinned(image, kind)

    def for_node(self, node: str) -> str:
        """The image of a ``cpu`` or ``gpu`` stage."""
        return self.gpu if node == "gpu" else self.cpu


def check_pinned(image: str, kind: str = "") -> None:
    """An image reference must carry a tag other than ``latest`` (or a digest)."""
    name = image.rsplit("/", 1)[-1]
    if "@sha256:" in image:
        return
    if ":" not in name or name.endswith(":latest"):
        raise ValueError(f"{kind} image {image!r}: give an explicit tag (not 'latest'), e.g. {DEFAULT_REGISTRY}:0.1.0-{kind or 'cpu'}")


def default_images(version: str | None = None, registry: str = DEFAULT_REGISTRY) -> Images:
    """``{registry}:{version}-cpu`` and ``-gpu``; the version defaults to the installed package's."""
    if version is None:
        from lumbar_core import __version__ as version
    return Images(cpu=f"{registry}:{version}-cpu", gpu=f"{registry}:{version}-gpu")
