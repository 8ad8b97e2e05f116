"""Contrast per series, partial volume, bias and noise; severity visible in the rendered images."""

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from lumbar_core import vocab
from lumbar_core.synthetic import anatomy as an

from .helpers import coordinates, image_path, mask, read, target, truth


def _pairs(root, description):
    series = pd.read_csv(root / "train_series_descriptions.csv")
    for row in series[series["series_description"] == description].itertuples():
        for path in sorted((root / "train_images" / str(row.study_id) / str(row.series_id)).glob("*.dcm"))[::2]:
            yield read(path).pixel_array.astype(float), mask(root, row.study_id, row.series_id, path.stem)


def _tissue_means(root, description, labels):
    sums = {k: [] for k in labels}
    for image, tissue in _pairs(root, description):
        for k in labels:
            if (tissue == k).sum() > 3:
                sums[k].append(image[tissue == k].mean() / np.percentile(image, 99))
    return {k: float(np.mean(v)) for k, v in sums.items()}


def test_t1_fat_bright_csf_dark(phantom):
    m = _tissue_means(phantom, vocab.SAGITTAL_T1, [an.FAT, an.CSF, an.MUSCLE, an.BODY_LABEL["L3"]])
    assert m[an.FAT] > m[an.BODY_LABEL["L3"]] > m[an.MUSCLE] > m[an.CSF]


def test_t2_csf_bright(phantom):
    m = _tissue_means(phantom, vocab.SAGITTAL_T2, [an.FAT, an.CSF, an.MUSCLE, an.LIGAMENT])
    assert m[an.CSF] > m[an.FAT] > m[an.MUSCLE] > m[an.LIGAMENT]
    m = _tissue_means(phantom, vocab.AXIAL_T2, [an.CSF, an.MUSCLE, an.LIGAMENT])  # small FOV: no subcutaneous fat
    assert m[an.CSF] > m[an.MUSCLE] > m[an.LIGAMENT]


def test_degenerated_discs_are_darker_on_t2(phantom):
    series = pd.read_csv(phantom / "train_series_descriptions.csv")
    degen, graded, brightness = [], [], []
    for row in series[series["series_description"] == vocab.SAGITTAL_T2].itertuples():
        doc = truth(phantom, row.study_id)
        for path in sorted((phantom / "train_images" / str(row.study_id) / str(row.series_id)).glob("*.dcm")):
            tissue = mask(phantom, row.study_id, row.series_id, path.stem)
            if not (tissue == an.CSF).sum() > 20:
                continue
            image = read(path).pixel_array.astype(float)
            csf = image[tissue == an.CSF].mean()
            for level in vocab.LEVELS:
                inside = tissue == an.NUCLEUS_LABEL[level]  # the nucleus loses its water signal
                if inside.sum() > 3:
                    degen.append(doc["disc_degeneration"][level])
                    graded.append(max(target(doc, c, level)["degree"] for c in vocab.CONDITIONS[:3]))
                    brightness.append(image[inside].mean() / csf)
            break
    assert spearmanr(degen, brightness).statistic < -0.5
    assert spearmanr(graded, brightness).statistic < -0.15, "the graded stenoses come with darker discs"


def test_partial_volume_bias_and_noise(phantom):
    edge_ratio, spread, noise = [], [], []
    for image, tissue in _pairs(phantom, vocab.SAGITTAL_T2):
        csf = tissue == an.CSF
        if csf.sum() < 50:
            continue
        inner = csf[1:-1, 1:-1] & csf[:-2, 1:-1] & csf[2:, 1:-1] & csf[1:-1, :-2] & csf[1:-1, 2:]
        edge = csf[1:-1, 1:-1] & ~inner
        edge_ratio.append(image[1:-1, 1:-1][edge].mean() / image[1:-1, 1:-1][inner].mean())
        muscle = tissue == an.MUSCLE
        if muscle.sum() < 50:
            continue
        rows = np.nonzero(muscle)[0]
        upper = np.arange(tissue.shape[0])[:, None] < np.median(rows)
        if (muscle & upper).sum() > 10 and (muscle & ~upper).sum() > 10:
            spread.append(abs(image[muscle & upper].mean() / image[muscle & ~upper].mean() - 1))
        noise.append(image[muscle].std() / image[muscle].mean())
    assert np.mean(edge_ratio) < 0.95, "boundary pixels mix tissues over the slice thickness"
    assert np.mean(spread) > 0.02, "a bias field shades the image"
    assert 0.03 < np.mean(noise) < 0.6, "Rician noise"


def _severity_measure(root, condition, half_rows, half_cols):
    """Bright pixels (CSF on T2, fat on T1) in a window around each labelled point, with the truth degree."""
    coords = coordinates(root)
    coords = coords[coords["condition"] == vocab.CONDITION_TITLES[condition]]
    degrees, measures = [], []
    for row in coords.itertuples():
        image = read(image_path(root, row.study_id, row.series_id, row.instance_number)).pixel_array.astype(float)
        r, c = int(round(row.y)), int(round(row.x))
        window = image[max(0, r - half_rows) : r + half_rows + 1, max(0, c - half_cols) : c + half_cols + 1]
        measures.append(float((window > 0.6 * np.percentile(image, 99.5)).sum()))
        degrees.append(target(truth(root, row.study_id), condition, vocab.level_from_title(row.level))["degree"])
    return np.array(degrees), np.array(measures)


def _assert_falls_with_severity(degrees, measure, what):
    assert spearmanr(degrees, measure).statistic < -0.3, what
    grades = np.digitize(degrees, [1 / 3, 2 / 3])
    normal, moderate, severe = (measure[grades == g] for g in range(3))
    assert normal.mean() > np.concatenate([moderate, severe]).mean(), what
    if len(moderate) >= 3 and len(severe) >= 3:
        assert normal.mean() > moderate.mean() > severe.mean(), what


def test_canal_cross_section_falls_as_spinal_stenosis_rises(phantom):
    # sagittal rows run head to foot, columns front to back: the window spans the canal's AP diameter
    degrees, width = _severity_measure(phantom, "spinal_canal_stenosis", half_rows=1, half_cols=6)
    _assert_falls_with_severity(degrees, width, "spinal canal")


def test_foraminal_fat_falls_as_narrowing_rises(phantom):
    # the foramen's brightness at the labelled point against the image's own fat (the pedicles' marrow
    # beside a foramen is bright on T1 too, so counting bright pixels no longer separates the grades)
    for condition in ("left_neural_foraminal_narrowing", "right_neural_foraminal_narrowing"):
        coords = coordinates(phantom)
        coords = coords[coords["condition"] == vocab.CONDITION_TITLES[condition]]
        degrees, fat = [], []
        for row in coords.itertuples():
            image = read(image_path(phantom, row.study_id, row.series_id, row.instance_number)).pixel_array.astype(float)
            tissue = mask(phantom, row.study_id, row.series_id, row.instance_number)
            r, c = int(round(row.y)), int(round(row.x))
            fat.append(image[max(0, r - 1) : r + 2, max(0, c - 1) : c + 2].mean() / np.median(image[tissue == an.FAT]))
            degrees.append(target(truth(phantom, row.study_id), condition, vocab.level_from_title(row.level))["degree"])
        _assert_falls_with_severity(np.array(degrees), np.array(fat), condition)


def test_lateral_recess_falls_as_subarticular_stenosis_rises(phantom):
    for condition in ("left_subarticular_stenosis", "right_subarticular_stenosis"):
        degrees, recess = _severity_measure(phantom, condition, half_rows=2, half_cols=2)
        _assert_falls_with_severity(degrees, recess, condition)
