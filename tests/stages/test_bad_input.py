"""Bad input, one case a line: each is reported with the file (or line and column) at fault, never silently wrong.

Every case copies two phantom studies, breaks one thing and runs ingest through the command line.
A *problem* case must exit 0, commit the stage and list a problem of the given kind naming the given
file; an *error* case must exit 2 with a one-line message matching the pattern and commit nothing.
"""

# ruff: noqa: E501  (the case tables keep one case a line)
from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from lumbar_core import store, vocab
from lumbar_core.cli import main
from lumbar_core.ingested import IngestedData
from lumbar_core.manifest import MANIFEST
from lumbar_core.stages.ingest import IngestParams, MergeParams, merge, run


@dataclass
class Data:
    """A copied dataset root and what the cases need to find in it."""

    root: Path
    studies: list[int]

    def series(self, study: int, description: str) -> Path:
        table = pd.read_csv(self.root / "train_series_descriptions.csv")
        row = table[(table["study_id"] == study) & (table["series_description"] == description)].iloc[0]
        return self.root / "train_images" / str(study) / str(row["series_id"])

    def files(self, study: int, description: str) -> list[Path]:
        return sorted(self.series(study, description).glob("*.dcm"), key=lambda p: int(p.stem))

    def labelled(self, study: int, description: str) -> tuple[Path, int]:
        """A file of the series that a label coordinate points at, and the coordinate's line."""
        coords = pd.read_csv(self.root / "train_label_coordinates.csv")
        folder = self.series(study, description)
        rows = coords[(coords["study_id"] == study) & (coords["series_id"] == int(folder.name))]
        return folder / f"{int(rows.iloc[0]['instance_number'])}.dcm", int(rows.index[0]) + 2

    def edit_csv(self, name: str, edit) -> None:
        path = self.root / name
        edit(pd.read_csv(path)).to_csv(path, index=False)


def _rewrite(path: Path, change) -> None:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path)


def _rgb(ds) -> None:
    grey = ds.pixel_array.astype(np.uint8)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = np.stack([grey] * 3, axis=-1).tobytes()


def _invert(ds) -> None:
    ds.PixelData = ((1 << int(ds.BitsStored)) - 1 - ds.pixel_array).astype(np.uint16).tobytes()
    ds.PhotometricInterpretation = "MONOCHROME1"


def _monochrome1(data: Data) -> str:
    files = data.files(data.studies[0], vocab.SAGITTAL_T1)
    for path in files:
        _rewrite(path, _invert)
    return files[0].name


def _byte_copy(data: Data) -> str:
    source = data.files(data.studies[0], vocab.SAGITTAL_T2)[1]
    shutil.copyfile(source, source.parent / "9001.dcm")
    return "9001.dcm"


def _duplicate_instance(data: Data) -> str:
    labelled, _ = data.labelled(data.studies[0], vocab.SAGITTAL_T2)
    other = next(p for p in data.files(data.studies[0], vocab.SAGITTAL_T2) if p != labelled)
    _rewrite(other, lambda ds: setattr(ds, "InstanceNumber", int(labelled.stem)))
    return labelled.name


def _nan_coordinate(data: Data) -> str:
    _, line = data.labelled(data.studies[0], vocab.SAGITTAL_T1)
    data.edit_csv("train_label_coordinates.csv", lambda t: t.assign(x=t["x"].where(t.index != line - 2, np.nan)))
    return f"line {line}"


def _far_coordinate(data: Data) -> str:
    _, line = data.labelled(data.studies[0], vocab.SAGITTAL_T1)
    data.edit_csv("train_label_coordinates.csv", lambda t: t.assign(y=t["y"].where(t.index != line - 2, 5000.0)))
    return f"line {line}"


def _one(data: Data, description: str, change) -> str:
    path = data.files(data.studies[0], description)[0]
    _rewrite(path, change)
    return path.name


def _replace_bytes(path: Path, change) -> str:
    path.write_bytes(change(path.read_bytes()))
    return path.name


def _first_cell(name: str, column: str, value: str) -> Callable[[Data], None]:
    def edit(data: Data) -> None:
        data.edit_csv(name, lambda t: t.astype({column: object}).assign(**{column: [value, *t[column].iloc[1:]]}))

    return edit


