"""Generate a phantom dataset in the Kaggle RSNA 2024 layout, a SPIDER export and its truth.

Layout written under ``out``::

    train.csv, train_label_coordinates.csv, train_series_descriptions.csv
    train_images/{study_id}/{series_id}/{instance_number}.dcm
    test_series_descriptions.csv, test_images/..., sample_submission.csv
    spider/images/{case}_{t1|t2}.mha, spider/masks/{case}_{t1|t2}.mha
    truth/studies/{study_id}.json     pose, landmarks (LPS mm), degrees, grades, series layout
    truth/masks/{study_id}/{series_id}.npz   tissue labels per image (see synthetic.anatomy)
    truth/phantom.json                profile, seed, counts

The whole dataset is generated into a temporary sibling folder and moved into place at the end,
so a failed or interrupted run leaves nothing half-written. Studies are generated in parallel
processes; the same seed gives the same bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from lumbar_core import settings, vocab
from lumbar_core.errors import UserError
from lumbar_core.synthetic import anatomy as an
from lumbar_core.synthetic import render
from lumbar_core.synthetic.dicom_writer import SeriesTags, uid, write_image
from lumbar_core.synthetic.grades import sample_grades
from lumbar_core.synthetic.profiles import PhantomProfile
from lumbar_core.synthetic.scanner import Scanner, draw_scanner, get_style
from lumbar_core.synthetic.spider import write_spider_case


class SynthError(UserError):
    """Bad arguments or an output folder that cannot be written."""


@dataclass(frozen=True)
class StudyTask:
    """What one worker needs to generate one study."""

    index: int
    study_id: int
    split: str
    seed: int
    profile: PhantomProfile
    root: str


@dataclass
class StudyResult:
    """What one study contributes to the CSV files."""

    study_id: int
    split: str
    series: list[tuple[int, int, str]] = field(default_factory=list)
    label_row: dict[str, Any] | None = None
    coordinates: list[dict[str, Any]] = field(default_factory=list)


def _series_kinds(rng: np.random.Generator, p: PhantomProfile) -> list[tuple[str, bool]]:
    """(description, per-disc axial?) of each series of a study."""
    kinds: list[tuple[str, bool]] = []
    if rng.random() >= p.p_missing_t1:
        kinds.append((vocab.SAGITTAL_T1, False))
    if rng.random() >= p.p_missing_t2:
        kinds.append((vocab.SAGITTAL_T2, False))
    kinds.append((vocab.AXIAL_T2, bool(rng.random() < p.p_axial_per_disc)))
    if rng.random() < p.p_second_axial:
        kinds.append((vocab.AXIAL_T2, bool(rng.random() < p.p_axial_per_disc)))
    return kinds


def plan_study(rng: np.random.Generator, anatomy: an.Anatomy, p: PhantomProfile, scanner: Scanner) -> list[render.SeriesPlan]:
    """Series of one study, with their sequences, planes and instance numbers."""
    plans = []
    used: set[int] = set()
    for number, (description, per_disc) in enumerate(_series_kinds(rng, p), start=1):
        series_id = int(rng.integers(10_000_000, 4_000_000_000))
        while series_id in used:
            series_id += 1
        used.add(series_id)
        if description == vocab.AXIAL_T2:
            stacks, thickness = render.plan_axial(anatomy, p, rng, per_disc)
        else:
            planes, thickness = render.plan_sagittal(anatomy, p, rng)
            stacks = [planes]
        plan = render.SeriesPlan(series_id, description, stacks, thickness, bool(rng.random() >= p.p_no_slice_thickness), number)
        plan.sequence = render.sequence_of(description, scanner)
        render.assign_instance_numbers(plan, p, rng)
        plans.append(plan)
    return plans


# echo time, repetition time, inversion time (ms) per sequence
TIMING = {"T1": (12.0, 600.0, None), "T2": (95.0, 3500.0, None), "STIR": (60.0, 4000.0, 150.0), "T2FS": (90.0, 3800.0, None)}


def _write_series(
    task: StudyTask, plan: render.SeriesPlan, anatomy: an.Anatomy, scanner: Scanner, rng: np.random.Generator, study_uid: str
) -> None:
    p = task.profile
    lut = render.lookup_table(plan.contrast, anatomy, rng, scanner.contrast)
    size = plan.stacks[0][0].rows, plan.stacks[0][0].cols
    bias = render.bias_field(size, rng, scanner.bias)
    gain = scanner.gain * rng.uniform(0.85, 1.15)
    echo, repetition, inversion = TIMING[plan.contrast]
    spacing = None
    if len(plan.stacks[0]) > 1 and rng.random() < 0.5:
        spacing = float(np.linalg.norm(plan.stacks[0][1].ipp - plan.stacks[0][0].ipp))
    tags = SeriesTags(
        study_id=task.study_id,
        series_id=plan.series_id,
        series_number=plan.series_number,
        description=plan.description,
        study_uid=study_uid,
        series_uid=uid(task.seed, task.study_id, plan.series_id),
        thickness=round(plan.thickness, 3) if plan.write_thickness else None,
        spacing_between=spacing,
        echo_time=echo,
        repetition_time=repetition,
        inversion_time=inversion,
        fat_saturated=plan.contrast == "T2FS",
        manufacturer=scanner.vendor,
        field_strength=scanner.field_strength,
    )
    folder = Path(task.root) / f"{task.split}_images" / str(task.study_id) / str(plan.series_id)
    masks, numbers = [], []
    for instance, plane in plan.slices():
        image, labels = render.render_slice(anatomy, plane, lut, plan.thickness, p.subsamples)
        pixels = render.to_pixels(image, bias, scanner.noise, gain, rng, scanner.offset)
        write_image(folder / f"{instance}.dcm", pixels, plane, instance, tags)
        masks.append(labels)
        numbers.append(instance)
    mask_path = Path(task.root) / "truth" / "masks" / str(task.study_id) / f"{plan.series_id}.npz"
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(mask_path, labels=np.stack(masks), instance_numbers=np.array(numbers, dtype=np.int64))


def _coordinate(plan: render.SeriesPlan, point: np.ndarray, jitter_mm: float, rng: np.random.Generator) -> tuple[int, float, float, float]:
    """(instance, x, y, distance mm) of a world point on the nearest image of a series."""
    instance, plane, distance = plan.nearest_slice(point)
    x, y, _ = plane.world_to_pixel(point)
    if jitter_mm > 0:
        x += rng.normal(0, jitter_mm / plane.col_spacing / 2)
        y += rng.normal(0, jitter_mm / plane.row_spacing / 2)
    return instance, float(x), float(y), distance


def generate_study(task: StudyTask) -> StudyResult:
    """Generate one study's images, truth and label rows (runs in a worker process)."""
    p = task.profile
    rng = np.random.default_rng(np.random.SeedSequence([task.seed, 1, task.index]))
    grades = sample_grades(rng, label_noise_sd=p.label_noise_sd, p_missing_cell=p.p_missing_cell)
    anatomy = an.build_anatomy(rng, grades.degree, p_transitional=p.p_transitional)
    scanner = draw_scanner(rng, get_style(p.style))
    plans = plan_study(rng, anatomy, p, scanner)
    study_uid = uid(task.seed, task.study_id)
    for plan in plans:
        _write_series(task, plan, anatomy, scanner, rng, study_uid)
    result = StudyResult(task.study_id, task.split, [(task.study_id, pl.series_id, pl.description) for pl in plans])
    lm = anatomy.landmarks
    if task.split == "train":
        row: dict[str, Any] = {"study_id": task.study_id}
        first = {d: next((pl for pl in plans if pl.description == d), None) for d in vocab.SERIES_TYPES}
        for condition in vocab.CONDITIONS:
            side = vocab.CONDITION_SIDE[condition]
            for level in vocab.LEVELS:
                label = grades.label[(condition, level)]
                row[vocab.target_column(condition, level)] = None if label is None else vocab.SEVERITIES[label]
                plan = first[vocab.CONDITION_SERIES[condition]]
                if label is None or plan is None:
                    continue
                group = vocab.CONDITION_GROUP[condition]
                point = lm.canal[level] if group == "spinal" else (lm.foramen if group == "foraminal" else lm.recess)[(side, level)]
                instance, x, y, _ = _coordinate(plan, point, p.coord_jitter_mm, rng)
                result.coordinates.append(
                    {
                        "study_id": task.study_id,
                        "series_id": plan.series_id,
                        "instance_number": instance,
                        "condition": vocab.CONDITION_TITLES[condition],
                        "level": vocab.LEVEL_TITLES[level],
                        "x": round(x, 3),
                        "y": round(y, 3),
                    }
                )
        result.label_row = row
    truth = {
        "study_id": task.study_id,
        "split": task.split,
        "pose": {"rotation": anatomy.pose_rotation.round(6).tolist(), "shift_mm": anatomy.pose_shift.round(4).tolist()},
        "scanner": scanner.to_dict(),
        "vertebrae": anatomy.vertebrae,
        "transitional": anatomy.transitional,
        "disc_degeneration": {k: round(v, 4) for k, v in anatomy.disc_degeneration.items()},
        "landmarks": lm.to_dict(),
        "targets": [
            {
                "condition": c,
                "level": lv,
                "degree": round(grades.degree[(c, lv)], 5),
                "grade": grades.grade[(c, lv)],
                "label": grades.label[(c, lv)],
            }
            for c in vocab.CONDITIONS
            for lv in vocab.LEVELS
        ],
        "series": [
            {
                "series_id": pl.series_id,
                "description": pl.description,
                "sequence": pl.contrast,
                "stacks": len(pl.stacks),
                "slice_spacing_mm": round(float(np.linalg.norm(pl.stacks[0][1].ipp - pl.stacks[0][0].ipp)), 4)
                if len(pl.stacks[0]) > 1
                else None,
                "pixel_spacing_mm": round(pl.stacks[0][0].row_spacing, 4),
                "instance_numbers": pl.instance_numbers,
                "slice_thickness_written": pl.write_thickness,
            }
            for pl in plans
        ],
    }
    truth_path = Path(task.root) / "truth" / "studies" / f"{task.study_id}.json"
    truth_path.parent.mkdir(parents=True, exist_ok=True)
    truth_path.write_text(json.dumps(truth, indent=1))
    return result


