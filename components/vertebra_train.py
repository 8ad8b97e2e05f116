"""vertebra-train (gpu): the vertebra U-Net (segmentation-models-pytorch) on a SPIDER-format folder."""

from kfp import dsl
from kfp.dsl import Metrics, Output

from components.image import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def vertebra_train(data_uri: str, spider_uri: str, run_uri: str, profile: str, overrides: dict, metrics: Output[Metrics]) -> str:
    """Train on ``spider_uri`` ('' = ``{data_uri}/spider``); returns the stage's reference."""
    from lumbar_core.pipeline import spider_root
    from lumbar_core.task import run_task

    inputs = {"spider_uri": spider_root(data_uri, spider_uri)}
    return run_task("vertebra-train", run_uri, profile=profile, overrides=overrides, inputs=inputs, log_metric=metrics.log_metric).ref