PROBLEMS = [
    # id, break it, problem kind, what the problem's file or message names
    ("rgb slice", lambda d: _one(d, vocab.SAGITTAL_T2, _rgb), "not greyscale", None),
    ("zero orientation", lambda d: _one(d, vocab.SAGITTAL_T1, lambda ds: setattr(ds, "ImageOrientationPatient", [0] * 6)), "bad geometry", None),
    ("non-orthogonal orientation", lambda d: _one(d, vocab.AXIAL_T2, lambda ds: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 1, 0, 0])), "bad geometry", None),
    ("no position", lambda d: _one(d, vocab.AXIAL_T2, lambda ds: delattr(ds, "ImagePositionPatient")), "missing geometry", None),
    ("truncated file", lambda d: _replace_bytes(d.files(d.studies[0], vocab.SAGITTAL_T2)[2], lambda b: b[:400]), "unreadable", None),
    ("text instead of DICOM", lambda d: _replace_bytes(d.files(d.studies[1], vocab.SAGITTAL_T2)[0], lambda b: b"not a dicom"), "unreadable", None),
    ("MONOCHROME1 series", _monochrome1, "converted", None),
    ("byte copy under another name", _byte_copy, "duplicate file", None),
    ("duplicate InstanceNumber on a labelled image", _duplicate_instance, "label points at ambiguous instance", None),
    ("NaN label coordinate", _nan_coordinate, "bad label coordinate", "msg"),
    ("label coordinate outside the image", _far_coordinate, "bad label coordinate", "msg"),
    ("labelled study without images", lambda d: shutil.rmtree(d.root / "train_images" / str(d.studies[1])) or str(d.studies[1]), "labelled study without images", "msg"),
    ("train.csv row of an absent study", lambda d: d.edit_csv("train.csv", lambda t: pd.concat([t, t.iloc[:1].assign(study_id=424242)])) or "424242", "labelled study without images", "msg"),
    ("train.csv with only its header", lambda d: d.edit_csv("train.csv", lambda t: t.iloc[:0]) or "train.csv", "no labels", None),
    ("no train.csv", lambda d: (d.root / "train.csv").unlink() or "train.csv", "no labels", None),
    ("no coordinates file", lambda d: (d.root / "train_label_coordinates.csv").unlink() or "train_label_coordinates.csv", "no label coordinates", None),
    ("series without a description row", lambda d: d.edit_csv("train_series_descriptions.csv", lambda t: t.iloc[1:]) or "", "no description row", None),
    ("unknown series description", lambda d: d.edit_csv("train_series_descriptions.csv", lambda t: t.assign(series_description=["Coronal", *t["series_description"].iloc[1:]])) or "Coronal", "unknown description", "msg"),
]  # fmt: skip

ERRORS = [
    # id, break it, extra command-line arguments, the one-line message
    ("empty series descriptions", lambda d: (d.root / "train_series_descriptions.csv").write_text(""), [], r"train_series_descriptions.csv: empty file"),
    ("study_id abc", _first_cell("train.csv", "study_id", "abc"), [], r"train.csv line 2, column study_id: 'abc' is not a whole number"),
    ("coordinates without x", lambda d: d.edit_csv("train_label_coordinates.csv", lambda t: t.drop(columns="x")), [], r"train_label_coordinates.csv: no column 'x'"),
    ("unknown level", _first_cell("train_label_coordinates.csv", "level", "L6/S1"), [], r"train_label_coordinates.csv line 2, column level: 'L6/S1' is not a level"),
    ("unknown condition", _first_cell("train_label_coordinates.csv", "condition", "Scoliosis"), [], r"line 2, column condition: 'Scoliosis'"),
    ("x not a number", _first_cell("train_label_coordinates.csv", "x", "left"), [], r"line 2, column x: 'left' is not a number"),
    ("unknown severity", _first_cell("train.csv", "spinal_canal_stenosis_l1_l2", "Mild"), [], r"train.csv: unknown severity values .*'Mild'"),
    ("series listed twice", lambda d: d.edit_csv("train_series_descriptions.csv", lambda t: pd.concat([t, t.iloc[:1]])), [], r"is listed twice"),
    ("--studies naming an absent study", lambda d: None, ["--studies", "12345"], r"requested studies 12345"),
    ("--compression 12", lambda d: None, ["--compression", "12"], r"compression level 12 is outside 0-9"),
    ("--codec brotli", lambda d: None, ["--codec", "brotli"], r"codec 'brotli' is not one of"),
    ("no images at all", lambda d: shutil.rmtree(d.root / "train_images"), [], r"no DICOM files under"),
]  # fmt: skip


