"""predict-merge (cpu): the predict shards combined into one predict stage."""

from kfp import dsl
from kfp.dsl import Metrics, Output

from components.image import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def predict_merge(run_uri: str, profile: str, overrides: dict, name: str, shard_count: int, after: list, metrics: Output[Metrics]) -> str:
    """Combine ``{name}-shard-*`` (after the shard tasks ``after``) into ``name``; returns its reference."""
    from lumbar_core.task import run_task

    fixed = {"name": name, "shard_count": shard_count}
    return run_task(
        "predict-merge", run_uri, profile=profile, overrides=overrides, fixed=fixed, after=after, log_metric=metrics.log_metric
    ).ref