def _study_ids(rng: np.random.Generator, n: int) -> list[int]:
    ids: set[int] = set()
    while len(ids) < n:
        ids.add(int(rng.integers(4_000_000, 4_290_000_000)))
    return sorted(ids, key=lambda _: rng.random())


def _run_parallel(fn, tasks: list, workers: int, desc: str) -> list:
    if workers <= 1 or len(tasks) <= 1:
        return [fn(t) for t in tqdm(tasks, desc=desc, unit="study", leave=False)]
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        return list(tqdm(pool.map(fn, tasks), total=len(tasks), desc=desc, unit="study", leave=False))


def _check_output(out: Path, overwrite: bool) -> None:
    """Refuse before any work: a file, a non-empty folder without ``overwrite``, or one that is not a phantom.

    ``overwrite`` replaces only a folder this generator wrote (``truth/phantom.json``); the folder that
    holds the current one is never used (it is replaced whole).
    """
    if out.exists() and not out.is_dir():
        raise SynthError(f"output {out} exists and is not a folder")
    if out == Path.cwd() or out in Path.cwd().parents:
        raise SynthError(f"refusing to write the phantom to {out}: the folder is replaced whole and it holds the current folder")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise SynthError(f"output folder {out} is not empty; pass overwrite=True (--overwrite) to replace it")
        if not (out / "truth" / "phantom.json").is_file():
            raise SynthError(f"refusing to replace {out}: it is not a phantom folder (no truth/phantom.json); choose an empty folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = out.parent / f".lumbar-probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise SynthError(f"cannot write the output folder {out}: {exc.strerror or exc}") from None


def generate(
    out: str | os.PathLike,
    *,
    studies: int,
    test_studies: int = 0,
    profile: PhantomProfile,
    seed: int = 0,
    workers: int | None = None,
    overwrite: bool = False,
    spider_cases: int | None = None,
) -> dict[str, Any]:
    """Write a phantom dataset to ``out``; returns a summary (counts, seed, profile).

    Raises:
        SynthError: negative counts or an output folder that cannot be written (checked first;
            nothing is left behind on failure).
    """
    spider_cases = profile.spider_cases if spider_cases is None else spider_cases
    for name, value in (("studies", studies), ("test_studies", test_studies), ("spider_cases", spider_cases)):
        if value < 0:
            raise SynthError(f"{name} must be >= 0, got {value}")
    if studies + test_studies == 0:
        raise SynthError("nothing to generate: studies and test_studies are both 0")
    out = Path(out).resolve()
    _check_output(out, overwrite)
    workers = workers or settings.workers()
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
        ids = _study_ids(rng, studies + test_studies)
        tasks = [StudyTask(i, sid, "train" if i < studies else "test", seed, profile, str(tmp)) for i, sid in enumerate(ids)]
        results = _run_parallel(generate_study, tasks, workers, "phantom studies")
        spider_tasks = [(seed, case, profile, str(tmp / "spider")) for case in range(1, spider_cases + 1)]
        _run_parallel(_spider_task, spider_tasks, workers, "SPIDER cases")
        summary = _write_tables(tmp, results)
        summary.update(seed=seed, profile=profile.to_dict(), spider_cases=spider_cases)
        (tmp / "truth").mkdir(exist_ok=True)
        (tmp / "truth" / "phantom.json").write_text(json.dumps(summary, indent=1, sort_keys=True))
        if out.exists():
            trash = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            out.rename(trash)
            tmp.rename(out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _spider_task(args: tuple) -> None:
    seed, case, profile, root = args
    write_spider_case(Path(root), case, seed, profile)


def _write_tables(root: Path, results: list[StudyResult]) -> dict[str, Any]:
    train = [r for r in results if r.split == "train"]
    test = [r for r in results if r.split == "test"]
    series_cols = ["study_id", "series_id", "series_description"]
    for split, rows in (("train", train), ("test", test)):
        table = pd.DataFrame([s for r in rows for s in r.series], columns=series_cols).sort_values(["study_id", "series_id"])
        table.to_csv(root / f"{split}_series_descriptions.csv", index=False)
    if train:
        labels = pd.DataFrame([r.label_row for r in train], columns=["study_id", *vocab.target_columns()]).sort_values("study_id")
        labels.to_csv(root / "train.csv", index=False)
        coord_cols = ["study_id", "series_id", "instance_number", "condition", "level", "x", "y"]
        coords = pd.DataFrame([c for r in train for c in r.coordinates], columns=coord_cols)
        coords.sort_values(["study_id", "series_id", "condition", "level"]).to_csv(root / "train_label_coordinates.csv", index=False)
    rows = [t.row_id for r in sorted(test, key=lambda r: r.study_id) for t in vocab.study_targets(r.study_id)]
    sample = pd.DataFrame({"row_id": rows, "normal_mild": 1 / 3, "moderate": 1 / 3, "severe": 1 / 3})
    sample.to_csv(root / "sample_submission.csv", index=False)
    return {
        "train_studies": len(train),
        "test_studies": len(test),
        "series": sum(len(r.series) for r in results),
        "coordinates": sum(len(r.coordinates) for r in train),
    }