@pytest.fixture(scope="module")
def base(phantom, tmp_path_factory) -> Data:
    root = tmp_path_factory.mktemp("bad-base") / "data"
    series = pd.read_csv(phantom / "train_series_descriptions.csv")
    studies = sorted(series["study_id"].unique())[:2]
    for study in studies:
        shutil.copytree(phantom / "train_images" / str(study), root / "train_images" / str(study))
    for name in ("train_series_descriptions.csv", "train.csv", "train_label_coordinates.csv"):
        table = pd.read_csv(phantom / name)
        table[table["study_id"].isin(studies)].to_csv(root / name, index=False)
    return Data(root, [int(s) for s in studies])


@pytest.fixture
def data(base) -> Iterator[Data]:
    """A copy of the two studies in a folder any user may read (the permissions case runs ingest as another user)."""
    with tempfile.TemporaryDirectory(prefix="lumbar-bad-input-") as tmp:
        Path(tmp).chmod(0o755)
        root = Path(tmp) / "data"
        shutil.copytree(base.root, root)
        yield Data(root, base.studies)


def _ingest(data: Data, run_uri: Path, *extra: str) -> int:
    return main(["stage", "ingest", "--data", str(data.root), "--run", str(run_uri), "--workers", "1", *extra])


NOBODY = 65534


