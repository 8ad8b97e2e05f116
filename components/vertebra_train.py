"""vertebra-train (gpu): the vertebra U-Net (segmentation-models-pytorch) on a SPIDER-format folder."""

from kfp import dsl
from kfp.dsl import Metrics, Output

from components.image import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def vertebra_train(spider_uri: str, run_uri: str, profile: str, overrides: dict, after: list, metrics: Output[Metrics]) -> str:
    """Train on the SPIDER-format folder ``spider_uri``; returns the stage's reference."""
    from lumbar_core.task import run_task

    inputs = {"spider_uri": spider_uri}
    return run_task(
        "vertebra-train", run_uri, profile=profile, overrides=overrides, inputs=inputs, after=after, log_metric=metrics.log_metric
    ).ref
