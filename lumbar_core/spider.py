"""Reading a SPIDER-format folder (``images/*.mha``, ``masks/*.mha``) into canonical sagittal slices.

SPIDER mask values (docs/data.md): 0 background; 1-25 vertebrae counted from the bottom
(1 = L5, but in some cases the sacrum is labelled as a vertebra and takes 1); 100 spinal canal;
101-125 partially visible vertebrae (100 + number); 201-225 discs from the bottom (201 = L5/S1).
The vertebra just above disc 201 is L5, which fixes the count either way. Our classes:
:data:`CLASSES`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from lumbar_core import store
from lumbar_core.sagittal import canonical_for

CLASSES: tuple[str, ...] = ("background", "L1", "L2", "L3", "L4", "L5", "S1", "disc", "canal", "T-spine")
VERTEBRA_CLASSES = {"L1": 1, "L2": 2, "L3": 3, "L4": 4, "L5": 5, "S1": 6}
DISC, CANAL, THORACIC = 7, 8, 9
_NAME = re.compile(r"^(?P<case>[^_/]+)_(?P<series>t1|t2|t2_SPACE)\.mha$")


class SpiderError(ValueError):
    """A SPIDER folder that cannot be used; the message names the file."""


@dataclass
class SpiderCase:
    """One SPIDER series in canonical layout: image (slices, rows, cols) float, classes uint8, spacing."""

    name: str
    image: np.ndarray
    classes: np.ndarray
    spacing: tuple[float, float, float]


def list_cases(spider_uri: str) -> list[str]:
    """Names (``{case}_{series}``) of the series with both an image and a mask."""
    images = {o.path for o in store.list_objects(store.join(spider_uri, "images")) if o.path.endswith(".mha")}
    masks = {o.path for o in store.list_objects(store.join(spider_uri, "masks")) if o.path.endswith(".mha")}
    if not images:
        raise SpiderError(f"no images/*.mha under {spider_uri}")
    unmatched = sorted(images ^ masks)
    if unmatched:
        raise SpiderError(f"{spider_uri}: images without masks or masks without images: {', '.join(unmatched[:10])}")
    bad = [p for p in images if not _NAME.match(p)]
    if bad:
        raise SpiderError(f"{spider_uri}: file names not of the form {{case}}_{{t1|t2|t2_SPACE}}.mha: {', '.join(sorted(bad)[:10])}")
    return sorted(p[: -len(".mha")] for p in images)


def spider_to_classes(mask: np.ndarray, si_axis_values: np.ndarray, where: str) -> np.ndarray:
    """Map SPIDER labels to :data:`CLASSES`.

    Args:
        mask: SPIDER labels (any shape).
        si_axis_values: world z (superior +) of every voxel, same shape as ``mask``.
        where: the file, for error messages.
    """
    values = set(np.unique(mask).tolist())
    allowed = {0, 100} | set(range(1, 26)) | set(range(101, 126)) | set(range(201, 226))
    unknown = sorted(values - allowed)
    if unknown:
        raise SpiderError(f"{where}: unknown SPIDER label values {unknown[:10]}; valid: 0, 1-25, 100, 101-125, 201-225")
    out = np.zeros(mask.shape, dtype=np.uint8)
    out[(mask >= 201) & (mask <= 225)] = DISC
    out[mask == 100] = CANAL
    vertebra = np.where((mask >= 101) & (mask <= 125), mask - 100, np.where(mask <= 25, mask, 0))
    numbers = sorted(set(np.unique(vertebra).tolist()) - {0})
    if not numbers:
        return out
    z = {n: float(si_axis_values[vertebra == n].mean()) for n in numbers}
    l5_number = 1
    if 201 in values:
        disc_z = float(si_axis_values[mask == 201].mean())
        above = [n for n in numbers if z[n] > disc_z]
        l5_number = min(above, key=lambda n: z[n]) if above else 1
    for n in numbers:
        offset = n - l5_number  # 0 = L5, 1 = L4, ..., -1 = S1
        if offset == -1:
            out[vertebra == n] = VERTEBRA_CLASSES["S1"]
        elif 0 <= offset <= 4:
            out[vertebra == n] = VERTEBRA_CLASSES[f"L{5 - offset}"]
        elif offset > 4:
            out[vertebra == n] = THORACIC
    return out


def load_case(spider_uri: str, name: str) -> SpiderCase:
    """Read one series' image and mask, check they share a geometry, and bring both to canonical layout."""
    import SimpleITK as sitk

    images = []
    for folder in ("images", "masks"):
        uri = store.join(spider_uri, folder, f"{name}.mha")
        with store.local_file(uri) as path:
            try:
                images.append(sitk.ReadImage(str(path)))
            except RuntimeError as exc:
                raise SpiderError(f"{uri}: cannot be read as an image ({exc})") from None
    image, mask = images
    where = store.join(spider_uri, "masks", f"{name}.mha")
    if image.GetSize() != mask.GetSize() or not np.allclose(image.GetSpacing(), mask.GetSpacing(), atol=1e-3):
        raise SpiderError(
            f"{where}: size/spacing {mask.GetSize()}/{mask.GetSpacing()} differ from the image's {image.GetSize()}/{image.GetSpacing()}"
        )
    if not np.allclose(image.GetDirection(), mask.GetDirection(), atol=1e-3) or not np.allclose(
        image.GetOrigin(), mask.GetOrigin(), atol=0.5
    ):
        raise SpiderError(f"{where}: origin/direction differ from the image's")
    direction = np.array(image.GetDirection()).reshape(3, 3)
    spacing = image.GetSpacing()
    # numpy axis k of GetArrayFromImage is ITK index axis 2 - k
    canon = canonical_for([direction[:, 2 - k] for k in range(3)], [spacing[2 - k] for k in range(3)])
    arr_image = sitk.GetArrayFromImage(image).astype(np.float32)
    arr_mask = sitk.GetArrayFromImage(mask).astype(np.int32)
    z = _world_z(mask)
    classes = spider_to_classes(arr_mask, z, where)
    return SpiderCase(name, canon.apply(arr_image), canon.apply(classes), canon.spacing)


def _world_z(image) -> np.ndarray:
    """World z of every voxel of a SimpleITK image, in numpy (z, y, x) order."""
    size = image.GetSize()
    direction = np.array(image.GetDirection()).reshape(3, 3)
    spacing = np.array(image.GetSpacing())
    origin = np.array(image.GetOrigin())
    k, j, i = np.meshgrid(np.arange(size[2]), np.arange(size[1]), np.arange(size[0]), indexing="ij")
    index = np.stack([i, j, k], axis=-1) * spacing
    return origin[2] + index @ direction[2]
