"""bundle (cpu): every trained model in one versioned package, shown in the KFP UI as a Model."""

from kfp import dsl
from kfp.dsl import Metrics, Model, Output

from components.image import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def bundle(run_uri: str, profile: str, overrides: dict, after: list, metrics: Output[Metrics], model: Output[Model]) -> str:
    """Pack the run's models into ``{run_uri}/bundle``; the Model artifact holds bundle.json and the bundle's URI."""
    from pathlib import Path

    from lumbar_core.task import bundle_view, run_task

    result = run_task("bundle", run_uri, profile=profile, overrides=overrides, after=after, log_metric=metrics.log_metric)
    uri, text, metadata = bundle_view(run_uri)
    Path(model.path).write_text(text)
    model.metadata.update({"bundle_uri": uri, **metadata})
    return result.ref
