"""predict (gpu): one shard of the studies of an ingest stage -> per-level severity probabilities."""

from kfp import dsl
from kfp.dsl import Metrics, Output

from components.image import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def predict(
    run_uri: str,
    profile: str,
    overrides: dict,
    ingest_stage: str,
    models_uri: str,
    shard_index: int,
    shard_count: int,
    after: list,
    metrics: Output[Metrics],
) -> str:
    """Predict shard ``shard_index`` of ``ingest_stage``'s studies with the models of ``models_uri`` ('' = this run)."""
    from lumbar_core.task import run_task

    fixed = {"ingest_stage": ingest_stage, "models_uri": models_uri, "shard_index": shard_index, "shard_count": shard_count}
    return run_task("predict", run_uri, profile=profile, overrides=overrides, fixed=fixed, after=after, log_metric=metrics.log_metric).ref
