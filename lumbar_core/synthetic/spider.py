"""SPIDER-format export of phantom patients: sagittal T1/T2 ``.mha`` images and masks.

Mask values follow SPIDER (docs/data.md): 0 background; vertebrae 1-25 counted from the
bottom (1 = L5; in a share of cases the sacrum is labelled as a vertebra and takes 1, L5 then 2);
100 spinal canal; 101-125 vertebrae only partly in view; 201-225 discs from the bottom (201 = L5/S1).
The T2 files store their axes in another order than the T1 files (as the real set does), with the
direction matrix to match: readers must use each image's own direction and spacing. The images come
from the profile's ``spider_style`` scanners, which may differ from the RSNA-layout studies' ``style``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lumbar_core.synthetic import anatomy as an
from lumbar_core.synthetic import render
from lumbar_core.synthetic.grades import sample_grades
from lumbar_core.synthetic.profiles import PhantomProfile
from lumbar_core.synthetic.scanner import draw_scanner, get_style

SPINAL_CANAL = 100
PARTIAL_OFFSET = 100
DISC_BASE = 200


def spider_mask(tissue: np.ndarray, anatomy: an.Anatomy, sacrum_labelled: bool) -> np.ndarray:
    """SPIDER labels (uint16) from a (slices, rows, cols) tissue label volume of one study's anatomy.

    A vertebra is its marrow and any Modic change in it (the cortex is not labelled); a disc its
    annulus and nucleus; the canal the dural sac with the cord and roots in it.
    """
    out = np.zeros(tissue.shape, dtype=np.uint16)
    bottom_up = list(reversed(anatomy.vertebrae))  # S1, L5, L4, ...
    if not sacrum_labelled:
        bottom_up = bottom_up[1:]
    for number, name in enumerate(bottom_up, start=1):
        inside = np.isin(tissue, [an.BODY_LABEL[name], an.MODIC1_LABEL[name], an.MODIC2_LABEL[name]])
        if not inside.any():
            continue
        edge = inside[:, 0, :].any() or inside[:, -1, :].any() or inside[:, :, 0].any() or inside[:, :, -1].any()
        out[inside] = number + (PARTIAL_OFFSET if edge else 0)
    for number, name in enumerate(reversed(anatomy.discs), start=1):
        out[np.isin(tissue, [an.DISC_LABEL[name], an.NUCLEUS_LABEL[name]])] = DISC_BASE + number
    out[np.isin(tissue, an.CANAL_TISSUES)] = SPINAL_CANAL
    return out


def _image(array: np.ndarray, stack: list, swap_axes: bool):
    """A SimpleITK image of a (slices, rows, cols) array placed by its planes."""
    import SimpleITK as sitk

    first = stack[0]
    slice_step = float(np.linalg.norm(stack[1].ipp - first.ipp)) if len(stack) > 1 else 1.0
    directions = [first.row_dir, first.col_dir, first.normal]
    spacing = [first.col_spacing, first.row_spacing, slice_step]
    if swap_axes:
        # store as (cols, rows, slices): index axes are slice, row, col
        array = np.ascontiguousarray(np.transpose(array, (2, 1, 0)))
        directions = directions[::-1]
        spacing = spacing[::-1]
    image = sitk.GetImageFromArray(array)
    image.SetOrigin([float(v) for v in first.ipp])
    image.SetSpacing([float(v) for v in spacing])
    image.SetDirection([float(v) for v in np.stack(directions, axis=1).ravel()])
    return image


def write_spider_case(root: Path, case: int, seed: int, profile: PhantomProfile) -> None:
    """Render one patient's sagittal T1 and T2 and write images and masks under ``root``."""
    import SimpleITK as sitk

    rng = np.random.default_rng(np.random.SeedSequence([seed, 2, case]))
    grades = sample_grades(rng, label_noise_sd=0.0, p_missing_cell=0.0)
    anatomy = an.build_anatomy(rng, grades.degree)
    scanner = draw_scanner(rng, get_style(profile.spider_style_name))
    sacrum = bool(rng.random() < profile.p_spider_sacrum_labelled)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for contrast, suffix in (("T1", "t1"), ("T2", "t2")):
        planes, thickness = render.plan_sagittal(anatomy, profile, rng)
        lut = render.lookup_table(contrast, anatomy, rng, scanner.contrast)
        bias = render.bias_field((planes[0].rows, planes[0].cols), rng, scanner.bias)
        images, tissues = [], []
        for plane in planes:
            image, tissue = render.render_slice(anatomy, plane, lut, thickness, profile.subsamples)
            images.append(render.to_pixels(image, bias, scanner.noise, scanner.gain, rng, scanner.offset))
            tissues.append(tissue)
        swap = suffix == "t2"
        pixels = np.clip(np.stack(images), 0, 32767).astype(np.int16)
        sitk.WriteImage(_image(pixels, planes, swap), str(root / "images" / f"{case}_{suffix}.mha"), True)
        mask = spider_mask(np.stack(tissues), anatomy, sacrum)
        sitk.WriteImage(_image(mask, planes, swap), str(root / "masks" / f"{case}_{suffix}.mha"), True)
