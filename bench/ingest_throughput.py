"""Ingest throughput (files per second per core) on a realistic-profile phantom, against a naive loop.

The naive loop reads every file with pydicom (``pixel_array``), sorts each series by
ImagePositionPatient along the slice normal and stacks it; it neither splits stacks, checks
anything, nor writes. ``ingest`` does all of that and writes compressed volumes and tables. Both
run on one core in the same process, in interleaved rounds (the median of each is printed, with
the spread of the per-round ratio to the naive loop).

    .venv/bin/python bench/ingest_throughput.py [--studies 3] [--repeats 3] [--data DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import blosc2
import numpy as np
import pydicom

from lumbar_core.ingested import load_volume
from lumbar_core.stages.ingest import IngestParams, run
from lumbar_core.synthetic import generate, get_profile

REAL_FILES = 147_000
CODECS = [("zstd", 1), ("lz4", 1), ("deflate", 1), ("none", 0)]


def naive(root: Path) -> int:
    count = 0
    for series in sorted((root / "train_images").glob("*/*")):
        datasets = [pydicom.dcmread(p) for p in series.glob("*.dcm")]
        count += len(datasets)
        normal = np.cross(*np.array(datasets[0].ImageOrientationPatient, dtype=float).reshape(2, 3))
        datasets.sort(key=lambda d: float(np.array(d.ImagePositionPatient, dtype=float) @ normal))
        shapes = {d.pixel_array.shape for d in datasets}
        if len(shapes) == 1:
            np.stack([d.pixel_array for d in datasets])
    return count


def _ingest(root: Path, out: Path, codec: str, level: int) -> float:
    t0 = time.perf_counter()
    run(data_uri=str(root), run_uri=str(out), params=IngestParams(workers=1, codec=codec, compression=level))
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of naive loop + every codec, interleaved; medians are printed")
    parser.add_argument("--data", help="an existing dataset root (default: generate a realistic phantom)")
    args = parser.parse_args()
    blosc2.set_nthreads(1)  # one core: the figures are per core
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data) if args.data else Path(tmp) / "data"
        if not args.data:
            t0 = time.perf_counter()
            generate(root, studies=args.studies, profile=get_profile("realistic").with_overrides({"spider_cases": "0"}), seed=1)
            print(f"generated {args.studies} realistic studies in {time.perf_counter() - t0:.1f} s")
        files = len(list((root / "train_images").glob("*/*/*.dcm")))
        _ingest(root, Path(tmp) / "warm-up", "none", 0)
        naive_s: list[float] = []
        ingest_s: dict[tuple[str, int], list[float]] = {key: [] for key in CODECS}
        for round_no in range(args.repeats):
            t0 = time.perf_counter()
            naive(root)
            naive_s.append(time.perf_counter() - t0)
            for codec, level in CODECS:
                out = Path(tmp) / f"run-{codec}-{round_no}"
                ingest_s[(codec, level)].append(_ingest(root, out, codec, level))
        results = {}
        for codec, level in CODECS:
            out = Path(tmp) / f"run-{codec}-0"
            volumes = sorted(out.glob("ingest/attempt-*/volumes/*/*"))
            t0 = time.perf_counter()
            voxels = sum(load_volume(p.read_bytes()).pixels.size for p in volumes)
            read_s = time.perf_counter() - t0
            stored = sum(p.stat().st_size for p in volumes)
            seconds = statistics.median(ingest_s[(codec, level)])
            ratios = [n / i for n, i in zip(naive_s, ingest_s[(codec, level)])]
            results[(codec, level)] = (files / seconds, voxels * 2 / 1e6 / seconds, stored / voxels, read_s / len(volumes) * 1e3, ratios)
    naive_rate = files / statistics.median(naive_s)
    print(f"files: {files}; {args.repeats} interleaved rounds, medians")
    print(f"naive read-then-sort      : {naive_rate:7.1f} files/s/core (reads and sorts only)")
    for (codec, level), (rate, mbs, bpv, read_ms, ratios) in results.items():
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
        print(
            f"ingest, {codec:>7} level {level}: {rate:7.1f} files/s/core ({rate / naive_rate:.2f}x naive; rounds {spread}), "
            f"{mbs:6.1f} MB/s of pixels, {bpv:.2f} bytes/voxel, read back {read_ms:.1f} ms/volume"
        )
    for (codec, _level), (rate, *_rest) in results.items():
        minutes = REAL_FILES / rate / 60
        print(f"real dataset ({REAL_FILES} files), {codec}: about {minutes:.0f} core-minutes, {minutes / 16:.1f} min on 16 cores")


if __name__ == "__main__":
    main()
