"""crop-train (gpu): the sagittal crop classifier for spinal canal stenosis and foraminal narrowing."""

from kfp import dsl
from kfp.dsl import Metrics, Output

from components.image import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def crop_train(run_uri: str, profile: str, overrides: dict, after: list, metrics: Output[Metrics]) -> str:
    """Run crop-train on ``run_uri`` once the tasks ``after`` committed; returns the stage's reference."""
    from lumbar_core.task import run_task

    return run_task("crop-train", run_uri, profile=profile, overrides=overrides, after=after, log_metric=metrics.log_metric).ref
