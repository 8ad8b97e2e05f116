"""Each component's Python function called directly (``python_func``), on the tiny phantom."""

import pytest
from kfp.dsl import Metrics

from components import COMPONENTS
from lumbar_core import pipeline
from lumbar_core.errors import ContractError, UpstreamChangedError
from lumbar_core.manifest import StageInput
from lumbar_core.stages import STAGES
from lumbar_core.task import numeric_metrics, stage_params


def _metrics(tmp_path, name="metrics") -> Metrics:
    return Metrics(name=name, uri=str(tmp_path / name), metadata={})


def test_every_stage_has_a_component():
    assert set(STAGES) <= set(COMPONENTS)
    assert set(COMPONENTS) - set(STAGES) == {"train-inputs", "fan-out"}


def test_fan_out_items_carry_shard_studies_and_upstream():
    items = COMPONENTS["fan-out"].python_func(count=3, studies=[3.0, 1], after=["ingest@a1"])
    assert items == [{"shard_index": i, "studies": [3, 1], "after": ["ingest@a1"]} for i in range(3)]
    with pytest.raises(ValueError, match="at least 1"):
        COMPONENTS["fan-out"].python_func(count=0, studies=[], after=[])


def test_train_inputs_match_lumbar_run(phantom):
    training, validation, spider = COMPONENTS["train-inputs"].python_func(
        data_uri=str(phantom), spider_uri="", profile="tiny", overrides={"run.validation_fraction": "0.5"}
    )
    profile = pipeline.apply_overrides(pipeline.load_profile("tiny"), {"run.validation_fraction": "0.5"})
    assert (training, validation) == pipeline.training_split(str(phantom), profile)
    assert len(training) == len(validation) == 8 and not set(training) & set(validation)
    assert spider == f"{phantom}/spider"
    given = COMPONENTS["train-inputs"].python_func(data_uri=str(phantom), spider_uri="s3://b/spider", profile="tiny", overrides={})
    assert given[2] == "s3://b/spider"


def test_ingest_shards_merge_and_report_metrics(phantom, tmp_path):
    run = str(tmp_path / "run")
    studies = [int(p.name) for p in sorted((phantom / "train_images").iterdir())][:4]
    refs = []
    for i in range(2):
        metrics = _metrics(tmp_path, f"m{i}")
        refs.append(
            COMPONENTS["ingest"].python_func(
                data_uri=str(phantom),
                run_uri=run,
                profile="tiny",
                overrides={"ingest.workers": "1"},
                split="train",
                studies=studies,
                name="ingest",
                shard_index=i,
                shard_count=2,
                after=[],
                metrics=metrics,
            )
        )
        assert metrics.metadata["studies"] == 2.0
    assert [r.split("@")[0] for r in refs] == ["ingest-shard-0", "ingest-shard-1"]
    merged = COMPONENTS["ingest-merge"].python_func(
        run_uri=run, profile="tiny", overrides={}, name="ingest", shard_count=2, after=refs, metrics=_metrics(tmp_path)
    )
    data = StageInput.open(run, "ingest")
    assert merged == f"ingest@{data.manifest.attempt}"
    assert sorted(data.read_table("series_index.parquet")["study_id"].unique()) == sorted(studies)


def test_a_task_refuses_an_upstream_that_was_replaced_or_undeclared(phantom, tmp_path):
    run = str(tmp_path / "run")
    kwargs = {"data_uri": str(phantom), "run_uri": run, "profile": "tiny", "overrides": {"ingest.workers": "1"}, "split": "train"}
    shard = {"studies": [], "shard_index": 0, "shard_count": 1, "after": []}
    first = COMPONENTS["ingest"].python_func(**kwargs, name="ingest", **shard, metrics=_metrics(tmp_path))
    merge = COMPONENTS["ingest-merge"].python_func
    assert merge(
        run_uri=run, profile="tiny", overrides={}, name="ingest", shard_count=1, after=[first, ""], metrics=_metrics(tmp_path, "m")
    )
    COMPONENTS["ingest"].python_func(**kwargs, name="ingest", **shard, metrics=_metrics(tmp_path, "again"))
    with pytest.raises(UpstreamChangedError, match="rerun meanwhile"):
        merge(run_uri=run, profile="tiny", overrides={}, name="ingest", shard_count=1, after=[first], metrics=_metrics(tmp_path, "m2"))
    other = COMPONENTS["ingest"].python_func(**kwargs, name="ingest-validation", **shard, metrics=_metrics(tmp_path, "other"))
    with pytest.raises(ContractError, match="does not declare"):
        merge(run_uri=run, profile="tiny", overrides={}, name="ingest", shard_count=1, after=[other], metrics=_metrics(tmp_path, "m3"))
    with pytest.raises(ValueError, match="stage@attempt"):
        merge(run_uri=run, profile="tiny", overrides={}, name="ingest", shard_count=1, after=["ingest"], metrics=_metrics(tmp_path, "m4"))


def test_stage_params_layer_profile_overrides_and_fixed_values():
    params = stage_params("nnunet-train", "tiny", {"nnunet-train.epochs": "7", "densenet-train.epochs": "1"}, {"iterations": 3})
    assert (params.epochs, params.iterations, params.val_iterations) == (7, 3, 5)
    with pytest.raises(ValueError, match="unknown stage"):
        stage_params("nnunet-train", "tiny", {"nnunet.epochs": "7"})
    assert numeric_metrics({"a": 1, "b": float("nan"), "c": "x", "d": True, "e": 2.5}) == {"a": 1.0, "e": 2.5}
