"""Vertebra U-Net quality on the tiny phantom, on the CPU: Dice per class and level localisation.

Trains vertebra-train on the phantom's SPIDER export, segments the RSNA-format studies (patients the
U-Net never saw) and compares the masks with the phantom's truth masks, class by class, and the disc
levels with the labelled spinal canal points. ``--style`` and ``--spider-style`` draw the RSNA-layout
studies and the SPIDER export from different scanner populations: the domain shift between SPIDER
and the competition's data, made on purpose (how many levels the U-Net still finds).

    .venv/bin/python bench/vertebra.py [--studies 10] [--epochs 15] [--style mixed] [--spider-style philips-3t]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np

from lumbar_core.ingested import IngestedData
from lumbar_core.manifest import StageInput
from lumbar_core.spider import CANAL, CLASSES, DISC, THORACIC, VERTEBRA_CLASSES
from lumbar_core.stages import ingest, vertebra_segment, vertebra_train
from lumbar_core.stages.vertebra_train import dice_per_class
from lumbar_core.synthetic import anatomy as an
from lumbar_core.synthetic import generate, get_profile


def truth_classes(tissue: np.ndarray) -> np.ndarray:
    """The U-Net's classes from the phantom's tissue labels (a sixth lumbar vertebra counts as S1's neighbour, not scored)."""
    out = np.zeros(tissue.shape, dtype=np.uint8)
    for name in an.ALL_VERTEBRAE:
        labels = [an.BODY_LABEL[name], an.MODIC1_LABEL[name], an.MODIC2_LABEL[name]]
        out[np.isin(tissue, labels)] = VERTEBRA_CLASSES.get(name, 0 if name == "L6" else THORACIC)
    out[np.isin(tissue, [*an.DISC_LABEL.values(), *an.NUCLEUS_LABEL.values()])] = DISC
    out[np.isin(tissue, an.CANAL_TISSUES)] = CANAL
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", type=int, default=10)
    parser.add_argument("--spider-cases", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--style", default="mixed", help="scanner style of the RSNA-layout studies")
    parser.add_argument("--spider-style", default="", help="scanner style of the SPIDER export ('' = --style)")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    profile = get_profile("tiny").with_overrides({"style": args.style, "spider_style": args.spider_style})
    with tempfile.TemporaryDirectory() as tmp:
        data, run = Path(tmp) / "data", str(Path(tmp) / "run")
        generate(data, studies=args.studies, profile=profile, seed=args.seed, spider_cases=args.spider_cases)
        ingest.run(data_uri=str(data), run_uri=run, params=ingest.IngestParams())
        t0 = time.perf_counter()
        vertebra_train.run(spider_uri=str(data / "spider"), run_uri=run, params=vertebra_train.VertebraTrainParams(epochs=args.epochs))
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        manifest = vertebra_segment.run(run_uri=run, params=vertebra_segment.VertebraSegmentParams(fallback_to_labels=False))
        segment_s = time.perf_counter() - t0
        trained = StageInput.open(run, "vertebra-train").manifest.metrics
        segment = StageInput.open(run, "vertebra-segment")
        ingested = IngestedData.open(run)
        preds, truths = [], []
        for row in ingested.index[ingested.index["orientation"] == "sagittal"].itertuples():
            with np.load(io.BytesIO(segment.read_bytes(f"masks/{row.study_id}/{row.series_id}_{row.stack}.npz"))) as z:
                mask = z["mask"]
            volume = ingested.volume(row.study_id, row.series_id, row.stack)
            truth = np.load(data / "truth" / "masks" / str(row.study_id) / f"{row.series_id}.npz")
            order = {int(n): i for i, n in enumerate(truth["instance_numbers"])}
            tissue = np.stack([truth["labels"][order[int(n)]] for n in volume.instance_numbers])
            preds.append(mask.ravel())
            truths.append(truth_classes(tissue).ravel())
        held_out = dice_per_class(np.concatenate(preds), np.concatenate(truths), len(CLASSES))
    print(f"styles: RSNA-layout studies {args.style}, SPIDER export {args.spider_style or args.style}")
    print(f"vertebra-train: {args.epochs} epochs on {trained['train_series']} SPIDER series in {train_s:.0f} s (CPU)")
    print(f"{'class':<10}{'val Dice (SPIDER)':>20}{'held-out Dice (RSNA phantom)':>30}")
    for name in CLASSES[1:]:
        print(f"{name:<10}{trained['val_dice'][name]:>20.3f}{held_out[name]:>30.3f}")
    m = manifest.metrics
    found = m.get("levels_model", 0)
    print(f"vertebra-segment: {m['studies']} studies in {segment_s:.0f} s; levels found by the model: {found} of {5 * m['studies']}")
    if "median_error_mm" not in m:
        print("localisation vs labelled spinal canal points: no level found by the model")
        return
    print(
        f"localisation vs labelled spinal canal points: median {m['median_error_mm']:.1f} mm, "
        f"{100 * m['share_within_5mm']:.0f}% within 5 mm, {100 * m['share_right_level']:.0f}% nearest the right level"
    )


if __name__ == "__main__":
    main()
