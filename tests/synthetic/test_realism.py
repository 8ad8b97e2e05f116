"""The phantom looks like lumbar MRI, measured on its images (with the truth masks saying which pixel is which).

Body and fat around the spine, tissue contrast per sequence, posterior elements, the cord and cauda
equina, thoracic levels in view, scanners that differ, and the knobs that make the SPIDER export and
the RSNA-layout images come from different scanner populations.
"""

import numpy as np
import pandas as pd
import pytest

from lumbar_core import vocab
from lumbar_core.synthetic import anatomy as an
from lumbar_core.synthetic import generate, get_profile
from lumbar_core.synthetic.scanner import STYLES

from .helpers import mask, read, truth


def _series(root, description):
    series = pd.read_csv(root / "train_series_descriptions.csv")
    return series[series["series_description"] == description].itertuples()


def _central(root, row, count=1):
    """The ``count`` central images of a series (by spatial order) with their tissue labels."""
    paths = sorted((root / "train_images" / str(row.study_id) / str(row.series_id)).glob("*.dcm"))
    ds = [read(p) for p in paths]
    normal = np.cross(*np.reshape(ds[0].ImageOrientationPatient, (2, 3)).astype(float))
    order = np.argsort([float(np.dot(np.array(d.ImagePositionPatient, float), normal)) for d in ds])
    first = len(order) // 2 - count // 2
    return [(d, mask(root, row.study_id, row.series_id, d.InstanceNumber)) for d in (ds[i] for i in order[first : first + count])]


def _middle(root, row):
    """The middle image of a series (by spatial order) and its tissue labels."""
    return _central(root, row)[0]


def _is_stir_or_fat_sat(ds) -> bool:
    return str(ds.get("ScanningSequence", "")) == "IR" or "FS" in str(ds.get("ScanOptions", ""))


def test_the_body_fills_the_field_of_view_with_fat_around_it(phantom):
    fractions, fat_outside = [], []
    for row in _series(phantom, vocab.SAGITTAL_T1):
        ds, tissue = _middle(phantom, row)
        image = ds.pixel_array.astype(float)
        body = image > 0.15 * np.percentile(image, 99)
        fractions.append(body.mean())
        # subcutaneous fat lies between the back muscles and the edge of the body
        cols = np.nonzero((tissue == an.FAT).any(axis=0))[0]
        fat_outside.append(len(cols) > 0)
    assert 0.45 < np.median(fractions) < 0.98, f"body area fraction {np.median(fractions):.2f}"
    assert np.mean(fat_outside) > 0.9


def _means(root, description, labels, skip_fat_suppressed=True):
    values = {k: [] for k in labels}
    for row in _series(root, description):
        ds, tissue = _middle(root, row)
        if skip_fat_suppressed and _is_stir_or_fat_sat(ds):
            continue
        image = ds.pixel_array.astype(float)
        scale = np.percentile(image, 99)
        for k, group in labels.items():
            inside = np.isin(tissue, group)
            if inside.sum() > 5:
                values[k].append(image[inside].mean() / scale)
    return {k: float(np.median(v)) for k, v in values.items() if v}


MARROW = [an.BODY_LABEL[v] for v in ("L1", "L2", "L3", "L4", "L5")]


def test_tissue_contrast_per_sequence(phantom):
    t1 = _means(phantom, vocab.SAGITTAL_T1, {"fat": [an.FAT], "marrow": MARROW, "muscle": [an.MUSCLE], "csf": [an.CSF]})
    assert t1["fat"] > t1["marrow"] > t1["muscle"] > t1["csf"], t1
    t2 = _means(phantom, vocab.SAGITTAL_T2, {"csf": [an.CSF], "fat": [an.FAT], "muscle": [an.MUSCLE]})
    assert t2["csf"] > t2["fat"] > t2["muscle"], t2


def test_stir_and_fat_saturation_darken_fat(tmp_path):
    root = tmp_path / "stir"
    profile = get_profile("tiny").with_overrides({"style": "philips-3t", "p_missing_t2": "0", "p_missing_t1": "0"})
    generate(root, studies=6, profile=profile, seed=5, workers=1, spider_cases=0)
    suppressed = []
    for row in _series(root, vocab.SAGITTAL_T2):
        ds, tissue = _middle(root, row)
        if _is_stir_or_fat_sat(ds):
            image = ds.pixel_array.astype(float)
            suppressed.append(image[tissue == an.FAT].mean() < 0.5 * image[tissue == an.CSF].mean())
    assert suppressed and all(suppressed), "a STIR's fat is dark"