def _as_nobody(fn: Callable[[], int]) -> int:
    """``fn()`` in a forked child running as user and group 65534; its return value (1 if it raised).

    Root reads a file whatever its mode, so a permission problem only shows to another user. The
    parent has imported what the child needs (the child cannot read the interpreter's own folder).
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root, run, report, exit without pytest's teardown
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            code = fn()
        finally:
            os.write(write_end, bytes([code & 0xFF]))
            os._exit(0)
    os.close(write_end)
    code = os.read(read_end, 1)
    os.close(read_end)
    os.waitpid(pid, 0)
    return code[0] if code else 1


def test_a_file_without_read_permission_is_a_problem_not_a_traceback(data, tmp_path):
    run = data.root.parent / "run"
    run.mkdir()
    run.chmod(0o777)
    assert _ingest(data, tmp_path / "warm-up") == 0  # imports everything ingest needs, before any fork
    path = data.files(data.studies[0], vocab.AXIAL_T2)[0]
    path.chmod(0)
    code = _as_nobody(lambda: _ingest(data, run)) if os.geteuid() == 0 else _ingest(data, run)
    assert code == 0
    problems = IngestedData.open(str(run)).problems
    unreadable = problems[problems["kind"] == "unreadable"]
    assert unreadable["file"].str.endswith(path.name).any(), problems[["kind", "file"]].to_dict("records")
    assert unreadable["message"].str.contains("Permission denied").any(), unreadable["message"].tolist()


@pytest.mark.parametrize(("name", "breaker", "kind", "where"), PROBLEMS, ids=[c[0] for c in PROBLEMS])
def test_a_problem_is_reported_and_the_rest_ingested(data, tmp_path, name, breaker, kind, where):
    culprit = breaker(data)
    out = tmp_path / "run"
    assert _ingest(data, out) == 0
    ingested = IngestedData.open(str(out))
    found = ingested.problems[ingested.problems["kind"] == kind]
    assert not found.empty, f"no {kind!r} problem; problems: {ingested.problems[['kind', 'file']].to_dict('records')}"
    column = "message" if where == "msg" else "file"
    assert found[column].astype(str).str.contains(culprit, regex=False).any(), found[["file", "message"]].to_dict("records")
    assert len(ingested.index) > 0


@pytest.mark.parametrize(("name", "breaker", "extra", "message"), ERRORS, ids=[c[0] for c in ERRORS])
def test_a_table_or_setting_that_cannot_be_used_stops_before_any_image(data, tmp_path, capsys, name, breaker, extra, message):
    breaker(data)
    out = tmp_path / "run"
    assert _ingest(data, out, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("lumbar stage: error: "), err
    assert re.search(message, err), err
    assert not (out / "ingest").exists(), "nothing is written before the tables and settings are checked"


def test_monochrome1_pixels_come_back_as_monochrome2(base, data, tmp_path):
    _monochrome1(data)
    for root, out in ((base, tmp_path / "plain"), (data, tmp_path / "inverted")):
        assert _ingest(root, out) == 0
    plain, inverted = IngestedData.open(str(tmp_path / "plain")), IngestedData.open(str(tmp_path / "inverted"))
    row = inverted.index[(inverted.index["study_id"] == data.studies[0]) & (inverted.index["description"] == vocab.SAGITTAL_T1)].iloc[0]
    back = inverted.volume(row.study_id, row.series_id, row.stack).pixels
    assert np.array_equal(back, plain.volume(row.study_id, row.series_id, row.stack).pixels)


def test_copies_and_duplicate_numbers_do_not_multiply_or_split(base, data, tmp_path):
    _byte_copy(data)
    _duplicate_instance(data)
    for root, out in ((base, tmp_path / "plain"), (data, tmp_path / "broken")):
        assert _ingest(root, out) == 0
    plain, broken = IngestedData.open(str(tmp_path / "plain")), IngestedData.open(str(tmp_path / "broken"))
    assert len(broken.index) == len(plain.index), "a copied slice does not split its series into two stacks"
    assert len(broken.table("coordinates")) < len(plain.table("coordinates")), "the ambiguous label is dropped"
    assert len(broken.table("labels")) == len(plain.table("labels")), "label rows are not multiplied"


def test_merge_refuses_shards_of_different_ingests(data, tmp_path):
    out = str(tmp_path / "run")
    (data.root / "test_images").mkdir()
    shutil.copytree(data.root / "train_images" / str(data.studies[1]), data.root / "test_images" / str(data.studies[1]))
    shutil.copyfile(data.root / "train_series_descriptions.csv", data.root / "test_series_descriptions.csv")
    run(data_uri=str(data.root), run_uri=out, params=IngestParams(workers=1, shard_index=0, shard_count=2))
    run(data_uri=str(data.root), run_uri=out, params=IngestParams(workers=1, shard_index=1, shard_count=2, split="test"))
    with pytest.raises(ValueError, match="ingest-shard-1 has split='test' but shard 0 has 'train'"):
        merge(run_uri=out, params=MergeParams(shard_count=2))
    assert not store.exists(f"{out}/ingest/{MANIFEST}")


def test_two_ingests_of_one_run_at_once_leave_a_valid_stage(data, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    out = str(tmp_path / "run")
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda _: run(data_uri=str(data.root), run_uri=out, params=IngestParams(workers=1)), range(2)))
    ingested = IngestedData.open(out)
    ingested.stage.verify_checksums()
    row = ingested.index.iloc[0]
    assert ingested.volume(row.study_id, row.series_id, row.stack).pixels.size > 0


def test_s3_without_credentials_is_one_line(data, s3_bucket, tmp_path, monkeypatch, capsys):
    endpoint = os.environ["AWS_ENDPOINT_URL"].replace("127.0.0.1", "localhost")  # a fresh client, resolved without credentials
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert main(["stage", "ingest", "--data", f"{s3_bucket}/data", "--run", str(tmp_path / "run")]) == 2
    assert "no S3 credentials for s3://" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--set", "nnunet-train.epochz=3"], "unknown parameter(s) epochz"),
        (["run", "--set", "vertebra-train.epochs=abc"], "VertebraTrainParams.epochs: cannot use 'abc'"),
        (["run", "--set", "run.seed=abc"], "seed must be a whole number"),
        (["run", "--set", "run.validation_fraction=1.5"], "validation_fraction must be between 0 and 1"),
        (["run", "--set", "run.fold=2"], "unknown run setting 'fold'"),
        (["synth", "--out", ".", "--overwrite", "--studies", "1"], "holds the current folder"),
    ],
    ids=[
        "unknown stage key",
        "bad stage value",
        "bad run value",
        "run value out of range",
        "unknown run key",
        "synth over the current folder",
    ],
)
def test_settings_are_refused_before_anything_runs(data, tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    if argv[0] == "run":
        argv = [*argv, "--data", str(data.root), "--run", str(tmp_path / "run"), "--runner", "inline"]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run" / "ingest").exists()
