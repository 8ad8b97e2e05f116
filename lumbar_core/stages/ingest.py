"""ingest (cpu): read a dataset root in the RSNA layout into volumes and tables.

Reads ``{data}/{split}_images/{study}/{series}/{instance}.dcm``, ``{split}_series_descriptions.csv``
and, for the training split, ``train.csv`` and ``train_label_coordinates.csv`` (local or ``s3://``).

Writes under ``{run}/ingest/`` (or ``{run}/ingest-shard-{i}/`` for one shard of several):

* ``series_index.parquet``: one row per stack (study, series, description, stack, orientation,
  slice order, spacing, shape, affine, volume location, file count, problems);
* ``slices.parquet``: one row per image (stack, slice index in spatial order, instance, IPP);
* ``volumes/{study}/{series}_{stack}.vol`` (``.npz`` with ``--codec deflate``): pixels (slices, rows, cols) in spatial order, each
  slice's IPP, the orientation, pixel spacing, instance numbers and the affine;
* ``labels.parquet``: train.csv in long form (see :mod:`lumbar_core.labels`);
* ``coordinates.parquet``: the label coordinates with condition/level in snake_case, their stack,
  slice index and world position (LPS mm);
* ``problems.parquet``: every unreadable file, non-image file, file without geometry, missing
  series type, series without a description row, unknown description, and label row pointing at a
  missing series or instance. None of them stops the run.

Studies are processed in parallel worker processes, with a progress bar.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from lumbar_core import input_tables, settings, store, vocab
from lumbar_core.dicom import DicomReadError, SliceRecord, group_stacks, orientation_name, read_slice
from lumbar_core.errors import UserError
from lumbar_core.ingested import PROBLEM_COLUMNS, TABLES, check_codec, encode_volume, volume_suffix
from lumbar_core.manifest import FileEntry, Manifest, StageInput, StageOutput, shard_stage
from lumbar_core.params import Params

STAGE = "ingest"


@dataclass(frozen=True)
class IngestParams(Params):
    """Parameters of ingest.

    Attributes:
        split: ``train`` or ``test``: which image folder and tables to read.
        workers: worker processes (0 = ``LUMBAR_WORKERS`` or the CPU count).
        shard_index: this shard's number, 0-based.
        shard_count: shards in all; studies (sorted) are dealt round-robin to shards.
        studies: only these study ids (empty = all).
        codec: how volume files are compressed: lz4 (default) or zstd (blosc2, after a bit shuffle), deflate, none.
        compression: the codec's level, 0 (fastest) to 9.
        name: the stage name to write (e.g. ``ingest-validation`` for a second set of studies in one run).
    """

    split: str = "train"
    workers: int = 0
    shard_index: int = 0
    shard_count: int = 1
    studies: tuple[int, ...] = ()
    codec: str = "lz4"
    compression: int = 1
    name: str = STAGE


INDEX_COLUMNS = [
    "study_id", "series_id", "description", "stack", "orientation", "normal_x", "normal_y", "normal_z", "slice_order", "n_slices",
    "rows", "cols", "row_spacing", "col_spacing", "slice_spacing", "slice_thickness", "affine", "volume_path", "file_count", "problems",
]  # fmt: skip
SLICE_COLUMNS = ["study_id", "series_id", "stack", "slice", "instance_number", "ipp_x", "ipp_y", "ipp_z"]


@dataclass(frozen=True)
class _StudyTask:
    data_uri: str
    split: str
    study_id: int
    series: dict[int, list[str]]
    descriptions: dict[int, str | None]
    out_root: str
    codec: str
    compression: int


def _problem(study: Any, series: Any, file: str, kind: str, message: str) -> dict[str, Any]:
    return {"study_id": study, "series_id": series, "file": file, "kind": kind, "message": message}


def _describe(task: _StudyTask, series_id: int, records: list[SliceRecord], problems: list[dict]) -> str:
    known = task.descriptions.get(series_id)
    if known is None:
        tag = records[0].description if records else ""
        problems.append(
            _problem(
                task.study_id,
                series_id,
                "",
                "no description row",
                f"study {task.study_id} series {series_id} has no row in {task.split}_series_descriptions.csv; "
                f"using the SeriesDescription tag {tag!r}",
            )
        )
        known = tag
    if known not in vocab.SERIES_TYPES:
        problems.append(
            _problem(
                task.study_id,
                series_id,
                "",
                "unknown description",
                f"study {task.study_id} series {series_id}: description {known!r} is not one of {', '.join(vocab.SERIES_TYPES)}",
            )
        )
    return known


def ingest_study(task: _StudyTask) -> tuple[list[dict], list[dict], list[dict], list[FileEntry]]:
    """Read one study: (stack rows, slice rows, problems, written files). Runs in a worker."""
    index_rows: list[dict] = []
    slice_rows: list[dict] = []
    problems: list[dict] = []
    files: list[FileEntry] = []
    present_types = set()
    for series_id, paths in sorted(task.series.items()):
        records: list[SliceRecord] = []
        series_problems: list[str] = []
        for rel in paths:
            uri = store.join(task.data_uri, rel)
            try:
                records.append(read_slice(store.read_bytes(uri), rel))
            except DicomReadError as exc:
                problems.append(_problem(task.study_id, series_id, rel, exc.kind, str(exc)))
                series_problems.append(exc.kind)
            except store.StoreError as exc:
                problems.append(_problem(task.study_id, series_id, rel, "unreadable", str(exc)))
                series_problems.append("unreadable")
        records = _drop_copies(task, series_id, records, problems)
        _report_duplicate_numbers(task, series_id, records, problems)
        converted = [r for r in records if r.note]
        if converted:
            message = f"study {task.study_id} series {series_id}: {len(converted)} file(s) converted: {converted[0].note}"
            problems.append(_problem(task.study_id, series_id, converted[0].source, "converted", message))
        description = _describe(task, series_id, records, problems)
        if not records:
            problems.append(
                _problem(task.study_id, series_id, "", "empty series", f"study {task.study_id} series {series_id}: no usable image")
            )
            continue
        present_types.add(description)
        for stack_no, stack in enumerate(group_stacks(records)):
            rel = f"volumes/{task.study_id}/{series_id}_{stack_no}{volume_suffix(task.codec)}"
            parts = encode_volume(
                {
                    "pixels": [s.pixels for s in stack.slices],
                    "ipp": np.stack([s.plane.ipp for s in stack.slices]),
                    "row_dir": stack.plane.row_dir,
                    "col_dir": stack.plane.col_dir,
                    "pixel_spacing": np.array([stack.plane.row_spacing, stack.plane.col_spacing]),
                    "instance_numbers": np.array(stack.instance_numbers),
                    "affine": stack.affine(),
                },
                codec=task.codec,
                level=task.compression,
            )
            store.write_parts(store.join(task.out_root, rel), parts)
            files.append(FileEntry(rel, sum(len(part) for part in parts), store.sha256_parts(parts)))
            normal = stack.plane.normal
            thicknesses = {s.thickness for s in stack.slices}
            index_rows.append(
                {
                    "study_id": task.study_id,
                    "series_id": series_id,
                    "description": description,
                    "stack": stack_no,
                    "orientation": orientation_name(normal),
                    "normal_x": normal[0],
                    "normal_y": normal[1],
                    "normal_z": normal[2],
                    "slice_order": stack.slice_order,
                    "n_slices": len(stack.slices),
                    "rows": stack.plane.rows,
                    "cols": stack.plane.cols,
                    "row_spacing": stack.plane.row_spacing,
                    "col_spacing": stack.plane.col_spacing,
                    "slice_spacing": stack.slice_spacing,
                    "slice_thickness": next(iter(thicknesses)) if len(thicknesses) == 1 else None,
                    "affine": stack.affine().ravel().tolist(),
                    "volume_path": rel,
                    "file_count": len(paths),
                    "problems": ";".join(sorted(set(series_problems))),
                }
            )
            for k, s in enumerate(stack.slices):
                slice_rows.append(
                    {
                        "study_id": task.study_id,
                        "series_id": series_id,
                        "stack": stack_no,
                        "slice": k,
                        "instance_number": s.instance,
                        "ipp_x": s.plane.ipp[0],
                        "ipp_y": s.plane.ipp[1],
                        "ipp_z": s.plane.ipp[2],
                    }
                )
    for series_type in vocab.SERIES_TYPES:
        if series_type not in present_types:
            problems.append(_problem(task.study_id, None, "", "missing series type", f"study {task.study_id} has no {series_type} series"))
    return index_rows, slice_rows, problems, files


def _drop_copies(task: _StudyTask, series_id: int, records: list[SliceRecord], problems: list[dict]) -> list[SliceRecord]:
    """Keep one of several files with the same place, orientation, instance number and pixels (a copied file)."""
    kept: dict[tuple, list[SliceRecord]] = defaultdict(list)
    out = []
    for r in sorted(records, key=lambda r: r.source):
        key = (
            r.instance,
            *np.round(r.plane.ipp, 3).tolist(),
            *np.round(r.plane.row_dir, 4).tolist(),
            *np.round(r.plane.col_dir, 4).tolist(),
        )
        same = next((k for k in kept[key] if k.pixels.shape == r.pixels.shape and np.array_equal(k.pixels, r.pixels)), None)
        if same is not None:
            message = (
                f"study {task.study_id} series {series_id}: {r.source} repeats {same.source} (same instance, place and pixels); kept once"
            )
            problems.append(_problem(task.study_id, series_id, r.source, "duplicate file", message))
            continue
        kept[key].append(r)
        out.append(r)
    return out


def _report_duplicate_numbers(task: _StudyTask, series_id: int, records: list[SliceRecord], problems: list[dict]) -> None:
    """Different images carrying one InstanceNumber: labels on that number are ambiguous (reported at the coordinates)."""
    by_number: dict[int, list[str]] = defaultdict(list)
    for r in records:
        by_number[r.instance].append(r.source)
    for number, sources in sorted(by_number.items()):
        if len(sources) > 1:
            message = f"study {task.study_id} series {series_id}: InstanceNumber {number} is in {len(sources)} files: {', '.join(sources)}"
            problems.append(_problem(task.study_id, series_id, sources[0], "duplicate instance number", message))


def _list_images(data_uri: str, split: str) -> dict[int, dict[int, list[str]]]:
    """Study -> series -> relative paths of ``{split}_images``; other files are ignored."""
    folder = f"{split}_images"
    out: dict[int, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    for obj in store.list_objects(store.join(data_uri, folder)):
        parts = PurePosixPath(obj.path).parts
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
            continue
        out[int(parts[0])][int(parts[1])].append(f"{folder}/{obj.path}")
    return out


def _coordinates(coords: pd.DataFrame, slices: pd.DataFrame, index: pd.DataFrame, problems: list[dict], source: str) -> pd.DataFrame:
    """Label coordinates with stack, slice and world position; rows that cannot be placed become problems.

    A row is dropped (and reported with its line of ``source``) when it points at an instance that was
    not ingested or that several images carry, or when x/y is missing or outside the image.
    """
    key = ["study_id", "series_id", "instance_number"]
    ambiguous = slices[slices.duplicated(key, keep=False)][key].drop_duplicates()
    merged = coords.merge(slices.drop_duplicates(key, keep=False), on=key, how="left")
    merged = merged.merge(ambiguous.assign(is_ambiguous=True), on=key, how="left")
    merged = merged.merge(index[["study_id", "series_id", "stack", "rows", "cols"]], on=["study_id", "series_id", "stack"], how="left")
    keep = np.ones(len(merged), dtype=bool)
    for i, row in enumerate(merged.itertuples()):
        where = f"{source} line {row.line}: {row.condition} {row.level}"
        target = f"study {row.study_id} series {row.series_id} instance {row.instance_number}"
        if row.is_ambiguous is True:
            kind, message = "label points at ambiguous instance", f"{where} points at {target}, which several images carry"
        elif pd.isna(row.slice):
            kind, message = "label points at missing instance", f"{where} points at {target}, which was not ingested"
        elif not (np.isfinite(row.x) and np.isfinite(row.y)):
            kind, message = "bad label coordinate", f"{where}: x={row.x}, y={row.y} on {target} is not a number"
        elif not (0 <= row.x <= row.cols and 0 <= row.y <= row.rows):
            kind, message = (
                "bad label coordinate",
                f"{where}: x={row.x}, y={row.y} is outside the {int(row.cols)}x{int(row.rows)} image {target}",
            )
        else:
            continue
        keep[i] = False
        problems.append(_problem(row.study_id, row.series_id, f"{row.instance_number}.dcm", kind, message))
    merged = merged[keep].drop(columns=["is_ambiguous", "rows", "cols", "line"]).copy()
    if merged.empty:
        return merged.drop(columns=["ipp_x", "ipp_y", "ipp_z"]).assign(world_x=[], world_y=[], world_z=[])
    merged["stack"] = merged["stack"].astype(int)
    merged["slice"] = merged["slice"].astype(int)
    geometry = index.set_index(["study_id", "series_id", "stack"])
    rows = geometry.index.get_indexer(pd.MultiIndex.from_frame(merged[["study_id", "series_id", "stack"]]))
    affine = np.stack(geometry["affine"].to_numpy())[rows].reshape(-1, 4, 4)
    ipp = merged[["ipp_x", "ipp_y", "ipp_z"]].to_numpy()
    world = ipp + merged["x"].to_numpy()[:, None] * affine[:, :3, 0] + merged["y"].to_numpy()[:, None] * affine[:, :3, 1]
    merged[["world_x", "world_y", "world_z"]] = world
    return merged.drop(columns=["ipp_x", "ipp_y", "ipp_z"]).reset_index(drop=True)


def _run_parallel(tasks: list[_StudyTask], workers: int) -> list:
    if workers <= 1 or len(tasks) <= 1:
        return [ingest_study(t) for t in tqdm(tasks, desc="ingest", unit="study")]
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        return list(tqdm(pool.map(ingest_study, tasks), total=len(tasks), desc="ingest", unit="study"))


def run(*, data_uri: str, run_uri: str, params: IngestParams) -> Manifest:
    """Ingest one split (or one shard of it) of a dataset root into ``{run}/ingest``.

    The CSV files are read and checked first: a table that cannot be used stops the stage before
    any image is read (:class:`~lumbar_core.input_tables.InputTableError`). What one file, series,
    study or label row breaks is a row of ``problems.parquet``.
    """
    if params.split not in ("train", "test"):
        raise UserError(f"split must be 'train' or 'test', got {params.split!r}")
    try:
        check_codec(params.codec, params.compression)
    except ValueError as err:
        raise UserError(f"ingest: {err}") from None
    stage = shard_stage(params.name, params.shard_index, params.shard_count)
    problems: list[dict] = []
    descriptions_uri = store.join(data_uri, f"{params.split}_series_descriptions.csv")
    desc_table = input_tables.read_series_descriptions(descriptions_uri)
    train_uri, coords_uri = store.join(data_uri, "train.csv"), store.join(data_uri, "train_label_coordinates.csv")
    long_labels = coords = None
    if params.split == "train":
        long_labels = input_tables.read_train(train_uri)
        coords = input_tables.read_coordinates(coords_uri)
    folder = store.join(data_uri, params.split + "_images")
    images = _list_images(data_uri, params.split)
    if not images:
        raise FileNotFoundError(f"no DICOM files under {folder}/{{study}}/{{series}}/")
    studies = sorted(images)
    if params.studies:
        absent = sorted(set(params.studies) - set(studies))
        if absent:
            raise UserError(f"ingest: no images under {folder} for the requested studies {', '.join(map(str, absent[:10]))}")
        studies = [s for s in studies if s in set(params.studies)]
    studies = studies[params.shard_index :: params.shard_count]
    descriptions: dict[tuple[int, int], str] = {}
    if desc_table is None:
        problems.append(_problem(None, None, descriptions_uri, "no series descriptions", f"{descriptions_uri} is missing"))
    else:
        descriptions = {(int(r.study_id), int(r.series_id)): str(r.series_description) for r in desc_table.itertuples()}
    out = StageOutput(run_uri, stage)
    tasks = [
        _StudyTask(
            data_uri,
            params.split,
            study,
            {k: sorted(v) for k, v in images[study].items()},
            {series: descriptions.get((study, series)) for series in images[study]},
            out.root,
            params.codec,
            params.compression,
        )
        for study in studies
    ]
    results = _run_parallel(tasks, params.workers or settings.workers())
    index = pd.DataFrame([r for res in results for r in res[0]], columns=INDEX_COLUMNS)
    slices = pd.DataFrame([r for res in results for r in res[1]], columns=SLICE_COLUMNS)
    for res in results:
        problems.extend(res[2])
        for entry in res[3]:
            out.record(entry)
    index["volume_stage"] = out.stage
    tables: dict[str, pd.DataFrame] = {"series_index": index, "slices": slices}
    if params.split == "train":
        if params.shard_index == 0:
            problems.extend(_label_problems(long_labels, coords, set(images), train_uri, coords_uri))
        if long_labels is not None:
            tables["labels"] = long_labels[long_labels["study_id"].isin(studies)].reset_index(drop=True)
        if coords is not None:
            coords = coords[coords["study_id"].isin(studies)]
            tables["coordinates"] = _coordinates(coords, slices, index, problems, coords_uri)
    tables["problems"] = pd.DataFrame(problems, columns=PROBLEM_COLUMNS)
    for name, frame in tables.items():
        out.write_table(TABLES[name], frame)
    metrics = {
        "studies": len(studies),
        "stacks": len(index),
        "images": len(slices),
        "problems": len(problems),
    }
    return out.commit(params={**params.to_dict(), "data_uri": data_uri}, metrics=metrics)


def _label_problems(
    long_labels: pd.DataFrame | None, coords: pd.DataFrame | None, with_images: set[int], train_uri: str, coords_uri: str
) -> list[dict]:
    """Label files that are missing or empty, and labelled studies that have no images (reported by shard 0 alone)."""
    out = []
    if long_labels is None:
        out.append(_problem(None, None, train_uri, "no labels", f"{train_uri} is missing: the training split has no severities"))
    elif long_labels.empty:
        out.append(_problem(None, None, train_uri, "no labels", f"{train_uri} has no graded row"))
    if coords is None:
        out.append(_problem(None, None, coords_uri, "no label coordinates", f"{coords_uri} is missing"))
    labelled = set(long_labels["study_id"]) if long_labels is not None else set()
    pointed = set(coords["study_id"]) if coords is not None else set()
    for study in sorted((labelled | pointed) - with_images):
        files = [f for f, ids in ((train_uri, labelled), (coords_uri, pointed)) if study in ids]
        message = f"study {study} is labelled in {' and '.join(files)} but has no images"
        out.append(_problem(study, None, files[0], "labelled study without images", message))
    return out


@dataclass(frozen=True)
class MergeParams(Params):
    """Parameters of ingest-merge: how many shards of which ingest stage to combine."""

    shard_count: int = 1
    name: str = STAGE


_SAME_IN_EVERY_SHARD = ("split", "data_uri", "studies", "codec", "compression")


def _check_shard(name: str, index: int, count: int, got: dict, first: dict | None) -> None:
    """A shard belongs to this merge: its own index and count, and the split, data and studies of the first."""
    if got.get("shard_index") != index or got.get("shard_count") != count:
        raise UserError(
            f"ingest-merge: {name} was written as shard {got.get('shard_index')} of {got.get('shard_count')}, not {index} of {count}"
        )
    for key in _SAME_IN_EVERY_SHARD if first is not None else ():
        if got.get(key) != first.get(key):
            raise UserError(
                f"ingest-merge: {name} has {key}={got.get(key)!r} but shard 0 has {first.get(key)!r}; shards of one ingest only"
            )


def merge(*, run_uri: str, params: MergeParams) -> Manifest:
    """Combine ``ingest-shard-*`` stages into one ``ingest`` stage (tables; volumes stay in the shards)."""
    if params.shard_count <= 1:  # one shard wrote the stage itself
        return StageInput.open(run_uri, params.name).manifest
    parts: dict[str, list[pd.DataFrame]] = defaultdict(list)
    shard_params = []
    owner: dict[int, str] = {}
    for i in range(params.shard_count):
        name = shard_stage(params.name, i, params.shard_count)
        shard = StageInput.open(run_uri, name)
        _check_shard(name, i, params.shard_count, shard.params, shard_params[0] if shard_params else None)
        shard_params.append(shard.params)
        for table, path in TABLES.items():
            if path in shard.manifest.files:
                parts[table].append(shard.read_table(path))
        for study in parts["series_index"][-1]["study_id"].unique().tolist():
            if study in owner:
                raise UserError(f"ingest-merge: study {study} is in both {owner[study]} and {name}; rerun the shards of one ingest")
            owner[study] = name
    out = StageOutput(run_uri, params.name)
    for name, frames in parts.items():
        out.write_table(TABLES[name], pd.concat(frames, ignore_index=True))
    merged_index = pd.concat(parts["series_index"], ignore_index=True)
    metrics = {"studies": int(merged_index["study_id"].nunique()), "stacks": len(merged_index), "shards": params.shard_count}
    return out.commit(params={**params.to_dict(), "shards": shard_params}, metrics=metrics)
