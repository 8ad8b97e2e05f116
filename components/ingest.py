"""ingest (cpu): one shard of a dataset's DICOM series -> series index, volumes and label tables."""

from kfp import dsl
from kfp.dsl import Metrics, Output

from components.image import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def ingest(
    data_uri: str,
    run_uri: str,
    profile: str,
    overrides: dict,
    split: str,
    studies: list,
    name: str,
    shard_index: int,
    shard_count: int,
    after: list,
    metrics: Output[Metrics],
) -> str:
    """Ingest shard ``shard_index`` of ``studies`` (empty: all of ``split``) into stage ``name``; returns its reference."""
    from lumbar_core.task import run_task

    fixed = {"split": split, "studies": studies, "name": name, "shard_index": shard_index, "shard_count": shard_count}
    inputs = {"data_uri": data_uri}
    return run_task(
        "ingest", run_uri, profile=profile, overrides=overrides, fixed=fixed, inputs=inputs, after=after, log_metric=metrics.log_metric
    ).ref