def test_posterior_elements_and_cord(phantom):
    behind, cord = [], []
    for row in _series(phantom, vocab.SAGITTAL_T2):
        doc = truth(phantom, row.study_id)
        ds, tissue = _middle(phantom, row)
        from .helpers import plane_of

        plane = plane_of(ds)
        hits = 0
        for vertebra, level in zip(("L1", "L2", "L3", "L4", "L5"), vocab.LEVELS):
            body = np.array(doc["landmarks"]["vertebra_centre"][vertebra])
            axis = np.array(doc["landmarks"]["disc_axis"][level])
            posterior = np.cross(axis, [1.0, 0, 0])  # in the sagittal plane, perpendicular to the spine
            posterior *= np.sign(posterior[1]) / np.linalg.norm(posterior)  # +y is posterior in LPS
            samples = [plane.world_to_pixel(body + posterior * d) for d in np.arange(30, 75, 1.0)]
            inside = [(int(round(y)), int(round(x))) for x, y, _ in samples]
            labels = {int(tissue[r, c]) for r, c in inside if 0 <= r < tissue.shape[0] and 0 <= c < tissue.shape[1]}
            hits += bool(labels & {an.BONE, an.ARCH_MARROW})
        behind.append(hits >= 3)
        # the cord ends at about L1 and scoliosis moves it off the middle slice: one of the three central ones
        cord.append(any((labels == an.CORD).any() for _, labels in _central(phantom, row, 3)))
    assert np.mean(behind) > 0.8, "laminae and spinous processes behind the canal, at the vertebrae"
    assert np.mean(cord) > 0.8, "the cord above the conus is in view on the central sagittal slices"


def test_thoracic_levels_and_ribs_are_in_view(phantom):
    seen = []
    for row in _series(phantom, vocab.SAGITTAL_T1):
        labels = np.load(phantom / "truth" / "masks" / str(row.study_id) / f"{row.series_id}.npz")["labels"]
        seen.append(bool(np.isin(labels, [an.BODY_LABEL["T11"], an.BODY_LABEL["T12"]]).any()))
    assert np.mean(seen) > 0.8, "fields of view reach the lower thoracic spine"


def test_scanners_differ_between_studies(phantom):
    scales, spacings, vendors = [], set(), set()
    for row in _series(phantom, vocab.SAGITTAL_T1):
        ds, _ = _middle(phantom, row)
        scales.append(np.percentile(ds.pixel_array, 99))
        spacings.add(round(float(ds.PixelSpacing[0]), 2))
        vendors.add(str(ds.Manufacturer))
    assert max(scales) / min(scales) > 4, "raw intensity scales differ several-fold"
    assert len(spacings) > 3 and len(vendors) > 1


@pytest.mark.parametrize("style", sorted(STYLES))
def test_every_style_draws_a_scanner(style):
    from lumbar_core.synthetic.scanner import draw_scanner, get_style

    rng = np.random.default_rng(0)
    draws = [draw_scanner(rng, get_style(style)) for _ in range(50)]
    gains = [d.gain for d in draws]
    assert min(gains) >= STYLES[style].gain[0] and max(gains) <= STYLES[style].gain[1]
    assert {d.field_strength for d in draws} <= set(STYLES[style].field_strengths)


def test_the_spider_export_takes_its_own_scanner_style(tmp_path):
    import SimpleITK as sitk

    levels = {}
    for style in ("siemens-1.5t", "philips-3t"):
        root = tmp_path / style
        profile = get_profile("tiny").with_overrides({"style": "siemens-1.5t", "spider_style": style})
        generate(root, studies=1, profile=profile, seed=2, workers=1, spider_cases=2)
        image = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "spider" / "images" / "1_t1.mha")))
        levels[style] = np.percentile(image, 99)
    assert levels["siemens-1.5t"] > 3 * levels["philips-3t"], levels
    with pytest.raises(KeyError, match="valid: mixed"):
        get_profile("tiny").with_overrides({"spider_style": "toshiba"})


def test_a_transitional_vertebra_moves_the_l5_s1_label_up_one_disc(tmp_path):
    root = tmp_path / "lstv"
    profile = get_profile("tiny").with_overrides({"p_transitional": "1.0"})
    generate(root, studies=2, profile=profile, seed=4, workers=1, spider_cases=0)
    doc = truth(root, pd.read_csv(root / "train.csv")["study_id"].iloc[0])
    assert doc["transitional"] and "L6" in doc["vertebrae"]
    l5, l6 = np.array(doc["landmarks"]["vertebra_centre"]["L5"]), np.array(doc["landmarks"]["vertebra_centre"]["L6"])
    disc = np.array(doc["landmarks"]["disc_centre"]["l5_s1"])
    assert np.linalg.norm(disc - (l5 + l6) / 2) < 8, "readers count from the top: L5/S1 is the disc below L5"
