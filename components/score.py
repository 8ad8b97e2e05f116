"""score (cpu): submission.csv, the score table and report.html, shown in the KFP UI as well."""

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Metrics, Output

from components.image import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def score(
    run_uri: str,
    profile: str,
    overrides: dict,
    ingest_stage: str,
    models_uri: str,
    after: list,
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
    report: Output[HTML],
) -> str:
    """Score ``ingest_stage``'s predictions; the report and the pooled confusion matrix go to the UI too."""
    from pathlib import Path

    from lumbar_core.task import run_task, score_views

    fixed = {"ingest_stage": ingest_stage, "models_uri": models_uri}
    result = run_task("score", run_uri, profile=profile, overrides=overrides, fixed=fixed, after=after, log_metric=metrics.log_metric)
    html, matrix = score_views(run_uri)
    Path(report.path).write_text(html)
    if matrix is not None:
        confusion.log_confusion_matrix(matrix["categories"], matrix["matrix"])
    return result.ref
