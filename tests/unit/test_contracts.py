"""Stage contracts: the registry's declarations are consistent, and a stage is held to them when it runs."""

import dataclasses

import pandas as pd
import pytest

from lumbar_core import documents
from lumbar_core.contracts import Read, TableSchema, Write
from lumbar_core.errors import ContractError, ManifestError, UpstreamChangedError
from lumbar_core.manifest import StageInput, StageOutput
from lumbar_core.params import Params
from lumbar_core.stages import STAGES, StageSpec, parse_refs, run_stage


def _fields(params: type[Params]) -> set[str]:
    return {f.name for f in dataclasses.fields(params)}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_declarations_name_real_stages_and_params(name):
    spec = STAGES[name]
    for read in spec.reads:
        assert read.stage in STAGES, read
        assert read.name_param is None or read.name_param in _fields(spec.params), read
        assert read.uri_param is None or read.uri_param in _fields(spec.params), read
    assert spec.name_param is None or spec.name_param in _fields(spec.params)
    assert spec.merge is None or STAGES[spec.merge].name_param == "name"
    paths = [w.path for w in spec.writes]
    assert len(paths) == len(set(paths)) and paths, "each output declared once"


@dataclasses.dataclass(frozen=True)
class _Params(Params):
    what: str = "declared"


@dataclasses.dataclass(frozen=True)
class _Doc(documents.Document):
    n: int


def _commit(run, stage, files):
    out = StageOutput(run, stage)
    for path, data in files.items():
        out.write_bytes(path, data)
    return out.commit()


def _reader(run_uri, params):
    """A toy stage: reads what ``params.what`` says, writes one declared table."""
    if params.what in ("declared", "pinned"):
        StageInput.open(run_uri, "ingest").read_bytes("a.parquet")
    elif params.what == "other file":
        StageInput.open(run_uri, "ingest").read_bytes("b.bin")
    elif params.what == "other stage":
        StageInput.open(run_uri, "balance").read_bytes("prior.json")
    out = StageOutput(run_uri, "toy")
    if params.what == "bad table":
        out.write_table("t.parquet", pd.DataFrame({"x": [1]}))
    elif params.what == "bad document":
        out.write_json("doc.json", {"m": 1})
    elif params.what == "undeclared output":
        out.write_bytes("extra.bin", b"x")
    else:
        out.write_table("t.parquet", pd.DataFrame({"study_id": [1]}))
        out.write_json("doc.json", {"n": 1})
    return out.commit(params=params.to_dict())


TOY = StageSpec(
    "toy",
    lambda *, run_uri, params: _reader(run_uri, params),
    _Params,
    "cpu",
    "a toy stage",
    reads=(Read("ingest", ("a.parquet",)),),
    writes=(Write("t.parquet", "a table", TableSchema(("study_id",))), Write("doc.json", "a document", document=_Doc)),
)


@pytest.fixture
def run(tmp_path):
    run = str(tmp_path / "run")
    _commit(run, "ingest", {"a.parquet": b"a", "b.bin": b"b"})
    _commit(run, "balance", {"prior.json": b"{}"})
    return run


def test_a_stage_that_keeps_to_its_declaration_runs_and_records_what_it_read(run):
    manifest = run_stage(TOY, run_uri=run, params=_Params())
    assert manifest.upstream == {"ingest": StageInput.open(run, "ingest").manifest.attempt}
    assert StageInput.open(run, "toy").manifest.upstream == manifest.upstream


@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("other stage", "opened balance, which it does not declare"),
        ("other file", "read ingest/b.bin, which its declaration of ingest does not cover"),
        ("bad table", "lacks column"),
        ("bad document", "unknown field"),
        ("undeclared output", "wrote extra.bin, which it does not declare"),
    ],
)
def test_a_stage_that_reads_or_writes_what_it_did_not_declare_fails(run, what, message):
    with pytest.raises(ContractError, match=message):
        run_stage(TOY, run_uri=run, params=_Params(what))
    with pytest.raises(ManifestError):
        StageInput.open(run, "toy")  # nothing committed


def test_pinned_upstream_must_still_be_committed_and_declared(run):
    attempt = StageInput.open(run, "ingest").manifest.attempt
    run_stage(TOY, run_uri=run, params=_Params("pinned"), pinned={"ingest": attempt})
    with pytest.raises(ContractError, match="scheduled after balance, which it does not declare"):
        run_stage(TOY, run_uri=run, params=_Params(), pinned={"balance": StageInput.open(run, "balance").manifest.attempt})
    _commit(run, "ingest", {"a.parquet": b"a2"})
    with pytest.raises(UpstreamChangedError, match="rerun meanwhile"):
        run_stage(TOY, run_uri=run, params=_Params(), pinned={"ingest": attempt})


def test_outside_a_stage_run_nothing_is_checked(run):
    assert StageInput.open(run, "balance").read_bytes("prior.json") == b"{}"


def test_references_parse_and_bad_ones_are_named():
    assert parse_refs(["ingest@a1", "", "predict@b2"]) == {"ingest": "a1", "predict": "b2"}
    with pytest.raises(ValueError, match="'ingest' is not 'stage@attempt'"):
        parse_refs(["ingest"])


def test_documents_name_the_file_and_field():
    good = {"tau": 0.5, "floor": 0.02}
    assert documents.Calibration.from_dict(good).tau == 0.5
    with pytest.raises(documents.DocumentError, match="x.json: Calibration lacks the field 'floor'"):
        documents.Calibration.from_dict({"tau": 0.5}, where="x.json")
    with pytest.raises(documents.DocumentError, match="unknown field"):
        documents.Calibration.from_dict({**good, "tua": 1}, where="x.json")
    nested = documents.NnunetTraining.from_dict({"families": {}, "warnings": {}})
    assert nested.families == {}
